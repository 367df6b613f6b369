/* SPDX-License-Identifier: MIT */
/*
 * DMARC policy records (RFC 7489, and DMARCbis: RFC 9989-9991): a bounded
 * parser of the record at _dmarc.DOMAIN.  The check of a domain's published
 * policy through DNS is dmarccheck.h's.
 *
 * The text is untrusted (it came from DNS).  Pure code: no I/O, no logging.
 */
#ifndef DNSCHECK_DMARC_H
#define DNSCHECK_DMARC_H

#include <stdbool.h>
#include <stddef.h>

#define DMARC_RECORD_MAX 4096
#define DMARC_URIS_MAX 16            /* addresses in one rua= or ruf= */

enum dmarc_policy {
        DMARC_POLICY_ABSENT = 0,
        DMARC_POLICY_NONE,
        DMARC_POLICY_QUARANTINE,
        DMARC_POLICY_REJECT,
        DMARC_POLICY_INVALID,
};

struct dmarc_uri {
        char *uri;            /* owned: as written, outer whitespace trimmed */
        char *domain;         /* owned: the mailto: address's domain, lowercased; NULL if not mailto: */
        bool valid;           /* a syntactically valid mailto: URI */
        bool has_size;        /* a "!size" suffix (obsolete in DMARCbis) */
};

struct dmarc_record {
        enum dmarc_policy p, sp, np;
        bool p_second;        /* p= is the tag right after v= (RFC 7489's order) */
        char adkim, aspf;     /* 'r', 's', 0 when absent, '?' when invalid */
        int pct;              /* 0..100, -1 when absent, -2 when invalid */
        char t;               /* 'y', 'n', 0 when absent, '?' when invalid */
        char psd;             /* 'y', 'n', 'u', 0 when absent, '?' when invalid */
        char *fo;             /* owned: as written, NULL when absent */
        bool fo_valid;
        bool has_ri, has_rf;
        struct dmarc_uri rua[DMARC_URIS_MAX];
        size_t rua_count;
        struct dmarc_uri ruf[DMARC_URIS_MAX];
        size_t ruf_count;
        char unknown[128];    /* unknown tag names, space-separated (truncated) */
};

/* Is this TXT text a DMARC record: its first tag v=DMARC1. */
bool dmarc_is_record(const char *text, size_t len);

/*
 * Parse a DMARC record.  0 with *ret filled (free with dmarc_record_clear):
 * bad tag values are recorded in the struct (INVALID, '?', -2) for the
 * check to judge, not refused.  DKIMSIGN_E_FORMAT with one sentence in why
 * when receivers would discard the whole record: not v=DMARC1 first, a
 * broken tag-list, a duplicate tag.  DKIMSIGN_E_TOO_LARGE over
 * DMARC_RECORD_MAX octets or DMARC_URIS_MAX addresses in a tag.
 */
int dmarc_parse(const char *text, size_t len, struct dmarc_record *ret, char *why, size_t whylen);
void dmarc_record_clear(struct dmarc_record *r);
const char *dmarc_policy_name(enum dmarc_policy p);

#endif
