/* SPDX-License-Identifier: MIT */
/*
 * The shared counters.  See counters.h.
 *
 * A domain's entry is claimed once (state free -> claiming, the name
 * written, then ready, with release order) and never freed or renamed,
 * so readers and adders need no lock: they skip what is not ready.
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "daemon/counters.h"
#include "protocol/dkimsign-errors.h"
#include "protocol/msg.h"

#define DOMAIN_NAME_SIZE 254
/* A claim in progress takes nanoseconds; a claimer that died in it
 * leaves the entry claiming for ever: the adder gives up after this many
 * looks and counts the signature as "_other". */
#define CLAIM_SPINS 100000

enum { ENTRY_FREE, ENTRY_CLAIMING, ENTRY_READY };

struct hist {
        _Atomic uint64_t buckets[METRICS_BUCKETS];
        _Atomic uint64_t sum_us;
};

struct slot {
        _Atomic uint64_t fields[COUNTERS_FIELDS];
        _Atomic uint64_t messages_signed;
        _Atomic uint64_t signatures[METRICS_ALGS];
        _Atomic uint64_t refusals[METRICS_REASONS];
        struct hist request[METRICS_OUTCOMES];
        struct hist token_sign[METRICS_ALGS];
        _Atomic uint64_t connections, queue_depth, sessions, sessions_busy;
        _Atomic bool used;
} __attribute__((aligned(64)));

struct entry {
        _Atomic uint32_t state;
        char name[DOMAIN_NAME_SIZE];
        _Atomic uint64_t signatures[METRICS_ALGS];
} __attribute__((aligned(64)));

/* A key's DNS result on the board; hash 0: free. */
struct dns_post {
        _Atomic uint64_t hash;
        _Atomic int dns;
        _Atomic int64_t checked;
};

struct shared {
        size_t nslots, max_domains, cap;   /* cap: entries, a power of two over twice max_domains */
        size_t board_cap;                  /* dns posts, a power of two over twice max_keys */
        _Atomic size_t ndomains;           /* entries claimed */
        int64_t started;                   /* Unix seconds */
        struct entry other;
        /* nslots slots, then cap entries, then board_cap dns posts */
};

struct counters {
        struct shared *shm;
        size_t size;
        struct slot *mine;
};

static struct slot *slots(const struct shared *s)
{
        return (struct slot *) (void *) ((char *) s + ((sizeof(*s) + 63) & ~(size_t) 63));
}

static struct entry *entries(const struct shared *s)
{
        return (struct entry *) (void *) (slots(s) + s->nslots);
}

static struct dns_post *board(const struct shared *s)
{
        return (struct dns_post *) (void *) (entries(s) + s->cap);
}

static size_t pow2_over(size_t n)
{
        size_t cap = 16;

        while (cap < 2 * n)
                cap *= 2;
        return cap;
}

int counters_new(size_t nslots, size_t max_domains, size_t max_keys, struct counters **ret)
{
        struct counters *c = calloc(1, sizeof(*c));
        size_t cap = pow2_over(max_domains), board_cap = pow2_over(max_keys), size;
        struct shared *s;

        if (!c)
                return DKIMSIGN_E_NOMEM;
        nslots = nslots ? nslots : 1;
        size = ((sizeof(*s) + 63) & ~(size_t) 63) + nslots * sizeof(struct slot) + cap * sizeof(struct entry) +
               board_cap * sizeof(struct dns_post);
        /* Shared, so every signer process sees the others' counts; pages
         * never touched (most domain entries) cost nothing. */
        s = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (s == MAP_FAILED) {
                free(c);
                return DKIMSIGN_E_NOMEM;
        }
        /* The mapping comes zeroed: every counter 0, every entry free. */
        s->nslots = nslots;
        s->board_cap = board_cap;
        s->max_domains = max_domains;
        s->cap = cap;
        s->started = (int64_t) time(NULL);
        strcpy(s->other.name, COUNTERS_OTHER_DOMAIN);
        atomic_store(&s->other.state, ENTRY_READY);
        *c = (struct counters) { .shm = s, .size = size, .mine = &slots(s)[0] };
        atomic_store(&c->mine->used, true);
        *ret = c;
        return 0;
}

void counters_select(struct counters *c, size_t index)
{
        if (!c || index >= c->shm->nslots)
                return;
        c->mine = &slots(c->shm)[index];
        atomic_store(&c->mine->used, true);
}

struct counters *counters_free(struct counters *c)
{
        if (c) {
                munmap(c->shm, c->size);
                free(c);
        }
        return NULL;
}

static void add(_Atomic uint64_t *v, uint64_t n)
{
        atomic_fetch_add_explicit(v, n, memory_order_relaxed);
}

void counters_add(struct counters *c, enum counters_field f, uint64_t n)
{
        if (c && (unsigned) f < COUNTERS_FIELDS)
                add(&c->mine->fields[f], n);
}

static uint64_t fnv1a(const char *s)
{
        uint64_t h = 14695981039346656037ULL;

        for (; *s; s++)
                h = (h ^ (unsigned char) *s) * 1099511628211ULL;
        return h;
}

/* domain's entry: found, or claimed when there is room; else "_other". */
static struct entry *entry_for(struct shared *s, const char *domain)
{
        struct entry *e = entries(s);
        size_t mask = s->cap - 1, i = (size_t) fnv1a(domain) & mask;

        if (strlen(domain) >= DOMAIN_NAME_SIZE)
                return &s->other;
        for (size_t probes = 0; probes < s->cap; probes++, i = (i + 1) & mask) {
                uint32_t st = atomic_load_explicit(&e[i].state, memory_order_acquire);

                if (st == ENTRY_FREE) {
                        uint32_t expect = ENTRY_FREE;

                        /* A place is reserved before the entry is claimed, so
                         * processes claiming at once never pass max_domains:
                         * the snapshot shows max_domains entries, and one
                         * claimed past them would have its counts lost. */
                        if (atomic_fetch_add(&s->ndomains, 1) >= s->max_domains) {
                                atomic_fetch_sub(&s->ndomains, 1);
                                return &s->other;
                        }
                        if (!atomic_compare_exchange_strong(&e[i].state, &expect, ENTRY_CLAIMING)) {
                                atomic_fetch_sub(&s->ndomains, 1);
                                st = expect;   /* someone else claimed it: look at theirs */
                        } else {
                                strcpy(e[i].name, domain);
                                atomic_store_explicit(&e[i].state, ENTRY_READY, memory_order_release);
                                return &e[i];
                        }
                }
                for (unsigned spins = 0; st == ENTRY_CLAIMING && spins < CLAIM_SPINS; spins++)
                        st = atomic_load_explicit(&e[i].state, memory_order_acquire);
                if (st == ENTRY_CLAIMING)
                        return &s->other;
                if (strcmp(e[i].name, domain) == 0)
                        return &e[i];
        }
        return &s->other;
}

void counters_signed(struct counters *c, const char *domain, const enum metrics_alg *algs, size_t n)
{
        struct entry *e;

        if (!c)
                return;
        add(&c->mine->messages_signed, 1);
        e = entry_for(c->shm, domain);
        for (size_t i = 0; i < n; i++) {
                add(&c->mine->signatures[algs[i]], 1);
                add(&e->signatures[algs[i]], 1);
        }
}

void counters_refusal(struct counters *c, enum metrics_reason r)
{
        if (c && (unsigned) r < METRICS_REASONS)
                add(&c->mine->refusals[r], 1);
}

static void observe(struct hist *h, uint64_t us)
{
        add(&h->buckets[metrics_bucket(us)], 1);
        add(&h->sum_us, us);
}

void counters_request(struct counters *c, enum metrics_outcome o, uint64_t us)
{
        if (c && (unsigned) o < METRICS_OUTCOMES)
                observe(&c->mine->request[o], us);
}

void counters_token_sign(struct counters *c, enum metrics_alg a, uint64_t us)
{
        if (c && (unsigned) a < METRICS_ALGS)
                observe(&c->mine->token_sign[a], us);
}

void counters_gauges(struct counters *c, uint64_t connections, uint64_t queue_depth, uint64_t sessions,
                     uint64_t sessions_busy)
{
        if (!c)
                return;
        atomic_store_explicit(&c->mine->connections, connections, memory_order_relaxed);
        atomic_store_explicit(&c->mine->queue_depth, queue_depth, memory_order_relaxed);
        atomic_store_explicit(&c->mine->sessions, sessions, memory_order_relaxed);
        atomic_store_explicit(&c->mine->sessions_busy, sessions_busy, memory_order_relaxed);
}

static uint64_t get(_Atomic uint64_t *v)
{
        return atomic_load_explicit(v, memory_order_relaxed);
}

static void hist_sum(struct metrics_hist *ret, struct hist *h)
{
        for (size_t i = 0; i < METRICS_BUCKETS; i++)
                ret->buckets[i] += get(&h->buckets[i]);
        ret->sum_us += get(&h->sum_us);
}

static void slot_sum(struct metrics_snapshot *r, struct slot *s)
{
        r->connections_total += get(&s->fields[COUNTERS_CONNECTIONS]);
        r->connections_refused += get(&s->fields[COUNTERS_CONNECTIONS_REFUSED]);
        r->reloads += get(&s->fields[COUNTERS_RELOADS]);
        r->reload_failures += get(&s->fields[COUNTERS_RELOAD_FAILURES]);
        r->token_faults += get(&s->fields[COUNTERS_TOKEN_FAULTS]);
        r->token_recoveries += get(&s->fields[COUNTERS_TOKEN_RECOVERIES]);
        r->messages_signed += get(&s->messages_signed);
        for (size_t a = 0; a < METRICS_ALGS; a++) {
                r->signatures[a] += get(&s->signatures[a]);
                hist_sum(&r->token_sign[a], &s->token_sign[a]);
        }
        for (size_t i = 0; i < METRICS_REASONS; i++)
                r->refusals[i] += get(&s->refusals[i]);
        for (size_t o = 0; o < METRICS_OUTCOMES; o++)
                hist_sum(&r->request[o], &s->request[o]);
        r->connections += get(&s->connections);
        r->queue_depth += get(&s->queue_depth);
        r->sessions += get(&s->sessions);
        r->sessions_busy += get(&s->sessions_busy);
        r->processes++;
}

static int domain_cmp(const void *a, const void *b)
{
        return strcmp(((const struct metrics_domain *) a)->name, ((const struct metrics_domain *) b)->name);
}

int counters_snapshot(const struct counters *c, struct metrics_snapshot *ret, struct metrics_domain **ret_domains,
                      size_t *ret_ndomains)
{
        struct shared *s = c->shm;
        struct metrics_domain *d = calloc(s->max_domains + 1, sizeof(*d));
        struct entry *e = entries(s);
        size_t n = 0;

        if (!d)
                return DKIMSIGN_E_NOMEM;
        *ret = (struct metrics_snapshot) { .start_time = s->started };
        for (size_t i = 0; i < s->nslots; i++)
                if (atomic_load(&slots(s)[i].used))
                        slot_sum(ret, &slots(s)[i]);
        for (size_t i = 0; i < s->cap && n < s->max_domains; i++) {
                if (atomic_load_explicit(&e[i].state, memory_order_acquire) != ENTRY_READY)
                        continue;
                d[n].name = e[i].name;
                for (size_t a = 0; a < METRICS_ALGS; a++)
                        d[n].signatures[a] = get(&e[i].signatures[a]);
                n++;
        }
        qsort(d, n, sizeof(*d), domain_cmp);
        d[n].name = s->other.name;
        for (size_t a = 0; a < METRICS_ALGS; a++)
                d[n].signatures[a] = get(&s->other.signatures[a]);
        *ret_domains = d;
        *ret_ndomains = n + 1;
        return 0;
}

/* Never 0, which marks a free post. */
static uint64_t label_hash(const char *label)
{
        uint64_t h = fnv1a(label);

        return h ? h : 1;
}

void counters_dns_put(struct counters *c, const char *label, int dns, int64_t checked)
{
        struct dns_post *b;
        uint64_t h;
        size_t mask;

        if (!c)
                return;
        b = board(c->shm);
        h = label_hash(label);
        mask = c->shm->board_cap - 1;
        for (size_t i = (size_t) h & mask, probes = 0; probes < c->shm->board_cap; probes++, i = (i + 1) & mask) {
                uint64_t seen = atomic_load(&b[i].hash);

                if (seen == 0 && atomic_compare_exchange_strong(&b[i].hash, &seen, h))
                        seen = h;
                if (seen != h)
                        continue;
                atomic_store_explicit(&b[i].dns, dns, memory_order_relaxed);
                atomic_store_explicit(&b[i].checked, checked, memory_order_relaxed);
                return;
        }
}

bool counters_dns_get(const struct counters *c, const char *label, int *ret_dns, int64_t *ret_checked)
{
        struct dns_post *b = board(c->shm);
        uint64_t h = label_hash(label);
        size_t mask = c->shm->board_cap - 1;

        for (size_t i = (size_t) h & mask, probes = 0; probes < c->shm->board_cap; probes++, i = (i + 1) & mask) {
                uint64_t seen = atomic_load(&b[i].hash);

                if (seen == 0)
                        return false;
                if (seen == h) {
                        *ret_dns = atomic_load_explicit(&b[i].dns, memory_order_relaxed);
                        *ret_checked = atomic_load_explicit(&b[i].checked, memory_order_relaxed);
                        return true;
                }
        }
        return false;
}

enum metrics_reason counters_reason(int r)
{
        if (r == DKIMSIGN_E_QUOTA)
                return METRICS_R_QUOTA;
        return (enum metrics_reason) (wire_status_from_err(r) - WIRE_BAD_REQUEST);
}
