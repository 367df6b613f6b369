/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for dnscheck/spf.c's parser: which texts are SPF records, the
 * syntax of every mechanism and modifier (RFC 7208 section 12), qualifiers,
 * CIDR lengths, macros, duplicate modifiers and the limits.  The DNS walk
 * (lookup counts, loops) runs against a real server in
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
#include "dnscheck/spf.h"

struct is_case {
        const char *text;
        bool is;
};

static const struct is_case is_cases[] = {
        { "v=spf1", true },
        { "v=spf1 -all", true },
        { "V=SPF1 -all", true },
        { "v=spf1-all", false },
        { "v=spf10 -all", false },
        { "v=spf2.0/pra -all", false },
        { "spf1 -all", false },
        { " v=spf1 -all", false },
        { "", false },
};

static void test_is_record(void **state)
{
        (void) state;
        for (size_t i = 0; i < sizeof(is_cases) / sizeof(is_cases[0]); i++) {
                const struct is_case *c = &is_cases[i];

                if (spf_is_record(c->text, strlen(c->text)) != c->is)
                        fail_msg("spf_is_record(\"%s\") != %d", c->text, c->is);
        }
}

struct parse_case {
        const char *text;
        int r;
        const char *why;      /* a fragment of the reason, for failures */
};

static const struct parse_case parse_cases[] = {
        /* valid records */
        { "v=spf1", 0, NULL },
        { "v=spf1 -all", 0, NULL },
        { "v=spf1   mx   a   ~all  ", 0, NULL },
        { "v=spf1 ip4:192.0.2.0/24 ip4:198.51.100.7 ip6:2001:db8::/32 ip6:::1 -all", 0, NULL },
        { "v=spf1 a:mail.example.com/28//64 mx/24 mx//48 a//128 ?all", 0, NULL },
        { "v=spf1 include:_spf.google.com include:spf.protection.outlook.com ~all", 0, NULL },
        { "v=spf1 exists:%{i}._spf.%{d} -all", 0, NULL },
        { "v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d2} -all", 0, NULL },
        { "v=spf1 include:example.com. -all", 0, NULL },
        { "v=spf1 ptr ptr:example.com -all", 0, NULL },
        { "v=spf1 redirect=_spf.example.com", 0, NULL },
        { "v=spf1 -all exp=explain._spf.%{d}", 0, NULL },
        { "v=spf1 -all foo=bar x-custom.mod=%{d}", 0, NULL },
        { "v=spf1 MX A:Mail.Example.COM -ALL", 0, NULL },
        { "v=spf1 include:example.xn--p1ai -all", 0, NULL },
        { "v=spf1 include:123.example.1-2 -all", 0, NULL },
        { "v=spf1 a:%{d}", 0, NULL },
        { "v=spf1 ip4:0.0.0.0/0", 0, NULL },
        /* invalid terms */
        { "v=spf1 foo -all", DKIMSIGN_E_FORMAT, "not an SPF mechanism" },
        { "v=spf1 all:example.com", DKIMSIGN_E_FORMAT, "takes no argument" },
        { "v=spf1 include -all", DKIMSIGN_E_FORMAT, "needs \":domain\"" },
        { "v=spf1 include: -all", DKIMSIGN_E_FORMAT, "empty" },
        { "v=spf1 include:example -all", DKIMSIGN_E_FORMAT, "top-level label" },
        { "v=spf1 include:example.123 -all", DKIMSIGN_E_FORMAT, "top-level label" },
        { "v=spf1 include:example..com -all", DKIMSIGN_E_FORMAT, "not a valid domain" },
        { "v=spf1 exists -all", DKIMSIGN_E_FORMAT, "needs" },
        { "v=spf1 ip4 -all", DKIMSIGN_E_FORMAT, "address" },
        { "v=spf1 ip4:192.0.2.300", DKIMSIGN_E_FORMAT, "not an IPv4 address" },
        { "v=spf1 ip4:192.0.2.0/33", DKIMSIGN_E_FORMAT, "prefix length" },
        { "v=spf1 ip4:192.0.2.0/024", DKIMSIGN_E_FORMAT, "prefix length" },
        { "v=spf1 ip4:192.0.2.0/", DKIMSIGN_E_FORMAT, "prefix length" },
        { "v=spf1 ip4:2001:db8::1", DKIMSIGN_E_FORMAT, "not an IPv4 address" },
        { "v=spf1 ip6:192.0.2.1", DKIMSIGN_E_FORMAT, "not an IPv6 address" },
        { "v=spf1 ip6:2001:db8::/129", DKIMSIGN_E_FORMAT, "prefix length" },
        { "v=spf1 a/33", DKIMSIGN_E_FORMAT, "IPv4 prefix" },
        { "v=spf1 mx//129", DKIMSIGN_E_FORMAT, "IPv6 prefix" },
        { "v=spf1 a=example.com", 0, NULL },   /* a modifier named "a": unknown, ignored */
        { "v=spf1 mx:", DKIMSIGN_E_FORMAT, "empty" },
        { "v=spf1 *all", DKIMSIGN_E_FORMAT, "not an SPF mechanism" },
        { "v=spf1 ++all", DKIMSIGN_E_FORMAT, "not an SPF mechanism" },
        /* macros */
        { "v=spf1 exists:%{x}.example.com", DKIMSIGN_E_FORMAT, "letters" },
        { "v=spf1 exists:%{i.example.com", DKIMSIGN_E_FORMAT, "not closed" },
        { "v=spf1 exists:%{c}.example.com", DKIMSIGN_E_FORMAT, "only allowed in explanation" },
        { "v=spf1 exists:%{i0}.example.com", DKIMSIGN_E_FORMAT, "must not be 0" },
        { "v=spf1 exists:%{i1234}.example.com", DKIMSIGN_E_FORMAT, "too large" },
        { "v=spf1 exists:%x.example.com", DKIMSIGN_E_FORMAT, "not a macro" },
        { "v=spf1 exists:example.com%", DKIMSIGN_E_FORMAT, "ends it" },
        { "v=spf1 exists:%%.%_.%-.example.com", 0, NULL },
        { "v=spf1 -all exp=%{c}.%{r}.%{t}.example.com", DKIMSIGN_E_FORMAT, "only allowed in explanation" },
        /* modifiers */
        { "v=spf1 redirect=a.example.com redirect=b.example.com", DKIMSIGN_E_FORMAT, "more than once" },
        { "v=spf1 exp=a.example.com exp=b.example.com", DKIMSIGN_E_FORMAT, "more than once" },
        { "v=spf1 redirect=", DKIMSIGN_E_FORMAT, "empty" },
        { "v=spf1 redirect=example", DKIMSIGN_E_FORMAT, "top-level label" },
        /* the record as a whole */
        { "v=spf1\t-all", DKIMSIGN_E_FORMAT, "starts with" },
        { "v=spf1 -all\t", DKIMSIGN_E_FORMAT, "not printable" },
        { "v=spf1 include:ex\xc3\xa9.com", DKIMSIGN_E_FORMAT, "not printable" },
        { "spf1 -all", DKIMSIGN_E_FORMAT, "starts with" },
};

static void test_parse_cases(void **state)
{
        (void) state;
        for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
                const struct parse_case *c = &parse_cases[i];
                struct spf_record rec;
                char why[300];
                int r;

                memset(&rec, 0x5a, sizeof(rec));
                r = spf_parse(c->text, strlen(c->text), &rec, why, sizeof(why));
                if (r != c->r)
                        fail_msg("\"%s\": %d (%s), expected %d", c->text, r, why, c->r);
                if (r == 0) {
                        spf_record_clear(&rec);
                        continue;
                }
                if (c->why && !strstr(why, c->why))
                        fail_msg("\"%s\": reason \"%s\" lacks \"%s\"", c->text, why, c->why);
        }
}

static void test_terms(void **state)
{
        const char *text = "v=spf1 ~a:mail.example.com/24//64 -ip4:192.0.2.1/32 ?ip6:2001:db8::/48 "
                           "include:%{d}.example.com redirect=_spf.example.com -all mx ";
        struct spf_record rec;
        char why[200];

        (void) state;
        assert_int_equal(spf_parse(text, strlen(text), &rec, why, sizeof(why)), 0);
        assert_int_equal(rec.count, 7);
        assert_int_equal(rec.terms[0].kind, SPF_A);
        assert_int_equal(rec.terms[0].qualifier, '~');
        assert_string_equal(rec.terms[0].domain, "mail.example.com");
        assert_int_equal(rec.terms[0].cidr4, 24);
        assert_int_equal(rec.terms[0].cidr6, 64);
        assert_int_equal(rec.terms[1].kind, SPF_IP4);
        assert_int_equal(rec.terms[1].qualifier, '-');
        assert_int_equal(rec.terms[1].cidr4, 32);
        assert_memory_equal(rec.terms[1].addr, "\xc0\x00\x02\x01", 4);
        assert_int_equal(rec.terms[2].kind, SPF_IP6);
        assert_int_equal(rec.terms[2].cidr6, 48);
        assert_int_equal(rec.terms[3].kind, SPF_INCLUDE);
        assert_true(rec.terms[3].has_macro);
        assert_int_equal(rec.terms[3].qualifier, '+');
        assert_int_equal(rec.terms[4].kind, SPF_REDIRECT);
        assert_string_equal(rec.terms[4].domain, "_spf.example.com");
        assert_int_equal(rec.redirect_index, 4);
        assert_int_equal(rec.all_index, 5);
        assert_int_equal(rec.terms[5].qualifier, '-');
        assert_int_equal(rec.terms[6].kind, SPF_MX);
        assert_null(rec.terms[6].domain);
        assert_int_equal(rec.terms[6].cidr4, -1);
        assert_string_equal(rec.terms[6].text, "mx");
        spf_record_clear(&rec);
        spf_record_clear(&rec);   /* a cleared record clears again */
}

static void test_limits(void **state)
{
        char *text = malloc(SPF_RECORD_MAX + 16);
        struct spf_record rec;
        char why[200];
        size_t len;

        (void) state;
        assert_non_null(text);
        /* SPF_TERMS_MAX + 1 terms */
        len = (size_t) snprintf(text, SPF_RECORD_MAX, "v=spf1");
        for (int i = 0; i <= SPF_TERMS_MAX; i++)
                len += (size_t) snprintf(text + len, SPF_RECORD_MAX - len, " a");
        assert_int_equal(spf_parse(text, len, &rec, why, sizeof(why)), DKIMSIGN_E_TOO_LARGE);
        /* over SPF_RECORD_MAX octets */
        memcpy(text, "v=spf1 ", 7);
        memset(text + 7, 'a', SPF_RECORD_MAX);
        assert_int_equal(spf_parse(text, SPF_RECORD_MAX + 1, &rec, why, sizeof(why)), DKIMSIGN_E_TOO_LARGE);
        /* a NUL octet inside a term */
        assert_int_equal(spf_parse("v=spf1 ip4:1.2.3.4\0x", 20, &rec, why, sizeof(why)), DKIMSIGN_E_FORMAT);
        free(text);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_is_record),
                cmocka_unit_test(test_parse_cases),
                cmocka_unit_test(test_terms),
                cmocka_unit_test(test_limits),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
