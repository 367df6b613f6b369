/* SPDX-License-Identifier: MIT */
/*
 * Signing quotas.  See quota.h.
 *
 * A counter is found by a 64-bit key (a uid, or a domain's FNV-1a hash,
 * with its kind in the top bit) with linear probing over at most
 * PROBE_MAX slots.  Domains are the operator's (d= comes from the key
 * table, never from the peer), so a collision can't be steered.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>

#include "protocol/dkimsign-errors.h"
#include "daemon/quota.h"

#define PROBE_MAX 64
#define KIND_DOMAIN (UINT64_C(1) << 63)

struct counter {
        uint64_t key;            /* 0: never used */
        int64_t minute, day;     /* the windows the counts are for */
        uint64_t in_minute, in_day;
};

struct quota_table {
        pthread_mutex_t lock;    /* process-shared, robust */
        struct counter slots[QUOTA_SLOTS];
};

int quota_table_new(struct quota_table **ret)
{
        pthread_mutexattr_t a;
        struct quota_table *t;

        t = mmap(NULL, sizeof(*t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (t == MAP_FAILED)
                return DKIMSIGN_E_NOMEM;
        pthread_mutexattr_init(&a);
        pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
        pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
        pthread_mutex_init(&t->lock, &a);
        pthread_mutexattr_destroy(&a);
        *ret = t;
        return 0;
}

struct quota_table *quota_table_free(struct quota_table *t)
{
        if (t)
                munmap(t, sizeof(*t));
        return NULL;
}

static void table_lock(struct quota_table *t)
{
        /* Its holder died: the counts are still sound (each update is a
         * few stores of its own), so take it on. */
        if (pthread_mutex_lock(&t->lock) == EOWNERDEAD)
                pthread_mutex_consistent(&t->lock);
}

static uint64_t domain_key(const char *domain)
{
        uint64_t h = UINT64_C(14695981039346656037);

        for (const unsigned char *p = (const unsigned char *) domain; *p; p++) {
                h ^= *p;
                h *= UINT64_C(1099511628211);
        }
        return h | KIND_DOMAIN;
}

static uint64_t uid_key(uid_t uid)
{
        return (uint64_t) uid + 1;   /* never 0, never a domain's */
}

/* key's counter, rolled to now's windows; made in a free slot (never
 * used, or its day over) when it has none.  NULL when none is free. */
static struct counter *counter_for(struct quota_table *t, uint64_t key, int64_t now)
{
        size_t start = (size_t) (key * UINT64_C(11400714819323198485) >> 50) % QUOTA_SLOTS;
        int64_t minute = now / 60, day = now / 86400;
        struct counter *free_slot = NULL;

        for (size_t i = 0; i < PROBE_MAX; i++) {
                struct counter *c = &t->slots[(start + i) % QUOTA_SLOTS];

                if (c->key == key) {
                        if (c->minute != minute) {
                                c->minute = minute;
                                c->in_minute = 0;
                        }
                        if (c->day != day) {
                                c->day = day;
                                c->in_day = 0;
                        }
                        return c;
                }
                if (!free_slot && (c->key == 0 || c->day != day))
                        free_slot = c;
        }
        if (free_slot)
                *free_slot = (struct counter) { .key = key, .minute = minute, .day = day };
        return free_slot;
}

static bool limited(const struct quota_limits *l)
{
        return l && (l->per_minute || l->per_day);
}

/* Whether c may count one more; else what it is over. */
static bool room(const struct counter *c, const struct quota_limits *l, const char *who, struct quota_refusal *ret)
{
        if (l->per_minute && c->in_minute >= l->per_minute) {
                *ret = (struct quota_refusal) { .who = who, .window = "minute", .limit = l->per_minute };
                return false;
        }
        if (l->per_day && c->in_day >= l->per_day) {
                *ret = (struct quota_refusal) { .who = who, .window = "day", .limit = l->per_day };
                return false;
        }
        return true;
}

int quota_take(struct quota_table *t, int64_t now, uid_t uid, const struct quota_limits *uid_limits,
               const char *domain, const struct quota_limits *domain_limits, struct quota_refusal *ret,
               int *ret_full)
{
        struct counter *u = NULL, *d = NULL;
        int r = 0;

        *ret_full = 0;
        if (!t || (!limited(uid_limits) && !limited(domain_limits)))
                return 0;
        table_lock(t);
        if (limited(uid_limits) && !(u = counter_for(t, uid_key(uid), now)))
                *ret_full = 1;
        if (limited(domain_limits) && !(d = counter_for(t, domain_key(domain), now)))
                *ret_full = 1;
        if ((u && !room(u, uid_limits, "uid", ret)) || (d && !room(d, domain_limits, "domain", ret)))
                r = DKIMSIGN_E_QUOTA;
        if (r == 0) {
                if (u) {
                        u->in_minute++;
                        u->in_day++;
                }
                if (d) {
                        d->in_minute++;
                        d->in_day++;
                }
        }
        pthread_mutex_unlock(&t->lock);
        return r;
}

static void give_back_one(struct quota_table *t, uint64_t key, int64_t now)
{
        struct counter *c = counter_for(t, key, now);

        if (c && c->in_minute)
                c->in_minute--;
        if (c && c->in_day)
                c->in_day--;
}

void quota_give_back(struct quota_table *t, int64_t now, uid_t uid, const struct quota_limits *uid_limits,
                     const char *domain, const struct quota_limits *domain_limits)
{
        if (!t || (!limited(uid_limits) && !limited(domain_limits)))
                return;
        table_lock(t);
        if (limited(uid_limits))
                give_back_one(t, uid_key(uid), now);
        if (limited(domain_limits))
                give_back_one(t, domain_key(domain), now);
        pthread_mutex_unlock(&t->lock);
}
