/* SPDX-License-Identifier: MIT */
/*
 * Worker pool.  See workers.h.  One mutex guards both queues; the hot path
 * holds it only to link or unlink a job.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "dkimsign-errors.h"
#include "log.h"
#include "workers.h"

struct workers {
        pthread_mutex_t lock;
        pthread_cond_t wake;
        struct job *head, *tail;     /* waiting */
        struct job *done;            /* finished, newest first */
        size_t queued, running, queue_max;
        int done_fd;
        int stopping;
        size_t nthreads, nsessions;
        pthread_t *threads;
        struct hsm_session **sessions;
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

struct worker_arg {
        struct workers *w;
        size_t index;
};

static void *worker_main(void *p)
{
        struct worker_arg *arg = p;
        struct workers *w = arg->w;
        struct hsm_session *session = w->sessions[arg->index];
        uint64_t one = 1;

        free(arg);
        pthread_mutex_lock(&w->lock);
        for (;;) {
                struct job *j;

                while (!w->head && !w->stopping)
                        pthread_cond_wait(&w->wake, &w->lock);
                if (!w->head)
                        break;
                j = w->head;
                w->head = j->next;
                if (!w->head)
                        w->tail = NULL;
                w->queued--;
                w->running++;
                pthread_mutex_unlock(&w->lock);

                j->result = dispatch_sign(j->ctx, session, &j->peer, j->id, j->payload, j->len, &j->reply);

                pthread_mutex_lock(&w->lock);
                w->running--;
                j->next = w->done;
                w->done = j;
                if (write(w->done_fd, &one, sizeof(one)) < 0) {
                        /* The counter saturating still leaves the fd readable. */
                }
        }
        pthread_mutex_unlock(&w->lock);
        return NULL;
}

int workers_start(struct hsm *h, size_t n, size_t queue_max, struct workers **ret)
{
        struct workers *w = calloc(1, sizeof(*w));
        int r = 0;

        if (!w)
                return DKIMSIGN_E_NOMEM;
        w->queue_max = queue_max;
        pthread_mutex_init(&w->lock, NULL);
        pthread_cond_init(&w->wake, NULL);
        w->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        w->threads = calloc(n, sizeof(*w->threads));
        w->sessions = calloc(n, sizeof(*w->sessions));
        if (w->done_fd < 0 || !w->threads || !w->sessions) {
                r = w->done_fd < 0 ? DKIMSIGN_E_SYSTEM : DKIMSIGN_E_NOMEM;
                goto fail;
        }
        for (size_t i = 0; i < n; i++) {
                r = hsm_session_open(h, &w->sessions[i]);
                if (r < 0)
                        goto fail;
                w->nsessions++;
        }
        for (; w->nthreads < n; w->nthreads++) {
                struct worker_arg *arg = malloc(sizeof(*arg));

                if (!arg) {
                        r = DKIMSIGN_E_NOMEM;
                        goto fail;
                }
                *arg = (struct worker_arg) { .w = w, .index = w->nthreads };
                if (pthread_create(&w->threads[w->nthreads], NULL, worker_main, arg) != 0) {
                        free(arg);
                        r = DKIMSIGN_E_SYSTEM;
                        goto fail;
                }
        }
        *ret = w;
        return 0;
fail:
        workers_stop(w);
        return r;
}

struct workers *workers_stop(struct workers *w)
{
        struct job *j;

        if (!w)
                return NULL;
        pthread_mutex_lock(&w->lock);
        w->stopping = 1;
        pthread_cond_broadcast(&w->wake);
        pthread_mutex_unlock(&w->lock);
        for (size_t i = 0; i < w->nthreads; i++)
                pthread_join(w->threads[i], NULL);
        /* Sessions opened for threads that never started are closed too. */
        for (size_t i = 0; i < w->nsessions; i++)
                w->sessions[i] = hsm_session_close(w->sessions[i]);
        while ((j = w->head)) {
                w->head = j->next;
                job_free(j);
        }
        while ((j = w->done)) {
                w->done = j->next;
                job_free(j);
        }
        if (w->done_fd >= 0)
                close(w->done_fd);
        pthread_cond_destroy(&w->wake);
        pthread_mutex_destroy(&w->lock);
        free(w->threads);
        free(w->sessions);
        free(w);
        return NULL;
}

int workers_submit(struct workers *w, struct job *job)
{
        int r = 0;

        pthread_mutex_lock(&w->lock);
        if (w->stopping || w->queued >= w->queue_max) {
                r = DKIMSIGN_E_BUSY;
        } else {
                job->next = NULL;
                if (w->tail)
                        w->tail->next = job;
                else
                        w->head = job;
                w->tail = job;
                w->queued++;
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

size_t workers_pending(struct workers *w)
{
        size_t n;

        pthread_mutex_lock(&w->lock);
        n = w->queued + w->running;
        pthread_mutex_unlock(&w->lock);
        return n;
}
