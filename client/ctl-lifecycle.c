/* SPDX-License-Identifier: MIT */
/*
 * dkimsignctl's side of the key lifecycle.  See ctl-lifecycle.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ctl-lifecycle.h"
#include "dkimsign-errors.h"
#include "keycheck.h"
#include "keystate.h"
#include "log.h"
#include "resolve.h"

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
        const struct signer_key *k = &t->keys[i];
        struct key_times times = { 0 };
        size_t next = (size_t) -1;
        int64_t since = 0;
        uint64_t wait = 0, grace = 0;

        if (k->reg) {
                key_live_times(&k->reg->live, &times);
                wait = atomic_load(&k->reg->live.wait);
                grace = atomic_load(&k->reg->live.grace);
        }
        *ret = (struct ctl_key_life) { .state = keytab_key_state(t, i, now, &since, &next), .seen = times.seen };
        switch (ret->state) {
        case KEY_RETIRED:
                ret->retired = since;
                break;
        case KEY_ACTIVE:
                ret->active = since;
                if (next != (size_t) -1) {
                        int64_t next_since = 0;

                        keytab_key_state(t, next, now, &next_since, NULL);
                        ret->retires = next_since + (int64_t) grace;
                }
                break;
        case KEY_PUBLISHED:
                ret->signs_from = times.seen + (int64_t) wait;
                break;
        default:
                break;
        }
        if ((ret->state == KEY_PENDING || ret->state == KEY_PUBLISHED) &&
            config_unpublished(c, k->domain) == CONFIG_UNPUBLISHED_SIGN) {
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
        struct keyreg_entry **keys = NULL;
        const char *server = c->dns_resolver ? c->dns_resolver : "the system resolver";
        size_t n = 0;
        int r;

        if (mkdir(c->state_dir, 0750) < 0 && errno != EEXIST) {
                snprintf(why, whylen, "state_dir %s: %s", c->state_dir, strerror(errno));
                return DKIMSIGN_E_SYSTEM;
        }
        r = dns_resolver_new(c->dns_resolver, c->dns_timeout_ms, &res);
        if (r < 0) {
                snprintf(why, whylen, "[dns] resolver %s: %s", c->dns_resolver ? c->dns_resolver : "system",
                         dkimsign_strerror(r));
                return r;
        }
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
        enum key_dns out;
        int r = dns_resolver_new(c->dns_resolver, c->dns_timeout_ms, &res);

        if (r < 0) {
                snprintf(why, whylen, "[dns] resolver %s: %s", c->dns_resolver ? c->dns_resolver : "system",
                         dkimsign_strerror(r));
                return KEY_DNS_FAILED;
        }
        out = keycheck_lookup(res, label, pub);
        dns_resolver_free(res);
        return out;
}

int ctl_activate_if_published(const struct config *c, const char *label, EVP_PKEY *pub, char *why,
                              size_t whylen)
{
        struct keystate file = { 0 };
        struct keystate_entry e = { 0 };
        const struct keystate_entry *old;
        enum key_dns d;
        int64_t now = (int64_t) time(NULL);
        int fd = -1, r;

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
        if (mkdir(c->state_dir, 0750) < 0 && errno != EEXIST) {
                snprintf(why, whylen, "state_dir %s: %s", c->state_dir, strerror(errno));
                return DKIMSIGN_E_SYSTEM;
        }
        r = keystate_lock(c->state_dir, &fd, why, whylen);
        if (r == 0)
                r = keystate_load(c->state_dir, &file, why, whylen);
        if (r == 0) {
                old = keystate_find(&file, label);
                /* Never undo what is further on: an active or retired key stays so. */
                if (old && strcmp(old->fingerprint, e.fingerprint) == 0 && old->t.state >= KEY_ACTIVE)
                        r = 1;
                else if ((r = keystate_put(&file, &e)) == 0)
                        r = keystate_save(c->state_dir, &file, why, whylen);
        }
        if (fd >= 0)
                close(fd);
        keystate_clear(&file);
        if (r < 0 && !why[0])
                snprintf(why, whylen, "%s", dkimsign_strerror(r));
        return r < 0 ? r : 1;
}
