/* SPDX-License-Identifier: MIT */
/*
 * What SIGN (dispatch.c) and SEAL (dispatch-seal.c) share: the self-check
 * of a token's signature, the quota count, the header policy, the audit
 * line's Message-ID.  Daemon-internal.
 */
#ifndef DAEMON_DISPATCH_PRIVATE_H
#define DAEMON_DISPATCH_PRIVATE_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/dispatch.h"
#include "dkim/canon.h"
#include "dkim/header.h"
#include "dkim/sign.h"

/* The quotas a request was counted under, to give back if it fails:
 * its uid's and d='s, and also_sign's d='s (also_d; NULL: not counted). */
struct quota_pair {
        struct quota_limits uid, domain, also;
        const char *also_d;
};

/* 0 when sig is key's signature of digest, else DKIMSIGN_E_VERIFY. */
int dispatch_verify_signature(const struct hsm_key *key, const uint8_t digest[DKIM_SHA256_LEN],
                              const uint8_t *sig, size_t sig_len);
/* Parse a request's header block under the configured limits: 0, or
 * DKIMSIGN_E_TOO_LARGE / DKIMSIGN_E_HEADER with the sentence in why. */
int dispatch_parse_headers(const struct sign_ctx *ctx, const uint8_t *block, size_t len, struct dkim_headers *ret,
                           char *why, size_t whylen);
/* The Message-ID's value, trimmed and cut short, for the audit line. */
void dispatch_find_msgid(const struct dkim_headers *h, char *ret, size_t size);
/* The header policy of a domain's section, else the global one. */
const struct dkim_hpolicy *dispatch_policy_for(const struct config *c, const struct config_domain *d,
                                               size_t *ret_len);
/* Count a message for d against the quotas (see dispatch.c). */
int dispatch_quota_check(const struct sign_ctx *ctx, const struct peer *peer, const char *d, char *why,
                         size_t whylen, int64_t now, struct quota_pair **ret_taken);

#endif
