/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: body and header canonicalization.  The input is a body; it is
 * canonicalized in one piece, in two pieces split at a point taken from the
 * data, and in small chunks of a data-derived size, with both algorithms.
 * All three must give the same octets, equal to those of a naive per-line
 * reference, and the body hash must be the SHA-256 of them.  The input is
 * also canonicalized as one header field.
 *
 * Checks abort() rather than assert(): they must hold in NDEBUG builds too.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "dkim/canon.h"

#define INPUT_MAX (1024 * 1024)

#define CHECK(x) do { if (!(x)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Output buffer of fixed capacity: canonical output is at most two octets
 * per input octet (bare LF -> CRLF) plus a final CRLF. */
struct out {
        uint8_t *p;
        size_t len;
        size_t cap;
};

static void out_sink(void *userdata, const uint8_t *d, size_t len)
{
        struct out *o = userdata;

        CHECK(len <= o->cap - o->len);
        if (len > 0)
                memcpy(o->p + o->len, d, len);
        o->len += len;
}

static bool out_equal(const struct out *a, const struct out *b)
{
        return a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}

/* The RFC text, literally: whole body in memory, one line at a time. */
static void ref_canon(enum dkim_canon c, const uint8_t *in, size_t len, struct out *o)
{
        size_t pos = 0, keep = 0;

        while (pos < len) {
                const uint8_t *lf = memchr(in + pos, '\n', len - pos);
                size_t n = lf ? (size_t)(lf - (in + pos)) : len - pos;
                size_t next = lf ? pos + n + 1 : len;
                size_t start = o->len;
                if (lf && n > 0 && in[pos + n - 1] == '\r')
                        n--;
                for (size_t i = 0; i < n; i++) {
                        uint8_t b = in[pos + i];
                        if (c == DKIM_CANON_RELAXED && (b == ' ' || b == '\t')) {
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
                bool empty = o->len == start;
                out_sink(o, (const uint8_t *)"\r\n", 2);
                if (!empty)
                        keep = o->len;
                pos = next;
        }
        o->len = keep;
        if (c == DKIM_CANON_SIMPLE && o->len == 0)
                out_sink(o, (const uint8_t *)"\r\n", 2);
}

static void run_chunks(enum dkim_canon c, const uint8_t *data, size_t size, size_t step,
                       struct out *o)
{
        struct dkim_body_canon bc;

        dkim_body_canon_init(&bc, c, out_sink, o);
        for (size_t pos = 0; pos < size;) {
                size_t n = size - pos < step ? size - pos : step;
                dkim_body_canon_update(&bc, data + pos, n);
                pos += n;
        }
        dkim_body_canon_final(&bc);
}

static void check_hash(enum dkim_canon c, const uint8_t *data, size_t size, const struct out *want)
{
        struct dkim_body_hash *bh = NULL;
        uint8_t d[DKIM_SHA256_LEN], w[EVP_MAX_MD_SIZE];
        unsigned int wlen = 0;

        CHECK(dkim_body_hash_new(c, &bh) == 0);
        dkim_body_hash_update(bh, data, size);
        CHECK(dkim_body_hash_final(bh, d) == 0);
        dkim_body_hash_free(bh);
        CHECK(EVP_Digest(want->p, want->len, w, &wlen, EVP_sha256(), NULL) == 1);
        CHECK(wlen == DKIM_SHA256_LEN && memcmp(d, w, DKIM_SHA256_LEN) == 0);
}

/* No HTAB, no SP SP, no SP before CRLF. */
static void check_relaxed_text(const uint8_t *p, size_t len)
{
        for (size_t i = 0; i < len; i++) {
                CHECK(p[i] != '\t');
                if (p[i] != ' ' || len - i < 2)
                        continue;
                CHECK(p[i + 1] != ' ');
                CHECK(!(p[i + 1] == '\r' && len - i >= 3 && p[i + 2] == '\n'));
        }
}

static void check_body(enum dkim_canon c, const uint8_t *data, size_t size, size_t cut,
                       size_t step, uint8_t *mem, size_t cap)
{
        struct out whole = { mem, 0, cap }, split = { mem + cap, 0, cap };
        struct out chunked = { mem + 2 * cap, 0, cap }, ref = { mem + 3 * cap, 0, cap };
        struct dkim_body_canon bc;

        run_chunks(c, data, size, size ? size : 1, &whole);

        dkim_body_canon_init(&bc, c, out_sink, &split);
        dkim_body_canon_update(&bc, data, cut);
        dkim_body_canon_update(&bc, data + cut, size - cut);
        dkim_body_canon_final(&bc);
        CHECK(out_equal(&whole, &split));

        run_chunks(c, data, size, step, &chunked);
        CHECK(out_equal(&whole, &chunked));

        ref_canon(c, data, size, &ref);
        CHECK(out_equal(&whole, &ref));

        /* Canonical form: lines end in CRLF, none empty at the end. */
        CHECK(c == DKIM_CANON_RELAXED || whole.len >= 2);
        if (whole.len > 0)
                CHECK(whole.len >= 2 && memcmp(whole.p + whole.len - 2, "\r\n", 2) == 0);
        if (whole.len >= 4)
                CHECK(memcmp(whole.p + whole.len - 4, "\r\n\r\n", 4) != 0);
        if (c == DKIM_CANON_RELAXED)
                check_relaxed_text(whole.p, whole.len);

        check_hash(c, data, size, &whole);
}

/* Every CR and LF is part of a CRLF. */
static bool crlf_only(const uint8_t *p, size_t len)
{
        for (size_t i = 0; i < len; i++) {
                if (p[i] == '\r' && (len - i < 2 || p[i + 1] != '\n'))
                        return false;
                if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
                        return false;
        }
        return true;
}

static void check_header(enum dkim_canon c, const uint8_t *data, size_t size, uint8_t *mem,
                         size_t cap)
{
        struct out o = { mem, 0, cap };

        dkim_header_canon(c, data, size, true, out_sink, &o);
        CHECK(o.len >= 2 && memcmp(o.p + o.len - 2, "\r\n", 2) == 0);
        if (c == DKIM_CANON_SIMPLE) {
                CHECK(o.len == size + 2 && (size == 0 || memcmp(o.p, data, size) == 0));
                return;
        }
        /* Relaxed: never longer; after the colon no HTAB or SP runs and no
         * SP at the end.  Only for what the parser lets through: a clean
         * name, no bare CR or LF (those are content and may follow a SP). */
        CHECK(o.len <= size + 2);
        const uint8_t *colon = memchr(o.p, ':', o.len - 2);
        if (colon && crlf_only(data, size)) {
                size_t off = (size_t)(colon - o.p);
                check_relaxed_text(o.p + off, o.len - off);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size > INPUT_MAX)
                return 0;

        size_t cut = 0, step = 1;
        if (size >= 2) {
                cut = ((size_t)data[0] << 8 | data[1]) % (size + 1);
                step = 1 + data[size - 1] % 97;
        }
        size_t cap = 2 * size + 2;
        uint8_t *mem = malloc(4 * cap);
        CHECK(mem != NULL);
        for (int c = DKIM_CANON_SIMPLE; c <= DKIM_CANON_RELAXED; c++) {
                check_body((enum dkim_canon)c, data, size, cut, step, mem, cap);
                check_header((enum dkim_canon)c, data, size, mem, cap);
        }
        free(mem);
        return 0;
}
