/* SPDX-License-Identifier: MIT */
/*
 * libdkimsign's ARC parts (not installed): the chain check (arc-verify.c)
 * and the Authentication-Results a set records (arc-results.c).
 */
#ifndef CLIENT_ARC_PRIVATE_H
#define CLIENT_ARC_PRIVATE_H

#include <stddef.h>

#include "client/dkimsign.h"
#include "dkim/arc.h"
#include "dkim/header.h"

/*
 * Check the ARC chain of the header block h of message m (its body hashes
 * final), asking DNS at dns_server (NULL: the system's resolver) for keys.
 * 0 with *ret_cv the cv= of the next set and ret_chain->count the highest
 * instance so far (the next set is count + 1); a chain too broken to
 * parse is cv=fail.  DKIMSIGN_E_HEADER: the chain ended with cv=fail, no
 * set may follow.  DKIMSIGN_E_DNS_TEMPORARY: a key could not be looked up
 * now.  A sentence in why either way.
 */
int arc_check_chain(const dkimsign_message *m, const struct dkim_headers *h, const char *dns_server,
                    struct arc_chain *ret_chain, enum arc_cv *ret_cv, char *why, size_t whylen);

/*
 * The results of the Authentication-Results fields in h whose authserv-id
 * is authserv_id (ASCII case ignored; fields of other authserv-ids are
 * ignored, RFC 8601 5), joined by "; " and unfolded into out (size octets,
 * NUL-terminated), whole results only.  "" when there are none.
 */
void arc_collect_results(const struct dkim_headers *h, const char *authserv_id, char *out, size_t size);

#endif
