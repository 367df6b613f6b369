/* SPDX-License-Identifier: MIT */
/*
 * The check of one DKIM selector's published key record against the key
 * on the token: present, one record, parses, not revoked, the same key, a
 * sound key size, the t=y testing flag, h= and s= that allow our
 * signatures.  The record is parsed by dkim/dkimrec.c.  No logging.
 */
#ifndef DNSCHECK_DKIMCHECK_H
#define DNSCHECK_DKIMCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <openssl/evp.h>

#include "dnscheck/findings.h"
#include "dns/resolve.h"

struct dkim_selector_check {
        const char *selector;        /* borrowed */
        const char *domain;          /* borrowed */
        EVP_PKEY *pub;               /* borrowed: the token's public key */
        unsigned bits;               /* its size */
        bool retired;                /* no longer signs: a missing record is fine */
        const char *expected;        /* borrowed: the record text to publish (dkim_record_text) */
        const char *expected_zone;   /* borrowed: the same as a zone-file value */
};

struct dkim_selector_report {
        char *record;                /* owned: the published text, NULL when none */
        size_t strings;              /* character-strings it was split into */
        bool matches;                /* the published key is the token's */
        bool testing;                /* t=y */
};

/*
 * Look up <selector>._domainkey.<domain> TXT through r and append findings
 * to f.  0 when the check ran (see f), DKIMSIGN_E_NOMEM.  Free ret with
 * dkim_selector_report_clear.
 */
int dkim_selector_check(struct dns_resolver *r, const struct dkim_selector_check *in,
                        struct dkim_selector_report *ret, struct dns_findings *f);
void dkim_selector_report_clear(struct dkim_selector_report *rep);

#endif
