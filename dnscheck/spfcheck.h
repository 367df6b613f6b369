/* SPDX-License-Identifier: MIT */
/*
 * The check of a domain's published SPF (RFC 7208) through DNS: exactly one
 * v=spf1 record, the syntax of every term (spf.h parses it), the
 * 10-DNS-lookup limit counted recursively through include: and redirect=,
 * the 2 void-lookup limit, include loops, and the qualifier of the all
 * mechanism.
 *
 * The check does not evaluate SPF for an IP address: it counts what any
 * evaluation may cost and reports what receivers will make of the record.
 * Terms with macros cannot be followed without a message: they are counted
 * and reported, not expanded.  No logging.
 */
#ifndef DNSCHECK_SPFCHECK_H
#define DNSCHECK_SPFCHECK_H

#include "dnscheck/findings.h"
#include "dns/resolve.h"

#define SPF_LOOKUP_LIMIT 10         /* RFC 7208 4.6.4 */
#define SPF_VOID_LIMIT 2            /* RFC 7208 4.6.4 */
#define SPF_MX_LIMIT 10             /* MX names one mx mechanism may look up */
#define SPF_WALK_DEPTH_MAX 12       /* nested include:/redirect= followed */
#define SPF_WALK_QUERIES_MAX 80     /* DNS queries one check sends at most */

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
