/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for dkim/header.c: splitting header blocks into fields (limits
 * and malformed input), field name lookup, From-domain extraction and
 * domain syntax, plus every signing input of the DKIM test corpus (tests/data/corpus).
 *
 * Reads the corpus named by $DKIMSIGN_CORPUS; never writes anything.
 */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

#include "protocol/dkimsign-errors.h"
#include "test-util.h"
#include "dkim/header.h"

#define S(x) (const uint8_t *)(x), sizeof(x) - 1

static const struct dkim_header_limits default_limits = { .max_fields = 64, .max_line = 998 };

static bool is_zeroed(const struct dkim_headers *h)
{
        return !h->block && h->block_len == 0 && !h->fields && h->count == 0;
}

/* ---- splitting ---- */

struct parse_case {
        const char *name;
        const uint8_t *in;
        size_t len;
        size_t max_fields;      /* 0: default_limits */
        size_t max_line;
        int r;
        size_t count;
};

static const struct parse_case parse_cases[] = {
        { "one field", S("A: b\r\n"), 0, 0, 0, 1 },
        { "folded", S("Subject: a\r\n b\r\n\tc\r\nTo: x\r\n"), 0, 0, 0, 2 },
        { "whitespace-only continuation", S("A: b\r\n\t\r\n \r\nB:\r\n"), 0, 0, 0, 2 },
        { "space before colon", S("From : a@b.c\r\n"), 0, 0, 0, 1 },
        { "empty value", S("X-Empty:\r\n"), 0, 0, 0, 1 },
        { "8-bit value", S("Subject: caf\xc3\xa9 \xff\r\n"), 0, 0, 0, 1 },
        { "empty block", S(""), 0, 0, DKIMSIGN_E_FORMAT, 0 },
        { "only CRLF", S("\r\n"), 0, 0, DKIMSIGN_E_FORMAT, 0 },
        { "continuation first", S(" x: y\r\nA: b\r\n"), 0, 0, DKIMSIGN_E_FORMAT, 0 },
        { "tab continuation first", S("\tA: b\r\n"), 0, 0, DKIMSIGN_E_FORMAT, 0 },
        { "line without colon", S("A: b\r\nNoColon\r\n"), 0, 0, DKIMSIGN_E_FORMAT, 0 },
        { "NUL in value", S("A: b\0c\r\n"), 0, 0, DKIMSIGN_E_FORMAT, 0 },
        { "NUL in name", S("A\0: b\r\n"), 0, 0, DKIMSIGN_E_FORMAT, 0 },
        { "bare LF", S("A: b\nB: c\r\n"), 0, 0, DKIMSIGN_E_FORMAT, 0 },
        { "bare LF at end", S("A: b\n"), 0, 0, DKIMSIGN_E_FORMAT, 0 },
        { "bare CR", S("A: b\rc\r\n"), 0, 0, DKIMSIGN_E_FORMAT, 0 },
        { "LF first", S("\nA: b\r\n"), 0, 0, DKIMSIGN_E_FORMAT, 0 },
        { "no final CRLF", S("A: b"), 0, 0, DKIMSIGN_E_FORMAT, 0 },
        { "final CR only", S("A: b\r"), 0, 0, DKIMSIGN_E_FORMAT, 0 },
        { "empty line inside", S("A: b\r\n\r\nB: c\r\n"), 0, 0, DKIMSIGN_E_FORMAT, 0 },
        { "separator included", S("A: b\r\n\r\n"), 0, 0, DKIMSIGN_E_FORMAT, 0 },
        { "empty name", S(": b\r\n"), 0, 0, DKIMSIGN_E_FORMAT, 0 },
        { "space in name", S("Fr om: x\r\n"), 0, 0, DKIMSIGN_E_FORMAT, 0 },
        { "control in name", S("Fr\x01om: x\r\n"), 0, 0, DKIMSIGN_E_FORMAT, 0 },
        { "8-bit name", S("Fr\xc3\xb6m: x\r\n"), 0, 0, DKIMSIGN_E_FORMAT, 0 },
        { "DEL in name", S("A\x7f: x\r\n"), 0, 0, DKIMSIGN_E_FORMAT, 0 },
        { "fields at limit", S("A: 1\r\nB: 2\r\n"), 2, 998, 0, 2 },
        { "fields over limit", S("A: 1\r\nB: 2\r\nC: 3\r\n"), 2, 998, DKIMSIGN_E_TOO_LARGE, 0 },
        { "continuation is not a field", S("A: 1\r\n 2\r\nB: 3\r\n"), 2, 998, 0, 2 },
        { "line at limit", S("A: 1234567\r\n"), 64, 10, 0, 1 },
        { "line over limit", S("A: 12345678\r\n"), 64, 10, DKIMSIGN_E_TOO_LARGE, 0 },
        { "continuation over limit", S("A: 1\r\n 1234567890\r\n"), 64, 10, DKIMSIGN_E_TOO_LARGE, 0 },
        { "long line, no line end", S("A: 12345678901234567890"), 64, 10, DKIMSIGN_E_TOO_LARGE, 0 },
        { "short line, no line end", S("A: 12"), 64, 10, DKIMSIGN_E_FORMAT, 0 },
        { "zero fields allowed", S("A: 1\r\n"), SIZE_MAX, 0, DKIMSIGN_E_TOO_LARGE, 0 },
};

static void test_parse_cases(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
                const struct parse_case *pc = &parse_cases[i];
                struct dkim_header_limits lim = default_limits;
                if (pc->max_fields == SIZE_MAX)
                        lim = (struct dkim_header_limits){ .max_fields = 0, .max_line = 998 };
                else if (pc->max_fields > 0)
                        lim = (struct dkim_header_limits){ .max_fields = pc->max_fields,
                                                           .max_line = pc->max_line };
                struct dkim_headers h;
                memset(&h, 0x5a, sizeof(h));
                int r = dkim_headers_parse(pc->in, pc->len, &lim, &h);
                if (r != pc->r)
                        fail_msg("%s: got %d, want %d", pc->name, r, pc->r);
                if (r == 0) {
                        assert_int_equal(h.count, pc->count);
                        assert_ptr_equal(h.block, pc->in);
                        assert_int_equal(h.block_len, pc->len);
                } else if (!is_zeroed(&h)) {
                        fail_msg("%s: output not zeroed on failure", pc->name);
                }
                dkim_headers_deinit(&h);
                assert_true(is_zeroed(&h));
        }
}

/* Field offsets, lengths and names of a folded block. */
static void test_parse_fields(void **state)
{
        static const uint8_t block[] = "Subject: a\r\n b\r\n\tc\r\nFrom  \t: x@y.z\r\nTo:t\r\n";
        struct dkim_headers h;

        (void)state;
        assert_int_equal(dkim_headers_parse(block, sizeof(block) - 1, &default_limits, &h), 0);
        assert_int_equal(h.count, 3);
        assert_int_equal(h.fields[0].off, 0);
        assert_int_equal(h.fields[0].len, strlen("Subject: a\r\n b\r\n\tc"));
        assert_int_equal(h.fields[0].name_len, 7);
        assert_int_equal(h.fields[1].off, strlen("Subject: a\r\n b\r\n\tc\r\n"));
        assert_int_equal(h.fields[1].len, strlen("From  \t: x@y.z"));
        assert_int_equal(h.fields[1].name_len, 4);
        assert_int_equal(h.fields[2].len, 4);
        assert_int_equal(h.fields[2].name_len, 2);
        assert_int_equal(h.fields[2].off + h.fields[2].len + 2, sizeof(block) - 1);

        assert_true(dkim_field_name_is(&h, 0, "subject"));
        assert_true(dkim_field_name_is(&h, 0, "SUBJECT"));
        assert_false(dkim_field_name_is(&h, 0, "subjec"));
        assert_false(dkim_field_name_is(&h, 0, "subjects"));
        assert_true(dkim_field_name_is(&h, 1, "from"));
        assert_false(dkim_field_name_is(&h, 3, "to"));  /* out of range */
        assert_int_equal(dkim_headers_count(&h, "FROM"), 1);
        assert_int_equal(dkim_headers_count(&h, "to"), 1);
        assert_int_equal(dkim_headers_count(&h, "cc"), 0);
        dkim_headers_deinit(&h);
        dkim_headers_deinit(&h);        /* twice is fine */
}

/* Many fields: the table grows past its first allocation. */
static void test_parse_many(void **state)
{
        const size_t n = 1000;
        char *block = malloc(n * 8 + 1);
        size_t len = 0;
        struct dkim_headers h;

        (void)state;
        assert_non_null(block);
        for (size_t i = 0; i < n; i++)
                len += (size_t)sprintf(block + len, "X%03zu: \r\n", i);
        struct dkim_header_limits lim = { .max_fields = n, .max_line = 998 };
        assert_int_equal(dkim_headers_parse((const uint8_t *)block, len, &lim, &h), 0);
        assert_int_equal(h.count, n);
        assert_true(dkim_field_name_is(&h, 999, "x999"));
        assert_int_equal(dkim_headers_count(&h, "X500"), 1);
        dkim_headers_deinit(&h);
        lim.max_fields = n - 1;
        assert_int_equal(dkim_headers_parse((const uint8_t *)block, len, &lim, &h),
                         DKIMSIGN_E_TOO_LARGE);
        assert_true(is_zeroed(&h));
        free(block);
}

/* ---- From domain ---- */

struct from_case {
        const char *block;
        int r;
        const char *domain;
};

static const struct from_case from_cases[] = {
        { "From: user@example.com\r\n", 0, "example.com" },
        { "From: User@Example.COM\r\n", 0, "example.com" },
        { "from:user@example.com\r\n", 0, "example.com" },
        { "FROM : user@example.com\r\n", 0, "example.com" },
        { "From\t: user@example.com\r\n", 0, "example.com" },
        { "To: a@b.c\r\nFrom: user@example.com\r\nSubject: x\r\n", 0, "example.com" },
        /* display names, quotes, comments, angle addresses */
        { "From: Joe Q. Public <john.q.public@example.com>\r\n", 0, "example.com" },
        { "From: <joe@good.example>\r\n", 0, "good.example" },
        { "From: \"Joe@evil.com\" <joe@good.example>\r\n", 0, "good.example" },
        { "From: \"a\\\"b@evil.com\" <joe@good.example>\r\n", 0, "good.example" },
        { "From: \"<x@evil.com>\" <joe@good.example>\r\n", 0, "good.example" },
        { "From: (comment <x@evil.com>) joe@good.example\r\n", 0, "good.example" },
        { "From: joe@good.example (Joe (nested (deep)) Smith)\r\n", 0, "good.example" },
        { "From: joe@good.example (\\) still comment)\r\n", 0, "good.example" },
        { "From: Joe <joe@good.example> (comment)\r\n", 0, "good.example" },
        { "From: Joe <joe @ good.example>\r\n", 0, "good.example" },
        { "From: joe@(c)good.example\r\n", 0, "good.example" },
        { "From: \"joe smith\"@good.example\r\n", 0, "good.example" },
        { "From: \"\" <joe@good.example>\r\n", 0, "good.example" },
        { "From: \"Smith, Joe\" <j@x.example>\r\n", 0, "x.example" },
        { "From: (a, b) j@x.example\r\n", 0, "x.example" },
        { "From: Joe\r\n <joe@x.example>\r\n", 0, "x.example" },
        { "From:\r\n\tjoe@x.example\r\n", 0, "x.example" },
        { "From: Jo\xc3\xa9 <joe@x.example>\r\n", 0, "x.example" },
        { "From: j\xc3\xb6" "e@x.example\r\n", 0, "x.example" },
        { "From: Tom\xe1\x9a <Tom\xe1\x9a@football.example.com>\r\n", 0, "football.example.com" },
        { "From: a@1.2.3.4\r\n", 0, "1.2.3.4" },
        { "From: a@x-y.example\r\n", 0, "x-y.example" },
        /* RFC 6532 mail: U-labels signed for as A-labels (RFC 8616) */
        { "From: joe@b\xc3\xbc" "cher.example\r\n", 0, "xn--bcher-kva.example" },
        { "From: J\xc3\xb6" "e <j\xc3\xb6" "e@B\xc3\x9c" "CHER.Example>\r\n", 0, "xn--bcher-kva.example" },
        { "From: joe@XN--BCHER-KVA.example\r\n", 0, "xn--bcher-kva.example" },
        { "From: joe@mail.b\xc3\xbc" "cher.example\r\n", 0, "mail.xn--bcher-kva.example" },
        /* refused */
        { "To: a@b.c\r\n", DKIMSIGN_E_NO_FROM, NULL },
        { "X-From: a@b.c\r\nFromage: a@b.c\r\n", DKIMSIGN_E_NO_FROM, NULL },
        { "From: a@x.example\r\nfrom: b@y.example\r\n", DKIMSIGN_E_MULTI_FROM, NULL },
        { "From: a@x.example\r\nFROM : a@x.example\r\n", DKIMSIGN_E_MULTI_FROM, NULL },
        { "From: a@x.example, b@y.example\r\n", DKIMSIGN_E_MULTI_FROM, NULL },
        { "From: Joe, Smith <j@x.example>\r\n", DKIMSIGN_E_MULTI_FROM, NULL },
        { "From: a@x.example,\r\n", DKIMSIGN_E_MULTI_FROM, NULL },
        { "From: group: a@x.example, b@y.example;\r\n", DKIMSIGN_E_MULTI_FROM, NULL },
        { "From: group: a@x.example;\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: undisclosed-recipients:;\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: joe@[1.2.3.4]\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: Joe <joe@[IPv6:::1]>\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: joe@example.com.\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: <joe@example.com.>\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: joe@.example.com\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: joe@example..com\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: joe\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From:\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From:  (only a comment)\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: <>\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: @example.com\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: joe@\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: joe@ex_ample.com\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: joe@-example.com\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: joe@example-.com\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: joe@exa mple.com\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: joe@exa(x)mple.com\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: a@b@c.example\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: joe@b\xc3\xbc" "cher..example\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: joe@\xff.example\r\n", DKIMSIGN_E_IDN, NULL },
        { "From: joe@a\xe2\x80\x8d" "b.example\r\n", DKIMSIGN_E_IDN, NULL },    /* ZWJ, no context */
        { "From: joe@xn--zz.example\r\n", DKIMSIGN_E_IDN, NULL },                /* bad Punycode */
        { "From: joe@b\xc3\xbc" "cher_x.example\r\n", DKIMSIGN_E_IDN, NULL },
        { "From: Joe <joe@x.example\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: Joe joe@x.example>\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: \"unterminated <joe@x.example>\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: (unterminated joe@x.example\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: joe@x.example)\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: \"trailing backslash\\\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: <joe@x.example> <k@y.example>\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: joe@x.example <k@y.example>\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: a@evil.example <joe@good.example>\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: <@route.example:joe@x.example>\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: <<joe@x.example>>\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: joe@x.example;\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: .joe@x.example\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: joe.@x.example\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: \\joe@x.example\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: joe\x01@x.example\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: \"a\x01\" <joe@x.example>\r\n", DKIMSIGN_E_FORMAT, NULL },
        { "From: joe@x.example\x7f\r\n", DKIMSIGN_E_FORMAT, NULL },
};

static void test_from_cases(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(from_cases) / sizeof(from_cases[0]); i++) {
                const struct from_case *fc = &from_cases[i];
                struct dkim_headers h;
                char dom[DKIM_DOMAIN_SIZE] = "untouched";
                int r = dkim_headers_parse((const uint8_t *)fc->block, strlen(fc->block),
                                           &default_limits, &h);
                if (r != 0)
                        fail_msg("case %zu: parse failed %d: %s", i, r, fc->block);
                r = dkim_headers_from_domain(&h, dom, NULL);
                if (r != fc->r)
                        fail_msg("case %zu: got %d, want %d: %s", i, r, fc->r, fc->block);
                if (r == 0 && strcmp(dom, fc->domain) != 0)
                        fail_msg("case %zu: got %s, want %s", i, dom, fc->domain);
                if (r != 0 && strcmp(dom, "untouched") != 0)
                        fail_msg("case %zu: output written on failure", i);
                dkim_headers_deinit(&h);
        }
}

/* A From domain of the longest valid length, and one octet more. */
static void test_from_long_domain(void **state)
{
        char block[600], dom[DKIM_DOMAIN_SIZE], want[DKIM_DOMAIN_SIZE];
        struct dkim_headers h;

        (void)state;
        /* 4 labels of 63 + 3 dots = 255: trim to 253 */
        memset(want, 'a', DKIM_DOMAIN_MAX);
        for (size_t i = 63; i < DKIM_DOMAIN_MAX; i += 64)
                want[i] = '.';
        want[DKIM_DOMAIN_MAX] = '\0';
        assert_int_equal(strlen(want), 253);
        snprintf(block, sizeof(block), "From: Joe <joe@%s>\r\n", want);
        assert_int_equal(dkim_headers_parse((const uint8_t *)block, strlen(block), &default_limits, &h), 0);
        assert_int_equal(dkim_headers_from_domain(&h, dom, NULL), 0);
        assert_string_equal(dom, want);
        dkim_headers_deinit(&h);

        snprintf(block, sizeof(block), "From: Joe <joe@%sb>\r\n", want);
        assert_int_equal(dkim_headers_parse((const uint8_t *)block, strlen(block), &default_limits, &h), 0);
        assert_int_equal(dkim_headers_from_domain(&h, dom, NULL), DKIMSIGN_E_FORMAT);
        dkim_headers_deinit(&h);

        /* much longer than the buffer */
        memset(want, 'a', DKIM_DOMAIN_MAX);
        want[DKIM_DOMAIN_MAX] = '\0';
        snprintf(block, sizeof(block), "From: joe@%s.%s\r\n", want, want);
        assert_int_equal(dkim_headers_parse((const uint8_t *)block, strlen(block), &default_limits, &h), 0);
        assert_int_equal(dkim_headers_from_domain(&h, dom, NULL), DKIMSIGN_E_FORMAT);
        dkim_headers_deinit(&h);
}

struct domain_case {
        const char *s;
        bool valid;
};

static const struct domain_case domain_cases[] = {
        { "example.com", true },
        { "EXAMPLE.com", true },
        { "a", true },
        { "1.2.3.4", true },
        { "xn--bcher-kva.example", true },
        { "a-b.c-d", true },
        { "a--b.example", true },
        { "", false },
        { ".", false },
        { "example.com.", false },
        { ".example.com", false },
        { "example..com", false },
        { "-example.com", false },
        { "example-.com", false },
        { "example.-com", false },
        { "example.com-", false },
        { "ex_ample.com", false },
        { "ex ample.com", false },
        { "b\xc3\xbc" "cher.example", false },
        { "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example", true },
        { "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example", false },
};

static void test_domain_valid(void **state)
{
        char big[300];

        (void)state;
        for (size_t i = 0; i < sizeof(domain_cases) / sizeof(domain_cases[0]); i++)
                if (dkim_domain_is_valid(domain_cases[i].s, strlen(domain_cases[i].s)) !=
                    domain_cases[i].valid)
                        fail_msg("domain case %zu: %s", i, domain_cases[i].s);
        /* the length is what counts, not a NUL */
        assert_true(dkim_domain_is_valid("example.com.evil", 11));
        assert_false(dkim_domain_is_valid("a\0b", 3));
        assert_false(dkim_domain_is_valid(NULL, 0));
        memset(big, 'a', sizeof(big));
        for (size_t i = 50; i < sizeof(big); i += 51)
                big[i] = '.';
        assert_true(dkim_domain_is_valid(big, 253));
        assert_false(dkim_domain_is_valid(big, 254));
}

/* ---- the corpus: every signing input ---- */

/* The header block of a message, LF line ends made CRLF (what an MTA hands
 * the signer), without the empty separator line.  Caller frees. */
static uint8_t *header_block(const char *m, size_t len, size_t *ret_len)
{
        uint8_t *out = malloc(2 * len + 1);
        size_t o = 0;

        assert_non_null(out);
        for (size_t i = 0; i < len; i++) {
                bool lf = m[i] == '\n';
                if (lf && (i == 0 || m[i - 1] != '\r'))
                        out[o++] = '\r';
                out[o++] = (uint8_t)m[i];
                /* an empty line: the block ends before it */
                if (lf && o >= 4 && memcmp(out + o - 4, "\r\n\r\n", 4) == 0) {
                        o -= 2;
                        break;
                }
        }
        *ret_len = o;
        return out;
}

/* What a naive reading finds: the text after the last "@" of the From line. */
static void naive_domain(const uint8_t *block, size_t len, char *dom)
{
        const uint8_t *p = NULL;
        size_t n = 0;

        for (size_t i = 0; i + 5 < len; i++)
                if ((i == 0 || block[i - 1] == '\n') && strncasecmp((const char *)block + i, "from:", 5) == 0) {
                        p = memchr(block + i, '@', len - i);
                        break;
                }
        assert_non_null(p);
        for (p++; n < DKIM_DOMAIN_MAX && (isalnum(*p) || *p == '.' || *p == '-'); p++)
                dom[n++] = (char)tolower(*p);
        dom[n] = '\0';
}

static void test_corpus(void **state)
{
        const struct dkim_header_limits lim = { .max_fields = 1000, .max_line = 998 };
        size_t len, signs = 0, refusals = 0;
        char *index = (char *)test_read_corpus("index.tsv", &len);
        char *save = NULL;

        (void)state;
        for (char *line = strtok_r(index, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char *f[5], *fs = NULL;
                size_t nf = 0;
                for (char *t = strtok_r(line, "\t", &fs); t && nf < 5; t = strtok_r(NULL, "\t", &fs))
                        f[nf++] = t;
                if (nf < 3 || strcmp(f[1], "sign-input") != 0)
                        continue;
                size_t mlen, blen;
                char *m = (char *)test_read_corpus(f[0], &mlen);
                uint8_t *block = header_block(m, mlen, &blen);
                struct dkim_headers h;
                char dom[DKIM_DOMAIN_SIZE], want[DKIM_DOMAIN_SIZE];
                int r = dkim_headers_parse(block, blen, &lim, &h);
                if (strcmp(f[2], "either") == 0) {
                        /* malformed block: refusing is fine */
                        if (r == 0)
                                r = dkim_headers_from_domain(&h, dom, NULL);
                        assert_true(r == 0 || r == DKIMSIGN_E_FORMAT);
                } else if (strcmp(f[2], "refuse") == 0) {
                        if (r != 0)
                                fail_msg("%s: parse %d", f[0], r);
                        r = dkim_headers_from_domain(&h, dom, NULL);
                        assert_true(r == DKIMSIGN_E_NO_FROM || r == DKIMSIGN_E_MULTI_FROM);
                        refusals++;
                } else {
                        if (r != 0)
                                fail_msg("%s: parse %d", f[0], r);
                        r = dkim_headers_from_domain(&h, dom, NULL);
                        if (r != 0)
                                fail_msg("%s: from domain %d", f[0], r);
                        naive_domain(block, blen, want);
                        assert_string_equal(dom, want);
                        signs++;
                }
                dkim_headers_deinit(&h);
                free(block);
                free(m);
        }
        assert_true(signs >= 77);
        assert_int_equal(refusals, 2);
        free(index);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_cases),
                cmocka_unit_test(test_parse_fields),
                cmocka_unit_test(test_parse_many),
                cmocka_unit_test(test_from_cases),
                cmocka_unit_test(test_from_long_domain),
                cmocka_unit_test(test_domain_valid),
                cmocka_unit_test(test_corpus),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
