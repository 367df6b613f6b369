/* SPDX-License-Identifier: MIT */
/*
 * The check of a domain's DMARC policy.  See dmarccheck.h.
 *
 * The check's DNS use is bounded: the tree walk queries at most
 * DMARC_WALK_MAX names, then one authorization name per distinct external
 * report domain.  The records themselves are parsed by dmarc.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "protocol/dkimsign-errors.h"
#include "dnscheck/dmarc.h"
#include "dnscheck/dmarccheck.h"
#include "dns/orgdomain.h"
#include "dnscheck/findings.h"
#include "util/memdup.h"
#include "dkim/taglist.h"

/* Text that its publisher meant as a DMARC record: "v=DMARC1" first, in any
 * case and spacing.  Such text that does not parse is reported as broken,
 * not as missing. */
static bool looks_like_dmarc(const char *text, size_t len)
{
        size_t i = 0;

        while (i < len && taglist_is_wsp(text[i]))
                i++;
        if (i == len || (text[i] != 'v' && text[i] != 'V'))
                return false;
        for (i++; i < len && taglist_is_wsp(text[i]); i++)
                ;
        if (i == len || text[i] != '=')
                return false;
        for (i++; i < len && taglist_is_wsp(text[i]); i++)
                ;
        return len - i >= 6 && strncasecmp(text + i, "dmarc1", 6) == 0;
}

void dmarc_report_clear(struct dmarc_report *rep)
{
        if (!rep)
                return;
        free(rep->record);
        free(rep->found_at);
        memset(rep, 0, sizeof(*rep));
}

struct check {
        struct dns_resolver *r;
        struct dns_findings *f;
        const char *domain;
        char *text;           /* the record found */
        size_t len;
        char found_at[DNS_NAME_MAX + 1];
};

static void dns_failed(struct check *c, const char *name, int rc)
{
        struct dns_finding *d;

        if (rc == DKIMSIGN_E_DNS_TEMPORARY) {
                d = dns_findings_add(c->f, DNS_VERDICT_ERROR, "dmarc-dns",
                                     "The TXT lookup of %s failed for now (timeout or server failure): receivers "
                                     "cannot find the DMARC policy either.", name);
                if (d)
                        d->incomplete = true;
                dns_finding_fix(c->f, d, "Make sure the name servers of %s answer; then check again.", name);
        } else if (rc == DKIMSIGN_E_DNS_BOGUS) {
                dns_findings_bogus(c->f, "dmarc-dns", "TXT", name);
        } else {
                d = dns_findings_add(c->f, DNS_VERDICT_ERROR, "dmarc-dns",
                                     "The TXT answer for %s is malformed, or the name is invalid (%s).", name,
                                     dkimsign_strerror(rc));
                dns_finding_fix(c->f, d, "Correct the zone that serves %s.", name);
        }
}

/* The next name of the DMARCbis tree walk: more than 8 labels jump to the
 * last 7, else drop the leftmost label; NULL after the top-level domain. */
static const char *walk_up(const char *name)
{
        size_t labels = 1;
        const char *dot;

        for (const char *p = name; *p; p++)
                if (*p == '.')
                        labels++;
        if (labels > 8) {
                const char *p = name + strlen(name);
                size_t seen = 0;

                while (p > name) {
                        p--;
                        if (*p == '.' && ++seen == 7)
                                return p + 1;
                }
        }
        dot = strchr(name, '.');
        return dot ? dot + 1 : NULL;
}

/* The DMARC TXT records at _dmarc.<name>: 1 with c->text set when exactly
 * one, 0 when none, <0 after a finding. */
static int lookup_at(struct check *c, const char *name)
{
        char qname[DNS_NAME_MAX + 16];
        struct dns_txt txt = { 0 };
        struct dns_finding *d;
        size_t found = 0, which = 0;
        int rc;

        if ((size_t) snprintf(qname, sizeof(qname), "_dmarc.%s", name) >= sizeof(qname))
                return 0;
        rc = dns_txt_lookup(c->r, qname, &txt);
        if (rc == DKIMSIGN_E_DNS_NOT_FOUND)
                return 0;
        if (rc < 0) {
                dns_failed(c, qname, rc);
                return rc;
        }
        for (size_t i = 0; i < txt.count; i++)
                if (looks_like_dmarc(txt.records[i].text, txt.records[i].len)) {
                        found++;
                        which = i;
                }
        if (found > 1) {
                d = dns_findings_add(c->f, DNS_VERDICT_ERROR, "dmarc-multiple",
                                     "%s has %zu DMARC records: receivers use none of them.", qname, found);
                dns_finding_fix(c->f, d, "Keep one v=DMARC1 record at %s and remove the others.", qname);
                dns_txt_clear(&txt);
                return DKIMSIGN_E_FORMAT;
        }
        if (found == 1) {
                c->text = txt.records[which].text;
                c->len = txt.records[which].len;
                txt.records[which].text = NULL;   /* transferred */
                snprintf(c->found_at, sizeof(c->found_at), "%s", name);
        }
        dns_txt_clear(&txt);
        return found == 1;
}

/* Find the record that applies: at _dmarc.DOMAIN, else up the tree. */
static int discover(struct check *c)
{
        const char *name = c->domain;
        int rc = 0;

        for (unsigned i = 0; name && i < DMARC_WALK_MAX; i++, name = walk_up(name)) {
                rc = lookup_at(c, name);
                if (rc != 0)
                        return rc;
        }
        return 0;
}

static void judge_policy(struct check *c, const struct dmarc_record *rec)
{
        struct dns_finding *d;
        bool inherited = strcasecmp(c->found_at, c->domain) != 0;
        enum dmarc_policy p = rec->p;
        bool rua_ok = false;

        for (size_t i = 0; i < rec->rua_count; i++)
                rua_ok |= rec->rua[i].valid;
        if (p == DMARC_POLICY_ABSENT) {
                d = dns_findings_add(c->f, rua_ok ? DNS_VERDICT_WARNING : DNS_VERDICT_ERROR, "dmarc-p",
                                     "The DMARC record of %s has no p= tag: DMARCbis receivers read it as "
                                     "p=none, RFC 7489 receivers %s.", c->found_at,
                                     rua_ok ? "do too, because rua= is valid" : "ignore the record");
                dns_finding_fix(c->f, d, "Add p=none right after v=DMARC1 (then quarantine or reject once "
                                "reports show your mail passes).");
        } else if (p == DMARC_POLICY_INVALID) {
                d = dns_findings_add(c->f, DNS_VERDICT_ERROR, "dmarc-p",
                                     "The p= of the DMARC record of %s is not none, quarantine or reject: "
                                     "receivers ignore the policy.", c->found_at);
                dns_finding_fix(c->f, d, "Set p=none, p=quarantine or p=reject.");
        }
        if (rec->sp == DMARC_POLICY_INVALID || rec->np == DMARC_POLICY_INVALID) {
                d = dns_findings_add(c->f, DNS_VERDICT_ERROR, "dmarc-sp",
                                     "The %s= of the DMARC record of %s is not none, quarantine or reject.",
                                     rec->sp == DMARC_POLICY_INVALID ? "sp" : "np", c->found_at);
                dns_finding_fix(c->f, d, "Set %s= to none, quarantine or reject, or remove it.",
                                rec->sp == DMARC_POLICY_INVALID ? "sp" : "np");
        }
        if (p != DMARC_POLICY_ABSENT && !rec->p_second) {
                d = dns_findings_add(c->f, DNS_VERDICT_WARNING, "dmarc-p-order",
                                     "The p= of the DMARC record of %s is not right after v=DMARC1: DMARCbis "
                                     "allows any order, but some RFC 7489 receivers ignore such a record.",
                                     c->found_at);
                dns_finding_fix(c->f, d, "Put p= right after v=DMARC1 (\"v=DMARC1; p=...; ...\").");
        }
        /* The policy that applies to the checked domain itself. */
        if (inherited && rec->sp != DMARC_POLICY_ABSENT && rec->sp != DMARC_POLICY_INVALID)
                p = rec->sp;
        if (p == DMARC_POLICY_NONE) {
                d = dns_findings_add(c->f, DNS_VERDICT_WARNING, "dmarc-policy",
                                     "The DMARC policy for %s is none: receivers only report, and deliver "
                                     "spoofed mail as usual.", c->domain);
                dns_finding_fix(c->f, d, "Once the aggregate reports show that all your mail passes SPF or DKIM "
                                "aligned, publish p=quarantine, then p=reject.");
        } else if (p == DMARC_POLICY_QUARANTINE || p == DMARC_POLICY_REJECT) {
                dns_findings_add(c->f, DNS_VERDICT_OK, "dmarc-policy",
                                 "The DMARC policy for %s is %s.", c->domain, dmarc_policy_name(p));
        }
}

static void judge_tags(struct check *c, const struct dmarc_record *rec)
{
        struct dns_finding *d;

        if (rec->adkim == '?' || rec->aspf == '?') {
                d = dns_findings_add(c->f, DNS_VERDICT_ERROR, "dmarc-alignment",
                                     "The %s= of the DMARC record of %s is not r or s.",
                                     rec->adkim == '?' ? "adkim" : "aspf", c->found_at);
                dns_finding_fix(c->f, d, "Set %s=r (relaxed) or %s=s (strict), or remove it.",
                                rec->adkim == '?' ? "adkim" : "aspf", rec->adkim == '?' ? "adkim" : "aspf");
        }
        if (rec->pct == -2) {
                d = dns_findings_add(c->f, DNS_VERDICT_ERROR, "dmarc-pct",
                                     "The pct= of the DMARC record of %s is not a number from 0 to 100, and pct "
                                     "is historic (removed by DMARCbis, RFC 9989).", c->found_at);
                dns_finding_fix(c->f, d, "Remove pct=; to try a policy before enforcing it, add t=y.");
        } else if (rec->pct >= 0) {
                d = dns_findings_add(c->f, DNS_VERDICT_WARNING, "dmarc-pct",
                                     "The DMARC record of %s has pct=%d: pct is historic (removed by DMARCbis, "
                                     "RFC 9989) and receivers that follow DMARCbis ignore it.", c->found_at,
                                     rec->pct);
                if (rec->pct < 100)
                        dns_finding_fix(c->f, d, "Replace pct=%d by t=y while testing the policy (receivers then "
                                        "apply the next weaker one), and remove t=y to enforce it.", rec->pct);
                else
                        dns_finding_fix(c->f, d, "Remove pct=100 (it was the default).");
        }
        if (rec->t == '?' || rec->psd == '?') {
                d = dns_findings_add(c->f, DNS_VERDICT_ERROR, "dmarc-tag-value",
                                     "The %s= of the DMARC record of %s is not one of its values.",
                                     rec->t == '?' ? "t" : "psd", c->found_at);
                dns_finding_fix(c->f, d, "%s", rec->t == '?' ? "Set t=y (testing) or t=n, or remove it."
                                                              : "Set psd=y, psd=n or psd=u, or remove it.");
        } else if (rec->t == 'y') {
                d = dns_findings_add(c->f, DNS_VERDICT_WARNING, "dmarc-testing",
                                     "The DMARC record of %s has t=y (testing): receivers apply the next weaker "
                                     "policy (reject as quarantine, quarantine as none).", c->found_at);
                dns_finding_fix(c->f, d, "Remove t=y once the reports show all your mail passes.");
        }
        if (rec->fo && !rec->fo_valid) {
                d = dns_findings_add(c->f, DNS_VERDICT_ERROR, "dmarc-fo",
                                     "The fo= of the DMARC record of %s is not a colon-separated list of 0, 1, d "
                                     "and s.", c->found_at);
                dns_finding_fix(c->f, d, "Set fo=0 (or 1, d, s, e.g. fo=1:d), or remove it.");
        }
        if (rec->has_ri || rec->has_rf) {
                d = dns_findings_add(c->f, DNS_VERDICT_WARNING, "dmarc-historic",
                                     "The DMARC record of %s has %s: historic, removed by DMARCbis (RFC 9989); "
                                     "receivers ignore it.", c->found_at,
                                     rec->has_ri && rec->has_rf ? "ri= and rf=" : rec->has_ri ? "ri=" : "rf=");
                dns_finding_fix(c->f, d, "Remove %s.", rec->has_ri && rec->has_rf ? "ri= and rf="
                                                                               : rec->has_ri ? "ri=" : "rf=");
        }
        if (rec->unknown[0]) {
                d = dns_findings_add(c->f, DNS_VERDICT_WARNING, "dmarc-unknown-tag",
                                     "The DMARC record of %s has tags receivers do not know and ignore: %s.",
                                     c->found_at, rec->unknown);
                dns_finding_fix(c->f, d, "Remove or correct them (the tags are v, p, sp, np, adkim, aspf, rua, "
                                "ruf, fo, t, psd).");
        }
}

/* Ask dest whether it takes reports for found_at, once per destination. */
static void check_authorization(struct check *c, const char *dest)
{
        char qname[2 * DNS_NAME_MAX + 32];
        struct dns_txt txt = { 0 };
        struct dns_finding *d;
        bool authorized = false;
        int rc;

        snprintf(qname, sizeof(qname), "%s._report._dmarc.%s", c->found_at, dest);
        rc = dns_txt_lookup(c->r, qname, &txt);
        if (rc < 0 && rc != DKIMSIGN_E_DNS_NOT_FOUND) {
                if (rc == DKIMSIGN_E_FORMAT && strlen(qname) > DNS_NAME_MAX) {
                        d = dns_findings_add(c->f, DNS_VERDICT_ERROR, "dmarc-report-auth",
                                             "%s is too long a name for %s to authorize reports for %s.", qname,
                                             dest, c->found_at);
                        dns_finding_fix(c->f, d, "Send the reports of %s to an address in %s.", c->found_at,
                                        c->found_at);
                } else {
                        dns_failed(c, qname, rc);
                }
                return;
        }
        for (size_t i = 0; rc == 0 && i < txt.count; i++)
                authorized |= dmarc_is_record(txt.records[i].text, txt.records[i].len);
        dns_txt_clear(&txt);
        if (authorized) {
                dns_findings_add(c->f, DNS_VERDICT_OK, "dmarc-report-auth",
                                 "%s accepts DMARC reports for %s (%s).", dest, c->found_at, qname);
                return;
        }
        d = dns_findings_add(c->f, DNS_VERDICT_ERROR, "dmarc-report-auth",
                             "Reports for %s go to %s, another organization's domain, which has not authorized "
                             "them: receivers send no reports there (RFC 7489 7.1).", c->found_at, dest);
        dns_finding_fix(c->f, d, "Have %s publish %s. IN TXT \"v=DMARC1\", or send the reports to an address in "
                        "%s.", dest, qname, c->found_at);
}

static void judge_uris(struct check *c, const struct dmarc_record *rec)
{
        const struct dmarc_uri *lists[2] = { rec->rua, rec->ruf };
        const size_t counts[2] = { rec->rua_count, rec->ruf_count };
        const char *names[2] = { "rua", "ruf" };
        const char *checked[2 * DMARC_URIS_MAX];
        size_t nchecked = 0;
        struct dns_finding *d;

        if (rec->rua_count == 0) {
                d = dns_findings_add(c->f, DNS_VERDICT_WARNING, "dmarc-rua",
                                     "The DMARC record of %s has no rua=: you receive no aggregate reports, so "
                                     "you cannot see who sends mail as %s.", c->found_at, c->found_at);
                dns_finding_fix(c->f, d, "Add rua=mailto:dmarc-reports@%s (an address that can take the "
                                "volume).", c->found_at);
        }
        for (size_t l = 0; l < 2; l++) {
                for (size_t i = 0; i < counts[l]; i++) {
                        const struct dmarc_uri *u = &lists[l][i];
                        bool dup = false;

                        if (!u->valid) {
                                d = dns_findings_add(c->f, DNS_VERDICT_ERROR, "dmarc-uri",
                                                     "The %s= address \"%s\" of the DMARC record of %s is not a "
                                                     "valid mailto: URI: receivers send no reports there.",
                                                     names[l], u->uri, c->found_at);
                                dns_finding_fix(c->f, d, "Write it as mailto:name@domain (several separated "
                                                "by commas).");
                                continue;
                        }
                        if (u->has_size) {
                                d = dns_findings_add(c->f, DNS_VERDICT_WARNING, "dmarc-uri-size",
                                                     "The %s= address \"%s\" has a size limit (\"!size\"), "
                                                     "which DMARCbis (RFC 9989) made obsolete.", names[l], u->uri);
                                dns_finding_fix(c->f, d, "Remove the \"!\" and the size after %s.", u->uri);
                        }
                        if (dns_same_org(u->domain, c->found_at))
                                continue;
                        for (size_t k = 0; k < nchecked; k++)
                                dup |= strcasecmp(checked[k], u->domain) == 0;
                        if (dup)
                                continue;
                        checked[nchecked++] = u->domain;
                        check_authorization(c, u->domain);
                }
        }
}

int dmarc_check(struct dns_resolver *r, const char *domain, struct dmarc_report *ret, struct dns_findings *f)
{
        struct check c = { .r = r, .f = f, .domain = domain };
        struct dmarc_report rep = { 0 };
        struct dmarc_record rec = { 0 };
        struct dns_finding *d;
        char why[300];
        bool found;
        int rc;

        rc = discover(&c);
        found = rc == 1;
        if (rc == 0) {
                d = dns_findings_add(f, DNS_VERDICT_ERROR, "dmarc-missing",
                                     "%s has no DMARC record (none at _dmarc.%s nor at a parent domain): receivers "
                                     "apply no policy and send no reports.", domain, domain);
                dns_finding_fix(f, d, "Publish _dmarc.%s. IN TXT \"v=DMARC1; p=none; rua=mailto:dmarc-reports@%s\" "
                                "to start, and raise p= once the reports show all your mail passes.", domain,
                                domain);
        }
        if (found) {
                rep.found_at = strdup(c.found_at);
                rep.record = dns_memdup_str(c.text, c.len);
                rc = dmarc_parse(c.text, c.len, &rec, why, sizeof(why));
                if (rc < 0) {
                        d = dns_findings_add(f, DNS_VERDICT_ERROR, "dmarc-syntax",
                                             "The DMARC record at _dmarc.%s is invalid: %s Receivers ignore it.",
                                             c.found_at, why);
                        dns_finding_fix(f, d, "Publish a valid record, e.g. _dmarc.%s. IN TXT \"v=DMARC1; p=none; "
                                        "rua=mailto:dmarc-reports@%s\".", c.found_at, c.found_at);
                } else {
                        if (strcasecmp(c.found_at, domain) == 0)
                                dns_findings_add(f, DNS_VERDICT_OK, "dmarc-record",
                                                 "%s has a DMARC record at _dmarc.%s.", domain, domain);
                        else
                                dns_findings_add(f, DNS_VERDICT_OK, "dmarc-record",
                                                 "%s has no DMARC record of its own; the one at _dmarc.%s "
                                                 "applies to it.", domain, c.found_at);
                        judge_policy(&c, &rec);
                        judge_tags(&c, &rec);
                        judge_uris(&c, &rec);
                        rep.p = rec.p;
                        if (strcasecmp(c.found_at, domain) != 0 && rec.sp != DMARC_POLICY_ABSENT)
                                rep.p = rec.sp;
                        dmarc_record_clear(&rec);
                }
        }
        free(c.text);
        if (f->oom || (found && (!rep.found_at || !rep.record))) {
                dmarc_report_clear(&rep);
                return DKIMSIGN_E_NOMEM;
        }
        *ret = rep;
        return 0;
}
