/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for dkim/canon.c: the RFC 6376 3.4.5 example and empty-body
 * hashes, every body hash of the DKIM test corpus (tests/data/corpus) fed whole and in random
 * chunks, hand-written edge cases, a differential test against a naive
 * per-line reference, and header field canonicalization.
 *
 * Reads the corpus named by $DKIMSIGN_CORPUS; never writes anything.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "dkim/canon.h"
#include "protocol/dkimsign-errors.h"
#include "test-util.h"
#include "dkim/header.h"

/* ---- helpers ---- */

struct out {
        uint8_t *p;
        size_t len;
        size_t cap;
};

static void out_sink(void *userdata, const uint8_t *data, size_t len)
{
        struct out *o = userdata;

        if (len > o->cap - o->len) {
                size_t cap = o->cap ? o->cap : 256;
                while (len > cap - o->len)
                        cap *= 2;
                o->p = realloc(o->p, cap);
                assert_non_null(o->p);
                o->cap = cap;
        }
        if (len > 0)
                memcpy(o->p + o->len, data, len);
        o->len += len;
}

/* memcmp() may not be given NULL, even for 0 octets. */
static bool out_equal(const struct out *o, const uint8_t *want, size_t len)
{
        return o->len == len && (len == 0 || memcmp(o->p, want, len) == 0);
}

static void out_free(struct out *o)
{
        free(o->p);
        memset(o, 0, sizeof(*o));
}

/* Deterministic chunk sizes: xorshift64 with a fixed seed per test. */
static uint64_t rng_next(uint64_t *s)
{
        uint64_t x = *s;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *s = x;
        return x;
}

/* Chunk size for a split mode: 0 whole, 1 single bytes, else random in
 * [1, mode]. */
static size_t chunk_len(size_t mode, uint64_t *rng, size_t left)
{
        size_t n;

        if (mode == 0)
                n = left;
        else if (mode == 1)
                n = 1;
        else
                n = 1 + (size_t)(rng_next(rng) % mode);
        return n < left ? n : left;
}

static void canon_run(enum dkim_canon c, const uint8_t *in, size_t len, size_t mode,
                      uint64_t seed, struct out *o)
{
        struct dkim_body_canon bc;
        uint64_t rng = seed;
        size_t pos = 0;

        dkim_body_canon_init(&bc, c, out_sink, o);
        while (pos < len) {
                size_t n = chunk_len(mode, &rng, len - pos);
                dkim_body_canon_update(&bc, in + pos, n);
                pos += n;
        }
        dkim_body_canon_final(&bc);
}

static void hash_run(enum dkim_canon c, const uint8_t *in, size_t len, size_t mode,
                     uint64_t seed, char b64[64])
{
        struct dkim_body_hash *bh = NULL;
        uint8_t d[DKIM_SHA256_LEN];
        uint64_t rng = seed;
        size_t pos = 0;

        assert_int_equal(dkim_body_hash_new(c, &bh), 0);
        while (pos < len) {
                size_t n = chunk_len(mode, &rng, len - pos);
                dkim_body_hash_update(bh, in + pos, n);
                pos += n;
        }
        assert_int_equal(dkim_body_hash_final(bh, d), 0);
        dkim_body_hash_free(bh);
        EVP_EncodeBlock((unsigned char *)b64, d, DKIM_SHA256_LEN);
}

/* Offset of the body: after the first empty line (LF or CRLF); the message
 * length when there is none. */
static size_t body_offset(const uint8_t *m, size_t len)
{
        size_t pos = 0;

        while (pos < len) {
                const uint8_t *lf = memchr(m + pos, '\n', len - pos);
                if (!lf)
                        return len;
                size_t n = (size_t)(lf - (m + pos));
                if (n == 0 || (n == 1 && m[pos] == '\r'))
                        return pos + n + 1;
                pos += n + 1;
        }
        return len;
}

/* Splits a line into tab-separated fields in place; returns the count. */
static size_t split_tabs(char *line, char **fields, size_t max)
{
        size_t n = 0;
        char *save = NULL;

        for (char *t = strtok_r(line, "\t", &save); t && n < max; t = strtok_r(NULL, "\t", &save))
                fields[n++] = t;
        return n;
}

/* ---- a naive reference: whole body in memory, one line at a time ---- */

static void ref_canon(enum dkim_canon c, const uint8_t *in, size_t len, struct out *o)
{
        size_t pos = 0, keep = 0;

        while (pos < len) {
                const uint8_t *lf = memchr(in + pos, '\n', len - pos);
                size_t n = lf ? (size_t)(lf - (in + pos)) : len - pos;
                size_t next = lf ? pos + n + 1 : len;
                if (lf && n > 0 && in[pos + n - 1] == '\r')
                        n--;
                size_t start = o->len;
                for (size_t i = 0; i < n; i++) {
                        uint8_t b = in[pos + i];
                        bool wsp = b == ' ' || b == '\t';
                        if (c == DKIM_CANON_RELAXED && wsp) {
                                size_t j = i;
                                while (j < n && (in[pos + j] == ' ' || in[pos + j] == '\t'))
                                        j++;
                                if (j < n)
                                        out_sink(o, (const uint8_t *)" ", 1);
                                i = j - 1;
                                continue;
                        }
                        out_sink(o, &b, 1);
                }
                size_t content_len = o->len - start;
                out_sink(o, (const uint8_t *)"\r\n", 2);
                /* Everything up to the last non-empty line stays. */
                if (content_len > 0)
                        keep = o->len;
                pos = next;
        }
        o->len = keep;
        if (c == DKIM_CANON_SIMPLE && o->len == 0)
                out_sink(o, (const uint8_t *)"\r\n", 2);
}

/* ---- tests ---- */

static void test_names(void **state)
{
        enum dkim_canon c = DKIM_CANON_SIMPLE;

        (void)state;
        assert_int_equal(dkim_canon_from_string("relaxed", &c), 0);
        assert_int_equal(c, DKIM_CANON_RELAXED);
        assert_int_equal(dkim_canon_from_string("SiMpLe", &c), 0);
        assert_int_equal(c, DKIM_CANON_SIMPLE);
        assert_int_equal(dkim_canon_from_string("relaxedx", &c), DKIMSIGN_E_FORMAT);
        assert_int_equal(dkim_canon_from_string("", &c), DKIMSIGN_E_FORMAT);
        assert_int_equal(dkim_canon_from_string("simple/simple", &c), DKIMSIGN_E_FORMAT);
        assert_int_equal(dkim_canon_from_string(NULL, &c), DKIMSIGN_E_FORMAT);
        assert_int_equal(c, DKIM_CANON_SIMPLE);
        assert_string_equal(dkim_canon_to_string(DKIM_CANON_SIMPLE), "simple");
        assert_string_equal(dkim_canon_to_string(DKIM_CANON_RELAXED), "relaxed");
}

static void assert_file_equal(const struct out *o, const char *expected_file)
{
        size_t len;
        uint8_t *exp = test_read_corpus(expected_file, &len);

        assert_int_equal(o->len, len);
        assert_memory_equal(o->p, exp, len);
        free(exp);
}

static void test_rfc_example_body(void **state)
{
        static const struct {
                enum dkim_canon c;
                const char *file;
        } cases[] = {
                { DKIM_CANON_SIMPLE, "rfc6376/canon-example.simple-body.txt" },
                { DKIM_CANON_RELAXED, "rfc6376/canon-example.relaxed-body.txt" },
        };
        size_t len;
        uint8_t *m = test_read_corpus("rfc6376/canon-example.eml", &len);
        size_t off = body_offset(m, len);

        (void)state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
                for (size_t mode = 0; mode < 3; mode++) {
                        struct out o = { 0 };
                        canon_run(cases[i].c, m + off, len - off, mode, 42, &o);
                        assert_file_equal(&o, cases[i].file);
                        out_free(&o);
                }
        free(m);
}

static void test_rfc_example_header(void **state)
{
        static const struct {
                enum dkim_canon c;
                const char *file;
        } cases[] = {
                { DKIM_CANON_SIMPLE, "rfc6376/canon-example.simple-header.txt" },
                { DKIM_CANON_RELAXED, "rfc6376/canon-example.relaxed-header.txt" },
        };
        const struct dkim_header_limits lim = { .max_fields = 100, .max_line = 998 };
        struct dkim_headers h;
        size_t len;
        uint8_t *m = test_read_corpus("rfc6376/canon-example.eml", &len);
        /* The header block ends before the empty separator line. */
        size_t block = body_offset(m, len) - 2;

        (void)state;
        assert_int_equal(dkim_headers_parse(m, block, &lim, &h), 0);
        assert_int_equal(h.count, 2);
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct out o = { 0 };
                for (size_t f = 0; f < h.count; f++)
                        dkim_header_canon(cases[i].c, h.block + h.fields[f].off, h.fields[f].len,
                                          true, out_sink, &o);
                assert_file_equal(&o, cases[i].file);
                out_free(&o);
        }
        dkim_headers_deinit(&h);
        free(m);
}

static void test_empty_body_hashes(void **state)
{
        size_t len, rows = 0;
        char *tsv = (char *)test_read_corpus("rfc6376/empty-body-hashes.tsv", &len);
        char *save = NULL;

        (void)state;
        for (char *line = strtok_r(tsv, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char *f[5];
                enum dkim_canon c;
                char b64[64];
                if (split_tabs(line, f, 5) < 4 || strcmp(f[1], "sha256") != 0)
                        continue;       /* header line, sha1 rows */
                assert_int_equal(dkim_canon_from_string(f[0], &c), 0);
                hash_run(c, NULL, 0, 0, 1, b64);
                assert_string_equal(b64, f[3]);
                rows++;
        }
        assert_int_equal(rows, 2);
        free(tsv);
}

static void test_corpus_bodyhash(void **state)
{
        /* whole, single bytes, random up to 7, 64 and 5000 bytes */
        static const size_t modes[] = { 0, 1, 7, 64, 5000 };
        size_t len, rows = 0;
        char *tsv = (char *)test_read_corpus("bodyhash.tsv", &len);
        char *save = NULL;

        (void)state;
        for (char *line = strtok_r(tsv, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char *f[5];
                if (split_tabs(line, f, 5) < 3 || strcmp(f[0], "file") == 0)
                        continue;
                size_t mlen;
                uint8_t *m = test_read_corpus(f[0], &mlen);
                size_t off = body_offset(m, mlen);
                for (size_t mi = 0; mi < sizeof(modes) / sizeof(modes[0]); mi++) {
                        char b64[64];
                        hash_run(DKIM_CANON_SIMPLE, m + off, mlen - off, modes[mi], rows + 1, b64);
                        if (strcmp(b64, f[1]) != 0)
                                fail_msg("%s simple mode %zu: %s != %s", f[0], modes[mi], b64, f[1]);
                        hash_run(DKIM_CANON_RELAXED, m + off, mlen - off, modes[mi], rows + 1, b64);
                        if (strcmp(b64, f[2]) != 0)
                                fail_msg("%s relaxed mode %zu: %s != %s", f[0], modes[mi], b64, f[2]);
                }
                free(m);
                rows++;
        }
        assert_true(rows >= 80);
        free(tsv);
}

#define S(x) (const uint8_t *)(x), sizeof(x) - 1

struct hand_case {
        enum dkim_canon c;
        const uint8_t *in;
        size_t in_len;
        const uint8_t *out;
        size_t out_len;
};

#define SIMPLE(in, out) { DKIM_CANON_SIMPLE, S(in), S(out) }
#define RELAXED(in, out) { DKIM_CANON_RELAXED, S(in), S(out) }

static const struct hand_case hand_cases[] = {
        /* empty bodies */
        SIMPLE("", "\r\n"),
        RELAXED("", ""),
        SIMPLE("\r\n", "\r\n"),
        RELAXED("\r\n", ""),
        /* only blank lines */
        SIMPLE("\r\n\r\n\r\n", "\r\n"),
        RELAXED("\r\n\r\n\r\n", ""),
        SIMPLE("\n\n\n\n", "\r\n"),
        /* only whitespace lines: simple keeps them, relaxed empties them */
        SIMPLE("  \r\n\t\r\n", "  \r\n\t\r\n"),
        RELAXED("  \r\n\t\r\n \t \r\n\r\n", ""),
        RELAXED(" ", ""),
        /* trailing whitespace and tabs */
        SIMPLE("abc \t \r\n", "abc \t \r\n"),
        RELAXED("abc \t \r\n", "abc\r\n"),
        RELAXED("a\tb\t\tc\r\n", "a b c\r\n"),
        RELAXED("a b  c   d\r\n", "a b c d\r\n"),
        RELAXED("  a\r\n\tb\r\n \t c\r\n", " a\r\n b\r\n c\r\n"),
        /* blank and whitespace lines inside the body stay */
        SIMPLE("\r\n\r\nabc", "\r\n\r\nabc\r\n"),
        SIMPLE("a\r\n\r\n\r\nb\r\n\r\n", "a\r\n\r\n\r\nb\r\n"),
        RELAXED("a\r\n \r\n\t\r\nb\r\n \r\n", "a\r\n\r\n\r\nb\r\n"),
        /* missing final CRLF */
        SIMPLE("abc", "abc\r\n"),
        RELAXED("abc", "abc\r\n"),
        RELAXED("abc  ", "abc\r\n"),
        SIMPLE("a\r\nb", "a\r\nb\r\n"),
        /* bare LF is a line end */
        SIMPLE("a\nb\n\n", "a\r\nb\r\n"),
        RELAXED("a \nb\n", "a\r\nb\r\n"),
        SIMPLE("a\r\n\nb", "a\r\n\r\nb\r\n"),
        /* bare CR is content */
        SIMPLE("a\rb\r\n", "a\rb\r\n"),
        RELAXED("a \r b\r\n", "a \r b\r\n"),
        RELAXED("a  \r  b\r\n", "a \r b\r\n"),
        SIMPLE("a\r", "a\r\r\n"),
        RELAXED("a\r", "a\r\r\n"),
        SIMPLE("\r", "\r\r\n"),
        RELAXED("\r", "\r\r\n"),
        SIMPLE("\r\r\n", "\r\r\n"),
        RELAXED("\r\r\n\r\n", "\r\r\n"),
        SIMPLE("\r\r\r\n", "\r\r\r\n"),
        RELAXED("x\r\r \n", "x\r\r\r\n"),
        /* 8-bit and NUL octets are content */
        RELAXED("caf\xc3\xa9  x\r\n", "caf\xc3\xa9 x\r\n"),
        SIMPLE("a\0b\r\n", "a\0b\r\n"),
        RELAXED("a\0 \0\r\n", "a\0 \0\r\n"),
        /* whitespace around the 16-octet blocks of the run scan */
        RELAXED("aaaaaaaaaaaaaaa  b\r\n", "aaaaaaaaaaaaaaa b\r\n"),
        RELAXED("aaaaaaaaaaaaaaaa b\r\n", "aaaaaaaaaaaaaaaa b\r\n"),
        RELAXED("aaaaaaaaaaaaaaaa\tb\r\n", "aaaaaaaaaaaaaaaa b\r\n"),
        RELAXED("0123456789abcdef0123456789abcdef \r\n", "0123456789abcdef0123456789abcdef\r\n"),
        RELAXED("0123456789abcdef0123456789abcde \n", "0123456789abcdef0123456789abcde\r\n"),
        RELAXED("0123456789 bcdef 123456789 bcdef 1 3 5 7 9 b d f\r\n",
                "0123456789 bcdef 123456789 bcdef 1 3 5 7 9 b d f\r\n"),
        RELAXED("0123456789abcdef0123456789abcdef0\r0123456789abcdef\r\n",
                "0123456789abcdef0123456789abcdef0\r0123456789abcdef\r\n"),
        /* the RFC example, inline */
        SIMPLE(" C \r\nD \t E\r\n\r\n\r\n", " C \r\nD \t E\r\n"),
        RELAXED(" C \r\nD \t E\r\n\r\n\r\n", " C\r\nD E\r\n"),
};

static void check_hand(const struct hand_case *hc, size_t idx, const struct out *o, const char *how)
{
        if (!out_equal(o, hc->out, hc->out_len))
                fail_msg("hand case %zu (%s, %s): got %zu octets, want %zu", idx,
                         dkim_canon_to_string(hc->c), how, o->len, hc->out_len);
}

static void test_hand_cases(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(hand_cases) / sizeof(hand_cases[0]); i++) {
                const struct hand_case *hc = &hand_cases[i];
                for (size_t mode = 0; mode < 2; mode++) {
                        struct out o = { 0 };
                        canon_run(hc->c, hc->in, hc->in_len, mode, 1, &o);
                        check_hand(hc, i, &o, mode ? "bytes" : "whole");
                        out_free(&o);
                }
                /* every two-chunk split, empty chunks included: catches a CR
                 * at the end of a chunk */
                for (size_t cut = 0; cut <= hc->in_len; cut++) {
                        struct dkim_body_canon bc;
                        struct out o = { 0 };
                        dkim_body_canon_init(&bc, hc->c, out_sink, &o);
                        dkim_body_canon_update(&bc, hc->in, cut);
                        dkim_body_canon_update(&bc, hc->in + cut, 0);
                        dkim_body_canon_update(&bc, hc->in + cut, hc->in_len - cut);
                        dkim_body_canon_final(&bc);
                        check_hand(hc, i, &o, "split");
                        out_free(&o);
                }
                struct out ref = { 0 };
                ref_canon(hc->c, hc->in, hc->in_len, &ref);
                check_hand(hc, i, &ref, "reference");
                out_free(&ref);
        }
}

/* A 1 MiB line with whitespace runs, without a final line end. */
static void test_long_line(void **state)
{
        const size_t len = 1 << 20;
        uint8_t *in = malloc(len);
        struct out want = { 0 };

        (void)state;
        assert_non_null(in);
        for (size_t i = 0; i < len; i++) {
                uint8_t c = (uint8_t)('a' + i % 26);
                if (i % 1000 >= 997)
                        c = (i % 2) ? ' ' : '\t';
                in[i] = c;
        }
        /* relaxed: each run of three WSP becomes one SP, the last run goes */
        for (size_t i = 0; i < len; i++) {
                if (in[i] == ' ' || in[i] == '\t') {
                        if (i % 1000 == 997 && len - i > 3)
                                out_sink(&want, (const uint8_t *)" ", 1);
                        continue;
                }
                out_sink(&want, in + i, 1);
        }
        out_sink(&want, (const uint8_t *)"\r\n", 2);
        assert_true(len % 1000 == 576);   /* the line ends in letters */
        for (size_t mode = 0; mode < 4; mode++) {
                size_t m = mode == 3 ? 100000 : mode;
                struct out o = { 0 };
                canon_run(DKIM_CANON_RELAXED, in, len, m, 7, &o);
                assert_int_equal(o.len, want.len);
                assert_memory_equal(o.p, want.p, want.len);
                out_free(&o);

                canon_run(DKIM_CANON_SIMPLE, in, len, m, 7, &o);
                assert_int_equal(o.len, len + 2);
                assert_memory_equal(o.p, in, len);
                assert_memory_equal(o.p + len, "\r\n", 2);
                out_free(&o);
        }
        out_free(&want);
        free(in);
}

/* Random bodies over small alphabets, so CR, LF and WSP meet in every
 * combination, densely and in long text-like lines (the relaxed block path
 * works on 64 octets): whole vs chunked vs the naive reference. */
static void test_random_differential(void **state)
{
        static const struct {
                const char *alphabet;
                size_t max_len;
        } kinds[] = {
                { "ab \t\r\n\xc3", 300 },
                { "abcdefghijklmnopqrstuvwxyz abcdefghijklmnopqrstuvwxyz \t\r\n", 3000 },
                { "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz   \t\r\n\r\n", 3000 },
        };
        uint64_t rng = 0x9e3779b97f4a7c15ULL;
        uint8_t in[3000];

        (void)state;
        for (size_t iter = 0; iter < 6000; iter++) {
                const char *alpha = kinds[iter % 3].alphabet;
                size_t alen = strlen(alpha);
                size_t len = (size_t)(rng_next(&rng) % (kinds[iter % 3].max_len + 1));
                for (size_t i = 0; i < len; i++)
                        in[i] = (uint8_t)alpha[rng_next(&rng) % alen];
                for (int c = DKIM_CANON_SIMPLE; c <= DKIM_CANON_RELAXED; c++) {
                        struct out ref = { 0 }, whole = { 0 }, chunked = { 0 };
                        ref_canon((enum dkim_canon)c, in, len, &ref);
                        canon_run((enum dkim_canon)c, in, len, 0, 1, &whole);
                        canon_run((enum dkim_canon)c, in, len, 1 + iter % 300, iter, &chunked);
                        if (!out_equal(&whole, ref.p, ref.len) || !out_equal(&chunked, ref.p, ref.len))
                                fail_msg("random case %zu (%s, %zu octets) differs", iter,
                                         dkim_canon_to_string((enum dkim_canon)c), len);
                        out_free(&ref);
                        out_free(&whole);
                        out_free(&chunked);
                }
        }
}

/* Held-back blank lines exceed the stage and the CRLF block. */
static void test_many_blank_lines(void **state)
{
        const size_t lines = 20000;
        uint8_t *in = malloc(lines * 2 + 1);

        (void)state;
        assert_non_null(in);
        for (size_t i = 0; i < lines; i++)
                memcpy(in + 2 * i, "\r\n", 2);
        in[lines * 2] = 'x';
        struct out o = { 0 };
        canon_run(DKIM_CANON_RELAXED, in, lines * 2 + 1, 3, 5, &o);
        assert_int_equal(o.len, lines * 2 + 3);
        for (size_t i = 0; i < lines; i++)
                assert_memory_equal(o.p + 2 * i, "\r\n", 2);
        assert_memory_equal(o.p + lines * 2, "x\r\n", 3);
        out_free(&o);
        canon_run(DKIM_CANON_SIMPLE, in, lines * 2, 0, 5, &o);
        assert_int_equal(o.len, 2);
        out_free(&o);
        free(in);
}

static void test_body_hash_api(void **state)
{
        static const uint8_t body[] = "Hello  \tworld \r\n\r\n";
        struct dkim_body_hash *bh = NULL;
        uint8_t d[DKIM_SHA256_LEN], want[DKIM_SHA256_LEN];
        unsigned int wlen = 0;

        (void)state;
        assert_int_equal(dkim_body_hash_new(DKIM_CANON_RELAXED, &bh), 0);
        dkim_body_hash_update(bh, body, sizeof(body) - 1);
        assert_int_equal(dkim_body_hash_final(bh, d), 0);
        assert_int_equal(EVP_Digest("Hello world\r\n", 13, want, &wlen, EVP_sha256(), NULL), 1);
        assert_memory_equal(d, want, sizeof(want));
        /* finished: updates are ignored and a second final is refused */
        dkim_body_hash_update(bh, body, sizeof(body) - 1);
        memset(d, 0xaa, sizeof(d));
        assert_int_equal(dkim_body_hash_final(bh, d), DKIMSIGN_E_INTERNAL);
        assert_int_equal(d[0], 0xaa);
        assert_null(dkim_body_hash_free(bh));
        assert_null(dkim_body_hash_free(NULL));
}

struct hdr_case {
        enum dkim_canon c;
        const uint8_t *in;
        size_t in_len;
        bool crlf;
        const uint8_t *out;
        size_t out_len;
};

static const struct hdr_case hdr_cases[] = {
        { DKIM_CANON_SIMPLE, S("Subject : Hi \r\n there "), true, S("Subject : Hi \r\n there \r\n") },
        { DKIM_CANON_SIMPLE, S("A:b"), false, S("A:b") },
        { DKIM_CANON_RELAXED, S("Subject : Hi \r\n there "), true, S("subject:Hi there\r\n") },
        { DKIM_CANON_RELAXED, S("SUBJECT:\tHi\t\tthere"), false, S("subject:Hi there") },
        { DKIM_CANON_RELAXED, S("X-A:"), true, S("x-a:\r\n") },
        { DKIM_CANON_RELAXED, S("X-A: \r\n \t"), true, S("x-a:\r\n") },
        { DKIM_CANON_RELAXED, S("X-A:\r\n\tvalue"), true, S("x-a:value\r\n") },
        { DKIM_CANON_RELAXED, S("X-A:a\r\n\r\n b"), true, S("x-a:a b\r\n") },
        { DKIM_CANON_RELAXED, S("X-\xc3\xa9:  \xc3\xa9  \xc3\xa9 "), true, S("x-\xc3\xa9:\xc3\xa9 \xc3\xa9\r\n") },
        { DKIM_CANON_RELAXED, S("B : Y\t\r\n\tZ  "), true, S("b:Y Z\r\n") },
        { DKIM_CANON_RELAXED, S("A:b\rc"), true, S("a:b\rc\r\n") },
        { DKIM_CANON_RELAXED, S("NoColon  "), true, S("nocolon\r\n") },
};

static void test_header_canon(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof(hdr_cases) / sizeof(hdr_cases[0]); i++) {
                const struct hdr_case *hc = &hdr_cases[i];
                struct out o = { 0 };
                dkim_header_canon(hc->c, hc->in, hc->in_len, hc->crlf, out_sink, &o);
                if (!out_equal(&o, hc->out, hc->out_len))
                        fail_msg("header case %zu: got %zu octets, want %zu", i, o.len, hc->out_len);
                out_free(&o);
        }
}

/* A long folded field goes past the relaxed output buffer. */
static void test_header_canon_long(void **state)
{
        struct out in = { 0 }, want = { 0 }, o = { 0 };

        (void)state;
        out_sink(&in, (const uint8_t *)"X-Long:", 7);
        out_sink(&want, (const uint8_t *)"x-long:", 7);
        for (size_t i = 0; i < 500; i++) {
                out_sink(&in, (const uint8_t *)"  word\r\n\tmore", 13);
                out_sink(&want, (const uint8_t *)(i ? " word more" : "word more"), i ? 10 : 9);
        }
        uint8_t big[1000];
        memset(big, 'z', sizeof(big));
        out_sink(&in, (const uint8_t *)" ", 1);
        out_sink(&in, big, sizeof(big));
        out_sink(&want, (const uint8_t *)" ", 1);
        out_sink(&want, big, sizeof(big));
        dkim_header_canon(DKIM_CANON_RELAXED, in.p, in.len, false, out_sink, &o);
        assert_int_equal(o.len, want.len);
        assert_memory_equal(o.p, want.p, want.len);
        out_free(&in);
        out_free(&want);
        out_free(&o);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_names),
                cmocka_unit_test(test_rfc_example_body),
                cmocka_unit_test(test_rfc_example_header),
                cmocka_unit_test(test_empty_body_hashes),
                cmocka_unit_test(test_corpus_bodyhash),
                cmocka_unit_test(test_hand_cases),
                cmocka_unit_test(test_long_line),
                cmocka_unit_test(test_random_differential),
                cmocka_unit_test(test_many_blank_lines),
                cmocka_unit_test(test_body_hash_api),
                cmocka_unit_test(test_header_canon),
                cmocka_unit_test(test_header_canon_long),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
