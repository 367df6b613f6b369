/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for dkim/idn.c: domains to their A-label form (IDNA2008, UTS
 * #46 non-transitional) with the reason of each refusal, and back to
 * U-labels for display.  Table-driven; no I/O.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "protocol/dkimsign-errors.h"
#include "dkim/idn.h"

struct ascii_case {
        const char *in;
        int r;
        const char *out;        /* r == 0: the A-label form; else a word of the reason */
};

static const struct ascii_case ascii_cases[] = {
        /* plain LDH ASCII: only checked and lowercased */
        { "example.com", 0, "example.com" },
        { "Mail.EXAMPLE.com", 0, "mail.example.com" },
        { "ab--cd.example", 0, "ab--cd.example" },      /* not an A-label, but a host name */
        { "x", 0, "x" },
        { "ex_ample.com", DKIMSIGN_E_FORMAT, "labels are" },
        { "example..com", DKIMSIGN_E_FORMAT, "labels are" },
        { "example.com.", DKIMSIGN_E_FORMAT, "labels are" },
        { "-example.com", DKIMSIGN_E_FORMAT, "labels are" },
        /* U-labels */
        { "b\xc3\xbc" "cher.example", 0, "xn--bcher-kva.example" },
        { "B\xc3\x9c" "CHER.Example", 0, "xn--bcher-kva.example" },                 /* mapped to lowercase */
        { "bu\xcc\x88" "cher.example", 0, "xn--bcher-kva.example" },                /* NFC: u + U+0308 */
        { "fa\xc3\x9f.de", 0, "xn--fa-hia.de" },                                   /* non-transitional: not fass.de */
        { "\xef\xbd\x86\xef\xbd\x95\xef\xbd\x8c\xef\xbd\x8c.example", 0, "full.example" }, /* fullwidth mapped */
        { "\xe4\xbe\x8b\xe5\xad\x90.\xe6\xb5\x8b\xe8\xaf\x95", 0, "xn--fsqu00a.xn--0zwm56d" },
        { "mail.b\xc3\xbc" "cher.example", 0, "mail.xn--bcher-kva.example" },
        /* A-labels: checked, lowercased */
        { "xn--bcher-kva.example", 0, "xn--bcher-kva.example" },
        { "XN--BCHER-KVA.EXAMPLE", 0, "xn--bcher-kva.example" },
        { "xn--zz.example", DKIMSIGN_E_IDN, "Punycode" },
        { "xn--bcher-kvb.example", DKIMSIGN_E_IDN, "does not allow" },           /* decodes to U+01C8 */
        /* refused, with the reason */
        { "\xff.example", DKIMSIGN_E_IDN, "UTF-8" },
        { "b\xc3\xbc" "cher\xc3", DKIMSIGN_E_IDN, "UTF-8" },                      /* cut in a sequence */
        { "a\xe2\x80\x8d" "b.example", DKIMSIGN_E_IDN, "joiner" },                 /* ZWJ */
        { "\xd9\xa1\xd9\xa2.example", DKIMSIGN_E_IDN, "Bidi" },                    /* Arabic-Indic digits */
        { "-b\xc3\xbc" "cher.example", DKIMSIGN_E_IDN, "hyphen" },
        { "\xcc\x88" "a.example", DKIMSIGN_E_IDN, "combining" },
        { "b\xc3\xbc" "cher_x.example", DKIMSIGN_E_IDN, "host name" },
        { "b\xc3\xbc" "cher..example", DKIMSIGN_E_IDN, "host name" },
        { "\xe2\x98\x83.example", DKIMSIGN_E_IDN, "does not allow" },              /* U+2603 snowman */
        { "", DKIMSIGN_E_FORMAT, "empty" },
};

static void test_to_ascii(void **state)
{
        (void) state;
        for (size_t i = 0; i < sizeof(ascii_cases) / sizeof(ascii_cases[0]); i++) {
                const struct ascii_case *c = &ascii_cases[i];
                char out[DKIM_DOMAIN_SIZE] = "untouched";
                const char *why = NULL;
                int r = dkim_domain_to_ascii(c->in, strlen(c->in), out, &why);

                if (r != c->r)
                        fail_msg("case %zu (%s): got %d, want %d (%s)", i, c->in, r, c->r, why ? why : "");
                if (r == 0 && strcmp(out, c->out) != 0)
                        fail_msg("case %zu: got %s, want %s", i, out, c->out);
                if (r != 0 && (strcmp(out, "untouched") != 0 || !why || !strstr(why, c->out)))
                        fail_msg("case %zu: output written, or reason '%s' does not say '%s'", i,
                                 why ? why : "(none)", c->out);
        }
        /* The reason is optional; the length is the caller's, not a NUL. */
        char out[DKIM_DOMAIN_SIZE];
        assert_int_equal(dkim_domain_to_ascii("\xff", 1, out, NULL), DKIMSIGN_E_IDN);
        assert_int_equal(dkim_domain_to_ascii("b\xc3\xbc" "cher.example.org", 15, out, NULL), 0);
        assert_string_equal(out, "xn--bcher-kva.example");
        assert_int_equal(dkim_domain_to_ascii("a\0b", 3, out, NULL), DKIMSIGN_E_FORMAT);
}

/* A name of 253 octets in A-label form is the longest; one more is refused. */
static void test_lengths(void **state)
{
        char in[DKIM_IDN_INPUT_MAX + 2], out[DKIM_DOMAIN_SIZE];
        const char *why = NULL;
        size_t n = 0;

        (void) state;
        /* "xn--tda" (7) is "ü" (2 octets): 31 labels of 7 + dots = 247,
         * then ".abcde" = 253. */
        for (int i = 0; i < 31; i++) {
                memcpy(in + n, "\xc3\xbc.", 3);
                n += 3;
        }
        memcpy(in + n, "abcde", 5);
        n += 5;
        assert_int_equal(dkim_domain_to_ascii(in, n, out, NULL), 0);
        assert_int_equal(strlen(out), DKIM_DOMAIN_MAX);
        in[n++] = 'f';
        assert_int_equal(dkim_domain_to_ascii(in, n, out, &why), DKIMSIGN_E_IDN);
        assert_non_null(strstr(why, "253"));
        /* Far longer input is refused before libidn2 sees it. */
        memset(in, 'a', sizeof(in));
        memcpy(in, "\xc3\xbc", 2);
        assert_int_equal(dkim_domain_to_ascii(in, sizeof(in), out, &why), DKIMSIGN_E_IDN);
        assert_non_null(strstr(why, "253"));
}

struct unicode_case {
        const char *ascii;
        const char *unicode;    /* NULL: shown as it is */
};

static const struct unicode_case unicode_cases[] = {
        { "xn--bcher-kva.example", "b\xc3\xbc" "cher.example" },
        { "mail.xn--bcher-kva.example", "mail.b\xc3\xbc" "cher.example" },
        { "xn--fa-hia.de", "fa\xc3\x9f.de" },
        { "example.com", NULL },              /* nothing to show */
        { "xn--zz.example", NULL },           /* bad Punycode */
        { "xn--bcher-kvb.example", NULL },    /* decodes to what IDNA2008 refuses */
        { "XN--BCHER-KVA.example", "b\xc3\xbc" "cher.example" },   /* the same name */
};

static void test_to_unicode(void **state)
{
        (void) state;
        for (size_t i = 0; i < sizeof(unicode_cases) / sizeof(unicode_cases[0]); i++) {
                const struct unicode_case *c = &unicode_cases[i];
                char out[DKIM_IDN_UNICODE_SIZE] = "untouched";
                bool ok = dkim_domain_to_unicode(c->ascii, out, sizeof(out));

                if (ok != (c->unicode != NULL))
                        fail_msg("case %zu (%s): got %d", i, c->ascii, ok);
                if (ok && strcmp(out, c->unicode) != 0)
                        fail_msg("case %zu: got %s, want %s", i, out, c->unicode);
                if (!ok && strcmp(out, "untouched") != 0)
                        fail_msg("case %zu: output written on failure", i);
        }
        /* Too small a buffer: nothing shown. */
        char small[8] = "before";
        assert_false(dkim_domain_to_unicode("xn--bcher-kva.example", small, sizeof(small)));
        assert_string_equal(small, "before");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_to_ascii),
                cmocka_unit_test(test_lengths),
                cmocka_unit_test(test_to_unicode),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
