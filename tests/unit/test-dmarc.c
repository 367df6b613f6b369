/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for dnscheck/dmarc.c's parser: what is a DMARC record, which
 * records receivers would discard (refused with a reason), and how every
 * tag's value is read, including bad values (kept for the check to report),
 * the historic tags and the report addresses.  Policy discovery and the
 * authorization records run against a real DNS server in
 * tests/integration/test-dns-check.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "protocol/dkimsign-errors.h"
#include "dnscheck/dmarc.h"

static void test_is_record(void **state)
{
        static const struct {
                const char *text;
                bool is;
        } cases[] = {
                { "v=DMARC1", true },
                { "v=DMARC1; p=none", true },
                { "  v = DMARC1 ;p=reject", true },
                { "v=dmarc1; p=none", false },    /* the version must match precisely */
                { "p=none; v=DMARC1", false },
                { "v=DMARC1 p=none", false },
                { "v=spf1 -all", false },
                { "", false },
        };

        (void) state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
                if (dmarc_is_record(cases[i].text, strlen(cases[i].text)) != cases[i].is)
                        fail_msg("dmarc_is_record(\"%s\") != %d", cases[i].text, cases[i].is);
}

static void test_refused(void **state)
{
        static const struct {
                const char *text;
                int r;
                const char *why;
        } cases[] = {
                { "", DKIMSIGN_E_FORMAT, "empty" },
                { "p=reject; v=DMARC1", DKIMSIGN_E_FORMAT, "starts with exactly" },
                { "v=DMARC1 p=reject", DKIMSIGN_E_FORMAT, "starts with exactly" },
                { "v=DMARC2; p=reject", DKIMSIGN_E_FORMAT, "starts with exactly" },
                { "v=DMARC1; p=reject; p=none", DKIMSIGN_E_FORMAT, "more than once" },
                { "v=DMARC1; p=reject; P=none", DKIMSIGN_E_FORMAT, "more than once" },
                { "v=DMARC1;; p=reject", DKIMSIGN_E_FORMAT, "empty tag" },
                { "v=DMARC1; p", DKIMSIGN_E_FORMAT, "no \"=\"" },
                { "v=DMARC1; 1p=none", DKIMSIGN_E_FORMAT, "letter" },
                { "v=DMARC1; p=none\x01", DKIMSIGN_E_FORMAT, "printable" },
                { "v=DMARC1; rua=mailto:a@b.c,mailto:a@b.c,mailto:a@b.c,mailto:a@b.c,mailto:a@b.c,"
                  "mailto:a@b.c,mailto:a@b.c,mailto:a@b.c,mailto:a@b.c,mailto:a@b.c,mailto:a@b.c,"
                  "mailto:a@b.c,mailto:a@b.c,mailto:a@b.c,mailto:a@b.c,mailto:a@b.c,mailto:a@b.c",
                  DKIMSIGN_E_TOO_LARGE, "more than 16" },
        };

        (void) state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct dmarc_record rec;
                char why[300];
                int r = dmarc_parse(cases[i].text, strlen(cases[i].text), &rec, why, sizeof(why));

                if (r != cases[i].r)
                        fail_msg("\"%s\": %d, expected %d (%s)", cases[i].text, r, cases[i].r, why);
                if (!strstr(why, cases[i].why))
                        fail_msg("\"%s\": reason \"%s\" lacks \"%s\"", cases[i].text, why, cases[i].why);
        }
        {
                struct dmarc_record rec;
                char why[100];

                assert_int_equal(dmarc_parse("v=DMARC1; p=none\0", 17, &rec, why, sizeof(why)), DKIMSIGN_E_FORMAT);
        }
}

static void test_values(void **state)
{
        const char *text = "v=DMARC1; p=Reject; sp=quarantine; np=none; adkim=s; aspf=R; pct=100; t=y; "
                           "psd=n; fo=1:d; ri=86400; rf=afrf; x_future=1; "
                           "rua=mailto:agg@example.com, mailto:Ext@Reports.Example.NET!10m, https://x.example/r; "
                           "ruf=mailto:f@example.com?subject=dmarc;";
        struct dmarc_record rec;
        char why[200];

        (void) state;
        assert_int_equal(dmarc_parse(text, strlen(text), &rec, why, sizeof(why)), 0);
        assert_int_equal(rec.p, DMARC_POLICY_REJECT);
        assert_true(rec.p_second);
        assert_int_equal(rec.sp, DMARC_POLICY_QUARANTINE);
        assert_int_equal(rec.np, DMARC_POLICY_NONE);
        assert_int_equal(rec.adkim, 's');
        assert_int_equal(rec.aspf, 'r');
        assert_int_equal(rec.pct, 100);
        assert_int_equal(rec.t, 'y');
        assert_int_equal(rec.psd, 'n');
        assert_string_equal(rec.fo, "1:d");
        assert_true(rec.fo_valid);
        assert_true(rec.has_ri);
        assert_true(rec.has_rf);
        assert_string_equal(rec.unknown, "x_future");
        assert_int_equal(rec.rua_count, 3);
        assert_true(rec.rua[0].valid);
        assert_string_equal(rec.rua[0].domain, "example.com");
        assert_false(rec.rua[0].has_size);
        assert_true(rec.rua[1].valid);
        assert_true(rec.rua[1].has_size);
        assert_string_equal(rec.rua[1].uri, "mailto:Ext@Reports.Example.NET");
        assert_string_equal(rec.rua[1].domain, "reports.example.net");
        assert_false(rec.rua[2].valid);
        assert_null(rec.rua[2].domain);
        assert_int_equal(rec.ruf_count, 1);
        assert_true(rec.ruf[0].valid);
        assert_string_equal(rec.ruf[0].domain, "example.com");
        dmarc_record_clear(&rec);
        dmarc_record_clear(&rec);
}

static void test_bad_values(void **state)
{
        const char *text = "v=DMARC1; p=rejected; sp=; adkim=x; aspf=rs; pct=101; t=maybe; psd=q; fo=2; "
                           "rua=mailto:no-at-sign, mailto:a@-bad-.example, mailto:@example.com, mailto:a@b@c.d";
        struct dmarc_record rec;
        char why[200];

        (void) state;
        assert_int_equal(dmarc_parse(text, strlen(text), &rec, why, sizeof(why)), 0);
        assert_int_equal(rec.p, DMARC_POLICY_INVALID);
        assert_true(rec.p_second);
        assert_int_equal(rec.sp, DMARC_POLICY_INVALID);
        assert_int_equal(rec.np, DMARC_POLICY_ABSENT);
        assert_int_equal(rec.adkim, '?');
        assert_int_equal(rec.aspf, '?');
        assert_int_equal(rec.pct, -2);
        assert_int_equal(rec.t, '?');
        assert_int_equal(rec.psd, '?');
        assert_false(rec.fo_valid);
        assert_int_equal(rec.rua_count, 4);
        for (size_t i = 0; i < rec.rua_count; i++)
                if (rec.rua[i].valid)
                        fail_msg("rua %s taken as valid", rec.rua[i].uri);
        dmarc_record_clear(&rec);

        assert_int_equal(dmarc_parse("v=DMARC1; rua=mailto:a@b.example; p=none", 40, &rec, why, sizeof(why)), 0);
        assert_int_equal(rec.p, DMARC_POLICY_NONE);
        assert_false(rec.p_second);
        dmarc_record_clear(&rec);

        /* Absent tags read as absent. */
        assert_int_equal(dmarc_parse("v=DMARC1", 8, &rec, why, sizeof(why)), 0);
        assert_int_equal(rec.p, DMARC_POLICY_ABSENT);
        assert_int_equal(rec.pct, -1);
        assert_int_equal(rec.adkim, 0);
        assert_int_equal(rec.rua_count, 0);
        dmarc_record_clear(&rec);
}

static void test_pct_values(void **state)
{
        static const struct {
                const char *text;
                int pct;
        } cases[] = {
                { "v=DMARC1; pct=0", 0 }, { "v=DMARC1; pct=50", 50 }, { "v=DMARC1; pct=100", 100 },
                { "v=DMARC1; pct=-1", -2 }, { "v=DMARC1; pct=1000", -2 }, { "v=DMARC1; pct=", -2 },
                { "v=DMARC1; pct=5O", -2 },
        };

        (void) state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct dmarc_record rec;
                char why[100];

                assert_int_equal(dmarc_parse(cases[i].text, strlen(cases[i].text), &rec, why, sizeof(why)), 0);
                if (rec.pct != cases[i].pct)
                        fail_msg("\"%s\": pct %d, expected %d", cases[i].text, rec.pct, cases[i].pct);
                dmarc_record_clear(&rec);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_is_record),
                cmocka_unit_test(test_refused),
                cmocka_unit_test(test_values),
                cmocka_unit_test(test_bad_values),
                cmocka_unit_test(test_pct_values),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
