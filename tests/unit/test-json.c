/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for ctl/json.c, dkimsignctl's --json output: UTF-8 kept as
 * UTF-8 (not escaped byte by byte, which made Latin-1 mojibake of it),
 * ill-formed UTF-8 replaced by U+FFFD one maximal subpart at a time (the
 * examples of the Unicode standard, and what Python's
 * decode(errors="replace") gives, which the integration tests compare
 * against), jansson's own UTF-8 check as the oracle of what is
 * well-formed, and the printed document parsed back.  What each command
 * prints is checked, parsed by Python's json module, in
 * tests/integration/test-ctl.py and test-dns-check.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ctl/json.h"
#include "protocol/dkimsign-errors.h"

#define FFFD "\xef\xbf\xbd"

static const struct {
        const char *in;
        const char *out;        /* repaired; the same as in when well-formed */
} cases[] = {
        { "", "" },
        { "plain ASCII; \"quoted\" \\ /", "plain ASCII; \"quoted\" \\ /" },
        { "\x01\x1f\x7f", "\x01\x1f\x7f" },                         /* controls are well-formed */
        { "B\xc3\xbc" "cher", "B\xc3\xbc" "cher" },                  /* 2 octets: ü */
        { "\xe2\x82\xac 5", "\xe2\x82\xac 5" },                       /* 3 octets: € */
        { "\xf0\x9d\x84\x9e", "\xf0\x9d\x84\x9e" },                   /* 4 octets: U+1D11E */
        { "\xed\x9f\xbf \xee\x80\x80", "\xed\x9f\xbf \xee\x80\x80" }, /* around the surrogates */
        { "\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf" },                   /* U+10FFFF, the last */
        { "\xef\xbf\xbe", "\xef\xbf\xbe" },                           /* a noncharacter is well-formed */
        { "a\xff" "b", "a" FFFD "b" },
        { "\x80", FFFD },                                             /* a lone continuation byte */
        { "\xc3", FFFD },                                             /* cut at the end */
        { "\xc3(", FFFD "(" },
        { "\xe2\x82", FFFD },                                         /* one U+FFFD for a cut sequence */
        { "\xe2\x82x", FFFD "x" },
        { "\xf0\x9f\x98", FFFD },
        { "\xc0\xaf", FFFD FFFD },                                    /* overlong '/' */
        { "\xc1\xbf", FFFD FFFD },
        { "\xe0\x80\xaf", FFFD FFFD FFFD },                           /* overlong, 3 octets */
        { "\xf0\x80\x80\x80", FFFD FFFD FFFD FFFD },                  /* overlong, 4 octets */
        { "\xed\xa0\x80", FFFD FFFD FFFD },                           /* a surrogate, U+D800 */
        { "\xf4\x90\x80\x80", FFFD FFFD FFFD FFFD },                  /* above U+10FFFF */
        { "\xf5\x80", FFFD FFFD },
        { "\xfe\xff", FFFD FFFD },
        /* The example of Unicode 15, chapter 3, "U+FFFD Substitution of
         * Maximal Subparts" (Table 3-8). */
        { "\x61\xf1\x80\x80\xe1\x80\xc2\x62\x80\x63\x80\xbf\x64",
          "a" FFFD FFFD FFFD "b" FFFD "c" FFFD FFFD "d" },
        { "\xe1\x80\xe2\xf0\x91\x92\xf1\xbf\x41", FFFD FFFD FFFD FFFD "A" },
};

static void test_repair(void **state)
{
        (void) state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char *out = ctl_utf8_repair(cases[i].in);
                bool valid = strcmp(cases[i].in, cases[i].out) == 0;

                assert_non_null(out);
                if (strcmp(out, cases[i].out) != 0)
                        fail_msg("case %zu: repaired wrong", i);
                if (ctl_utf8_valid(cases[i].in) != valid)
                        fail_msg("case %zu: ctl_utf8_valid says %d", i, !valid);
                if (!ctl_utf8_valid(out))
                        fail_msg("case %zu: the repair is not UTF-8", i);
                free(out);
        }
}

/* jansson's own check is the oracle: what ctl_utf8_valid accepts, jansson
 * accepts, and every repair is accepted.  Short strings of the octets that
 * matter (the boundaries of Table 3-7), from a fixed seed. */
static void test_against_jansson(void **state)
{
        static const unsigned char octets[] = { 'a', 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2,
                                                0xdf, 0xe0, 0xe1, 0xec, 0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf3, 0xf4,
                                                0xf5, 0xff };
        uint32_t x = 2463534242u;

        (void) state;
        for (unsigned n = 0; n < 200000; n++) {
                char s[8], *fixed;
                size_t len = 1 + n % 6;
                json_t *j;

                for (size_t i = 0; i < len; i++) {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        s[i] = (char) octets[x % sizeof(octets)];
                }
                s[len] = '\0';
                j = json_string(s);
                if (ctl_utf8_valid(s) != (j != NULL))
                        fail_msg("string %u: ctl_utf8_valid %d, jansson %d", n, ctl_utf8_valid(s), j != NULL);
                json_decref(j);
                fixed = ctl_utf8_repair(s);
                assert_non_null(fixed);
                j = json_string(fixed);
                if (!j)
                        fail_msg("string %u: jansson refuses its repair", n);
                if (ctl_utf8_valid(s) && strcmp(fixed, s) != 0)
                        fail_msg("string %u: a well-formed string changed", n);
                json_decref(j);
                free(fixed);
        }
}

/* v printed by ctl_json_print, as a string to free(). */
static char *printed(json_t *v, int *ret_r)
{
        char *text = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&text, &size);

        assert_non_null(f);
        *ret_r = ctl_json_print(v, f);
        assert_int_equal(fclose(f), 0);
        return text;
}

static void test_print(void **state)
{
        json_t *parsed, *v = json_object();
        json_error_t e;
        char *text;
        int r;

        (void) state;
        assert_non_null(v);
        assert_int_equal(json_object_set_new(v, "domain", ctl_json_text("b\xc3\xbc" "cher.example")), 0);
        assert_int_equal(json_object_set_new(v, "record", ctl_json_text("v=spf1 \xff -all")), 0);
        assert_int_equal(json_object_set_new(v, "control", ctl_json_text("a\x01\n\"\\/")), 0);
        assert_int_equal(json_object_set_new(v, "none", ctl_json_text(NULL)), 0);
        text = printed(v, &r);
        assert_int_equal(r, 0);
        /* UTF-8 as UTF-8, U+FFFD for the bad octet, the members in order. */
        assert_string_equal(text, "{\n"
                                  "  \"domain\": \"b\xc3\xbc" "cher.example\",\n"
                                  "  \"record\": \"v=spf1 " FFFD " -all\",\n"
                                  "  \"control\": \"a\\u0001\\n\\\"\\\\/\",\n"
                                  "  \"none\": null\n"
                                  "}\n");
        parsed = json_loads(text, JSON_REJECT_DUPLICATES, &e);
        if (!parsed)
                fail_msg("not JSON: %s", e.text);
        assert_string_equal(json_string_value(json_object_get(parsed, "domain")), "b\xc3\xbc" "cher.example");
        assert_string_equal(json_string_value(json_object_get(parsed, "control")), "a\x01\n\"\\/");
        assert_true(json_is_null(json_object_get(parsed, "none")));
        json_decref(parsed);
        free(text);

        text = printed(json_array(), &r);
        assert_int_equal(r, 0);
        assert_string_equal(text, "[]\n");
        free(text);
}

static void test_push(void **state)
{
        json_t *a = json_array();

        (void) state;
        ctl_json_push(&a, ctl_json_text("one"));
        ctl_json_push(&a, json_null());
        assert_non_null(a);
        assert_int_equal(json_array_size(a), 2);
        /* A value that could not be built makes the whole array fail... */
        ctl_json_push(&a, NULL);
        assert_null(a);
        /* ...and what is pushed after it is released (LeakSanitizer sees). */
        ctl_json_push(&a, ctl_json_text("two"));
        assert_null(a);
}

static void test_print_failures(void **state)
{
        FILE *full = fopen("/dev/full", "w");
        char *text;
        int r;

        (void) state;
        /* What failed to build is NULL: out of memory, and nothing printed. */
        text = printed(NULL, &r);
        assert_int_equal(r, DKIMSIGN_E_NOMEM);
        assert_string_equal(text, "");
        free(text);
        /* A write that fails is said (the reference is dropped either way). */
        if (full) {
                assert_int_equal(ctl_json_print(json_pack("{s:s}", "a", "b"), full), DKIMSIGN_E_SYSTEM);
                fclose(full);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_repair),
                cmocka_unit_test(test_against_jansson),
                cmocka_unit_test(test_print),
                cmocka_unit_test(test_push),
                cmocka_unit_test(test_print_failures),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
