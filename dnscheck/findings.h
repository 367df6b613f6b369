/* SPDX-License-Identifier: MIT */
/*
 * What a DNS check found: a list of findings, each with a verdict, a stable
 * short id (for scripts and tests), one sentence on what was found and the
 * exact fix.  The checks (spfcheck.h, dmarccheck.h, dkimcheck.h) append to
 * a list; the front end (dkimsignctl check) prints it.  Pure code: no I/O,
 * no logging.
 *
 * Appending never fails from the caller's view: on out-of-memory the list
 * remembers it (oom) and the check returns DKIMSIGN_E_NOMEM at its end, so
 * checks stay readable chains of "found this, say that".
 */
#ifndef DNSCHECK_FINDINGS_H
#define DNSCHECK_FINDINGS_H

#include <stdbool.h>
#include <stddef.h>

#include "dkim/taglist.h"

#define DNS_FINDINGS_MAX 256   /* a check that finds more stops listing */

enum dns_verdict {
        DNS_VERDICT_OK = 0,
        DNS_VERDICT_WARNING = 1,
        DNS_VERDICT_ERROR = 2,
};

struct dns_finding {
        enum dns_verdict verdict;
        char *id;          /* owned: "spf-lookups", "dmarc-pct", ... */
        char *message;     /* owned: one sentence */
        char *fix;         /* owned: the exact fix, NULL when there is nothing to do */
        bool incomplete;   /* the check could not run (a DNS lookup failed for now) */
};

struct dns_findings {
        struct dns_finding *items;   /* owned */
        size_t count;
        bool oom;
};

/* Append a finding; the message is printf-formatted.  Returns the finding
 * (to add a fix) or NULL on out-of-memory or when the list is full. */
struct dns_finding *dns_findings_add(struct dns_findings *f, enum dns_verdict v, const char *id,
                                     const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Set the fix of a finding (accepts NULL d: does nothing). */
void dns_finding_fix(struct dns_findings *f, struct dns_finding *d, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
/* The error finding for an answer that failed DNSSEC validation (a
 * DKIMSIGN_E_DNS_BOGUS lookup), under id: what (a record type) at name. */
void dns_findings_bogus(struct dns_findings *f, const char *id, const char *what, const char *name);
/* The worst verdict in the list; DNS_VERDICT_OK when empty. */
enum dns_verdict dns_findings_worst(const struct dns_findings *f);
void dns_findings_clear(struct dns_findings *f);
const char *dns_verdict_name(enum dns_verdict v);   /* "ok", "warning", "error" */


#endif
