/* SPDX-License-Identifier: MIT */
/*
 * Signing policy: which peers may sign for which domain.  The domain's
 * section (or the parent's that covers its subdomains) names its own
 * `allow` list; otherwise [daemon] allow applies ("*" by default: the
 * socket's owner, group and mode are then the only gate).
 */
#ifndef DAEMON_POLICY_H
#define DAEMON_POLICY_H

#include <stdbool.h>

#include "keys/config.h"
#include "daemon/peer.h"

/* True when the peer (uid, primary gid, supplementary groups) may sign
 * under section, the requested domain's section (config_domain_for; NULL
 * when none governs it) of c. */
bool pol_authorized(const struct config *c, const struct config_domain *section, const struct peer *p);

#endif
