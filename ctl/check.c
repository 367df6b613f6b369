/* SPDX-License-Identifier: MIT */
/*
 * dkimsignctl check and records: a domain's SPF, DKIM and DMARC records,
 * judged (check) or suggested (records); see docs/dns-check.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctl.h"
#include "dnscheck/dkimcheck.h"
#include "protocol/dkimsign-errors.h"
#include "dnscheck/dmarccheck.h"
#include "util/memdup.h"
#include "dkim/record.h"
#include "dnscheck/spfcheck.h"

/*
 * dkimsignctl check / records.  See ctl-check.h.
 *
 * check asks DNS (the resolver given, the configuration's [dns] resolver or
 * the system's) for the domain's SPF, the key record of every selector the
 * token holds for the domain, and DMARC, and prints each finding with its
 * verdict and its fix, as text or JSON.  records prints what to publish and
 * asks nothing.  Only public key material is read from the token.
 */


#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define RECORD_TEXT_MAX 8192

/* ---- output helpers ---- */

/* Printable ASCII only on a terminal: a TXT record is someone else's text.
 * A line break (between the strings of a zone-file value) continues the
 * line under indent. */
static void text_safe(const char *s, const char *indent)
{
        for (; *s; s++) {
                unsigned char c = (unsigned char) *s;

                if (c == '\n' && indent)
                        printf("\n%s", indent);
                else if (c < 0x20 || c >= 0x7f)
                        printf("\\x%02x", c);
                else
                        putchar(c);
        }
}

/* A list of findings as JSON; NULL when out of memory. */
static json_t *json_findings(const struct dns_findings *f)
{
        json_t *a = json_array();

        for (size_t i = 0; a && i < f->count; i++) {
                const struct dns_finding *d = &f->items[i];

                ctl_json_push(&a, json_pack("{s:s, s:o, s:o, s:o, s:b}",
                                            "verdict", dns_verdict_name(d->verdict),
                                            "id", ctl_json_text(d->id),
                                            "message", ctl_json_text(d->message),
                                            "fix", ctl_json_text(d->fix),
                                            "incomplete", d->incomplete));
        }
        return a;
}

static void text_findings(const struct dns_findings *f)
{
        for (size_t i = 0; i < f->count; i++) {
                const struct dns_finding *d = &f->items[i];

                printf("  %-9s ", dns_verdict_name(d->verdict));
                text_safe(d->message, NULL);
                putchar('\n');
                if (d->fix) {
                        fputs("            fix: ", stdout);
                        text_safe(d->fix, "                 ");
                        putchar('\n');
                }
        }
}

/* ---- the parts of the report ---- */

struct selector_result {
        const struct signer_key *key;
        char *expected;               /* the record text to publish */
        char *expected_zone;
        struct dkim_selector_report rep;
        struct dns_findings f;
        enum dns_security dnssec;     /* what validation said of its record's answer */
};

struct check_result {
        const char *domain;
        const char *resolver;         /* for the report: "system" or the address */
        struct spf_report spf;
        struct dns_findings spf_f;
        struct selector_result *sel;
        size_t nsel;
        struct dns_findings dkim_f;   /* findings about the domain's keys as a whole */
        struct dmarc_report dmarc;
        struct dns_findings dmarc_f;
        bool validated;               /* DNSSEC on: the answers say secure, insecure or bogus */
        const struct dns_answer_note *answers;   /* borrowed from the resolver */
        size_t nanswers, answers_dropped;
};

static void check_result_clear(struct check_result *res)
{
        spf_report_clear(&res->spf);
        dns_findings_clear(&res->spf_f);
        for (size_t i = 0; i < res->nsel; i++) {
                free(res->sel[i].expected);
                free(res->sel[i].expected_zone);
                dkim_selector_report_clear(&res->sel[i].rep);
                dns_findings_clear(&res->sel[i].f);
        }
        free(res->sel);
        dns_findings_clear(&res->dkim_f);
        dmarc_report_clear(&res->dmarc);
        dns_findings_clear(&res->dmarc_f);
}

/* The record text for pub, as one string and as a zone-file value. */
static int expected_record(EVP_PKEY *pub, char **ret_text, char **ret_zone)
{
        struct buf text, zone;
        int r;

        buf_init(&text, RECORD_TEXT_MAX);
        buf_init(&zone, 2 * RECORD_TEXT_MAX);
        r = dkim_record_text(pub, &text);
        if (r == 0)
                r = dkim_record_zone_value((const char *) text.data, text.len, &zone);
        if (r == 0) {
                *ret_text = dns_memdup_str((const char *) text.data, text.len);
                *ret_zone = dns_memdup_str((const char *) zone.data, zone.len);
                if (!*ret_text || !*ret_zone) {
                        free(*ret_text);
                        free(*ret_zone);
                        r = DKIMSIGN_E_NOMEM;
                }
        }
        buf_deinit(&text);
        buf_deinit(&zone);
        return r;
}

/* The keys of domain on the token (borrowed from t). */
static int domain_keys(const struct keytab *t, const char *domain, struct selector_result **ret, size_t *ret_count)
{
        struct selector_result *sel = calloc(t->count ? t->count : 1, sizeof(*sel));
        size_t n = 0;
        int r = 0;

        if (!sel)
                return DKIMSIGN_E_NOMEM;
        for (size_t i = 0; i < t->count && r == 0; i++) {
                if (strcmp(t->keys[i].domain, domain) != 0)
                        continue;
                sel[n].key = &t->keys[i];
                r = expected_record(t->keys[i].key->pubkey, &sel[n].expected, &sel[n].expected_zone);
                if (r == 0)
                        n++;
        }
        if (r < 0) {
                for (size_t i = 0; i < n; i++) {
                        free(sel[i].expected);
                        free(sel[i].expected_zone);
                }
                free(sel);
                return r;
        }
        *ret = sel;
        *ret_count = n;
        return 0;
}

static int check_dkim(struct dns_resolver *r, struct check_result *res)
{
        struct dns_finding *d;
        int rc;

        if (res->nsel == 0) {
                d = dns_findings_add(&res->dkim_f, DNS_VERDICT_ERROR, "dkim-no-keys",
                                     "The token holds no DKIM key for %s, so dkimsignd signs none of its mail.",
                                     res->domain);
                dns_finding_fix(&res->dkim_f, d, "dkimsignctl keygen --domain %s --selector SELECTOR, then "
                                "publish the record it prints.", res->domain);
                return res->dkim_f.oom ? DKIMSIGN_E_NOMEM : 0;
        }
        for (size_t i = 0; i < res->nsel; i++) {
                struct selector_result *s = &res->sel[i];
                struct dkim_selector_check in = {
                        .selector = s->key->selector,
                        .domain = res->domain,
                        .pub = s->key->key->pubkey,
                        .bits = s->key->key->bits,
                        .retired = s->key->key->retired[0] != '\0',
                        .expected = s->expected,
                        .expected_zone = s->expected_zone,
                };

                size_t before, after;
                const struct dns_answer_note *notes;

                dns_resolver_answers(r, &before, NULL);
                rc = dkim_selector_check(r, &in, &s->rep, &s->f);
                if (rc < 0)
                        return rc;
                /* Its one lookup, when it made one (a name too long makes none). */
                notes = dns_resolver_answers(r, &after, NULL);
                if (after > before)
                        s->dnssec = notes[after - 1].security;
        }
        return 0;
}

static enum dns_verdict dkim_worst(const struct check_result *res)
{
        enum dns_verdict v = dns_findings_worst(&res->dkim_f);

        for (size_t i = 0; i < res->nsel; i++)
                if (dns_findings_worst(&res->sel[i].f) > v)
                        v = dns_findings_worst(&res->sel[i].f);
        return v;
}

/* ---- printing the report ---- */

/* One selector of the domain: its key, its record and what was found. */
static json_t *json_selector(const struct check_result *res, const struct selector_result *s)
{
        char name[DNS_NAME_MAX + 80];

        snprintf(name, sizeof(name), "%s._domainkey.%s", s->key->selector, res->domain);
        return json_pack("{s:o, s:o, s:s, s:I, s:b, s:s, s:o, s:I, s:b, s:b, s:o, s:s, s:o}",
                         "selector", ctl_json_text(s->key->selector),
                         "name", ctl_json_text(name),
                         "algorithm", hsm_alg_name(s->key->key->alg),
                         "bits", (json_int_t) s->key->key->bits,
                         "retired", s->key->key->retired[0] != 0,
                         "verdict", dns_verdict_name(dns_findings_worst(&s->f)),
                         "record", ctl_json_text(s->rep.record),
                         "strings", (json_int_t) s->rep.strings,
                         "matches", s->rep.matches,
                         "testing", s->rep.testing,
                         "expected", ctl_json_text(s->expected),
                         "dnssec", dns_security_name(s->dnssec),
                         "findings", json_findings(&s->f));
}

/* What came of one lookup, in a word or two. */
static const char *answer_result(int rc)
{
        switch (rc) {
        case 0: return "records";
        case DKIMSIGN_E_DNS_NOT_FOUND: return "none";
        case DKIMSIGN_E_DNS_BOGUS: return "bogus";
        case DKIMSIGN_E_DNS_TEMPORARY: return "no answer";
        default: return "malformed";
        }
}

/* Every answer the check got, with what validation said of it. */
static json_t *json_dnssec(const struct check_result *res)
{
        json_t *a = json_array();

        for (size_t i = 0; a && i < res->nanswers; i++) {
                const struct dns_answer_note *n = &res->answers[i];

                ctl_json_push(&a, json_pack("{s:o, s:s, s:s, s:s}", "name", ctl_json_text(n->name),
                                            "type", dns_type_name(n->type), "dnssec", dns_security_name(n->security),
                                            "result", answer_result(n->result)));
        }
        return json_pack("{s:b, s:o, s:I}", "validated", res->validated, "answers", a,
                         "answers_not_listed", (json_int_t) res->answers_dropped);
}

static int print_json(const struct check_result *res, enum dns_verdict worst, bool incomplete, int status)
{
        char all[2] = { res->spf.all, 0 };
        json_t *selectors = json_array();

        for (size_t i = 0; selectors && i < res->nsel; i++)
                ctl_json_push(&selectors, json_selector(res, &res->sel[i]));
        return ctl_json_out(json_pack(
                "{s:o, s:o, s:o, s:s, s:b, s:i, s:o,"
                " s:{s:s, s:o, s:I, s:I, s:o, s:o},"
                " s:{s:s, s:o, s:o},"
                " s:{s:s, s:o, s:o, s:o, s:o}}",
                "domain", ctl_json_text(res->domain),
                "domain_unicode", json_domain_unicode(res->domain),
                "resolver", ctl_json_text(res->resolver),
                "verdict", dns_verdict_name(worst),
                "incomplete", incomplete,
                "exit_status", status,
                "dnssec", json_dnssec(res),
                "spf",
                        "verdict", dns_verdict_name(dns_findings_worst(&res->spf_f)),
                        "record", ctl_json_text(res->spf.record),
                        "lookups", (json_int_t) res->spf.lookups,
                        "void_lookups", (json_int_t) res->spf.void_lookups,
                        "all", ctl_json_text(res->spf.all ? all : NULL),
                        "findings", json_findings(&res->spf_f),
                "dkim",
                        "verdict", dns_verdict_name(dkim_worst(res)),
                        "findings", json_findings(&res->dkim_f),
                        "selectors", selectors,
                "dmarc",
                        "verdict", dns_verdict_name(dns_findings_worst(&res->dmarc_f)),
                        "record", ctl_json_text(res->dmarc.record),
                        "found_at", ctl_json_text(res->dmarc.found_at),
                        "policy", ctl_json_text(res->dmarc.record ? dmarc_policy_name(res->dmarc.p) : NULL),
                        "findings", json_findings(&res->dmarc_f)));
}

static void count_findings(const struct dns_findings *f, unsigned *errors, unsigned *warnings)
{
        for (size_t i = 0; i < f->count; i++) {
                if (f->items[i].verdict == DNS_VERDICT_ERROR)
                        (*errors)++;
                else if (f->items[i].verdict == DNS_VERDICT_WARNING)
                        (*warnings)++;
        }
}

/* Every answer with what validation said of it, or that it was off. */
static void print_answers_text(const struct check_result *res)
{
        if (!res->validated) {
                printf("\nDNSSEC: answers not validated ([dns] dnssec = no, or no trust anchor)\n");
                return;
        }
        printf("\nDNSSEC (per answer)\n");
        for (size_t i = 0; i < res->nanswers; i++) {
                const struct dns_answer_note *n = &res->answers[i];

                printf("  %-9s %-4s ", dns_security_name(n->security), dns_type_name(n->type));
                text_safe(n->name, NULL);
                printf(" (%s)\n", answer_result(n->result));
        }
        if (res->answers_dropped)
                printf("  ... and %zu more\n", res->answers_dropped);
}

static void print_text(const struct check_result *res, bool incomplete)
{
        unsigned errors = 0, warnings = 0;

        char show[DOMAIN_SHOW_SIZE];

        printf("DNS check of %s (resolver: %s)\n\n", domain_show(res->domain, show), res->resolver);
        printf("SPF  [%s]\n", dns_verdict_name(dns_findings_worst(&res->spf_f)));
        if (res->spf.record) {
                fputs("  record:   ", stdout);
                text_safe(res->spf.record, NULL);
                putchar('\n');
        }
        text_findings(&res->spf_f);
        count_findings(&res->spf_f, &errors, &warnings);

        printf("\nDKIM [%s]\n", dns_verdict_name(dkim_worst(res)));
        text_findings(&res->dkim_f);
        count_findings(&res->dkim_f, &errors, &warnings);
        for (size_t i = 0; i < res->nsel; i++) {
                const struct selector_result *s = &res->sel[i];

                printf(" %s._domainkey.%s (%s %u%s%s%s) [%s]\n", s->key->selector, res->domain,
                       hsm_alg_name(s->key->key->alg), s->key->key->bits, s->key->key->retired[0] ? ", retired" : "",
                       res->validated ? ", DNSSEC: " : "", res->validated ? dns_security_name(s->dnssec) : "",
                       dns_verdict_name(dns_findings_worst(&s->f)));
                text_findings(&s->f);
                count_findings(&s->f, &errors, &warnings);
        }

        printf("\nDMARC [%s]\n", dns_verdict_name(dns_findings_worst(&res->dmarc_f)));
        if (res->dmarc.record) {
                printf("  record:   _dmarc.%s: ", res->dmarc.found_at);
                text_safe(res->dmarc.record, NULL);
                putchar('\n');
        }
        text_findings(&res->dmarc_f);
        count_findings(&res->dmarc_f, &errors, &warnings);
        print_answers_text(res);

        printf("\n%u error%s, %u warning%s%s\n", errors, errors == 1 ? "" : "s", warnings, warnings == 1 ? "" : "s",
               incomplete ? "; some lookups failed for now: run the check again" : "");
}

/* 4 for an error a lookup did not cause, else 5 when a lookup failed, else
 * 3 for warnings, else 0. */
static int exit_status(const struct check_result *res, bool *ret_incomplete)
{
        const struct dns_findings *lists[3] = { &res->spf_f, &res->dkim_f, &res->dmarc_f };
        bool error = false, warning = false, incomplete = false;

        for (size_t l = 0; l < 3 + res->nsel; l++) {
                const struct dns_findings *f = l < 3 ? lists[l] : &res->sel[l - 3].f;

                for (size_t i = 0; i < f->count; i++) {
                        incomplete |= f->items[i].incomplete;
                        error |= f->items[i].verdict == DNS_VERDICT_ERROR && !f->items[i].incomplete;
                        warning |= f->items[i].verdict == DNS_VERDICT_WARNING;
                }
        }
        *ret_incomplete = incomplete;
        if (error)
                return CTL_CHECK_EXIT_ERRORS;
        if (incomplete)
                return CTL_CHECK_EXIT_INCOMPLETE;
        return warning ? CTL_CHECK_EXIT_WARNINGS : 0;
}

int ctl_check(const struct config *c, struct hsm *h, const char *domain_in, const char *resolver, bool json)
{
        char domain[DNS_NAME_MAX + 1];
        struct check_result res = { .domain = domain };
        struct dns_resolver *r = NULL;
        struct dns_resolver_options o;
        char why[512];
        struct keytab *t = NULL;
        enum dns_verdict worst;
        bool incomplete;
        int rc, status;

        status = domain_arg(domain_in, domain);
        if (status)
                return status;
        if (!resolver || !*resolver)
                resolver = c->dns_resolver;
        res.resolver = resolver && *resolver ? resolver : "system";
        config_dns_options(c, resolver, &o);
        rc = dns_resolver_new(&o, &r, why, sizeof(why));
        if (rc == DKIMSIGN_E_CONFIG)
                return ctl_report(EXIT_USAGE, "%s", why);
        if (rc < 0)
                return ctl_report(EXIT_FAIL, "cannot set up the DNS resolver: %s", why);
        rc = keytab_load(h, c, &t);
        if (rc < 0) {
                status = ctl_report(EXIT_FAIL, "listing the token's keys: %s", dkimsign_strerror(rc));
                goto out;
        }
        rc = domain_keys(t, domain, &res.sel, &res.nsel);
        if (rc == 0)
                rc = spf_check(r, domain, &res.spf, &res.spf_f);
        if (rc == 0)
                rc = check_dkim(r, &res);
        if (rc == 0)
                rc = dmarc_check(r, domain, &res.dmarc, &res.dmarc_f);
        if (rc < 0) {
                status = ctl_report(EXIT_FAIL, "checking %s: %s", domain, dkimsign_strerror(rc));
                goto out;
        }
        res.validated = dns_resolver_validates(r);
        res.answers = dns_resolver_answers(r, &res.nanswers, &res.answers_dropped);
        status = exit_status(&res, &incomplete);
        worst = dns_findings_worst(&res.spf_f);
        if (dkim_worst(&res) > worst)
                worst = dkim_worst(&res);
        if (dns_findings_worst(&res.dmarc_f) > worst)
                worst = dns_findings_worst(&res.dmarc_f);
        if (json && print_json(&res, worst, incomplete, status))
                status = EXIT_FAIL;
        else if (!json)
                print_text(&res, incomplete);
out:
        check_result_clear(&res);
        keytab_free(t);
        dns_resolver_free(r);
        return status;
}

/* ---- records ---- */

struct suggestion {
        const char *kind;
        char name[DNS_NAME_MAX + 32];
        char *value;          /* the TXT text */
        char *zone;           /* the zone-file value */
        char note[1024];
};

static void print_suggestion_text(const struct suggestion *s)
{
        printf("; %s: %s\n%s. IN TXT %s\n\n", s->kind, s->note, s->name, s->zone);
}

static json_t *json_suggestion(const struct suggestion *s)
{
        return json_pack("{s:o, s:o, s:o, s:o, s:o}",
                         "type", ctl_json_text(s->kind),
                         "name", ctl_json_text(s->name),
                         "value", ctl_json_text(s->value),
                         "zone", ctl_json_text(s->zone),
                         "note", ctl_json_text(s->note));
}

static int print_suggestions_json(const char *domain, const struct suggestion *sugg, size_t n, size_t skipped)
{
        json_t *records = json_array();

        for (size_t i = 0; records && i < n; i++)
                ctl_json_push(&records, json_suggestion(&sugg[i]));
        return ctl_json_out(json_pack("{s:o, s:o, s:o, s:I}",
                                      "domain", ctl_json_text(domain),
                                      "domain_unicode", json_domain_unicode(domain),
                                      "records", records,
                                      "retired_keys_skipped", (json_int_t) skipped));
}

static int simple_suggestion(struct suggestion *s, const char *kind, const char *name, const char *value)
{
        s->kind = kind;
        snprintf(s->name, sizeof(s->name), "%s", name);
        s->value = strdup(value);
        if (asprintf(&s->zone, "\"%s\"", value) < 0)
                s->zone = NULL;
        return s->value && s->zone ? 0 : DKIMSIGN_E_NOMEM;
}

int ctl_records(const struct config *c, struct hsm *h, const char *domain_in, bool json)
{
        char domain[DNS_NAME_MAX + 1], value[DNS_NAME_MAX + 128];
        struct suggestion *sugg = NULL;
        struct selector_result *sel = NULL;
        struct keytab *t = NULL;
        size_t nsel = 0, n = 0, skipped = 0;
        int rc, status;

        (void) c;
        status = domain_arg(domain_in, domain);
        if (status)
                return status;
        rc = keytab_load(h, c, &t);
        if (rc == 0)
                rc = domain_keys(t, domain, &sel, &nsel);
        if (rc < 0) {
                status = ctl_report(EXIT_FAIL, "listing the token's keys: %s", dkimsign_strerror(rc));
                goto out;
        }
        sugg = calloc(nsel + 2, sizeof(*sugg));
        if (!sugg) {
                status = ctl_report(EXIT_FAIL, "out of memory");
                goto out;
        }
        rc = simple_suggestion(&sugg[n], "spf", domain, "v=spf1 mx ~all");
        snprintf(sugg[n].note, sizeof(sugg[n].note),
                 "lets the hosts in the MX records of %s send its mail and soft-fails the rest; add ip4:, ip6: "
                 "or include: terms for every other host or service that sends as %s before ~all, and make it "
                 "-all once the DMARC reports show nothing legitimate fails", domain, domain);
        n++;
        for (size_t i = 0; rc == 0 && i < nsel; i++) {
                struct suggestion *s = &sugg[n];

                if (sel[i].key->key->retired[0]) {
                        skipped++;
                        continue;
                }
                s->kind = "dkim";
                snprintf(s->name, sizeof(s->name), "%s._domainkey.%s", sel[i].key->selector, domain);
                s->value = sel[i].expected;
                s->zone = sel[i].expected_zone;
                sel[i].expected = sel[i].expected_zone = NULL;   /* transferred */
                snprintf(s->note, sizeof(s->note),
                         "the public half of the %s %u-bit key on the token for selector %s; publish it before "
                         "dkimsignd signs with it (dkimsignctl check %s shows when it is visible)",
                         hsm_alg_name(sel[i].key->key->alg), sel[i].key->key->bits, sel[i].key->selector, domain);
                n++;
        }
        if (rc == 0) {
                char name[DNS_NAME_MAX + 8];

                snprintf(name, sizeof(name), "_dmarc.%s", domain);
                snprintf(value, sizeof(value), "v=DMARC1; p=none; rua=mailto:dmarc-reports@%s", domain);
                rc = simple_suggestion(&sugg[n], "dmarc", name, value);
                snprintf(sugg[n].note, sizeof(sugg[n].note),
                         "a safe start: p=none changes no delivery, and rua= brings daily aggregate reports to "
                         "dmarc-reports@%s (create that mailbox); move to p=quarantine, then p=reject, once they "
                         "show all your mail passes", domain);
                n++;
        }
        if (rc < 0) {
                status = ctl_report(EXIT_FAIL, "building the records: %s", dkimsign_strerror(rc));
                goto out;
        }
        if (json) {
                status = print_suggestions_json(domain, sugg, n, skipped);
        } else {
                char show[DOMAIN_SHOW_SIZE];

                printf("; Records to publish for %s\n\n", domain_show(domain, show));
                for (size_t i = 0; i < n; i++)
                        print_suggestion_text(&sugg[i]);
                if (nsel == skipped)
                        printf("; The token holds no DKIM key for %s yet: dkimsignctl keygen --domain %s "
                               "--selector SELECTOR\n", domain, domain);
                if (skipped)
                        printf("; %zu retired key%s not listed.\n", skipped, skipped == 1 ? "" : "s");
        }
out:
        for (size_t i = 0; sugg && i < n; i++) {
                free(sugg[i].value);
                free(sugg[i].zone);
        }
        free(sugg);
        for (size_t i = 0; i < nsel; i++) {
                free(sel[i].expected);
                free(sel[i].expected_zone);
        }
        free(sel);
        keytab_free(t);
        return status;
}

/* ---- DNS: check and records (ctl-check.c) ---- */

int cmd_check(const struct options *o)
{
        struct config *c = NULL;
        struct hsm *h = NULL;
        int status;

        if (open_all(o, &c, &h))
                return EXIT_FAIL;
        status = ctl_check(c, h, o->args[0], o->resolver, o->json);
        hsm_close(h);
        config_free(c);
        return status;
}

int cmd_records(const struct options *o)
{
        struct config *c = NULL;
        struct hsm *h = NULL;
        int status;

        if (open_all(o, &c, &h))
                return EXIT_FAIL;
        status = ctl_records(c, h, o->args[0], o->json);
        hsm_close(h);
        config_free(c);
        return status;
}
