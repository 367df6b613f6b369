/* SPDX-License-Identifier: MIT */
/*
 * The check of a domain's SPF.  See spfcheck.h.
 *
 * The checker walks include: and redirect= targets depth-first with a stack
 * of the names on the current path (loops), a depth bound and a bound on
 * the queries sent, so a hostile chain of records cannot make it run long.
 * The records themselves are parsed by spf.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "protocol/dkimsign-errors.h"
#include "dnscheck/findings.h"
#include "dnscheck/spf.h"
#include "dnscheck/spfcheck.h"

struct walk {
        struct dns_resolver *r;
        struct dns_findings *f;
        const char *top;
        unsigned lookups;
        unsigned void_lookups;
        unsigned queries;
        bool stopped;                 /* a bound was reached: counts are lower bounds */
        bool top_parsed;              /* the domain's own record was found and parsed */
        bool top_redirected;          /* its all comes from a redirect= target */
        char *top_record;             /* owned: its text */
        char *path[SPF_WALK_DEPTH_MAX + 1];
        size_t depth;
};

static void dns_failed(struct walk *w, const char *what, const char *name, int rc)
{
        struct dns_finding *d;

        if (rc == DKIMSIGN_E_DNS_TEMPORARY) {
                d = dns_findings_add(w->f, DNS_VERDICT_ERROR, "spf-dns",
                                     "The %s lookup of %s failed for now (timeout or server failure): "
                                     "receivers get a temporary error (temperror) too.", what, name);
                if (d)
                        d->incomplete = true;
                dns_finding_fix(w->f, d, "Make sure the name servers of %s answer; then check again.", name);
        } else if (rc == DKIMSIGN_E_DNS_BOGUS) {
                dns_findings_bogus(w->f, "spf-dns", what, name);
        } else {
                d = dns_findings_add(w->f, DNS_VERDICT_ERROR, "spf-dns",
                                     "The %s answer for %s is malformed or the name is invalid (%s).", what,
                                     name, dkimsign_strerror(rc));
                dns_finding_fix(w->f, d, "Correct the name or the zone that serves %s.", name);
        }
}

/* One more query, unless the bound is reached. */
static bool may_query(struct walk *w, unsigned n)
{
        if (w->queries + n > SPF_WALK_QUERIES_MAX) {
                w->stopped = true;
                return false;
        }
        w->queries += n;
        return true;
}

/* The target of a term: its domain-spec, or the domain whose record it is in. */
static const char *term_target(const struct spf_term *t, const char *domain)
{
        return t->domain ? t->domain : domain;
}

static void check_a(struct walk *w, const struct spf_term *t, const char *domain)
{
        const char *name = term_target(t, domain);
        struct dns_addrs a4 = { 0 }, a6 = { 0 };
        int r4, r6;

        if (t->has_macro || !may_query(w, 2))
                return;
        r4 = dns_addr_lookup(w->r, name, AF_INET, &a4);
        r6 = dns_addr_lookup(w->r, name, AF_INET6, &a6);
        dns_addrs_clear(&a4);
        dns_addrs_clear(&a6);
        if (r4 == DKIMSIGN_E_DNS_NOT_FOUND && r6 == DKIMSIGN_E_DNS_NOT_FOUND) {
                struct dns_finding *d;

                w->void_lookups++;
                d = dns_findings_add(w->f, DNS_VERDICT_WARNING, "spf-void",
                                     "The term \"%s\" in the SPF record of %s finds no address (a void lookup).",
                                     t->text, domain);
                dns_finding_fix(w->f, d, "Remove \"%s\" from the SPF record of %s, or publish an address for %s.",
                                t->text, domain, name);
        } else if (r4 < 0 && r4 != DKIMSIGN_E_DNS_NOT_FOUND) {
                dns_failed(w, "A", name, r4);
        } else if (r6 < 0 && r6 != DKIMSIGN_E_DNS_NOT_FOUND) {
                dns_failed(w, "AAAA", name, r6);
        }
}

static void check_mx(struct walk *w, const struct spf_term *t, const char *domain)
{
        const char *name = term_target(t, domain);
        struct dns_mx mx = { 0 };
        struct dns_finding *d;
        int rc;

        if (t->has_macro || !may_query(w, 1))
                return;
        rc = dns_mx_lookup(w->r, name, &mx);
        if (rc == DKIMSIGN_E_DNS_NOT_FOUND) {
                w->void_lookups++;
                d = dns_findings_add(w->f, DNS_VERDICT_WARNING, "spf-void",
                                     "The term \"%s\" in the SPF record of %s finds no MX record (a void lookup).",
                                     t->text, domain);
                dns_finding_fix(w->f, d, "Remove \"%s\" from the SPF record of %s, or publish MX records for %s.",
                                t->text, domain, name);
        } else if (rc < 0) {
                dns_failed(w, "MX", name, rc);
        } else if (mx.count > SPF_MX_LIMIT) {
                d = dns_findings_add(w->f, DNS_VERDICT_ERROR, "spf-mx-limit",
                                     "%s has %zu MX records; the mx mechanism may look up at most %d "
                                     "(RFC 7208 4.6.4): receivers return permerror.", name, mx.count, SPF_MX_LIMIT);
                dns_finding_fix(w->f, d, "Replace \"%s\" in the SPF record of %s by the ip4:/ip6: ranges of "
                                "the hosts that send mail.", t->text, domain);
        }
        dns_mx_clear(&mx);
}

static void check_exists(struct walk *w, const struct spf_term *t, const char *domain)
{
        struct dns_addrs a4 = { 0 };
        int rc;

        if (t->has_macro || !may_query(w, 1))
                return;
        rc = dns_addr_lookup(w->r, t->domain, AF_INET, &a4);
        dns_addrs_clear(&a4);
        if (rc == DKIMSIGN_E_DNS_NOT_FOUND)
                w->void_lookups++;
        else if (rc < 0)
                dns_failed(w, "A", t->domain, rc);
}

static char walk_domain(struct walk *w, const char *domain, const struct spf_term *via, const char *via_domain);

/* Did a term of this record pass everyone (+all, or ip4:0.0.0.0/0)? */
static bool passes_everyone(const struct spf_term *t)
{
        if (t->qualifier != '+')
                return false;
        return t->kind == SPF_ALL || (t->kind == SPF_IP4 && t->cidr4 == 0) ||
               (t->kind == SPF_IP6 && t->cidr6 == 0);
}

static void check_included(struct walk *w, const struct spf_term *t, const char *domain)
{
        if (t->has_macro) {
                struct dns_finding *d = dns_findings_add(
                        w->f, DNS_VERDICT_WARNING, "spf-macro",
                        "The term \"%s\" in the SPF record of %s uses macros: what it costs depends on each "
                        "message, so its lookups are not counted here.", t->text, domain);
                dns_finding_fix(w->f, d, "Count the lookups \"%s\" makes by hand; keep the total at %d or fewer.",
                                t->text, SPF_LOOKUP_LIMIT);
                return;
        }
        (void) walk_domain(w, t->domain, t, domain);
}

/* Mechanisms (not modifiers, whose place does not matter) after all. */
static bool mechanisms_after_all(const struct spf_record *rec)
{
        if (rec->all_index < 0)
                return false;
        for (size_t i = (size_t) rec->all_index + 1; i < rec->count; i++)
                if (rec->terms[i].kind < SPF_REDIRECT)
                        return true;
        return false;
}

/* Walk one record's terms; returns the qualifier of the all that ends it
 * (through redirect=), 0 when none. */
static char walk_terms(struct walk *w, const struct spf_record *rec, const char *domain, bool top)
{
        size_t end = rec->all_index >= 0 ? (size_t) rec->all_index + 1 : rec->count;
        struct dns_finding *d;
        char all = 0;

        for (size_t i = 0; i < end; i++) {
                const struct spf_term *t = &rec->terms[i];

                switch (t->kind) {
                case SPF_INCLUDE:
                        w->lookups++;
                        check_included(w, t, domain);
                        break;
                case SPF_A:
                        w->lookups++;
                        check_a(w, t, domain);
                        break;
                case SPF_MX:
                        w->lookups++;
                        check_mx(w, t, domain);
                        break;
                case SPF_PTR:
                        w->lookups++;
                        d = dns_findings_add(w->f, DNS_VERDICT_WARNING, "spf-ptr",
                                             "The SPF record of %s uses \"%s\": ptr is slow, unreliable and "
                                             "deprecated (RFC 7208 5.5); many receivers ignore it.", domain, t->text);
                        dns_finding_fix(w->f, d, "Replace \"%s\" by the ip4:/ip6: ranges (or a:/include:) of the "
                                        "hosts that send mail.", t->text);
                        break;
                case SPF_EXISTS:
                        w->lookups++;
                        check_exists(w, t, domain);
                        break;
                case SPF_ALL:
                        all = t->qualifier;
                        break;
                default:
                        break;
                }
                if (passes_everyone(t) && (t->kind != SPF_ALL || !top)) {
                        d = dns_findings_add(w->f, DNS_VERDICT_ERROR, "spf-pass-all",
                                             "The SPF record of %s has \"%s\", which lets every host on the "
                                             "internet pass SPF%s.", domain, t->text,
                                             top ? "" : " for the domains that include it");
                        dns_finding_fix(w->f, d, "Remove \"%s\" from the SPF record of %s.", t->text, domain);
                }
        }
        if (mechanisms_after_all(rec)) {
                d = dns_findings_add(w->f, DNS_VERDICT_WARNING, "spf-after-all",
                                     "The SPF record of %s has mechanisms after \"all\"; receivers never look at "
                                     "them.", domain);
                dns_finding_fix(w->f, d, "Move \"all\" to the end of the SPF record of %s, or remove the "
                                "mechanisms after it.", domain);
        }
        if (rec->redirect_index >= 0 && rec->all_index >= 0) {
                d = dns_findings_add(w->f, DNS_VERDICT_WARNING, "spf-redirect-ignored",
                                     "The SPF record of %s has both \"all\" and \"%s\": receivers ignore "
                                     "redirect= when there is an all mechanism (RFC 7208 6.1).", domain,
                                     rec->terms[rec->redirect_index].text);
                dns_finding_fix(w->f, d, "Remove \"%s\" or \"%s\" from the SPF record of %s.",
                                rec->terms[rec->redirect_index].text, rec->terms[rec->all_index].text, domain);
        }
        if (rec->redirect_index >= 0 && rec->all_index < 0) {
                const struct spf_term *t = &rec->terms[rec->redirect_index];

                if (w->depth == 1)
                        w->top_redirected = true;

                w->lookups++;
                if (!t->has_macro)
                        all = walk_domain(w, t->domain, t, domain);
                else
                        check_included(w, t, domain);
        }
        return all;
}

static bool on_path(const struct walk *w, const char *domain)
{
        for (size_t i = 0; i < w->depth; i++)
                if (strcasecmp(w->path[i], domain) == 0)
                        return true;
        return false;
}

/* The path as "a -> b -> c", for loop messages. */
static void path_text(const struct walk *w, const char *last, char *out, size_t outlen)
{
        size_t used = 0;

        out[0] = '\0';
        for (size_t i = 0; i < w->depth && used < outlen; i++) {
                int n = snprintf(out + used, outlen - used, "%s -> ", w->path[i]);

                if (n < 0)
                        return;
                used += (size_t) n;
        }
        if (used < outlen)
                snprintf(out + used, outlen - used, "%s", last);
}

/* The one SPF record of domain: 0 with *ret owned, or a finding and <0. */
static int fetch_record(struct walk *w, const char *domain, const struct spf_term *via, const char *via_domain,
                        char **ret, size_t *ret_len)
{
        struct dns_txt txt = { 0 };
        struct dns_finding *d;
        size_t found = 0, which = 0;
        int rc;

        if (!may_query(w, 1))
                return DKIMSIGN_E_TOO_LARGE;
        rc = dns_txt_lookup(w->r, domain, &txt);
        if (rc < 0 && rc != DKIMSIGN_E_DNS_NOT_FOUND) {
                dns_failed(w, "TXT", domain, rc);
                return rc;
        }
        for (size_t i = 0; rc == 0 && i < txt.count; i++)
                if (spf_is_record(txt.records[i].text, txt.records[i].len)) {
                        found++;
                        which = i;
                }
        if (found == 0) {
                if (rc == DKIMSIGN_E_DNS_NOT_FOUND && via)
                        w->void_lookups++;
                if (!via) {
                        d = dns_findings_add(w->f, DNS_VERDICT_ERROR, "spf-missing",
                                             "%s has no SPF record: receivers cannot tell which hosts may send "
                                             "its mail.", domain);
                        dns_finding_fix(w->f, d, "Publish %s. IN TXT \"v=spf1 mx ~all\", listing every other "
                                        "host that sends mail for %s (ip4:, ip6:, include:) before ~all.",
                                        domain, domain);
                } else {
                        d = dns_findings_add(w->f, DNS_VERDICT_ERROR, "spf-include-missing",
                                             "The term \"%s\" in the SPF record of %s points at %s, which has no "
                                             "SPF record: receivers return permerror.", via->text, via_domain,
                                             domain);
                        dns_finding_fix(w->f, d, "Remove \"%s\" from the SPF record of %s, or correct its domain.",
                                        via->text, via_domain);
                }
                dns_txt_clear(&txt);
                return DKIMSIGN_E_DNS_NOT_FOUND;
        }
        if (found > 1) {
                d = dns_findings_add(w->f, DNS_VERDICT_ERROR, "spf-multiple",
                                     "%s has %zu SPF records; receivers return permerror when there is more "
                                     "than one (RFC 7208 4.5).", domain, found);
                dns_finding_fix(w->f, d, "Merge the SPF records of %s into one v=spf1 record and remove the "
                                "others.", domain);
                dns_txt_clear(&txt);
                return DKIMSIGN_E_FORMAT;
        }
        *ret = txt.records[which].text;
        *ret_len = txt.records[which].len;
        txt.records[which].text = NULL;   /* transferred */
        dns_txt_clear(&txt);
        return 0;
}

static char walk_domain(struct walk *w, const char *domain, const struct spf_term *via, const char *via_domain)
{
        struct spf_record rec = { 0 };
        struct dns_finding *d;
        char why[300], path[512];
        char *text = NULL;
        size_t len = 0;
        char all = 0;
        int rc;

        if (on_path(w, domain)) {
                path_text(w, domain, path, sizeof(path));
                d = dns_findings_add(w->f, DNS_VERDICT_ERROR, "spf-loop",
                                     "The SPF record of %s loops: %s. Receivers stop at the %d-lookup limit "
                                     "and return permerror.", w->top, path, SPF_LOOKUP_LIMIT);
                dns_finding_fix(w->f, d, "Remove \"%s\" from the SPF record of %s.", via->text, via_domain);
                return 0;
        }
        if (w->depth >= SPF_WALK_DEPTH_MAX) {
                w->stopped = true;
                return 0;
        }
        rc = fetch_record(w, domain, via, via_domain, &text, &len);
        if (rc < 0)
                return 0;
        if (!via)
                dns_findings_add(w->f, DNS_VERDICT_OK, "spf-record", "%s has one SPF record.", domain);
        if (len > 450) {
                d = dns_findings_add(w->f, DNS_VERDICT_WARNING, "spf-length",
                                     "The SPF record of %s is %zu octets: with the rest of the answer it may not "
                                     "fit a 512-octet UDP reply, and some receivers do not retry over TCP.",
                                     domain, len);
                dns_finding_fix(w->f, d, "Shorten the SPF record of %s (move ranges into an include: of a "
                                "subdomain).", domain);
        }
        rc = spf_parse(text, len, &rec, why, sizeof(why));
        if (!via)
                w->top_record = text;   /* transferred: the report shows it */
        else
                free(text);
        if (rc < 0) {
                d = dns_findings_add(w->f, DNS_VERDICT_ERROR, "spf-syntax",
                                     "The SPF record of %s is invalid: %s; receivers return permerror.", domain,
                                     why);
                dns_finding_fix(w->f, d, "Correct the SPF record of %s (RFC 7208 section 12).", domain);
                return 0;
        }
        if (!via)
                w->top_parsed = true;
        w->path[w->depth] = (char *) domain;
        w->depth++;
        all = walk_terms(w, &rec, domain, via == NULL || via->kind == SPF_REDIRECT);
        w->depth--;
        spf_record_clear(&rec);
        return all;
}

static void judge_all(struct walk *w, const char *domain, char all)
{
        const char *via = w->top_redirected ? " (through its redirect=)" : "";
        struct dns_finding *d;

        switch (all) {
        case '+':
                d = dns_findings_add(w->f, DNS_VERDICT_ERROR, "spf-all",
                                     "The SPF record of %s%s ends with +all: every host on the internet passes "
                                     "SPF for %s.", domain, via, domain);
                dns_finding_fix(w->f, d, "Replace +all (or a bare \"all\") by ~all, or by -all once every host "
                                "that sends mail for %s is listed.", domain);
                break;
        case '?':
                d = dns_findings_add(w->f, DNS_VERDICT_WARNING, "spf-all",
                                     "The SPF record of %s%s ends with ?all (neutral): mail from unlisted hosts "
                                     "is treated as if there were no SPF record.", domain, via);
                dns_finding_fix(w->f, d, "Replace ?all by ~all, or by -all once every host that sends mail for "
                                "%s is listed.", domain);
                break;
        case '~':
                dns_findings_add(w->f, DNS_VERDICT_OK, "spf-all",
                                 "The SPF record of %s%s ends with ~all: mail from unlisted hosts soft-fails.",
                                 domain, via);
                break;
        case '-':
                dns_findings_add(w->f, DNS_VERDICT_OK, "spf-all",
                                 "The SPF record of %s%s ends with -all: mail from unlisted hosts fails.", domain,
                                 via);
                break;
        default:
                d = dns_findings_add(w->f, DNS_VERDICT_WARNING, "spf-all",
                                     "The SPF record of %s has no all mechanism and no redirect=: mail from "
                                     "unlisted hosts gets neutral, as if there were no SPF record.", domain);
                dns_finding_fix(w->f, d, "End the SPF record of %s with ~all (or -all).", domain);
                break;
        }
}

static void judge_counts(struct walk *w, const char *domain)
{
        struct dns_finding *d;

        if (w->lookups > SPF_LOOKUP_LIMIT) {
                d = dns_findings_add(w->f, DNS_VERDICT_ERROR, "spf-lookups",
                                     "The SPF record of %s needs %s%u DNS lookups (include, a, mx, ptr, exists, "
                                     "redirect, counted through every include), over the limit of %d (RFC 7208 "
                                     "4.6.4): receivers return permerror and SPF fails for all its mail.",
                                     domain, w->stopped ? "at least " : "", w->lookups, SPF_LOOKUP_LIMIT);
                dns_finding_fix(w->f, d, "Bring the SPF record of %s to %d lookups or fewer: replace include:, a "
                                "and mx terms by the ip4:/ip6: ranges they stand for, or drop senders no longer "
                                "used.", domain, SPF_LOOKUP_LIMIT);
        } else {
                dns_findings_add(w->f, DNS_VERDICT_OK, "spf-lookups",
                                 "The SPF record of %s needs %u of the %d DNS lookups allowed.", domain, w->lookups,
                                 SPF_LOOKUP_LIMIT);
        }
        if (w->void_lookups > SPF_VOID_LIMIT) {
                d = dns_findings_add(w->f, DNS_VERDICT_ERROR, "spf-void-lookups",
                                     "The SPF record of %s makes %u lookups that find nothing, over the limit of "
                                     "%d (RFC 7208 4.6.4): receivers may return permerror.", domain,
                                     w->void_lookups, SPF_VOID_LIMIT);
                dns_finding_fix(w->f, d, "Remove the terms of the SPF record of %s (and of its includes) whose "
                                "names no longer exist.", domain);
        }
        if (w->stopped) {
                d = dns_findings_add(w->f, DNS_VERDICT_WARNING, "spf-walk-stopped",
                                     "The SPF check of %s stopped after %u queries or %d nested includes; the "
                                     "counts are lower bounds.", domain, w->queries, SPF_WALK_DEPTH_MAX);
                dns_finding_fix(w->f, d, "Simplify the SPF record of %s.", domain);
        }
}

void spf_report_clear(struct spf_report *rep)
{
        if (!rep)
                return;
        free(rep->record);
        memset(rep, 0, sizeof(*rep));
}

int spf_check(struct dns_resolver *r, const char *domain, struct spf_report *ret, struct dns_findings *f)
{
        struct walk w = { .r = r, .f = f, .top = domain };
        struct spf_report rep = { 0 };
        char all;

        all = walk_domain(&w, domain, NULL, NULL);
        /* Judge the policy and the counts only when the record was there and parsed. */
        if (w.top_parsed) {
                judge_all(&w, domain, all);
                judge_counts(&w, domain);
        }
        rep.record = w.top_record;   /* transferred */
        rep.lookups = w.lookups;
        rep.void_lookups = w.void_lookups;
        rep.all = all;
        if (f->oom) {
                spf_report_clear(&rep);
                return DKIMSIGN_E_NOMEM;
        }
        *ret = rep;
        return 0;
}
