/* SPDX-License-Identifier: MIT */
/*
 * The DNS watcher.  See dnswatch.h.
 *
 * One cycle: take the newest generation's keys from the registry and run
 * one check over them (keycheck.h: lookups, the state file, the lifecycle
 * step), then log what the check reports.  The thread, its settings and
 * the log lines are all that is here.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "protocol/dkimsign-errors.h"
#include "daemon/dnswatch.h"
#include "keys/keycheck.h"
#include "keys/keystate.h"
#include "util/log.h"
#include "dns/resolve.h"

struct dns_settings {
        bool lookups;              /* false: [dns] watch = timer, the file has what DNS shows */
        char *resolver;            /* NULL: the system resolver */
        char *trust_anchor;        /* NULL: the default */
        enum dns_dnssec dnssec;
        unsigned timeout_ms;
        uint64_t interval;         /* seconds */
};

struct dnswatch {
        struct keyreg *reg;        /* owned; guarded by reg_lock (the entries' states are atomics) */
        pthread_mutex_t reg_lock;
        char *state_dir;
        pthread_t thread;
        bool started;
        pthread_mutex_t lock;      /* guards what follows */
        pthread_cond_t cond;
        bool wake, changed;
        atomic_bool stop;          /* also read, without the lock, between lookups */
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
        free(s->trust_anchor);
        *s = (struct dns_settings) { 0 };
}

static int settings_from(const struct config *c, struct dns_settings *ret)
{
        *ret = (struct dns_settings) { .timeout_ms = c->dns_timeout_ms, .interval = c->check_interval,
                                       .lookups = c->dns_watch == CONFIG_WATCH_DAEMON, .dnssec = c->dns_dnssec };
        if (c->dns_resolver && !(ret->resolver = strdup(c->dns_resolver)))
                return DKIMSIGN_E_NOMEM;
        if (c->dns_trust_anchor && !(ret->trust_anchor = strdup(c->dns_trust_anchor)))
                return DKIMSIGN_E_NOMEM;
        return 0;
}

static int make_resolver(const struct dns_settings *s, struct dns_resolver **ret, char *why, size_t whylen)
{
        struct dns_resolver_options o = { .server = s->resolver, .timeout_ms = s->timeout_ms,
                                          .dnssec = s->dnssec, .trust_anchor = s->trust_anchor };
        char what[400];
        int r;

        /* Made even when the daemon makes no lookups: a bad address fails now. */
        r = dns_resolver_new(&o, ret, what, sizeof(what));
        if (r < 0)
                snprintf(why, whylen, "[dns]: %s", what);
        return r;
}

int dnswatch_new(const struct config *c, struct dnswatch **ret, char *why, size_t whylen)
{
        struct dnswatch *w = calloc(1, sizeof(*w));
        int r;

        if (!w)
                return DKIMSIGN_E_NOMEM;
        pthread_mutex_init(&w->lock, NULL);
        pthread_mutex_init(&w->reg_lock, NULL);
        pthread_cond_init(&w->cond, NULL);
        w->state_dir = strdup(c->state_dir);
        r = w->state_dir ? keyreg_new(&w->reg) : DKIMSIGN_E_NOMEM;
        if (r == 0)
                r = settings_from(c, &w->have);
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

/* ---- one check ---- */

static void file_problem(struct dnswatch *w, const char *why)
{
        w->file_result = DKIMSIGN_E_STATE;
        /* Once per distinct problem, not at every check. */
        if (strcmp(w->last_file_error, why) == 0)
                return;
        snprintf(w->last_file_error, sizeof(w->last_file_error), "%s", why);
        log_err("key states: %s; the state file is not written until this is fixed (the states are kept in "
                "memory)", why);
}

/* What the lookups met, said once when a failure starts and once when it
 * ends, not at every check. */
static void log_lookups(struct dnswatch *w, const struct keycheck_report *rep)
{
        const char *server = w->have.resolver ? w->have.resolver : "the system resolver";

        if (rep->failed && !w->dns_failing)
                log_warn("dns: %zu lookup(s) got no answer from %s (timeout or server failure); no key changes "
                         "state until it answers, and active keys keep signing", rep->failed, server);
        else if (!rep->failed && rep->answered && w->dns_failing)
                log_info("dns: %s answers again", server);
        if (rep->failed || rep->answered)
                w->dns_failing = rep->failed > 0;
        if (rep->skipped)
                log_warn("dns: %u lookups in a row got no answer from %s; %zu key(s) not checked this time",
                         rep->failures_in_row, server, rep->skipped);
}

static void cycle(struct dnswatch *w)
{
        struct keycheck_report rep = { 0 };
        struct keyreg_entry **keys = NULL;
        size_t n = 0;
        int r;

        pthread_mutex_lock(&w->reg_lock);
        r = keyreg_current(w->reg, &keys, &n);
        pthread_mutex_unlock(&w->reg_lock);
        if (r < 0)
                return;
        /* The entries outlive the lock: only keyreg_free frees them, in
         * dnswatch_free once this thread has ended. */
        /* Each check asks afresh: a record published or changed since the
         * last one is seen now, not when a cached answer expires. */
        dns_resolver_forget(w->res);
        r = keycheck_run(keys, n, w->have.lookups ? w->res : NULL, w->state_dir, &w->stop, &rep);
        if (r == 0) {
                if (w->have.lookups)
                        log_lookups(w, &rep);
                for (size_t i = 0; i < rep.nevents; i++) {
                        char line[1024];
                        bool warning;

                        keycheck_event_sentence(&rep, &rep.events[i], line, sizeof(line), &warning);
                        log_msg(warning ? LOG_WARNING : LOG_INFO, "%s", line);
                }
                w->file_result = 0;
                if (rep.file_result < 0)
                        file_problem(w, rep.file_error);
                else
                        w->last_file_error[0] = 0;
        }
        keycheck_report_clear(&rep);
        free(keys);
}

int dnswatch_attach(struct dnswatch *w, struct keytab *t, const struct config *c, const struct keystate *file)
{
        int r;

        pthread_mutex_lock(&w->reg_lock);
        r = keyreg_attach(w->reg, t, c, file);
        pthread_mutex_unlock(&w->reg_lock);
        return r;
}

/* ---- the thread ---- */

static bool same_string(const char *a, const char *b)
{
        return a && b ? strcmp(a, b) == 0 : a == b;
}

static bool settings_equal(const struct dns_settings *a, const struct dns_settings *b)
{
        return a->timeout_ms == b->timeout_ms && a->lookups == b->lookups && a->dnssec == b->dnssec &&
               same_string(a->resolver, b->resolver) && same_string(a->trust_anchor, b->trust_anchor);
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
        keyreg_free(w->reg);
        settings_clear(&w->have);
        settings_clear(&w->want);
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->reg_lock);
        pthread_mutex_destroy(&w->lock);
        free(w->state_dir);
        free(w);
        return NULL;
}
