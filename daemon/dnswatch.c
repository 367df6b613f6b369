/* SPDX-License-Identifier: MIT */
/*
 * The DNS watcher.  See dnswatch.h.
 *
 * One cycle: take the newest generation's keys from the registry, look up
 * the records of those not retired (pending and published first, then the
 * active ones, which are only watched for a missing record), then, under
 * the state directory's lock, read the file (to take what dkimsignctl wrote
 * there: an import that is active at once, a retirement), apply what DNS
 * showed and what the clock says, and write the file back if anything
 * changed.  Lookups happen outside the lock, so dkimsignctl never waits on
 * the network.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dkimrec.h"
#include "dkimsign-errors.h"
#include "dnswatch.h"
#include "keystate.h"
#include "lifecycle.h"
#include "log.h"
#include "resolve.h"

/* Lookups in a row that got no answer before a cycle gives up. */
#define FAILURES_MAX 3

struct dns_settings {
        bool lookups;              /* false: [dns] watch = timer, the file has what DNS shows */
        char *resolver;            /* NULL: the system resolver */
        unsigned timeout_ms;
        uint64_t interval;         /* seconds */
};

struct dnswatch {
        struct keyreg *reg;        /* borrowed */
        char *state_dir;
        pthread_t thread;
        bool started;
        pthread_mutex_t lock;      /* guards what follows */
        pthread_cond_t cond;
        bool wake, changed;
        _Atomic bool stop;         /* also read, without the lock, between lookups */
        struct dns_settings want;  /* the newest configuration's */
        /* The thread's own. */
        struct dns_settings have;
        struct dns_resolver *res;
        char last_file_error[768];
        bool dns_failing;          /* the last cycle had lookups without an answer */
        bool files_only;           /* another process looks DNS up (dnswatch_files_only) */
        int file_result;           /* the last cycle's: 0 or the state file's problem */
};

static void settings_clear(struct dns_settings *s)
{
        free(s->resolver);
        *s = (struct dns_settings) { 0 };
}

static int settings_from(const struct config *c, struct dns_settings *ret)
{
        *ret = (struct dns_settings) { .timeout_ms = c->dns_timeout_ms, .interval = c->check_interval,
                                       .lookups = c->dns_watch == CONFIG_WATCH_DAEMON };
        if (c->dns_resolver && !(ret->resolver = strdup(c->dns_resolver)))
                return DKIMSIGN_E_NOMEM;
        return 0;
}

static int make_resolver(const struct dns_settings *s, struct dns_resolver **ret, char *why, size_t whylen)
{
        int r;

        /* Made even when the daemon makes no lookups: a bad address fails now. */
        r = dns_resolver_new(s->resolver, s->timeout_ms, ret);

        if (r == DKIMSIGN_E_CONFIG)
                snprintf(why, whylen, "[dns] resolver '%s' is not an address (IP, IP:PORT, [IPv6]:PORT)",
                         s->resolver ? s->resolver : "system");
        else if (r < 0)
                snprintf(why, whylen, "DNS resolver %s: %s", s->resolver ? s->resolver : "(system)",
                         dkimsign_strerror(r));
        return r;
}

int dnswatch_new(struct keyreg *reg, const struct config *c, struct dnswatch **ret, char *why, size_t whylen)
{
        struct dnswatch *w = calloc(1, sizeof(*w));
        int r;

        if (!w)
                return DKIMSIGN_E_NOMEM;
        w->reg = reg;
        pthread_mutex_init(&w->lock, NULL);
        pthread_cond_init(&w->cond, NULL);
        w->state_dir = strdup(c->state_dir);
        r = w->state_dir ? settings_from(c, &w->have) : DKIMSIGN_E_NOMEM;
        if (r == 0)
                r = settings_from(c, &w->want);
        if (r == 0)
                r = make_resolver(&w->have, &w->res, why, whylen);
        if (r < 0) {
                if (r == DKIMSIGN_E_NOMEM)
                        snprintf(why, whylen, "out of memory");
                dnswatch_free(w);
                return r;
        }
        *ret = w;
        return 0;
}

/* ---- one key's record ---- */

enum key_dns dnswatch_lookup(struct dns_resolver *res, const char *label, EVP_PKEY *pub)
{
        struct dns_txt txt = { 0 };
        enum key_dns out = KEY_DNS_BROKEN;
        bool revoked = false, other = false;
        int r = dns_txt_lookup(res, label, &txt);

        if (r == DKIMSIGN_E_DNS_NOT_FOUND)
                return KEY_DNS_MISSING;
        if (r < 0)
                return KEY_DNS_FAILED;  /* no answer, or one we could not read: nothing known */
        for (size_t i = 0; i < txt.count && out != KEY_DNS_MATCH; i++) {
                struct dkim_keyrec rec;

                if (dkim_keyrec_parse(txt.records[i].text, txt.records[i].len, &rec, NULL, 0) < 0)
                        continue;
                if (dkim_keyrec_matches(&rec, pub, NULL, 0) == 0)
                        out = KEY_DNS_MATCH;
                else if (rec.revoked)
                        revoked = true;
                else
                        other = true;
                dkim_keyrec_clear(&rec);
        }
        dns_txt_clear(&txt);
        if (out != KEY_DNS_MATCH)
                out = revoked ? KEY_DNS_REVOKED : other ? KEY_DNS_MISMATCH : KEY_DNS_BROKEN;
        return out;
}

/* Look up every key's record; pending and published ones first, as they
 * are what the cycle is for.  obs[i] stays KEY_DNS_UNCHECKED for keys not
 * looked up. */
static void observe(struct dnswatch *w, struct keyreg_entry **keys, size_t n, enum key_dns *obs)
{
        unsigned failures = 0;
        size_t skipped = 0, failed = 0, answered = 0;
        const char *server = w->have.resolver ? w->have.resolver : "the system resolver";

        for (int pass = 0; pass < 2; pass++)
                for (size_t i = 0; i < n; i++) {
                        struct keyreg_entry *e = keys[i];
                        int st = atomic_load(&e->live.state);

                        if (atomic_load(&e->token_retired) || st == KEY_RETIRED || (pass == 0) != (st < KEY_ACTIVE))
                                continue;
                        if (atomic_load(&w->stop))
                                return;
                        if (failures >= FAILURES_MAX) {
                                skipped++;
                                continue;
                        }
                        obs[i] = dnswatch_lookup(w->res, e->label, e->pubkey);
                        failures = obs[i] == KEY_DNS_FAILED ? failures + 1 : 0;
                        if (obs[i] == KEY_DNS_FAILED)
                                failed++;
                        else
                                answered++;
                        atomic_store(&e->live.dns, (int) obs[i]);
                        atomic_store(&e->live.checked, (int64_t) time(NULL));
                }
        /* Said once when it starts and once when it ends, not at every check. */
        if (failed && !w->dns_failing)
                log_warn("dns: %zu lookup(s) got no answer from %s (timeout or server failure); no key changes "
                         "state until it answers, and active keys keep signing", failed, server);
        else if (!failed && answered && w->dns_failing)
                log_info("dns: %s answers again", server);
        if (failed || answered)
                w->dns_failing = failed > 0;
        if (skipped)
                log_warn("dns: %u lookups in a row got no answer from %s; %zu key(s) not checked this time",
                         failures, server, skipped);
}

/* ---- moving keys along ---- */

static void set_state(struct key_live *l, enum key_state st, int64_t seen, int64_t active, int64_t retired)
{
        /* Times first: a worker reads the state, then the times. */
        atomic_store(&l->seen, seen);
        atomic_store(&l->active, active);
        atomic_store(&l->retired, retired);
        atomic_store(&l->state, (int) st);
}

/* Keys by domain, then label: the lifecycle weighs each domain's together. */
static int by_domain(const void *a, const void *b)
{
        const struct keyreg_entry *x = *(struct keyreg_entry *const *) a, *y = *(struct keyreg_entry *const *) b;
        int c = strcmp(x->domain, y->domain);

        return c != 0 ? c : strcmp(x->label, y->label);
}

static void view_of(const struct keyreg_entry *e, struct key_view *ret)
{
        *ret = (struct key_view) { .domain = e->domain, .alg = (int) e->alg,
                                   .token_retired = atomic_load(&e->token_retired),
                                   .wait = atomic_load(&e->live.wait), .grace = atomic_load(&e->live.grace) };
        key_live_times(&e->live, &ret->t);
}

static bool times_equal(const struct key_times *a, const struct key_times *b)
{
        return a->state == b->state && a->seen == b->seen && a->active == b->active && a->retired == b->retired;
}

/* One line per event of the lifecycle step, at the level it deserves. */
static void log_event(struct keyreg_entry **keys, const struct lifecycle_event *ev)
{
        const char *label = keys[ev->key]->label;
        char when[24];

        switch (ev->what) {
        case LC_PUBLISHED:
                keystate_utc(ev->when, when);
                log_info("key %s: published: DNS shows its record; it signs from %s", label, when);
                break;
        case LC_BACK_TO_PENDING:
                log_warn("key %s: back to pending: DNS now shows %s; publish_wait starts again when the record "
                         "is back", label, key_dns_phrase(ev->dns));
                break;
        case LC_ACTIVE_NOT_IN_DNS:
                log_warn("key %s is active but DNS shows %s: verifiers fail its signatures; it keeps signing "
                         "(a DNS outage must not stop mail): publish the record again, or retire the key",
                         label, key_dns_phrase(ev->dns));
                break;
        case LC_RECORD_BACK:
                log_info("key %s: its DNS record is back", label);
                break;
        case LC_PENDING_SEES:
                log_info("key %s is pending: DNS shows %s", label, key_dns_phrase(ev->dns));
                break;
        case LC_ACTIVE:
                log_info("key %s is active: dkimsignd signs with it", label);
                break;
        case LC_RETIRED_SUCCEEDED:
                log_info("key %s retired: %s has been active for retire_grace; its record may stay published",
                         label, keys[ev->successor]->label);
                break;
        case LC_RETIRED_ON_TOKEN:
                log_info("key %s retired (on the token)", label);
                break;
        }
}

/* Move the keys along (lifecycle_step), store the new times where the
 * workers read them, and log what happened.  Returns true on a change. */
static bool advance(struct keyreg_entry **keys, size_t n, struct key_view *views, const enum key_dns *before,
                    const enum key_dns *obs, struct lifecycle_event *events, int64_t now)
{
        size_t nevents = 0;
        bool changed;

        for (size_t i = 0; i < n; i++)
                view_of(keys[i], &views[i]);
        changed = lifecycle_step(views, n, before, obs, now, events, &nevents);
        for (size_t i = 0; changed && i < n; i++) {
                struct key_times old;

                key_live_times(&keys[i]->live, &old);
                if (!times_equal(&old, &views[i].t))
                        set_state(&keys[i]->live, views[i].t.state, views[i].t.seen, views[i].t.active,
                                  views[i].t.retired);
        }
        for (size_t e = 0; e < nevents; e++)
                log_event(keys, &events[e]);
        return changed;
}

/* Write the registry's states into the file's, for the keys given. */
static int record(struct keystate *file, struct keyreg_entry **keys, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                struct keystate_entry e = { 0 };
                int r;

                snprintf(e.label, sizeof(e.label), "%s", keys[i]->label);
                memcpy(e.fingerprint, keys[i]->fingerprint, sizeof(e.fingerprint));
                key_live_times(&keys[i]->live, &e.t);
                r = keystate_put(file, &e);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Whether the file already says what the registry knows of key e. */
static bool file_matches(const struct keystate *file, const struct keyreg_entry *e)
{
        const struct keystate_entry *f = keystate_find(file, e->label);
        struct key_times t;

        key_live_times(&e->live, &t);
        return f && strcmp(f->fingerprint, e->fingerprint) == 0 && f->t.state == t.state && f->t.seen == t.seen &&
               f->t.active == t.active && f->t.retired == t.retired;
}

static void file_problem(struct dnswatch *w, const char *why)
{
        w->file_result = DKIMSIGN_E_STATE;
        /* Once per distinct problem, not at every cycle. */
        if (strcmp(w->last_file_error, why) == 0)
                return;
        snprintf(w->last_file_error, sizeof(w->last_file_error), "%s", why);
        log_err("key states: %s; the state file is not written until this is fixed (the states are kept in "
                "memory)", why);
}

static void cycle(struct dnswatch *w)
{
        struct keyreg_entry **keys = NULL;
        enum key_dns *obs = NULL, *before = NULL;
        struct key_view *views = NULL;
        struct lifecycle_event *events = NULL;
        struct keystate file = { 0 };
        size_t n = 0;
        bool changed, file_ok;
        char why[768];
        int64_t now;
        int fd = -1, r;

        if (keyreg_current(w->reg, &keys, &n) < 0)
                return;
        qsort(keys, n, sizeof(*keys), by_domain);
        obs = calloc(n ? n : 1, sizeof(*obs));
        before = calloc(n ? n : 1, sizeof(*before));
        views = calloc(n ? n : 1, sizeof(*views));
        events = calloc(n ? LIFECYCLE_EVENTS_PER_KEY * n : 1, sizeof(*events));
        if (!obs || !before || !views || !events)
                goto out;
        for (size_t i = 0; i < n; i++)
                before[i] = (enum key_dns) atomic_load(&keys[i]->live.dns);
        if (w->have.lookups)
                observe(w, keys, n, obs);
        w->file_result = 0;

        r = keystate_lock(w->state_dir, &fd, why, sizeof(why));
        if (r == 0)
                r = keystate_load(w->state_dir, &file, why, sizeof(why));
        file_ok = r == 0;
        if (!file_ok)
                file_problem(w, why);
        now = (int64_t) time(NULL);
        for (size_t i = 0; file_ok && i < n; i++) {
                const struct keystate_entry *f = keystate_find(&file, keys[i]->label);

                if (f && strcmp(f->fingerprint, keys[i]->fingerprint) == 0 &&
                    key_live_adopt(&keys[i]->live, &f->t, !w->have.lookups))
                        log_info("key %s: %s, as the state file says (dkimsignctl)", keys[i]->label,
                                 key_state_name(f->t.state));
        }
        changed = advance(keys, n, views, before, obs, events, now);
        if (file_ok) {
                /* Also when nothing moved here: the file may lack a key (the
                 * first cycle writes every one) or hold another key's state
                 * under its label. */
                for (size_t i = 0; i < n && !changed; i++)
                        changed = !file_matches(&file, keys[i]);
                r = changed ? record(&file, keys, n) : 0;
                if (r == 0 && changed)
                        r = keystate_save(w->state_dir, &file, why, sizeof(why));
                else if (r < 0)
                        snprintf(why, sizeof(why), "%s", dkimsign_strerror(r));
                if (r < 0)
                        file_problem(w, why);
                else
                        w->last_file_error[0] = 0;
        }
out:
        if (fd >= 0)
                close(fd);
        keystate_clear(&file);
        free(events);
        free(views);
        free(before);
        free(obs);
        free(keys);
}

int dnswatch_run_once(struct dnswatch *w, char *why, size_t whylen)
{
        w->have.lookups = true;
        cycle(w);
        if (w->file_result < 0)
                snprintf(why, whylen, "%s", w->last_file_error);
        return w->file_result;
}

/* ---- the thread ---- */

static bool settings_equal(const struct dns_settings *a, const struct dns_settings *b)
{
        return a->timeout_ms == b->timeout_ms && a->lookups == b->lookups &&
               (a->resolver && b->resolver ? strcmp(a->resolver, b->resolver) == 0 : a->resolver == b->resolver);
}

/* Take a reload's settings; a resolver that can't be made keeps the old one. */
static void take_settings(struct dnswatch *w, struct dns_settings *next)
{
        struct dns_resolver *res = NULL;
        char why[256];

        if (!settings_equal(&w->have, next)) {
                if (make_resolver(next, &res, why, sizeof(why)) < 0) {
                        log_err("dns: %s; keeping the previous resolver", why);
                        settings_clear(next);
                        return;
                }
                dns_resolver_free(w->res);
                w->res = res;
        }
        settings_clear(&w->have);
        w->have = *next;
        *next = (struct dns_settings) { 0 };
}

static void *run(void *arg)
{
        struct dnswatch *w = arg;
        struct timespec until;

        for (;;) {
                struct dns_settings next = { 0 };
                bool stop;

                cycle(w);
                clock_gettime(CLOCK_MONOTONIC, &until);
                until.tv_sec += (time_t) w->have.interval;
                pthread_mutex_lock(&w->lock);
                while (!w->stop && !w->wake)
                        if (pthread_cond_timedwait(&w->cond, &w->lock, &until) == ETIMEDOUT)
                                break;
                stop = w->stop;
                w->wake = false;
                if (w->changed) {
                        next = w->want;
                        w->want = (struct dns_settings) { 0 };
                        w->changed = false;
                }
                pthread_mutex_unlock(&w->lock);
                if (stop) {
                        settings_clear(&next);
                        break;
                }
                if (next.interval)
                        take_settings(w, &next);
        }
        return NULL;
}

int dnswatch_start(struct dnswatch *w)
{
        pthread_condattr_t attr;
        int r;

        /* The wait is on the monotonic clock: setting the date must not
         * stall the checks or make them run in a loop. */
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_destroy(&w->cond);
        pthread_cond_init(&w->cond, &attr);
        pthread_condattr_destroy(&attr);
        r = pthread_create(&w->thread, NULL, run, w);
        if (r != 0) {
                errno = r;
                return DKIMSIGN_E_SYSTEM;
        }
        w->started = true;
        return 0;
}

void dnswatch_files_only(struct dnswatch *w)
{
        pthread_mutex_lock(&w->lock);
        w->files_only = true;
        w->have.lookups = false;
        w->want.lookups = false;
        pthread_mutex_unlock(&w->lock);
}

void dnswatch_reconfigure(struct dnswatch *w, const struct config *c)
{
        struct dns_settings next;

        if (strcmp(c->state_dir, w->state_dir) != 0)
                log_warn("reload: [daemon] state_dir takes effect at the next restart");
        if (settings_from(c, &next) < 0) {
                log_err("dns: out of memory; keeping the previous [dns] settings");
                return;
        }
        next.lookups = next.lookups && !w->files_only;
        pthread_mutex_lock(&w->lock);
        settings_clear(&w->want);
        w->want = next;
        w->changed = true;
        w->wake = true;
        pthread_cond_signal(&w->cond);
        pthread_mutex_unlock(&w->lock);
}

struct dnswatch *dnswatch_free(struct dnswatch *w)
{
        if (!w)
                return NULL;
        if (w->started) {
                pthread_mutex_lock(&w->lock);
                w->stop = true;
                pthread_cond_signal(&w->cond);
                pthread_mutex_unlock(&w->lock);
                pthread_join(w->thread, NULL);
        }
        dns_resolver_free(w->res);
        settings_clear(&w->have);
        settings_clear(&w->want);
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->lock);
        free(w->state_dir);
        free(w);
        return NULL;
}
