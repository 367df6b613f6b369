/* SPDX-License-Identifier: MIT */
/* Unit tests for dkim/identity.c: i= templates checked against d= (RFC
 * 6376 3.5) and filled in, table-driven. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "protocol/dkimsign-errors.h"
#include "dkim/identity.h"

static void test_identity_make(void **state)
{
        static const struct {
                const char *tmpl, *d;
                int r;
                const char *want;       /* the i= value, or a part of the refusal */
        } cases[] = {
                /* d= itself and its subdomains, absolute or following d=. */
                { "@example.com", "example.com", 0, "@example.com" },
                { "@Mail.EXAMPLE.com", "example.com", 0, "@mail.example.com" },
                { "alice@example.com", "example.com", 0, "alice@example.com" },
                { "Alice.B+tag@a.b.example.com", "example.com", 0, "Alice.B+tag@a.b.example.com" },
                { "\"j.doe!\"@example.com", "example.com", 0, "\"j.doe!\"@example.com" },
                { "@%d", "example.org", 0, "@example.org" },
                { "bounces@%d", "example.org", 0, "bounces@example.org" },
                { "@news.%d", "example.org", 0, "@news.example.org" },
                { "@a.b.%d", "x.example", 0, "@a.b.x.example" },
                { "%d@%d", "x.example", 0, "%d@x.example" },
                /* Not under d=: a sibling, a parent, a suffix without a dot. */
                { "@other.com", "example.com", DKIMSIGN_E_FORMAT, "neither d=example.com nor a subdomain" },
                { "@com", "example.com", DKIMSIGN_E_FORMAT, "neither" },
                { "@badexample.com", "example.com", DKIMSIGN_E_FORMAT, "neither" },
                { "@example.com.evil", "example.com", DKIMSIGN_E_FORMAT, "neither" },
                /* The '@' rule and the domain's syntax. */
                { "example.com", "example.com", DKIMSIGN_E_FORMAT, "one '@'" },
                { "a@b@example.com", "example.com", DKIMSIGN_E_FORMAT, "one '@'" },
                { "@", "example.com", DKIMSIGN_E_FORMAT, "not a valid domain name" },
                { "@exa_mple.com", "exa_mple.com", DKIMSIGN_E_FORMAT, "not a valid domain name" },
                { "@example.com.", "example.com", DKIMSIGN_E_FORMAT, "not a valid domain name" },
                { "@x%d", "example.com", DKIMSIGN_E_FORMAT, "must end in a dot" },
                { "@.%d", "example.com", DKIMSIGN_E_FORMAT, "not a valid domain name" },
                { "@%d.com", "example.com", DKIMSIGN_E_FORMAT, "not a valid domain name" },
                /* The local part: bounded, nothing a tag-list or QP reader
                 * could read otherwise. */
                { "a=b@example.com", "example.com", DKIMSIGN_E_FORMAT, "not a local part" },
                { "a;b@example.com", "example.com", DKIMSIGN_E_FORMAT, "not a local part" },
                { "a b@example.com", "example.com", DKIMSIGN_E_FORMAT, "not a local part" },
                { ".a@example.com", "example.com", DKIMSIGN_E_FORMAT, "not a local part" },
                { "a.@example.com", "example.com", DKIMSIGN_E_FORMAT, "not a local part" },
                { "a..b@example.com", "example.com", DKIMSIGN_E_FORMAT, "not a local part" },
                { "\"\"@example.com", "example.com", DKIMSIGN_E_FORMAT, "not a local part" },
                { "\"a b\"@example.com", "example.com", DKIMSIGN_E_FORMAT, "not a local part" },
                { "\"a\\\"b\"@example.com", "example.com", DKIMSIGN_E_FORMAT, "not a local part" },
                { "\"a=b\"@example.com", "example.com", DKIMSIGN_E_FORMAT, "not a local part" },
                { "\"ab@example.com", "example.com", DKIMSIGN_E_FORMAT, "not a local part" },
                { "caf\xc3\xa9@example.com", "example.com", DKIMSIGN_E_FORMAT, "not a local part" },
                /* Nothing that would end the field, fold it or end the tag. */
                { "a\r\nb@example.com", "example.com", DKIMSIGN_E_FORMAT, "not a local part" },
                { "\"a\r\n\tb\"@example.com", "example.com", DKIMSIGN_E_FORMAT, "not a local part" },
                { "\"a;b\"@example.com", "example.com", DKIMSIGN_E_FORMAT, "not a local part" },
                { "a\x7f@example.com", "example.com", DKIMSIGN_E_FORMAT, "not a local part" },
                { "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.com", "example.com", 0,
                  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.com" },
                { "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.com", "example.com",
                  DKIMSIGN_E_FORMAT, "at most 64" },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char got[DKIM_IDENTITY_SIZE] = "untouched", why[512] = "";
                int r = dkim_identity_make(cases[i].tmpl, cases[i].d, got, why, sizeof(why));

                if (r != cases[i].r)
                        fail_msg("case %zu (%s): %d, expected %d (%s)", i, cases[i].tmpl, r, cases[i].r, why);
                if (r == 0 && strcmp(got, cases[i].want) != 0)
                        fail_msg("case %zu: '%s', expected '%s'", i, got, cases[i].want);
                if (r < 0 && (strcmp(got, "untouched") != 0 || !strstr(why, cases[i].want)))
                        fail_msg("case %zu: '%s' lacks '%s' (or ret was set)", i, why, cases[i].want);
        }
}

/* "%d" filled in may make a domain too long for DNS: refused, never cut. */
static void test_identity_too_long(void **state)
{
        char d[DKIM_DOMAIN_SIZE], got[DKIM_IDENTITY_SIZE], why[512];

        /* 4 labels of 62 characters: 251 octets. */
        memset(d, 'a', 251);
        d[62] = d[125] = d[188] = '.';
        d[251] = 0;
        assert_int_equal(dkim_identity_make("@%d", d, got, why, sizeof(why)), 0);
        assert_int_equal(dkim_identity_make("@mail.%d", d, got, why, sizeof(why)), DKIMSIGN_E_TOO_LARGE);
        assert_non_null(strstr(why, "longer than 253"));
        /* The whole i= at most 254 octets (RFC 5321's longest address):
         * OpenDKIM reads no more than 256 of it. */
        d[188] = 'a';  /* 189 octets, its last label 63: 64 + 1 + 189 = 254 */
        d[189] = 0;
        assert_int_equal(dkim_identity_make("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@%d", d, got, why,
                                            sizeof(why)), 0);
        assert_int_equal(strlen(got), 254);
        strcpy(got, "untouched");
        assert_int_equal(dkim_identity_make("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@b.%d", d, got, why,
                                            sizeof(why)), DKIMSIGN_E_TOO_LARGE);
        assert_non_null(strstr(why, "longer than 254"));
        assert_string_equal(got, "untouched");
}

static void test_is_relative(void **state)
{
        assert_true(dkim_identity_is_relative("@%d"));
        assert_true(dkim_identity_is_relative("x@news.%d"));
        assert_false(dkim_identity_is_relative("@example.com"));
        assert_false(dkim_identity_is_relative("%d"));
        assert_false(dkim_identity_is_relative("a%d@example.com"));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_identity_make),
                cmocka_unit_test(test_identity_too_long),
                cmocka_unit_test(test_is_relative),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
