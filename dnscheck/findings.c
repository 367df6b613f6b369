/* SPDX-License-Identifier: MIT */
/*
 * Lists of check findings.  See findings.h.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dnscheck/findings.h"

static char *vformat(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
static char *vformat(const char *fmt, va_list ap)
{
        char *s = NULL;

        if (vasprintf(&s, fmt, ap) < 0)
                return NULL;
        return s;
}

struct dns_finding *dns_findings_add(struct dns_findings *f, enum dns_verdict v, const char *id,
                                     const char *fmt, ...)
{
        struct dns_finding *grown, *d;
        va_list ap;

        if (f->count >= DNS_FINDINGS_MAX)
                return NULL;
        grown = reallocarray(f->items, f->count + 1, sizeof(*grown));
        if (!grown) {
                f->oom = true;
                return NULL;
        }
        f->items = grown;
        d = &grown[f->count];
        memset(d, 0, sizeof(*d));
        d->verdict = v;
        d->id = strdup(id);
        va_start(ap, fmt);
        d->message = vformat(fmt, ap);
        va_end(ap);
        if (!d->id || !d->message) {
                free(d->id);
                free(d->message);
                f->oom = true;
                return NULL;
        }
        f->count++;
        return d;
}

void dns_finding_fix(struct dns_findings *f, struct dns_finding *d, const char *fmt, ...)
{
        va_list ap;

        if (!d)
                return;
        free(d->fix);
        va_start(ap, fmt);
        d->fix = vformat(fmt, ap);
        va_end(ap);
        if (!d->fix)
                f->oom = true;
}

enum dns_verdict dns_findings_worst(const struct dns_findings *f)
{
        enum dns_verdict worst = DNS_VERDICT_OK;

        for (size_t i = 0; i < f->count; i++)
                if (f->items[i].verdict > worst)
                        worst = f->items[i].verdict;
        return worst;
}

void dns_findings_clear(struct dns_findings *f)
{
        if (!f)
                return;
        for (size_t i = 0; i < f->count; i++) {
                free(f->items[i].id);
                free(f->items[i].message);
                free(f->items[i].fix);
        }
        free(f->items);
        memset(f, 0, sizeof(*f));
}

const char *dns_verdict_name(enum dns_verdict v)
{
        switch (v) {
        case DNS_VERDICT_OK: return "ok";
        case DNS_VERDICT_WARNING: return "warning";
        default: return "error";
        }
}

void dns_findings_bogus(struct dns_findings *f, const char *id, const char *what, const char *name)
{
        struct dns_finding *d;

        d = dns_findings_add(f, DNS_VERDICT_ERROR, id,
                             "The %s answer for %s failed DNSSEC validation (bogus): validating receivers get "
                             "no answer at all (SERVFAIL), and dkimsign does not believe it.", what, name);
        dns_finding_fix(f, d, "Make the zone's signatures valid again (re-sign the zone of %s, and check that "
                        "the DS record at its parent matches its DNSKEY); then check again.", name);
}
