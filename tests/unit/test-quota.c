/* SPDX-License-Identifier: MIT */
/*
 * daemon/quota: per uid and per domain, per minute and per day, given
 * back, and shared with a forked process.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "protocol/dkimsign-errors.h"
#include "daemon/quota.h"

#define T0 1764892800   /* 2025-12-05T00:00:00Z: a minute and a day begin */

static int take(struct quota_table *t, int64_t now, uid_t uid, const struct quota_limits *ul, const char *dom,
                const struct quota_limits *dl, struct quota_refusal *over)
{
        int full = -1;
        int r = quota_take(t, now, uid, ul, dom, dl, over, &full);

        assert_int_equal(full, 0);
        return r;
}

static void test_minute_and_day(void **state)
{
        struct quota_limits ul = { .per_minute = 3, .per_day = 5 }, none = { 0 };
        struct quota_refusal over;
        struct quota_table *t = NULL;

        (void) state;
        assert_int_equal(quota_table_new(&t), 0);
        for (int i = 0; i < 3; i++)
                assert_int_equal(take(t, T0 + i, 1000, &ul, "a.example", &none, &over), 0);
        assert_int_equal(take(t, T0 + 10, 1000, &ul, "a.example", &none, &over), DKIMSIGN_E_QUOTA);
        assert_string_equal(over.who, "uid");
        assert_string_equal(over.window, "minute");
        assert_int_equal(over.limit, 3);
        /* Another uid has its own. */
        assert_int_equal(take(t, T0 + 10, 1001, &ul, "a.example", &none, &over), 0);
        /* Given back: room again. */
        quota_give_back(t, T0 + 20, 1001, &ul, "a.example", &none);
        /* The next minute: two more, then the day is spent. */
        assert_int_equal(take(t, T0 + 60, 1000, &ul, "a.example", &none, &over), 0);
        assert_int_equal(take(t, T0 + 61, 1000, &ul, "a.example", &none, &over), 0);
        assert_int_equal(take(t, T0 + 62, 1000, &ul, "a.example", &none, &over), DKIMSIGN_E_QUOTA);
        assert_string_equal(over.window, "day");
        assert_int_equal(over.limit, 5);
        /* The next UTC day. */
        assert_int_equal(take(t, T0 + 86400, 1000, &ul, "a.example", &none, &over), 0);
        quota_table_free(t);
}

static void test_domain(void **state)
{
        struct quota_limits dl = { .per_minute = 2 }, ul = { .per_minute = 100 }, none = { 0 };
        struct quota_refusal over;
        struct quota_table *t = NULL;

        (void) state;
        assert_int_equal(quota_table_new(&t), 0);
        assert_int_equal(take(t, T0, 1, &none, "b.example", &dl, &over), 0);
        assert_int_equal(take(t, T0, 2, &none, "b.example", &dl, &over), 0);
        /* Any uid: the domain is spent; nothing is counted for the uid either. */
        assert_int_equal(take(t, T0, 3, &ul, "b.example", &dl, &over), DKIMSIGN_E_QUOTA);
        assert_string_equal(over.who, "domain");
        assert_int_equal(take(t, T0, 3, &ul, "c.example", &dl, &over), 0);
        /* No limits: never counted, never refused. */
        for (int i = 0; i < 1000; i++)
                assert_int_equal(take(t, T0, 3, &none, "b.example", &none, &over), 0);
        quota_table_free(t);
}

/* A signer process forked after the table was made counts in the same one. */
static void test_shared_with_fork(void **state)
{
        struct quota_limits ul = { .per_minute = 4 }, none = { 0 };
        struct quota_refusal over;
        struct quota_table *t = NULL;
        int status = -1, full;
        pid_t pid;

        (void) state;
        assert_int_equal(quota_table_new(&t), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0)
                _exit(quota_take(t, T0, 7, &ul, "x.example", &none, &over, &full) == 0 &&
                      quota_take(t, T0, 7, &ul, "x.example", &none, &over, &full) == 0 &&
                      quota_take(t, T0, 7, &ul, "x.example", &none, &over, &full) == 0 ? 0 : 1);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        assert_int_equal(take(t, T0, 7, &ul, "x.example", &none, &over), 0);
        assert_int_equal(take(t, T0, 7, &ul, "x.example", &none, &over), DKIMSIGN_E_QUOTA);
        quota_table_free(t);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_minute_and_day),
                cmocka_unit_test(test_domain),
                cmocka_unit_test(test_shared_with_fork),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
