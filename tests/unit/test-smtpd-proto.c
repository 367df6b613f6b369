/* SPDX-License-Identifier: MIT */
/*
 * client/smtpd-proto: OpenSMTPD's filter protocol lines, as smtpd 6.8
 * (protocol 0.6) and 7.x (0.7) write them, parsed or refused; the data
 * line's dot-escaping; and which From, To and Cc fields smtpd 6.8 rewrites
 * after a filter (it appends its host name to an address without a
 * domain), tables of both.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "client/dkimsign.h"
#include "client/smtpd-proto.h"

static const struct line_case {
        const char *line;
        int r;
        enum smtpd_kind kind;
        const char *name, *params;
        uint64_t session, token;
} line_cases[] = {
        /* The handshake of smtpd 6.8 (no config|protocol) and 7.x. */
        { "config|smtpd-version|6.8.0p2", 0, SMTPD_CONFIG, "smtpd-version", "6.8.0p2", 0, 0 },
        { "config|protocol|0.7", 0, SMTPD_CONFIG, "protocol", "0.7", 0, 0 },
        { "config|admd|mx|with|bars", 0, SMTPD_CONFIG, "admd", "mx|with|bars", 0, 0 },
        { "config|ready", 0, SMTPD_CONFIG, "ready", NULL, 0, 0 },
        { "report|0.6|1796488718.611738|smtp-in|tx-begin|73d4207413e61c40|52b52c90", 0, SMTPD_REPORT, "tx-begin",
          "52b52c90", 0x73d4207413e61c40, 0 },
        { "report|0.6|1796488718.656508|smtp-in|link-disconnect|73d4207413e61c40", 0, SMTPD_REPORT,
          "link-disconnect", "", 0x73d4207413e61c40, 0 },
        /* A data line is the rest of the line, '|' and all, even empty. */
        { "filter|0.6|1796488718.612861|smtp-in|data-line|73d4207413e61c40|9b36e4f7f5c94b14|a|b||", 0, SMTPD_FILTER,
          "data-line", "a|b||", 0x73d4207413e61c40, 0x9b36e4f7f5c94b14 },
        { "filter|0.6|1796488718.612866|smtp-in|data-line|73d4207413e61c40|9b36e4f7f5c94b14|", 0, SMTPD_FILTER,
          "data-line", "", 0x73d4207413e61c40, 0x9b36e4f7f5c94b14 },
        { "filter|0.7|1576146008.006099|smtp-in|commit|7641df9771b4ed00|1ef1c203cc576e5d", 0, SMTPD_FILTER,
          "commit", "", 0x7641df9771b4ed00, 0x1ef1c203cc576e5d },
        /* Refused: each field out of its shape. */
        { "", DKIMSIGN_E_FORMAT, 0, NULL, NULL, 0, 0 },
        { "config", DKIMSIGN_E_FORMAT, 0, NULL, NULL, 0, 0 },
        { "config|Ready", DKIMSIGN_E_FORMAT, 0, NULL, NULL, 0, 0 },
        { "register|ready", DKIMSIGN_E_FORMAT, 0, NULL, NULL, 0, 0 },
        { "report|0.6|1.5|smtp-in|tx-begin", DKIMSIGN_E_FORMAT, 0, NULL, NULL, 0, 0 },
        { "report|six|1.5|smtp-in|tx-begin|1", DKIMSIGN_E_FORMAT, 0, NULL, NULL, 0, 0 },
        { "report|0.6|15|smtp-in|tx-begin|1", DKIMSIGN_E_FORMAT, 0, NULL, NULL, 0, 0 },
        { "report|0.6|1.5|smtp-mid|tx-begin|1", DKIMSIGN_E_FORMAT, 0, NULL, NULL, 0, 0 },
        { "report|0.6|1.5|smtp-in|tx begin|1", DKIMSIGN_E_FORMAT, 0, NULL, NULL, 0, 0 },
        { "report|0.6|1.5|smtp-in|tx-begin|10000000000000000", DKIMSIGN_E_FORMAT, 0, NULL, NULL, 0, 0 },
        { "report|0.6|1.5|smtp-in|tx-begin|x1", DKIMSIGN_E_FORMAT, 0, NULL, NULL, 0, 0 },
        { "filter|0.6|1.5|smtp-in|data-line|1", DKIMSIGN_E_FORMAT, 0, NULL, NULL, 0, 0 },
        { "filter|0.6|1.5|smtp-in|data-line|1||x", DKIMSIGN_E_FORMAT, 0, NULL, NULL, 0, 0 },
        /* A bare CR inside a message line: smtpd 6.8 strips only the CR of
         * the line end and passes the rest on, so it is data, not a framing
         * error (refusing it ended the filter, and smtpd with it, on any
         * remote sender's "a\rb"). */
        { "filter|0.6|1.5|smtp-in|data-line|1|2|a\rb", 0, SMTPD_FILTER, "data-line", "a\rb", 1, 2 },
        { "filter|0.6|1.5|smtp-in|data-line|1|2|trailing\r", 0, SMTPD_FILTER, "data-line", "trailing\r", 1, 2 },
        /* Outside the data, a CR is still out of every field's shape. */
        { "report|0.6|1.5|smtp-in|tx-begin\r|1", DKIMSIGN_E_FORMAT, 0, NULL, NULL, 0, 0 },
        { "filter|0.6|1.5|smtp-in|data-line|1|2\r|x", DKIMSIGN_E_FORMAT, 0, NULL, NULL, 0, 0 },
};

static void test_lines(void **state)
{
        (void) state;
        for (size_t i = 0; i < sizeof(line_cases) / sizeof(line_cases[0]); i++) {
                const struct line_case *c = &line_cases[i];
                char buf[256];
                struct smtpd_line l;
                int r;

                snprintf(buf, sizeof(buf), "%s", c->line);
                r = smtpd_line_parse(buf, strlen(buf), &l);
                if (r != c->r)
                        fail_msg("%s: %d, not %d", c->line, r, c->r);
                if (r < 0) {
                        assert_null(l.name);
                        continue;
                }
                assert_int_equal(l.kind, c->kind);
                assert_string_equal(l.name, c->name);
                if (c->params) {
                        assert_string_equal(l.params, c->params);
                        assert_int_equal(l.params_len, strlen(c->params));
                } else {
                        assert_null(l.params);
                }
                assert_true(l.session == c->session);
                assert_true(l.token == c->token);
        }
}

static void test_nul_and_length(void **state)
{
        char line[] = "config|ready\0x";
        struct smtpd_line l;
        char *big;

        (void) state;
        assert_int_equal(smtpd_line_parse(line, sizeof(line) - 1, &l), DKIMSIGN_E_FORMAT);
        big = malloc(SMTPD_LINE_MAX + 2);
        assert_non_null(big);
        memset(big, 'a', SMTPD_LINE_MAX + 1);
        big[SMTPD_LINE_MAX + 1] = 0;
        assert_int_equal(smtpd_line_parse(big, SMTPD_LINE_MAX + 1, &l), DKIMSIGN_E_TOO_LARGE);
        free(big);
}

static void test_versions_and_dots(void **state)
{
        size_t n;

        (void) state;
        assert_true(smtpd_version_supported("0.6"));
        assert_true(smtpd_version_supported("0.7"));
        assert_false(smtpd_version_supported("0.5"));
        assert_false(smtpd_version_supported(NULL));
        assert_string_equal(smtpd_data_unescape("..dot", 5, &n), ".dot");
        assert_int_equal(n, 4);
        assert_string_equal(smtpd_data_unescape("plain", 5, &n), "plain");
        assert_int_equal(n, 5);
        assert_true(smtpd_data_is_end(".", 1));
        assert_false(smtpd_data_is_end("..", 2));
        assert_false(smtpd_data_is_end("", 0));
}

/* Field values (after the colon), possibly in lines, and whether smtpd
 * 6.8 rewrites the field (seen in the test against it: "bob" became
 * "bob@mx.example.com", a group was left alone). */
static const struct addr_case {
        const char *lines[3];
        bool rewritten;
} addr_cases[] = {
        { { " Alice <alice@example.com>" }, false },
        { { " alice@example.com, bob@example.net" }, false },
        { { " bob, carol@local.test,", " dave" }, true },
        { { " Frank <frank>" }, true },
        { { " \"frank@x\" <frank>" }, true },
        { { " frank (at@example.com)" }, true },
        { { " undisclosed-recipients:;" }, false },
        { { " \"Doe, John\" <john@example.com>" }, false },
        { { " (comment only)" }, true },
        { { " " }, false },
        { { " a@b.example,", " ", " c@d.example" }, false },
        /* smtpd reads a backslash as an escape only outside quotes and
         * comments: to it "\"" ends the quoted string at the backslash's
         * quote and opens another, so bob@x below is quoted text, the
         * address has no domain and gets one. */
        { { " \"\\\"\" bob@x \"" }, true },
        { { " \"a\\\" <bob@example.com>" }, false },
        { { " (a\\) bob" }, true },
        { { " bob\\@x" }, false },
};

static void test_address_fields(void **state)
{
        (void) state;
        for (size_t i = 0; i < sizeof(addr_cases) / sizeof(addr_cases[0]); i++) {
                struct smtpd_addr_scan s;

                smtpd_addr_scan_init(&s);
                for (size_t j = 0; j < 3 && addr_cases[i].lines[j]; j++)
                        smtpd_addr_scan_feed(&s, addr_cases[i].lines[j], strlen(addr_cases[i].lines[j]));
                if (smtpd_addr_scan_end(&s) != addr_cases[i].rewritten)
                        fail_msg("case %zu (%s): not %s", i, addr_cases[i].lines[0],
                                 addr_cases[i].rewritten ? "rewritten" : "left alone");
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_lines),
                cmocka_unit_test(test_nul_and_length),
                cmocka_unit_test(test_versions_and_dots),
                cmocka_unit_test(test_address_fields),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
