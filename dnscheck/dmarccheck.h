/* SPDX-License-Identifier: MIT */
/*
 * The check of a domain's published DMARC policy through DNS: where the
 * policy is found (DMARCbis DNS tree walk), the value of every tag (dmarc.h
 * parses the record), historic tags (pct, ri, rf) with their DMARCbis
 * replacement, and the report addresses with, for each one in another
 * organizational domain, its external-destination authorization record
 * (<domain>._report._dmarc.<destination> TXT "v=DMARC1").
 *
 * Organizational domains come from the Public Suffix List
 * (dns/orgdomain.h).  Policy discovery itself follows the DMARCbis tree
 * walk, which needs no list.
 * No logging.
 */
#ifndef DNSCHECK_DMARCCHECK_H
#define DNSCHECK_DMARCCHECK_H

#include "dnscheck/dmarc.h"
#include "dnscheck/findings.h"
#include "dns/resolve.h"

#define DMARC_WALK_MAX 8             /* DMARCbis tree walk: names queried at most */

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
