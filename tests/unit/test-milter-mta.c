/* SPDX-License-Identifier: MIT */
/*
 * client/milter-mta: what an MTA changes after dkimsign-milter signed
 * (issue 20).  The profiles; which fields are address fields; a table of
 * address lists with and without a name Sendmail would qualify; line
 * lengths and 8-bit octets of a stream fed in pieces.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "client/milter-mta.h"

static void test_profiles(void **state)
{
        struct milter_mta m;

        (void) state;
        assert_int_equal(milter_mta_profile("postfix", &m), 0);
        assert_int_equal(m.line_limit, 998);
        assert_true(m.converts_8bit && !m.labels_8bit && !m.adds_date_message_id && !m.qualifies_addresses);
        assert_int_equal(milter_mta_profile("sendmail", &m), 0);
        assert_int_equal(m.line_limit, 990);
        assert_true(m.converts_8bit && m.labels_8bit && m.adds_date_message_id && m.qualifies_addresses);
        assert_int_equal(milter_mta_profile("other", &m), 0);
        assert_int_equal(m.line_limit, 0);
        assert_int_equal(milter_mta_profile("exim", &m), -1);
        assert_int_equal(milter_mta_profile("Postfix", &m), -1);
}

static void test_address_fields(void **state)
{
        (void) state;
        assert_true(milter_mta_address_field("To"));
        assert_true(milter_mta_address_field("cc"));
        assert_true(milter_mta_address_field("Resent-From"));
        assert_true(milter_mta_address_field("REPLY-TO"));
        assert_false(milter_mta_address_field("Subject"));
        assert_false(milter_mta_address_field("Resent-Date"));
        assert_false(milter_mta_address_field("Resent-"));
}

static const struct { const char *value; bool unqualified; } lists[] = {
        { " bob@local.test", false },
        { " Bob <bob@local.test>", false },
        { " bob", true },
        { " bob, carol@local.test,\r\n dave", true },
        { " carol@local.test,\r\n dave", true },
        { " dave", true },
        { " Frank <frank>", true },
        { " \"Smith, John\" <john@x.example>, Ann <ann@y.example>", false },
        { " \"bob\"", true },
        { " (comment, with @) bob", true },
        { " bob@x.example (Bob, the (nested) one)", false },
        { " undisclosed-recipients:;", false },
        { " team: a@x.example, b@y.example;", false },
        { " team: a@x.example, b;", true },
        { " <>", false },
        { "", false },
        { " ,, ", false },
        { " \"a\\\"b\"@x.example", false },
        { " Bøb <bob@local.test>", false },
        { " \"unterminated", true },
        { " (unterminated comment", false },
        { " <bob", true },
        /* Sendmail reads a backslash as quoting the next octet outside
         * quoted strings too: bob\@x is a local part without a domain. */
        { " bob\\@x.example", true },
        { " Bob <bob\\@x.example>", true },
        { " \\(bob@x.example", false },
};

static void test_unqualified(void **state)
{
        (void) state;
        for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
                bool got = milter_mta_unqualified(lists[i].value, strlen(lists[i].value));

                if (got != lists[i].unqualified)
                        fail_msg("%s: %d, not %d", lists[i].value, got, lists[i].unqualified);
        }
        /* The length bounds the scan: "bob@x" cut before its '@'. */
        assert_true(milter_mta_unqualified("bob@x.example", 3));
        assert_false(milter_mta_unqualified("bob@x.example", 13));
}

static void test_scan(void **state)
{
        struct milter_scan s = { 0 };
        char line[2000];

        (void) state;
        milter_scan_feed(&s, "short\r\n", 7);
        assert_int_equal(milter_scan_longest(&s), 5);
        assert_false(s.eightbit);
        memset(line, 'x', sizeof(line));
        /* 2,000 octets in pieces, CR and LF in separate pieces. */
        for (size_t i = 0; i < sizeof(line); i += 333)
                milter_scan_feed(&s, line + i, sizeof(line) - i < 333 ? sizeof(line) - i : 333);
        milter_scan_feed(&s, "\r", 1);
        assert_int_equal(milter_scan_longest(&s), 2001);        /* the CR, until its LF comes */
        milter_scan_feed(&s, "\n", 1);
        assert_int_equal(milter_scan_longest(&s), 2000);
        milter_scan_feed(&s, "bare LF\nlast, no line end \xc3\xa9", 29);
        assert_int_equal(milter_scan_longest(&s), 2000);
        assert_true(s.eightbit);

        s = (struct milter_scan) { 0 };
        milter_scan_feed(&s, line, 991);
        assert_int_equal(milter_scan_longest(&s), 991);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_profiles),
                cmocka_unit_test(test_address_fields),
                cmocka_unit_test(test_unqualified),
                cmocka_unit_test(test_scan),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
