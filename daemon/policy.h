/* SPDX-License-Identifier: MIT */
/*
 * Signing policy: which peers may get a signature for which domains.
 *
 * The list that governs a domain is the `allow` of its own section, else
 * of the nearest parent's section that sets one (a subdomain inherits its
 * parent's list), else [daemon] allow ("*" by default: the socket's
 * owner, group and mode are then the only gate).
 *
 * A signature with d=D on a message whose From domain is F is released
 * only to a peer that D's list allows and, when D and F share an
 * organizational domain (the signature then aligns with F under DMARC),
 * that F's list allows too.  The domain asked for, when another (its
 * key_domain gives D), must allow the peer as well.
 */
#ifndef DAEMON_POLICY_H
#define DAEMON_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "keys/config.h"
#include "daemon/peer.h"

/* True when the list governing domain allows the peer (uid, primary gid,
 * supplementary groups). */
bool pol_allowed(const struct config *c, const char *domain, const struct peer *p);

/* The whole rule above, for the domain asked for, the d= that would be
 * signed and the From domain: true when the signature may be released;
 * false with the sentence for the refusal in why. */
bool pol_may_sign(const struct config *c, const char *requested, const char *d, const char *from,
                  const struct peer *p, char *why, size_t whylen);

/* Who may read the metrics (METRICS): root, the daemon's own user (self,
 * its effective uid), and whom [metrics] allow names.  A permission apart
 * from STATUS and RELOAD's, which stay with root and the daemon's user. */
bool pol_metrics_allowed(const struct config *c, const struct peer *p, uid_t self);

#endif
