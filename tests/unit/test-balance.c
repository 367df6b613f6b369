/* SPDX-License-Identifier: MIT */
/*
 * daemon/balance: a signer process takes a new connection only while it
 * holds no more than any other, and the counts are seen across a fork.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "protocol/dkimsign-errors.h"
#include "daemon/balance.h"

static void test_fewest(void **state)
{
        static const struct {
                size_t conns[4], n, me;
                bool want;
        } cases[] = {
                { { 0 }, 1, 0, true },              /* alone */
                { { 0, 0 }, 2, 0, true },           /* a tie: both may, the first wins */
                { { 0, 0 }, 2, 1, true },
                { { 1, 0 }, 2, 0, false },          /* 8 clients at once: the next one to the other */
                { { 1, 0 }, 2, 1, true },
                { { 4, 4, 3 }, 3, 1, false },
                { { 4, 4, 3 }, 3, 2, true },
                { { 4, 4, 4 }, 3, 5, true },        /* an index out of range never blocks */
        };

        (void) state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
                assert_int_equal(balance_fewest(cases[i].conns, cases[i].n, cases[i].me), cases[i].want);
}

static void test_shared(void **state)
{
        struct balance *b = NULL;
        pid_t pid;
        int status;

        (void) state;
        assert_int_equal(balance_new(0, &b), DKIMSIGN_E_INTERNAL);
        assert_int_equal(balance_new(65, &b), DKIMSIGN_E_INTERNAL);
        assert_int_equal(balance_new(2, &b), 0);
        assert_true(balance_may_accept(b, 0));
        assert_true(balance_may_accept(b, 1));
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                balance_set(b, 1, 3);   /* the other process holds 3 */
                _exit(0);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        balance_set(b, 0, 2);
        assert_true(balance_may_accept(b, 0));
        assert_false(balance_may_accept(b, 1));
        balance_set(b, 0, 5);
        assert_false(balance_may_accept(b, 0));
        assert_true(balance_may_accept(b, 1));
        assert_true(balance_may_accept(NULL, 0));   /* alone */
        assert_null(balance_free(b));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_fewest),
                cmocka_unit_test(test_shared),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
