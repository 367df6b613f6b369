/* SPDX-License-Identifier: MIT */
/*
 * dkimsignctl refresh, rotate, retire and destroy, and the key states
 * they read and write (the state file, what DNS shows).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ctl/ctl.h"
#include "protocol/dkimsign-errors.h"
#include "keys/keycheck.h"
#include "util/log.h"

/*
 * dkimsignctl's side of the key lifecycle.  See ctl-lifecycle.h.
 */


void ctl_duration(uint64_t seconds, char ret[24])
{
        if (seconds && seconds % 86400 == 0)
                snprintf(ret, 24, "%llud", (unsigned long long) (seconds / 86400));
        else if (seconds && seconds % 3600 == 0)
                snprintf(ret, 24, "%lluh", (unsigned long long) (seconds / 3600));
        else if (seconds && seconds % 60 == 0)
                snprintf(ret, 24, "%llum", (unsigned long long) (seconds / 60));
        else
                snprintf(ret, 24, "%llus", (unsigned long long) seconds);
}

int ctl_lifecycle_attach(const struct config *c, struct keytab *t, struct keyreg **ret_reg, char *why,
                         size_t whylen)
{
        struct keystate file = { 0 };
        struct keyreg *reg = NULL;
        int r = keystate_load(c->state_dir, &file, why, whylen);

        if (r == DKIMSIGN_E_SYSTEM && errno == EACCES) {
                /* Not the daemon's user: the states are unknown, not damaged. */
                r = 0;
        }
        if (r < 0) {
                keystate_clear(&file);
                return r;   /* keystate_load said why */
        }
        r = keyreg_new(&reg);
        if (r == 0)
                r = keyreg_attach(reg, t, c, &file);
        keystate_clear(&file);
        if (r < 0) {
                snprintf(why, whylen, "key states: %s", dkimsign_strerror(r));
                keyreg_free(reg);
                return r;
        }
        *ret_reg = reg;
        return 0;
}

void ctl_key_life(const struct keytab *t, const struct config *c, size_t i, int64_t now, struct ctl_key_life *ret)
{
        struct key_life l;

        keytab_key_life(t, i, now, &l);
        *ret = (struct ctl_key_life) { .state = l.state, .seen = l.seen, .active = l.active,
                                       .signs_from = l.signs_from, .retires = l.retires, .retired = l.retired,
                                       .dnssec = t->keys[i].reg ? (enum dns_security) atomic_load(&t->keys[i].reg->live.dnssec)
                                                                : DNS_SEC_UNCHECKED };
        if ((ret->state == KEY_PENDING || ret->state == KEY_PUBLISHED) &&
            config_unpublished(c, t->keys[i].domain) == CONFIG_UNPUBLISHED_SIGN) {
                ret->state = KEY_ACTIVE;
                ret->unpublished = true;
        }
}

int ctl_next_selector(const struct keytab *t, const char *domain, enum hsm_alg alg, char *ret, size_t size)
{
        char base[16];
        time_t now = time(NULL);
        struct tm tm;

        if (!gmtime_r(&now, &tm) || !strftime(base, sizeof(base), "%Y%m%d", &tm))
                return DKIMSIGN_E_SYSTEM;
        for (unsigned n = 1; n < 100; n++) {
                bool taken = false;
                int len = n == 1 ? snprintf(ret, size, "%c%s", alg == HSM_ALG_RSA ? 'r' : 'e', base)
                                 : snprintf(ret, size, "%c%s-%u", alg == HSM_ALG_RSA ? 'r' : 'e', base, n);

                if (len < 0 || (size_t) len >= size)
                        return DKIMSIGN_E_TOO_LARGE;
                for (size_t i = 0; i < t->count && !taken; i++)
                        taken = strcmp(t->keys[i].domain, domain) == 0 && strcmp(t->keys[i].selector, ret) == 0;
                if (!taken)
                        return 0;
        }
        return DKIMSIGN_E_EXISTS;
}

int ctl_refresh(const struct config *c, struct keyreg *reg, char *why, size_t whylen)
{
        struct keycheck_report rep = { 0 };
        struct dns_resolver *res = NULL;
        struct dns_resolver_options o;
        struct keyreg_entry **keys = NULL;
        const char *server = c->dns_resolver ? c->dns_resolver : "the system resolver";
        size_t n = 0;
        int r;

        if (mkdir(c->state_dir, 0750) < 0 && errno != EEXIST) {
                snprintf(why, whylen, "state_dir %s: %s", c->state_dir, strerror(errno));
                return DKIMSIGN_E_SYSTEM;
        }
        config_dns_options(c, NULL, &o);
        r = dns_resolver_new(&o, &res, why, whylen);
        if (r < 0)
                return r;
        r = keyreg_current(reg, &keys, &n);
        if (r == 0)
                r = keycheck_run(keys, n, res, c->state_dir, NULL, &rep);
        if (r < 0)
                snprintf(why, whylen, "%s", dkimsign_strerror(r));
        if (r == 0) {
                if (rep.failed)
                        log_warn("dns: %zu lookup(s) got no answer from %s (timeout or server failure); no key "
                                 "changes state until it answers", rep.failed, server);
                if (rep.skipped)
                        log_warn("dns: %u lookups in a row got no answer from %s; %zu key(s) not checked this "
                                 "time", rep.failures_in_row, server, rep.skipped);
                for (size_t i = 0; i < rep.nevents; i++) {
                        char line[1024];
                        bool warning;

                        keycheck_event_sentence(&rep, &rep.events[i], line, sizeof(line), &warning);
                        log_msg(warning ? LOG_WARNING : LOG_INFO, "%s", line);
                }
                r = rep.file_result;
                if (r < 0)
                        snprintf(why, whylen, "key states: %s; the state file was not written", rep.file_error);
        }
        keycheck_report_clear(&rep);
        free(keys);
        dns_resolver_free(res);
        return r;
}

/* What DNS shows at label for pub, as a key_dns. */
static enum key_dns lookup(const struct config *c, const char *label, EVP_PKEY *pub, char *why, size_t whylen)
{
        struct dns_resolver *res = NULL;
        struct dns_resolver_options o;
        enum key_dns out;
        int r;

        config_dns_options(c, NULL, &o);
        r = dns_resolver_new(&o, &res, why, whylen);
        if (r < 0)
                return KEY_DNS_FAILED;
        out = keycheck_lookup(res, label, pub);
        dns_resolver_free(res);
        return out;
}

/*
 * Change one key's entry in the state file, under its lock: the entry of
 * e->label is given to merge (NULL when absent, or another key's under the
 * same label), which fills e and says whether to write it (1) or leave the
 * file as it is (0).  Returns 1 when written, 0 when left, or an error
 * (why says it).
 */
static int state_edit(const struct config *c, struct keystate_entry *e,
                      int (*merge)(const struct keystate_entry *old, struct keystate_entry *e), char *why,
                      size_t whylen)
{
        struct keystate file = { 0 };
        const struct keystate_entry *old;
        int fd = -1, r;

        why[0] = 0;
        if (mkdir(c->state_dir, 0750) < 0 && errno != EEXIST) {
                snprintf(why, whylen, "state_dir %s: %s", c->state_dir, strerror(errno));
                return DKIMSIGN_E_SYSTEM;
        }
        r = keystate_lock(c->state_dir, &fd, why, whylen);
        if (r == 0)
                r = keystate_load(c->state_dir, &file, why, whylen);
        if (r == 0) {
                old = keystate_find(&file, e->label);
                if (old && strcmp(old->fingerprint, e->fingerprint) != 0)
                        old = NULL;
                r = merge(old, e);
                if (r == 1) {
                        r = keystate_put(&file, e);
                        if (r == 0)
                                r = keystate_save(c->state_dir, &file, why, whylen);
                        if (r == 0)
                                r = 1;
                }
        }
        if (fd >= 0)
                close(fd);
        keystate_clear(&file);
        if (r < 0 && !why[0])
                snprintf(why, whylen, "%s", dkimsign_strerror(r));
        return r;
}

/* Never undo what is further on: an active or retired key stays so. */
static int merge_active(const struct keystate_entry *old, struct keystate_entry *e)
{
        return old && old->t.state >= KEY_ACTIVE ? 0 : 1;
}

int ctl_activate_if_published(const struct config *c, const char *label, EVP_PKEY *pub, char *why,
                              size_t whylen)
{
        struct keystate_entry e = { 0 };
        enum key_dns d;
        int64_t now = (int64_t) time(NULL);
        int r;

        why[0] = 0;
        d = lookup(c, label, pub, why, whylen);
        if (d != KEY_DNS_MATCH) {
                if (!why[0])
                        snprintf(why, whylen, "DNS shows %s", key_dns_phrase(d));
                return 0;
        }
        snprintf(e.label, sizeof(e.label), "%s", label);
        r = keystate_fingerprint(pub, e.fingerprint);
        if (r < 0) {
                snprintf(why, whylen, "cannot encode the public key");
                return r;
        }
        e.t = (struct key_times) { .state = KEY_ACTIVE, .seen = now, .active = now };
        r = state_edit(c, &e, merge_active, why, whylen);
        return r < 0 ? r : 1;
}

/* Retired now, keeping when it was first seen and made active. */
static int merge_retired(const struct keystate_entry *old, struct keystate_entry *e)
{
        if (old && old->t.state == KEY_RETIRED)
                return 0;
        if (old) {
                e->t.seen = old->t.seen;
                e->t.active = old->t.active;
        }
        return 1;
}

/*
 * Record in the state file that the key is retired, beside the date on
 * the token: a daemon reads the file at every reload whatever its PKCS#11
 * module shows it, and a token that won't take the date (some refuse
 * C_SetAttributeValue) still gets its key retired.
 */
static int record_retired(const struct config *c, const char *label, EVP_PKEY *pub, char *why, size_t whylen)
{
        struct keystate_entry e = { 0 };
        int r;

        snprintf(e.label, sizeof(e.label), "%s", label);
        r = keystate_fingerprint(pub, e.fingerprint);
        if (r < 0) {
                snprintf(why, whylen, "cannot encode the public key");
                return r;
        }
        e.t = (struct key_times) { .state = KEY_RETIRED, .retired = (int64_t) time(NULL) };
        return state_edit(c, &e, merge_retired, why, whylen);
}

/* ---- refresh ---- */

int cmd_refresh(const struct options *o)
{
        char why[1024];
        struct key_listing l;
        int status = key_listing_open(o, &l);

        if (status)
                goto out;
        /* The watcher's own lines (what moved, what DNS showed) go to stderr. */
        log_init("dkimsignctl", LOG_INFO);
        if (ctl_refresh(l.c, l.reg, why, sizeof(why)) < 0) {
                status = die("%s", why);
                goto out;
        }
        status = key_listing_lives(&l);
        if (status)
                goto out;
        printf("checked %zu key(s) in DNS; states written to %s/%s\n", l.t->count, l.c->state_dir, KEYSTATE_FILE);
        list_life_notes(l.t, l.life);
out:
        key_listing_close(&l);
        return status;
}

/* ---- rotate ---- */

/* The selector of the domain's newest key of alg that is not retired, for
 * the message (NULL if none). */
static const char *current_selector(const struct keytab *t, const char *domain, enum hsm_alg alg)
{
        const char *sel = NULL;
        int64_t best = -1, now = (int64_t) time(NULL);

        for (size_t i = 0; i < t->count; i++) {
                int64_t since = 0;

                if (strcmp(t->keys[i].domain, domain) != 0 || t->keys[i].key->alg != alg ||
                    keytab_key_state(t, i, now, &since, NULL) == KEY_RETIRED)
                        continue;
                if (since >= best) {
                        best = since;
                        sel = t->keys[i].selector;
                }
        }
        return sel;
}

int cmd_rotate(const struct options *o)
{
        char domain[DKIM_DOMAIN_SIZE], selector[DKIM_SELECTOR_MAX + 1], label[HSM_LABEL_MAX + 1], why[1024];
        char wait[24], grace[24], name[TOKEN_NAME_SIZE];
        enum hsm_alg alg = HSM_ALG_RSA;
        const struct config_domain *d;
        const char *old;
        struct config *c = NULL;
        struct hsm *h = NULL;
        struct keytab *t = NULL;
        struct keyreg *reg = NULL;
        struct hsm_key *k = NULL;
        int r, status = 0;

        if (!o->domain || !dkim_domain_is_valid(o->domain, strlen(o->domain)))
                return usage_error("rotate needs --domain D, a valid domain name");
        if (o->selector && !selector_is_valid(o->selector))
                return usage_error("'%s' is not a valid selector (letters, digits, '-', dot-separated)", o->selector);
        if (o->algorithm && hsm_alg_from_string(o->algorithm, &alg) < 0)
                return usage_error("--algorithm takes rsa or ed25519");
        if (o->bits && (alg != HSM_ALG_RSA || o->bits < HSM_RSA_MIN_BITS || o->bits > HSM_RSA_MAX_BITS))
                return usage_error("--bits is for RSA keys, from %d to %d (RFC 8301)", HSM_RSA_MIN_BITS,
                                   HSM_RSA_MAX_BITS);
        snprintf(domain, sizeof(domain), "%s", o->domain);
        lowercase(domain);
        if (open_all(o, &c, &h))
                return EXIT_FAIL;
        r = keytab_load(h, c, &t);
        if (r < 0) {
                status = die("listing keys: %s", dkimsign_strerror(r));
                goto out;
        }
        if (ctl_lifecycle_attach(c, t, &reg, why, sizeof(why)) < 0) {
                status = die("%s", why);
                goto out;
        }
        if (o->selector) {
                snprintf(selector, sizeof(selector), "%s", o->selector);
                lowercase(selector);
        } else if (ctl_next_selector(t, domain, alg, selector, sizeof(selector)) < 0) {
                status = die("no free selector for today; name one with --selector");
                goto out;
        }
        if (make_label(selector, domain, label, sizeof(label))) {
                status = EXIT_FAIL;
                goto out;
        }
        old = current_selector(t, domain, alg);
        r = hsm_generate(h, label, alg, o->bits, &k);
        if (r == DKIMSIGN_E_EXISTS) {
                status = die("a key named %s already exists on the token; choose another selector", label);
                goto out;
        }
        if (r < 0 && hsm_last_why()[0]) {
                /* What the token can't make, said before anything changed. */
                status = die("generating %s key %s: %s", hsm_alg_name(alg), label, hsm_last_why());
                goto out;
        }
        if (r < 0) {
                status = die("generating %s key %s: %s (%s)", hsm_alg_name(alg), label, dkimsign_strerror(r),
                             hsm_ckr_name(hsm_last_ckr()));
                goto out;
        }
        printf("generated %s %u-bit key %s on token %s: pending\n", hsm_alg_name(alg), k->bits, label,
               token_name(h, name));
        ctl_duration(config_publish_wait(c, domain), wait);
        ctl_duration(config_retire_grace(c, domain), grace);
        printf("publish this record; dkimsignd signs with the key once DNS has shown it for publish_wait (%s)", wait);
        if (old)
                printf(", and %s retires retire_grace (%s) after that", old, grace);
        printf(":\n");
        status = print_record(k, label);
        d = config_find_domain(c, domain);
        if (d && d->nselectors)
                printf("note: [domain %s] names its selectors: add %s to 'selectors' there, or dkimsignd will "
                       "not use it\n", domain, selector);
        printf("run dkimsignctl reload so that the running dkimsignd watches the new key\n");
out:
        hsm_key_free(k);
        keytab_free(t);
        keyreg_free(reg);
        hsm_close(h);
        config_free(c);
        return status;
}

/* ---- retire, destroy ---- */

/* How many active keys domain has left on the token (-1 if unknown). */
static int active_keys(struct hsm *h, const struct config *c, const char *domain)
{
        struct keytab *t = NULL;
        int n = 0;

        if (keytab_load(h, c, &t) < 0)
                return -1;
        for (size_t i = 0; i < t->count; i++)
                if (strcmp(t->keys[i].domain, domain) == 0 && !t->keys[i].key->retired[0])
                        n++;
        keytab_free(t);
        return n;
}

int cmd_retire(const struct options *o)
{
        char label[HSM_LABEL_MAX + 1], date[11], domain[DKIM_DOMAIN_SIZE], why[512];
        bool state_changed;
        struct config *c = NULL;
        struct hsm *h = NULL;
        struct hsm_key *k = NULL, *after = NULL;
        int r, status;

        status = check_name_options(o, "retire");
        if (status)
                return status;
        if (make_label(o->selector, o->domain, label, sizeof(label)) || open_all(o, &c, &h))
                return EXIT_FAIL;
        snprintf(domain, sizeof(domain), "%s", o->domain);
        lowercase(domain);
        status = find_named(c, h, label, &k);
        if (status)
                goto out;
        /* The state file first: it is what every daemon reads at reload,
         * whatever its module caches, and what a token that won't keep
         * the date relies on. */
        r = record_retired(c, label, k->pubkey, why, sizeof(why));
        if (r < 0) {
                status = die("retiring %s: recording it in the state file: %s", label, why);
                goto out;
        }
        state_changed = r == 1;
        r = hsm_retire(h, k);
        if (r < 0 && !state_changed) {
                if (k->retired[0])
                        printf("key %s was retired on %s already; nothing changed\n", label,
                               date_show(k->retired, date));
                else
                        printf("key %s was retired already; nothing changed\n", label);
                goto out;
        }
        if (r == DKIMSIGN_E_FORMAT || (r < 0 && r != DKIMSIGN_E_EXISTS)) {
                /* Retired all the same: the state file says so. */
                if (r == DKIMSIGN_E_FORMAT)
                        snprintf(why, sizeof(why), "it has no public key object to carry the date");
                else
                        snprintf(why, sizeof(why), "the token would not take the date: %s (%s)",
                                 dkimsign_strerror(r), hsm_ckr_name(hsm_last_ckr()));
                printf("retired key %s in %s/%s only: %s\n", label, c->state_dir, KEYSTATE_FILE, why);
        }
        r = hsm_find(h, label, &after);
        printf("retired key %s on %s: dkimsignd stops signing with it at its next reload or restart\n", label,
               r == 0 && after->retired[0] ? date_show(after->retired, date) : "today");
        printf("keep its DNS record published for a few days, until mail signed with it has been delivered\n");
        if (active_keys(h, c, domain) == 0)
                printf("note: %s has no active key left: dkimsignd will refuse to sign its mail\n", domain);
out:
        hsm_key_free(after);
        hsm_key_free(k);
        hsm_close(h);
        config_free(c);
        return status;
}

/* Ask on the terminal: 1 yes, 0 no, -1 not interactive. */
static int confirm_destroy(const char *label, const struct hsm_key *k)
{
        char answer[16] = { 0 };
        FILE *tty;
        size_t n;

        if (!isatty(STDIN_FILENO))
                return -1;
        tty = fopen("/dev/tty", "r+e");
        if (!tty)
                return -1;
        if (!k->retired[0])
                fprintf(tty, "key %s is active: dkimsignd signs with it\n", label);
        fprintf(tty, "destroy key %s? This cannot be undone [y/N] ", label);
        fflush(tty);
        if (!fgets(answer, sizeof(answer), tty))
                answer[0] = '\0';
        fclose(tty);
        n = strcspn(answer, "\r\n");
        answer[n] = '\0';
        return strcasecmp(answer, "y") == 0 || strcasecmp(answer, "yes") == 0;
}

int cmd_destroy(const struct options *o)
{
        char label[HSM_LABEL_MAX + 1];
        struct config *c = NULL;
        struct hsm *h = NULL;
        struct hsm_key *k = NULL;
        int r, status;

        status = check_name_options(o, "destroy");
        if (status)
                return status;
        if (make_label(o->selector, o->domain, label, sizeof(label)) || open_all(o, &c, &h))
                return EXIT_FAIL;
        status = find_named(c, h, label, &k);
        if (status)
                goto out;
        if (!o->yes) {
                r = confirm_destroy(label, k);
                if (r < 0) {
                        status = die("destroy asks for confirmation on a terminal; to destroy %s without asking, "
                                     "pass --yes", label);
                        goto out;
                }
                if (r == 0) {
                        status = die("not destroyed: %s is still on the token", label);
                        goto out;
                }
        }
        r = hsm_destroy(h, k);
        if (r < 0) {
                status = die("destroying %s: %s (%s)", label, dkimsign_strerror(r), hsm_ckr_name(hsm_last_ckr()));
                goto out;
        }
        printf("destroyed key %s; its DNS record can be removed once dkimsignd has reloaded\n", label);
out:
        hsm_key_free(k);
        hsm_close(h);
        config_free(c);
        return status;
}
