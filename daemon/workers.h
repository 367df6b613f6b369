/* SPDX-License-Identifier: MIT */
/*
 * The worker pool: N threads, each with its own token session, taking SIGN
 * jobs from one bounded queue and handing finished jobs back to the event
 * loop through an eventfd.  The loop never waits for the token.
 */
#ifndef DAEMON_WORKERS_H
#define DAEMON_WORKERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/buf.h"
#include "daemon/dispatch.h"

struct job {
        struct job *next;
        void *conn;              /* the event loop's connection (opaque here) */
        struct sign_ctx *ctx;    /* the generation the request started in (a reference) */
        uint32_t id;
        uint8_t type;            /* MSG_SIGN or MSG_SEAL */
        struct peer peer;
        uint8_t *payload;        /* owned copy of the request */
        size_t len;
        size_t charged;          /* octets its connection's uid is charged for it (server.c) */
        struct buf reply;        /* filled by the worker */
        int result;
        uint64_t queued_ms;      /* when it was queued (monotonic) */
        uint64_t queued_us;      /* the same in microseconds, for the metrics (server.c sets it) */
        bool abandoned;          /* its token call hung and it was answered
                                    already: the loop frees it, sends nothing */
};

struct workers;

/*
 * Start n threads, each opening a session on h.  A token call that takes
 * longer than timeout_ms (0: no limit) has its request answered with a
 * temporary error at once, and its worker is replaced by one with a new
 * session, so a hung token never holds a request or the pool for long.
 * A token that opens fewer than n sessions (but one at least) starts the
 * pool with those, logging a warning; DKIMSIGN_E_BUSY: not even one.
 */
int workers_start(struct hsm *h, size_t n, size_t queue_max, unsigned timeout_ms, struct workers **ret);
/* Stop taking jobs, finish the queued ones, join the threads, close the
 * sessions, free everything.  Returns how many threads are still inside a
 * hung token call: then w and the token must be left alone (the process
 * is exiting).  Accepts NULL. */
size_t workers_stop(struct workers *w);
/* Workers abandoned inside a token call that has not returned yet. */
size_t workers_stuck(struct workers *w);
/* The pool's size: the sessions the token gave at the start. */
size_t workers_sessions(struct workers *w);

/* Queue a job (ownership passes to the pool until it comes back done).
 * DKIMSIGN_E_BUSY when the queue is full: the caller keeps the job. */
int workers_submit(struct workers *w, struct job *job);
/* The fd that becomes readable when jobs are done. */
int workers_done_fd(const struct workers *w);
/* Take every finished job (a list linked by next); clears the eventfd. */
struct job *workers_take_done(struct workers *w);
/* Workers inside a request now (sessions busy). */
size_t workers_busy(struct workers *w);
/* Jobs queued or running. */
size_t workers_pending(struct workers *w);

/* The token's signing calls made by this process's workers and the CPU
 * time (ns) spent inside them (hsm_sign_cpu), for STATUS. */
void workers_token_cpu(struct workers *w, uint64_t *ret_calls, uint64_t *ret_cpu_ns);

struct job *job_free(struct job *j);

#endif
