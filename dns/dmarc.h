/* SPDX-License-Identifier: MIT */
/*
 * DMARC policy records (RFC 7489, and DMARCbis: RFC 9989-9991): a bounded
 * parser of the record at _dmarc.DOMAIN, and a check of a domain's published
 * policy through DNS: where the policy is found (DMARCbis DNS tree walk),
 * the value of every tag, historic tags (pct, ri, rf) with their DMARCbis
 * replacement, and the report addresses with, for each one in another
 * organizational domain, its external-destination authorization record
 * (<domain>._report._dmarc.<destination> TXT "v=DMARC1").
 *
 * Organizational domains are approximated by the last two labels (no
 * public suffix list): under a multi-label public suffix (example.co.uk) two
 * different organizations look like one, and the authorization record of
 * a report address there is not asked for.  Policy discovery itself follows
 * the DMARCbis tree walk, which needs no list.
 * No logging.
 */
#ifndef DNS_DMARC_H
#define DNS_DMARC_H

#include <stdbool.h>
#include <stddef.h>

#include "findings.h"
#include "resolve.h"

#define DMARC_RECORD_MAX 4096
#define DMARC_URIS_MAX 16            /* addresses in one rua= or ruf= */
#define DMARC_WALK_MAX 8             /* DMARCbis tree walk: names queried at most */

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

struct dmarc_report {
        char *record;         /* owned: the record that applies, NULL when none */
        char *found_at;       /* owned: the domain whose _dmarc name holds it */
        enum dmarc_policy p;  /* its p= (or sp=/np= when found at a parent: the one that applies) */
};

/*
 * Check domain's DMARC through r, appending findings to f.  0 when the
 * check ran (see f); DKIMSIGN_E_NOMEM.  DNS failures are findings marked
 * incomplete.  Free ret with dmarc_report_clear.
 */
int dmarc_check(struct dns_resolver *r, const char *domain, struct dmarc_report *ret, struct dns_findings *f);
void dmarc_report_clear(struct dmarc_report *rep);

#endif
