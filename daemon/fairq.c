/* SPDX-License-Identifier: MIT */
/*
 * Fair queue.  See fairq.h.  The uids with queued jobs form a ring in the
 * order they are served; a uid's queue is found by a small hash table
 * (chained), made when its first job arrives and freed when its last
 * leaves, so an idle uid costs nothing.
 */
#include <stdint.h>
#include <stdlib.h>

#include "protocol/dkimsign-errors.h"
#include "daemon/workers.h"
#include "daemon/fairq.h"

#define BUCKETS 256   /* a power of two */

struct uidq {
        uid_t uid;
        struct job *head, *tail;
        struct uidq *chain;            /* hash bucket */
        struct uidq *ring_next;        /* the next uid to serve */
};

struct fairq {
        struct uidq *buckets[BUCKETS];
        struct uidq *turn;             /* whose turn it is; the ring's first */
        struct uidq *last;             /* the ring's last: new uids join behind it */
        size_t len;
};

static size_t bucket_of(uid_t uid)
{
        return ((uint32_t) uid * 2654435761u) >> (32 - 8);
}

int fairq_new(struct fairq **ret)
{
        *ret = calloc(1, sizeof(**ret));
        return *ret ? 0 : DKIMSIGN_E_NOMEM;
}

struct fairq *fairq_free(struct fairq *q)
{
        if (!q)
                return NULL;
        for (size_t i = 0; i < BUCKETS; i++)
                while (q->buckets[i]) {
                        struct uidq *next = q->buckets[i]->chain;

                        free(q->buckets[i]);
                        q->buckets[i] = next;
                }
        free(q);
        return NULL;
}

int fairq_push(struct fairq *q, uid_t uid, struct job *job)
{
        struct uidq **b = &q->buckets[bucket_of(uid)], *u;

        for (u = *b; u && u->uid != uid; u = u->chain)
                ;
        if (!u) {
                u = calloc(1, sizeof(*u));
                if (!u)
                        return DKIMSIGN_E_NOMEM;
                u->uid = uid;
                u->chain = *b;
                *b = u;
                /* Join the ring last: the uids already waiting go first. */
                if (q->last)
                        q->last->ring_next = u;
                else
                        q->turn = u;
                q->last = u;
        }
        job->next = NULL;
        if (u->tail)
                u->tail->next = job;
        else
                u->head = job;
        u->tail = job;
        q->len++;
        return 0;
}

/* u's queue is empty: out of the ring (prev is the uid before it, NULL
 * when u is first) and out of the table. */
static void uidq_drop(struct fairq *q, struct uidq *prev, struct uidq *u)
{
        struct uidq **p;

        if (prev)
                prev->ring_next = u->ring_next;
        else
                q->turn = u->ring_next;
        if (q->last == u)
                q->last = prev;
        for (p = &q->buckets[bucket_of(u->uid)]; *p != u; p = &(*p)->chain)
                ;
        *p = u->chain;
        free(u);
}

struct job *fairq_pop(struct fairq *q)
{
        struct uidq *u = q->turn;
        struct job *j;

        if (!u)
                return NULL;
        j = u->head;
        u->head = j->next;
        if (!u->head)
                u->tail = NULL;
        j->next = NULL;
        q->len--;
        if (!u->head) {
                uidq_drop(q, NULL, u);
        } else if (u->ring_next) {
                /* Served: to the back of the ring. */
                q->turn = u->ring_next;
                u->ring_next = NULL;
                q->last->ring_next = u;
                q->last = u;
        }
        return j;
}

struct job *fairq_remove_if(struct fairq *q, bool (*drop)(const struct job *job, void *arg), void *arg)
{
        struct job *out = NULL, **out_tail = &out;
        struct uidq *prev = NULL, *u = q->turn;

        while (u) {
                struct uidq *next = u->ring_next;
                struct job **pp = &u->head, *last = NULL;

                while (*pp) {
                        struct job *j = *pp;

                        if (!drop(j, arg)) {
                                last = j;
                                pp = &j->next;
                                continue;
                        }
                        *pp = j->next;
                        j->next = NULL;
                        *out_tail = j;
                        out_tail = &j->next;
                        q->len--;
                }
                u->tail = last;
                if (!u->head)
                        uidq_drop(q, prev, u);
                else
                        prev = u;
                u = next;
        }
        return out;
}

size_t fairq_len(const struct fairq *q)
{
        return q->len;
}
