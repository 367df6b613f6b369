/* SPDX-License-Identifier: MIT */
/*
 * Peer accounts.  See accounts.h.  A chained hash table of a fixed number
 * of buckets: at most [limits] max_connections uids hold anything at
 * once, so chains stay short.
 */
#include <stdint.h>
#include <stdlib.h>

#include "protocol/dkimsign-errors.h"
#include "daemon/accounts.h"

#define BUCKETS 1024   /* a power of two */

struct accounts {
        struct account *buckets[BUCKETS];
        size_t count;
};

static size_t bucket_of(uid_t uid)
{
        /* Knuth's multiplicative hash: uids are often consecutive. */
        return ((uint32_t) uid * 2654435761u) >> (32 - 10);
}

int accounts_new(struct accounts **ret)
{
        *ret = calloc(1, sizeof(**ret));
        return *ret ? 0 : DKIMSIGN_E_NOMEM;
}

struct accounts *accounts_free(struct accounts *a)
{
        if (!a)
                return NULL;
        for (size_t i = 0; i < BUCKETS; i++)
                while (a->buckets[i]) {
                        struct account *next = a->buckets[i]->next;

                        free(a->buckets[i]);
                        a->buckets[i] = next;
                }
        free(a);
        return NULL;
}

struct account *accounts_get(struct accounts *a, uid_t uid)
{
        size_t b = bucket_of(uid);
        struct account *acct;

        for (acct = a->buckets[b]; acct; acct = acct->next)
                if (acct->uid == uid)
                        return acct;
        acct = calloc(1, sizeof(*acct));
        if (!acct)
                return NULL;
        acct->uid = uid;
        acct->next = a->buckets[b];
        a->buckets[b] = acct;
        a->count++;
        return acct;
}

void accounts_release(struct accounts *a, struct account *acct)
{
        struct account **p;

        if (!acct || acct->conns || acct->inflight || acct->buffered)
                return;
        for (p = &a->buckets[bucket_of(acct->uid)]; *p; p = &(*p)->next)
                if (*p == acct) {
                        *p = acct->next;
                        free(acct);
                        a->count--;
                        return;
                }
}

size_t accounts_count(const struct accounts *a)
{
        return a->count;
}
