/* SPDX-License-Identifier: MIT */
/*
 * Worker pool.  See workers.h.  One mutex guards both queues and the
 * worker list; the hot path holds it only to link or unlink a job.
 *
 * A token call cannot be interrupted, so a hung one is not cancelled: the
 * supervisor answers its request with a temporary error, marks the worker
 * abandoned and starts a replacement with a session of its own, so the
 * pool keeps its size.  When the hung call returns, its worker either
 * rejoins the pool (if it is short) or closes its session and exits.
 * Replacements are capped at the pool size, so a token that hangs every
 * call costs at most twice the configured sessions; past the cap, queued
 * requests are answered with a temporary error once they wait too long.
 *
 * A token that opens fewer sessions than configured (CKR_SESSION_COUNT:
 * many HSMs cap them per client) starts the pool with those it got, and
 * that is its size from then on; a warning says how many, once.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "protocol/dkimsign-errors.h"
#include "util/log.h"
#include "protocol/msg.h"
#include "daemon/workers.h"
#include "daemon/fairq.h"
#include "util/clock.h"

#define SUPERVISE_MIN_MS 50
#define SUPERVISE_MAX_MS 1000

struct worker {
        struct worker *next;
        struct workers *w;
        pthread_t thread;
        struct hsm_session *session; /* the thread's own */
        struct job *job;             /* running, or NULL */
        uint64_t started_ms;
        bool abandoned;              /* its job timed out; answered already */
        bool exited;                 /* the thread has returned: join it */
};

struct workers {
        pthread_mutex_t lock;
        pthread_cond_t wake;         /* a job was queued, or stopping */
        pthread_cond_t stop_cond;    /* for the supervisor's sleep */
        struct fairq *queue;         /* waiting, in turn by peer uid */
        struct job *done;            /* finished, newest first */
        size_t queued, running, queue_max;
        size_t idle;                 /* workers waiting on wake */
        int done_fd;
        bool stopping;
        struct hsm *h;
        size_t target;               /* the configured pool size */
        size_t live;                 /* workers not abandoned */
        size_t stuck;                /* abandoned workers still in a token call */
        unsigned timeout_ms;
        struct worker *workers;
        pthread_t supervisor;
        bool supervisor_started;
};

struct job *job_free(struct job *j)
{
        if (!j)
                return NULL;
        free(j->payload);
        buf_deinit(&j->reply);
        sign_ctx_unref(j->ctx);
        free(j);
        return NULL;
}

/* Lock held.  Only the first job on an empty list wakes the loop: it
 * reads the eventfd before taking the list, so later ones ride along. */
static void done_push_locked(struct workers *w, struct job *j)
{
        uint64_t one = 1;
        bool wake = !w->done;

        j->next = w->done;
        w->done = j;
        if (wake && write(w->done_fd, &one, sizeof(one)) < 0) {
                /* The counter saturating still leaves the fd readable. */
        }
}

static int reply_token_error(struct job *j, const char *why)
{
        buf_reset(&j->reply);
        j->result = DKIMSIGN_E_HSM;
        return msg_error_encode_code(&j->reply, j->id, DKIMSIGN_E_HSM, why);
}

static void *worker_main(void *p)
{
        struct worker *me = p;
        struct workers *w = me->w;
        unsigned long seen_recoveries = hsm_recoveries(w->h), recovered;

        /* A replacement opens its session here, not in the supervisor: on
         * a hung token, C_OpenSession may hang too. */
        if (!me->session && hsm_session_open(w->h, &me->session) < 0)
                log_warn("opening a token session: %s (%s); will retry per request",
                         dkimsign_strerror(DKIMSIGN_E_HSM), hsm_ckr_name(hsm_last_ckr()));
        pthread_mutex_lock(&w->lock);
        for (;;) {
                struct job *j;

                while (!fairq_len(w->queue) && !w->stopping) {
                        w->idle++;
                        pthread_cond_wait(&w->wake, &w->lock);
                        w->idle--;
                }
                j = fairq_pop(w->queue);
                if (!j)
                        break;
                w->queued--;
                w->running++;
                me->job = j;
                me->started_ms = now_ms();
                pthread_mutex_unlock(&w->lock);

                if (!me->session)
                        hsm_session_open(w->h, &me->session);
                if (me->session)
                        j->result = (j->type == MSG_SEAL ? dispatch_seal : dispatch_sign)(
                                j->ctx, me->session, &j->peer, j->id, j->payload, j->len, &j->reply);
                else
                        reply_token_error(j, "no session on the token; try again later");
                recovered = hsm_recoveries(w->h);
                if (recovered != seen_recoveries) {
                        counters_add(j->ctx->counters, COUNTERS_TOKEN_RECOVERIES, recovered - seen_recoveries);
                        log_warn("token: sessions reopened and login restored after a token fault "
                                 "(%lu time(s) since start)", recovered);
                        seen_recoveries = recovered;
                }

                pthread_mutex_lock(&w->lock);
                me->job = NULL;
                if (me->abandoned) {
                        /* Answered by the supervisor: the loop only frees it. */
                        j->abandoned = true;
                        done_push_locked(w, j);
                        w->stuck--;
                        if (w->live >= w->target || w->stopping)
                                break;
                        me->abandoned = false;  /* the pool is short: rejoin it */
                        w->live++;
                        continue;
                }
                w->running--;
                done_push_locked(w, j);
        }
        pthread_mutex_unlock(&w->lock);
        /* Before saying exited, so joining never waits on the token. */
        me->session = hsm_session_close(me->session);
        pthread_mutex_lock(&w->lock);
        me->exited = true;
        pthread_mutex_unlock(&w->lock);
        return NULL;
}

/* The token gave only got of the n sessions asked for (why: the CK_RV
 * name): say so once, with what to set. */
static void warn_short(size_t got, size_t n, const char *why)
{
        log_warn("token: opened %zu of the %zu signing sessions [token] sessions asks for: the token opens no "
                 "more (%s); signing with %zu; set [token] sessions = %zu, or raise the token's session limit",
                 got, n, why, got, got);
}

/* Lock held (or no other thread yet). */
static int worker_spawn_locked(struct workers *w, struct hsm_session *session)
{
        struct worker *me = calloc(1, sizeof(*me));

        if (!me)
                return DKIMSIGN_E_NOMEM;
        me->w = w;
        me->session = session;
        if (pthread_create(&me->thread, NULL, worker_main, me) != 0) {
                free(me);
                return DKIMSIGN_E_SYSTEM;
        }
        me->next = w->workers;
        w->workers = me;
        w->live++;
        return 0;
}

/* Join and free workers that have exited.  Lock held: they no longer take it. */
static void workers_reap_locked(struct workers *w)
{
        struct worker **pp = &w->workers;

        while (*pp) {
                struct worker *me = *pp;

                if (me->exited) {
                        *pp = me->next;
                        pthread_join(me->thread, NULL);
                        free(me);
                } else {
                        pp = &me->next;
                }
        }
}

/* Answer a request whose token call has hung, and replace its worker. */
static void abandon_locked(struct workers *w, struct worker *me, uint64_t now)
{
        struct job *ghost = calloc(1, sizeof(*ghost));
        char why[160];

        if (!ghost)
                return;  /* next round */
        snprintf(why, sizeof(why), "the token did not answer within %u ms; try again later", w->timeout_ms);
        ghost->conn = me->job->conn;
        ghost->id = me->job->id;
        ghost->queued_us = me->job->queued_us;
        /* The answer settles the connection's account; the hung job's
         * payload is bounded by the stuck workers, not by the peer. */
        ghost->charged = me->job->charged;
        me->job->charged = 0;
        buf_init(&ghost->reply, 1024);
        if (reply_token_error(ghost, why) < 0) {
                job_free(ghost);
                return;
        }
        done_push_locked(w, ghost);
        me->abandoned = true;
        w->running--;
        w->live--;
        w->stuck++;
        if (w->stuck > w->target) {
                log_err("token: a call has hung for %llu ms and %zu calls are hung; not opening more sessions",
                        (unsigned long long) (now - me->started_ms), w->stuck);
                return;
        }
        log_err("token: a call has hung for %llu ms; its request got a temporary error, starting a new session",
                (unsigned long long) (now - me->started_ms));
        if (worker_spawn_locked(w, NULL) < 0)
                log_err("token: could not start a replacement worker");
}

struct expiry {
        uint64_t now;
        unsigned timeout_ms;
};

static bool job_expired(const struct job *j, void *arg)
{
        const struct expiry *e = arg;

        return e->now - j->queued_ms > e->timeout_ms;
}

/* Requests that waited longer than the timeout: every session is hung. */
static bool expire_queue_locked(struct workers *w, uint64_t now)
{
        struct expiry e = { .now = now, .timeout_ms = w->timeout_ms };
        struct job *j = fairq_remove_if(w->queue, job_expired, &e);
        bool any = j != NULL;

        while (j) {
                struct job *next = j->next;

                w->queued--;
                reply_token_error(j, "no token session became free in time; try again later");
                done_push_locked(w, j);
                j = next;
        }
        return any;
}

static void *supervisor_main(void *p)
{
        struct workers *w = p;
        unsigned period = w->timeout_ms / 4;

        if (period < SUPERVISE_MIN_MS)
                period = SUPERVISE_MIN_MS;
        if (period > SUPERVISE_MAX_MS)
                period = SUPERVISE_MAX_MS;
        pthread_mutex_lock(&w->lock);
        while (!w->stopping) {
                /* The condition variable waits on CLOCK_REALTIME (its default). */
                struct timespec until = clock_deadline(CLOCK_REALTIME, period);
                uint64_t now;

                pthread_cond_timedwait(&w->stop_cond, &w->lock, &until);
                if (w->stopping)
                        break;
                now = now_ms();
                for (struct worker *me = w->workers; me; me = me->next)
                        if (me->job && !me->abandoned && now - me->started_ms > w->timeout_ms)
                                abandon_locked(w, me, now);
                if (w->stuck > 0)
                        expire_queue_locked(w, now);
                workers_reap_locked(w);
        }
        pthread_mutex_unlock(&w->lock);
        return NULL;
}

int workers_start(struct hsm *h, size_t n, size_t queue_max, unsigned timeout_ms, struct workers **ret)
{
        struct workers *w = calloc(1, sizeof(*w));
        size_t got = 0;
        int r = 0;

        if (!w)
                return DKIMSIGN_E_NOMEM;
        w->h = h;
        w->target = n;
        w->queue_max = queue_max;
        w->timeout_ms = timeout_ms;
        pthread_mutex_init(&w->lock, NULL);
        pthread_cond_init(&w->wake, NULL);
        pthread_cond_init(&w->stop_cond, NULL);
        w->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (w->done_fd < 0 || fairq_new(&w->queue) < 0) {
                r = DKIMSIGN_E_SYSTEM;
                goto fail;
        }
        /* The first sessions are opened here, so a token that can't give
         * them stops the start with a clear error; one that gives fewer
         * (DKIMSIGN_E_BUSY, a cap) starts with those. */
        pthread_mutex_lock(&w->lock);
        for (; r == 0 && got < n; got++) {
                struct hsm_session *session = NULL;

                r = hsm_session_open(h, &session);
                if (r == DKIMSIGN_E_BUSY && got > 0) {
                        warn_short(got, n, hsm_ckr_name(hsm_last_ckr()));
                        w->target = got;
                        r = 0;
                        break;
                }
                if (r == 0) {
                        r = worker_spawn_locked(w, session);
                        if (r < 0)
                                hsm_session_close(session);
                }
        }
        if (r == 0 && timeout_ms > 0) {
                if (pthread_create(&w->supervisor, NULL, supervisor_main, w) == 0)
                        w->supervisor_started = true;
                else
                        r = DKIMSIGN_E_SYSTEM;
        }
        pthread_mutex_unlock(&w->lock);
        if (r < 0)
                goto fail;
        *ret = w;
        return 0;
fail:
        workers_stop(w);
        return r;
}

size_t workers_stop(struct workers *w)
{
        struct job *j;
        size_t stuck;

        if (!w)
                return 0;
        pthread_mutex_lock(&w->lock);
        w->stopping = true;
        pthread_cond_broadcast(&w->wake);
        pthread_cond_broadcast(&w->stop_cond);
        pthread_mutex_unlock(&w->lock);
        if (w->supervisor_started)
                pthread_join(w->supervisor, NULL);
        /* Idle and busy workers finish the queue and return; an abandoned
         * one that is still inside the token can't be joined. */
        stuck = 0;
        for (struct worker *me = w->workers; me; me = me->next) {
                bool joinable;

                pthread_mutex_lock(&w->lock);
                joinable = !me->abandoned || me->exited;
                pthread_mutex_unlock(&w->lock);
                if (joinable)
                        pthread_join(me->thread, NULL);
                else
                        stuck++;
        }
        if (stuck > 0) {
                /* Those threads keep pointers into w: leave it (and the
                 * module) alone; the process is about to exit. */
                return stuck;
        }
        while (w->workers) {
                struct worker *me = w->workers;

                w->workers = me->next;
                free(me);
        }
        while (w->queue && (j = fairq_pop(w->queue)))
                job_free(j);
        fairq_free(w->queue);
        while ((j = w->done)) {
                w->done = j->next;
                job_free(j);
        }
        if (w->done_fd >= 0)
                close(w->done_fd);
        pthread_cond_destroy(&w->stop_cond);
        pthread_cond_destroy(&w->wake);
        pthread_mutex_destroy(&w->lock);
        free(w);
        return 0;
}

int workers_submit(struct workers *w, struct job *job)
{
        int r = 0;

        pthread_mutex_lock(&w->lock);
        if (w->stopping || w->queued >= w->queue_max) {
                r = DKIMSIGN_E_BUSY;
        } else if (fairq_push(w->queue, job->peer.uid, job) < 0) {
                r = DKIMSIGN_E_BUSY;
        } else {
                job->queued_ms = now_ms();
                w->queued++;
                /* Busy workers come back for the queue by themselves. */
                if (w->idle > 0)
                        pthread_cond_signal(&w->wake);
        }
        pthread_mutex_unlock(&w->lock);
        return r;
}

int workers_done_fd(const struct workers *w)
{
        return w->done_fd;
}

struct job *workers_take_done(struct workers *w)
{
        struct job *list, *rev = NULL;
        uint64_t n;

        if (read(w->done_fd, &n, sizeof(n)) < 0 && errno != EAGAIN) {
                /* Nothing to clear. */
        }
        pthread_mutex_lock(&w->lock);
        list = w->done;
        w->done = NULL;
        pthread_mutex_unlock(&w->lock);
        /* Oldest first, so replies leave in the order they were finished. */
        while (list) {
                struct job *next = list->next;

                list->next = rev;
                rev = list;
                list = next;
        }
        return rev;
}

/* The sum of two of w's counts (b may be NULL), read under its lock. */
static size_t locked_sum(struct workers *w, const size_t *a, const size_t *b)
{
        size_t n;

        pthread_mutex_lock(&w->lock);
        n = *a + (b ? *b : 0);
        pthread_mutex_unlock(&w->lock);
        return n;
}

size_t workers_busy(struct workers *w)
{
        return locked_sum(w, &w->running, NULL);
}

size_t workers_pending(struct workers *w)
{
        return locked_sum(w, &w->queued, &w->running);
}

void workers_token_cpu(struct workers *w, uint64_t *ret_calls, uint64_t *ret_cpu_ns)
{
        hsm_sign_cpu(w->h, ret_calls, ret_cpu_ns);
}

size_t workers_sessions(struct workers *w)
{
        return locked_sum(w, &w->target, NULL);
}

size_t workers_stuck(struct workers *w)
{
        size_t n;

        pthread_mutex_lock(&w->lock);
        n = w->stuck;
        pthread_mutex_unlock(&w->lock);
        return n;
}
