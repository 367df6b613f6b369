/* SPDX-License-Identifier: MIT */
/*
 * Connections spread over the signer processes.  See balance.h.
 */
#include <sys/mman.h>

#include "protocol/dkimsign-errors.h"
#include "daemon/balance.h"

#define BALANCE_MAX 64

struct balance {
        size_t n;
        size_t conns[BALANCE_MAX];   /* atomic: each process writes its own */
};

int balance_new(size_t n, struct balance **ret)
{
        struct balance *b;

        if (n < 1 || n > BALANCE_MAX)
                return DKIMSIGN_E_INTERNAL;
        b = mmap(NULL, sizeof(*b), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (b == MAP_FAILED)
                return DKIMSIGN_E_NOMEM;
        b->n = n;   /* the mapping comes zeroed */
        *ret = b;
        return 0;
}

struct balance *balance_free(struct balance *b)
{
        if (b)
                munmap(b, sizeof(*b));
        return NULL;
}

void balance_set(struct balance *b, size_t me, size_t conns)
{
        if (b && me < b->n)
                __atomic_store_n(&b->conns[me], conns, __ATOMIC_RELAXED);
}

bool balance_fewest(const size_t *conns, size_t n, size_t me)
{
        if (me >= n)
                return true;
        for (size_t i = 0; i < n; i++)
                if (conns[i] < conns[me])
                        return false;
        return true;
}

bool balance_may_accept(const struct balance *b, size_t me)
{
        size_t conns[BALANCE_MAX];

        if (!b)
                return true;
        for (size_t i = 0; i < b->n; i++)
                conns[i] = __atomic_load_n(&b->conns[i], __ATOMIC_RELAXED);
        return balance_fewest(conns, b->n, me);
}
