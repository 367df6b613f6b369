/* SPDX-License-Identifier: MIT */
/*
 * daemon/fairq: uids served in turn, each in its own order; removal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "daemon/fairq.h"
#include "daemon/workers.h"

static struct job *job(uint32_t id, uid_t uid)
{
        struct job *j = calloc(1, sizeof(*j));

        assert_non_null(j);
        j->id = id;
        j->peer.uid = uid;
        return j;
}

static uint32_t pop_id(struct fairq *q)
{
        struct job *j = fairq_pop(q);
        uint32_t id;

        assert_non_null(j);
        id = j->id;
        free(j);
        return id;
}

/* A flood of uid 1 queued first; uid 2's requests come out every other. */
static void test_turns(void **state)
{
        struct fairq *q = NULL;

        (void) state;
        assert_int_equal(fairq_new(&q), 0);
        for (uint32_t i = 0; i < 100; i++)
                assert_int_equal(fairq_push(q, 1, job(100 + i, 1)), 0);
        assert_int_equal(fairq_push(q, 2, job(200, 2)), 0);
        assert_int_equal(fairq_push(q, 2, job(201, 2)), 0);
        assert_int_equal(fairq_push(q, 3, job(300, 3)), 0);
        assert_int_equal(fairq_len(q), 103);
        assert_int_equal(pop_id(q), 100);
        assert_int_equal(pop_id(q), 200);
        assert_int_equal(pop_id(q), 300);
        assert_int_equal(pop_id(q), 101);
        assert_int_equal(pop_id(q), 201);
        /* uid 3 left when empty; it comes back at the end of the ring. */
        assert_int_equal(fairq_push(q, 3, job(301, 3)), 0);
        assert_int_equal(pop_id(q), 102);
        assert_int_equal(pop_id(q), 301);
        for (uint32_t i = 3; i < 100; i++)
                assert_int_equal(pop_id(q), 100 + i);
        assert_null(fairq_pop(q));
        assert_int_equal(fairq_len(q), 0);
        fairq_free(q);
}

static bool even(const struct job *j, void *arg)
{
        (void) arg;
        return j->id % 2 == 0;
}

static void test_remove_if(void **state)
{
        struct fairq *q = NULL;
        struct job *out;
        size_t n = 0;

        (void) state;
        assert_int_equal(fairq_new(&q), 0);
        for (uint32_t i = 0; i < 6; i++)
                assert_int_equal(fairq_push(q, i < 3 ? 7 : 8, job(i, i < 3 ? 7 : 8)), 0);
        out = fairq_remove_if(q, even, NULL);
        while (out) {
                struct job *next = out->next;

                assert_true(out->id % 2 == 0);
                free(out);
                out = next;
                n++;
        }
        assert_int_equal(n, 3);
        assert_int_equal(fairq_len(q), 3);
        /* Queued ones go on in turn, and the tails stayed right. */
        assert_int_equal(fairq_push(q, 7, job(9, 7)), 0);
        assert_int_equal(pop_id(q), 1);
        assert_int_equal(pop_id(q), 3);
        assert_int_equal(pop_id(q), 9);
        assert_int_equal(pop_id(q), 5);
        assert_null(fairq_pop(q));
        fairq_free(q);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_turns),
                cmocka_unit_test(test_remove_if),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
