/* SPDX-License-Identifier: MIT */
/*
 * SPF records (RFC 7208): a bounded parser of the record's terms, and a
 * check of a domain's published SPF through DNS: exactly one v=spf1 record,
 * the syntax of every term (macros included), the 10-DNS-lookup limit
 * counted recursively through include: and redirect=, the 2 void-lookup
 * limit, include loops, and the qualifier of the all mechanism.
 *
 * The check does not evaluate SPF for an IP address: it counts what any
 * evaluation may cost and reports what receivers will make of the record.
 * Terms with macros cannot be followed without a message: they are counted
 * and reported, not expanded.  No logging.
 */
#ifndef DNS_SPF_H
#define DNS_SPF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "findings.h"
#include "resolve.h"

#define SPF_RECORD_MAX 4096         /* octets of one record we parse */
#define SPF_TERMS_MAX 128
#define SPF_LOOKUP_LIMIT 10         /* RFC 7208 4.6.4 */
#define SPF_VOID_LIMIT 2            /* RFC 7208 4.6.4 */
#define SPF_MX_LIMIT 10             /* MX names one mx mechanism may look up */
#define SPF_WALK_DEPTH_MAX 12       /* nested include:/redirect= followed */
#define SPF_WALK_QUERIES_MAX 80     /* DNS queries one check sends at most */

enum spf_kind {
        SPF_ALL,
        SPF_INCLUDE,
        SPF_A,
        SPF_MX,
        SPF_PTR,
        SPF_IP4,
        SPF_IP6,
        SPF_EXISTS,
        SPF_REDIRECT,        /* modifier */
        SPF_EXP,             /* modifier */
        SPF_UNKNOWN_MODIFIER,
};

struct spf_term {
        enum spf_kind kind;
        char qualifier;      /* '+', '-', '~', '?' (mechanisms; '+' when not written) */
        char *text;          /* owned: the term as written */
        char *domain;        /* owned: the domain-spec, NULL when absent (or for ip4/ip6/all) */
        bool has_macro;      /* the domain-spec holds a macro-expand */
        int cidr4, cidr6;    /* prefix lengths, -1 when absent */
        uint8_t addr[16];    /* ip4 (4 octets) / ip6 network */
};

struct spf_record {
        struct spf_term *terms;   /* owned */
        size_t count;
        int all_index;            /* index of the first all mechanism, -1 when none */
        int redirect_index;       /* index of redirect=, -1 when none */
};

/* Is this TXT text an SPF record: "v=spf1" (any case) then a space or the end. */
bool spf_is_record(const char *text, size_t len);

/*
 * Parse an SPF record's text.  0 with *ret filled (free with
 * spf_record_clear); DKIMSIGN_E_FORMAT with one sentence in why (naming
 * the bad term) for any syntax error RFC 7208 makes a permerror;
 * DKIMSIGN_E_TOO_LARGE over SPF_RECORD_MAX octets or SPF_TERMS_MAX terms.
 */
int spf_parse(const char *text, size_t len, struct spf_record *ret, char *why, size_t whylen);
void spf_record_clear(struct spf_record *r);

struct spf_report {
        char *record;             /* owned: the domain's SPF record, NULL when none */
        unsigned lookups;         /* DNS-querying terms, counted through include:/redirect= */
        unsigned void_lookups;    /* of them, lookups that found nothing */
        char all;                 /* qualifier of the all that applies, 0 when none */
};

/*
 * Check domain's SPF through r, appending findings to f.  0 when the check
 * ran (whatever it found: see f); DKIMSIGN_E_NOMEM.  A DNS failure is a
 * finding marked incomplete, not a return code.  Free ret with
 * spf_report_clear.
 */
int spf_check(struct dns_resolver *r, const char *domain, struct spf_report *ret, struct dns_findings *f);
void spf_report_clear(struct spf_report *rep);

#endif
