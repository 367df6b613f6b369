/* SPDX-License-Identifier: MIT */
/* Unit tests for dkim/arc.c (an ARC chain's structure, the fields a set is
 * made of, b= stripped) and client/arc-results.c (which
 * Authentication-Results a set records). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "protocol/buf.h"
#include "protocol/dkimsign-errors.h"
#include "client/arc-private.h"
#include "dkim/arc.h"
#include "dkim/header.h"

static const struct dkim_header_limits limits = { .max_fields = 200, .max_line = 2000 };

#define AAR(i) "ARC-Authentication-Results: i=" #i "; mx.example; spf=pass\r\n"
#define AMS(i) "ARC-Message-Signature: i=" #i "; a=rsa-sha256; d=a.example; s=s; h=from; bh=AA==; b=AA==\r\n"
#define AS(i, cv) "ARC-Seal: i=" #i "; a=rsa-sha256; cv=" cv "; d=a.example; s=s; b=AA==\r\n"
#define FROM "From: a@example.com\r\n"

static void test_chain_structure(void **state)
{
        static const struct { const char *block; int want; size_t count; size_t highest; } cases[] = {
                { FROM, 0, 0, 0 },
                { AS(1, "none") AMS(1) AAR(1) FROM, 0, 1, 1 },
                /* Any order, instances by i=, cv= in any case. */
                { AMS(2) AS(1, "none") AAR(2) AS(2, "PASS") AMS(1) AAR(1) FROM, 0, 2, 2 },
                { AS(1, "none") AMS(1) FROM, DKIMSIGN_E_FORMAT, 0, 1 },                   /* no AAR */
                { AS(1, "none") AMS(1) AAR(1) AMS(1) FROM, DKIMSIGN_E_FORMAT, 0, 1 },     /* two AMS i=1 */
                { AS(2, "pass") AMS(2) AAR(2) FROM, DKIMSIGN_E_FORMAT, 0, 2 },            /* no i=1 */
                { AS(1, "none") AMS(1) AAR(1) AS(3, "pass") AMS(3) AAR(3) FROM, DKIMSIGN_E_FORMAT, 0, 3 },
                { AS(51, "pass") AMS(51) AAR(51) FROM, DKIMSIGN_E_FORMAT, 0, 0 },         /* over 50 */
                { AS(0, "none") AMS(0) AAR(0) FROM, DKIMSIGN_E_FORMAT, 0, 0 },
                { AS(1, "maybe") AMS(1) AAR(1) FROM, DKIMSIGN_E_FORMAT, 0, 1 },           /* bad cv= */
                { "ARC-Seal: a=rsa-sha256; cv=none; b=AA==\r\n" AMS(1) AAR(1) FROM, DKIMSIGN_E_FORMAT, 0, 1 },
                /* The AAR's i= must come first. */
                { AS(1, "none") AMS(1) "ARC-Authentication-Results: mx.example; i=1\r\n" FROM, DKIMSIGN_E_FORMAT, 0, 1 },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct dkim_headers h;
                struct arc_chain c = { .count = 99 };
                char why[128] = "";

                assert_int_equal(dkim_headers_parse((const uint8_t *) cases[i].block, strlen(cases[i].block), &limits,
                                                    &h), 0);
                assert_int_equal(arc_chain_parse(&h, &c, why, sizeof(why)), cases[i].want);
                if (cases[i].want == 0)
                        assert_int_equal(c.count, cases[i].count);
                else
                        assert_true(why[0]);
                assert_int_equal(arc_highest_instance(&h), cases[i].highest);
                dkim_headers_deinit(&h);
        }
}

static void test_chain_indices_and_cv(void **state)
{
        const char block[] = AMS(2) AS(1, "none") AAR(2) AS(2, "fail") AMS(1) AAR(1) FROM;
        struct dkim_headers h;
        struct arc_chain c;

        assert_int_equal(dkim_headers_parse((const uint8_t *) block, strlen(block), &limits, &h), 0);
        assert_int_equal(arc_chain_parse(&h, &c, NULL, 0), 0);
        assert_int_equal(c.idx[1][ARC_AMS], 0);
        assert_int_equal(c.idx[0][ARC_AS], 1);
        assert_int_equal(c.idx[1][ARC_AAR], 2);
        assert_int_equal(c.cv[0], ARC_CV_NONE);
        assert_int_equal(c.cv[1], ARC_CV_FAIL);
        dkim_headers_deinit(&h);
}

static void test_aar_folds_and_defaults(void **state)
{
        const char results[] = "dkim=pass header.d=example.com header.s=sel; spf=pass smtp.mailfrom=example.com; "
                               "dmarc=pass header.from=example.com; arc=none";
        struct buf b;
        char *flat;
        size_t line = 0;

        buf_init(&b, 4096);
        assert_int_equal(arc_aar_build(3, "mx.example", 10, results, strlen(results), &b), 0);
        for (size_t i = 0; i < b.len; i++) {
                line = b.data[i] == '\n' ? 0 : line + 1;
                assert_true(line <= 78);
        }
        /* Unfolded, it is the results as given. */
        /* Not strndup: the buffer holds no NUL to stop at. */
        flat = malloc(b.len + 1);
        assert_non_null(flat);
        memcpy(flat, b.data, b.len);
        flat[b.len] = 0;
        for (char *p = flat, *q = flat;; p++) {
                if (p[0] == '\r' && p[1] == '\n' && p[2] == '\t') {
                        *q++ = ' ';
                        p += 2;
                        continue;
                }
                if (!(*q++ = *p))
                        break;
        }
        assert_string_equal(flat, "ARC-Authentication-Results: i=3; mx.example; dkim=pass header.d=example.com "
                                  "header.s=sel; spf=pass smtp.mailfrom=example.com; dmarc=pass "
                                  "header.from=example.com; arc=none");
        free(flat);
        buf_reset(&b);
        assert_int_equal(arc_aar_build(1, "mx.example", 10, "", 0, &b), 0);
        assert_int_equal(b.len, strlen("ARC-Authentication-Results: i=1; mx.example; none"));
        assert_memory_equal(b.data, "ARC-Authentication-Results: i=1; mx.example; none", b.len);
        buf_deinit(&b);
}

static void test_seal_field_and_strip_b(void **state)
{
        const struct arc_seal_spec spec = { .alg = "rsa-sha256", .instance = 2, .cv = ARC_CV_PASS,
                                            .domain = "list.example", .selector = "s1", .timestamp = 1700000000 };
        const char *field = "ARC-Seal: i=1; a=rsa-sha256; b=abc\r\n\tdef==; cv=none; d=x.example";
        const char *want = "ARC-Seal: i=1; a=rsa-sha256; b=; cv=none; d=x.example";
        struct buf b;

        buf_init(&b, 4096);
        assert_int_equal(arc_seal_begin(&spec, &b), 0);
        assert_int_equal(b.len, strlen("ARC-Seal: i=2; a=rsa-sha256; t=1700000000; cv=pass;\r\n\td=list.example; "
                                       "s=s1; b="));
        buf_reset(&b);
        assert_int_equal(arc_strip_b((const uint8_t *) field, strlen(field), &b), 0);
        assert_int_equal(b.len, strlen(want));
        assert_memory_equal(b.data, want, b.len);
        buf_reset(&b);
        assert_int_equal(arc_strip_b((const uint8_t *) "ARC-Seal: i=1; a=x", 18, &b), DKIMSIGN_E_FORMAT);
        buf_deinit(&b);
}

static void test_results_of_own_authserv_id(void **state)
{
        static const struct { const char *block; const char *want; } cases[] = {
                { "Authentication-Results: mx.example; spf=pass smtp.mailfrom=a.example\r\n" FROM,
                  "spf=pass smtp.mailfrom=a.example" },
                /* Other authserv-ids are ignored, the letter case of ours is not. */
                { "Authentication-Results: evil.example; dkim=pass header.d=forged.example\r\n"
                  "Authentication-Results: MX.Example 1; dkim=pass\r\n\t header.d=a.example;\r\n\tdmarc=pass\r\n" FROM,
                  "dkim=pass header.d=a.example; dmarc=pass" },
                /* Comments and quoted strings are kept whole, ";" inside them too. */
                { "Authentication-Results: (our mx) mx.example; dkim=pass (good; really) header.b=\"a;b\"\r\n" FROM,
                  "dkim=pass (good; really) header.b=\"a;b\"" },
                { "Authentication-Results: mx.example; none\r\n" FROM, "" },
                { "Authentication-Results: mx.example.evil; spf=pass\r\n" FROM, "" },
                { "Authentication-Results: mx.example\r\n" FROM, "" },
                { FROM, "" },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct dkim_headers h;
                char out[256];

                assert_int_equal(dkim_headers_parse((const uint8_t *) cases[i].block, strlen(cases[i].block), &limits,
                                                    &h), 0);
                arc_collect_results(&h, "mx.example", out, sizeof(out));
                assert_string_equal(out, cases[i].want);
                dkim_headers_deinit(&h);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_chain_structure),
                cmocka_unit_test(test_chain_indices_and_cv),
                cmocka_unit_test(test_aar_folds_and_defaults),
                cmocka_unit_test(test_seal_field_and_strip_b),
                cmocka_unit_test(test_results_of_own_authserv_id),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
