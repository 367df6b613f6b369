/* SPDX-License-Identifier: MIT */
/*
 * Signing policy: which peers may sign for which domain.  The domain's
 * section (or the parent's that covers its subdomains) names its own
 * `allow` list; otherwise [daemon] allow applies ("*" by default: the
 * socket's owner, group and mode are then the only gate).
 */
#ifndef POLICY_H
#define POLICY_H

#include <stdbool.h>

#include "config.h"
#include "dispatch.h"

/* True when the peer (uid, primary gid, supplementary groups) may sign for
 * domain under c. */
bool pol_authorized(const struct config *c, const char *domain, const struct peer *p);

#endif
