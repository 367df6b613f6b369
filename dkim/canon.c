/* SPDX-License-Identifier: MIT */
/*
 * RFC 6376 section 3.4 canonicalization: header fields (simple, relaxed) and
 * a streaming body canonicalizer, plus the SHA-256 body hash built on it.
 *
 * The body canonicalizer is on the hot path of every signature: it never
 * looks at one octet at a time in the common case (memchr for line ends in
 * simple, 64-octet bitmask blocks in relaxed), coalesces small outputs in
 * the stage buffer and hands long runs to the sink directly.  Its state is a
 * handful of flags and a counter, so a body split anywhere gives the same
 * octets.
 *
 * Only dkim_body_hash_new() allocates.  Nothing here does I/O or logs, and
 * nothing buffers a line or the body: held-back empty lines are counted.
 */
#include "dkim/canon.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "protocol/dkimsign-errors.h"

/* Runs at least this long skip the stage and go straight to the sink. */
#define STAGE_DIRECT_MIN 4096

/* Source of held-back line ends, emitted a block at a time. */
static const uint8_t crlf_block[] =
        "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n"
        "\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n";
#define CRLF_BLOCK_LEN (sizeof(crlf_block) - 1)

static bool is_wsp(uint8_t c)
{
        return c == ' ' || c == '\t';
}

int dkim_canon_from_string(const char *s, enum dkim_canon *ret)
{
        if (!s)
                return DKIMSIGN_E_FORMAT;
        /* ASCII-only comparison: strcasecmp would follow the locale. */
        static const struct {
                const char *name;
                enum dkim_canon canon;
        } names[] = {
                { "simple", DKIM_CANON_SIMPLE },
                { "relaxed", DKIM_CANON_RELAXED },
        };
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                const char *a = s, *b = names[i].name;
                while (*a && *b) {
                        char c = *a;
                        if (c >= 'A' && c <= 'Z')
                                c = (char)(c - 'A' + 'a');
                        if (c != *b)
                                break;
                        a++;
                        b++;
                }
                if (!*a && !*b) {
                        *ret = names[i].canon;
                        return 0;
                }
        }
        return DKIMSIGN_E_FORMAT;
}

const char *dkim_canon_to_string(enum dkim_canon c)
{
        switch (c) {
        case DKIM_CANON_SIMPLE:
                return "simple";
        case DKIM_CANON_RELAXED:
                return "relaxed";
        }
        return "unknown";
}

/* ---- body: output staging ---- */

static void stage_flush(struct dkim_body_canon *bc)
{
        if (bc->stage_len == 0)
                return;
        bc->sink(bc->userdata, bc->stage, bc->stage_len);
        bc->stage_len = 0;
}

static void emit(struct dkim_body_canon *bc, const uint8_t *data, size_t len)
{
        /* Order matters: the stage holds octets that come before data. */
        if (len >= STAGE_DIRECT_MIN) {
                stage_flush(bc);
                bc->sink(bc->userdata, data, len);
                return;
        }
        if (len > sizeof(bc->stage) - bc->stage_len)
                stage_flush(bc);
        memcpy(bc->stage + bc->stage_len, data, len);
        bc->stage_len += len;
}

/* Empty lines are only held back while nothing follows them: once content
 * comes, they were not trailing and must be written out. */
static void emit_held_lines(struct dkim_body_canon *bc)
{
        while (bc->pending_crlf > 0) {
                uint64_t n = bc->pending_crlf;
                if (n > CRLF_BLOCK_LEN / 2)
                        n = CRLF_BLOCK_LEN / 2;
                emit(bc, crlf_block, (size_t)n * 2);
                bc->pending_crlf -= n;
        }
}

/* Called before any content octet of a line. */
static void content_begin(struct dkim_body_canon *bc)
{
        emit_held_lines(bc);
        if (bc->pending_wsp) {
                emit(bc, (const uint8_t *)" ", 1);
                bc->pending_wsp = false;
        }
        bc->line_started = true;
        bc->emitted = true;
}

static void content(struct dkim_body_canon *bc, const uint8_t *data, size_t len)
{
        content_begin(bc);
        emit(bc, data, len);
}

static void line_end(struct dkim_body_canon *bc)
{
        /* Relaxed: whitespace at the end of a line is deleted. */
        bc->pending_wsp = false;
        if (bc->line_started) {
                emit(bc, crlf_block, 2);
                bc->line_started = false;
        } else {
                bc->pending_crlf++;
        }
}

void dkim_body_canon_init(struct dkim_body_canon *bc, enum dkim_canon canon,
                          dkim_sink_fn sink, void *userdata)
{
        bc->canon = canon;
        bc->sink = sink;
        bc->userdata = userdata;
        bc->pending_crlf = 0;
        bc->line_started = false;
        bc->pending_wsp = false;
        bc->pending_cr = false;
        bc->emitted = false;
        bc->stage_len = 0;
}

/* ---- body: simple ---- */

/*
 * Simple keeps every octet of a line; only line ends (LF or CRLF -> CRLF) and
 * empty lines need attention, so memchr for LF finds all the work.
 */
static void simple_update(struct dkim_body_canon *bc, const uint8_t *p, size_t n)
{
        size_t i = 0;

        while (i < n) {
                const uint8_t *nl = memchr(p + i, '\n', n - i);
                if (!nl) {
                        size_t rest = n - i;
                        /* A final CR may be the first half of a CRLF. */
                        if (p[n - 1] == '\r') {
                                bc->pending_cr = true;
                                rest--;
                        }
                        if (rest > 0)
                                content(bc, p + i, rest);
                        return;
                }
                size_t seg = (size_t)(nl - (p + i));
                if (seg > 0 && p[i + seg - 1] == '\r') {
                        /* CRLF-terminated line: content and line end are
                         * already contiguous canonical octets. */
                        if (seg > 1) {
                                content_begin(bc);
                                emit(bc, p + i, seg + 1);
                                bc->line_started = false;
                        } else {
                                line_end(bc);
                        }
                } else {
                        if (seg > 0)
                                content(bc, p + i, seg);
                        line_end(bc);
                }
                i += seg + 1;
        }
}

/* ---- body: relaxed ---- */

/*
 * Relaxed body canonicalization runs on 64-octet blocks described by
 * bitmasks (bit i: octet i is WSP, HTAB, LF, CR), the way simdjson finds its
 * structure: which octets survive is computed with a few shifts for the
 * whole block, and the surviving runs are copied 16 octets at a time.  The
 * cost hardly depends on how dense the whitespace is, and no branch depends
 * on each octet.  The last octets of a chunk, and whitespace left pending by
 * the previous chunk, go through the plain per-octet path below.
 */
#define BLOCK 64
/* A block step reads the block, two octets of look-ahead and up to 15
 * octets past the block for its last 16-octet copy. */
#define BLOCK_READ (BLOCK + 16)
/* Most a block step writes: 1.5 octets per octet ("a\n" -> "a\r\n") plus
 * a 16-octet copy's overrun. */
#define BLOCK_ROOM 128

typedef uint8_t v16u8 __attribute__((vector_size(16)));

static v16u8 splat(uint8_t c)
{
        return (v16u8){ c, c, c, c, c, c, c, c, c, c, c, c, c, c, c, c };
}

/* Bit i set when octet i of the comparison result is 0xff. */
static uint64_t bits16(v16u8 eq)
{
#ifdef __SSE2__
        return (uint16_t)_mm_movemask_epi8((__m128i)eq);
#else
        uint64_t half[2], r = 0;

        memcpy(half, &eq, sizeof(half));
        for (size_t k = 0; k < 2; k++) {
                uint64_t x = half[k];
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
                x = __builtin_bswap64(x);
#endif
                /* Keep bit k of octet k, then add all octets into the top
                 * one: the bits are distinct, so nothing carries. */
                x = ((x & 0x8040201008040201ULL) * 0x0101010101010101ULL) >> 56;
                r |= x << (8 * k);
        }
        return r;
#endif
}

struct block_bits {
        uint64_t wsp;
        uint64_t tab;
        uint64_t lf;
        uint64_t cr;
};

static void block_bits(const uint8_t *p, struct block_bits *b)
{
        *b = (struct block_bits){ 0 };
        for (size_t k = 0; k < BLOCK / 16; k++) {
                v16u8 v;
                memcpy(&v, p + 16 * k, sizeof(v));
                v16u8 tab = (v16u8)(v == splat('\t'));
                b->wsp |= bits16((v16u8)(v == splat(' ')) | tab) << (16 * k);
                b->tab |= bits16(tab) << (16 * k);
                b->lf |= bits16((v16u8)(v == splat('\n'))) << (16 * k);
                b->cr |= bits16((v16u8)(v == splat('\r'))) << (16 * k);
        }
}

/* Bits s..e-1 (s < 64, s <= e <= 64). */
static uint64_t bit_range(size_t s, size_t e)
{
        uint64_t below_e = e >= 64 ? ~0ULL : (1ULL << e) - 1;
        return below_e & (~0ULL << s);
}

/* The block path's copy of the canonicalizer state.  Kept out of bc so the
 * compiler can hold it in registers: octets written into bc->stage could
 * otherwise alias every field of bc. */
struct block_state {
        uint8_t *out;
        size_t o;
        uint64_t held;
        bool started;
        bool emitted;
};

/* Empty lines before content: rare, so done by the general code. */
static void block_emit_held(struct dkim_body_canon *bc, struct block_state *st)
{
        bc->stage_len = st->o;
        bc->pending_crlf = st->held;
        emit_held_lines(bc);
        if (sizeof(bc->stage) - bc->stage_len < BLOCK_ROOM)
                stage_flush(bc);
        st->o = bc->stage_len;
        st->held = 0;
}

/* Copy the octets of p whose bits are set in keep.  Runs are copied 16
 * octets at a time: up to 15 octets past a run are read and written, and
 * overwritten by what comes next. */
static void block_copy(struct block_state *st, const uint8_t *p, uint64_t keep)
{
        uint8_t *d = st->out + st->o;
        while (keep) {
                size_t a = (size_t)__builtin_ctzll(keep);
                /* Adding the lowest set bit carries through its run. */
                uint64_t sum = keep + (keep & -keep);
                size_t end = sum ? (size_t)__builtin_ctzll(sum) : BLOCK;
                uint64_t next = keep & sum;
                for (size_t c = 0; c < end - a; c += 16)
                        memcpy(d + c, p + a + c, 16);
                d += end - a;
                keep = next;
        }
        st->o = (size_t)(d - st->out);
}

static void relaxed_block(struct dkim_body_canon *bc, struct block_state *st, const uint8_t *p)
{
        struct block_bits b;
        block_bits(p, &b);

        /* What octet 64 is, for the runs that end at octet 63. */
        uint64_t lf_next = p[BLOCK] == '\n';
        uint64_t content_next = !is_wsp(p[BLOCK]) && !lf_next &&
                                !(p[BLOCK] == '\r' && p[BLOCK + 1] == '\n');

        /* A CR is part of a line end only when LF follows; else content. */
        uint64_t crlf_cr = b.cr & ((b.lf >> 1) | (lf_next << 63));
        uint64_t content = ~(b.wsp | b.lf | crlf_cr);
        /* A WSP run leaves one SP when content (not a line end) follows:
         * its last octet, the one WSP followed by content. */
        uint64_t keep = content | (b.wsp & ((content >> 1) | (content_next << 63)));

        /* Kept HTABs must read as SP: copy from a converted block. */
        uint8_t conv[BLOCK_READ];
        const uint8_t *src = p;
        if (b.tab & keep) {
                for (size_t k = 0; k < BLOCK_READ / 16; k++) {
                        v16u8 v;
                        memcpy(&v, p + 16 * k, sizeof(v));
                        v ^= (v16u8)(v == splat('\t')) & splat('\t' ^ ' ');
                        memcpy(conv + 16 * k, &v, sizeof(v));
                }
                src = conv;
        }

        uint64_t lines = b.lf;
        size_t s = 0;
        for (;;) {
                size_t e = lines ? (size_t)__builtin_ctzll(lines) : BLOCK;
                uint64_t seg = keep & bit_range(s, e);
                if (seg) {
                        if (!st->started && st->held > 0)
                                block_emit_held(bc, st);
                        block_copy(st, src, seg);
                        st->started = true;
                        st->emitted = true;
                }
                if (e == BLOCK)
                        return;
                if (st->started) {
                        st->out[st->o++] = '\r';
                        st->out[st->o++] = '\n';
                        st->started = false;
                } else {
                        st->held++;
                }
                lines &= lines - 1;
                s = e + 1;
                if (s == BLOCK)
                        return;
        }
}

/* Whole blocks of p[0..n) while BLOCK_READ octets remain; returns how many
 * octets it took.  No WSP may be pending. */
static size_t relaxed_blocks(struct dkim_body_canon *bc, const uint8_t *p, size_t n)
{
        struct block_state st = {
                .out = bc->stage,
                .o = bc->stage_len,
                .held = bc->pending_crlf,
                .started = bc->line_started,
        };
        size_t i = 0;

        while (n - i >= BLOCK_READ) {
                if (sizeof(bc->stage) - st.o < BLOCK_ROOM) {
                        bc->stage_len = st.o;
                        stage_flush(bc);
                        st.o = 0;
                }
                relaxed_block(bc, &st, p + i);
                i += BLOCK;
        }
        bc->stage_len = st.o;
        bc->pending_crlf = st.held;
        bc->line_started = st.started;
        bc->emitted |= st.emitted;
        return i;
}

/* One step of the per-octet path: a line end, a WSP run or a short run of
 * content.  Returns how many octets it took (at least one). */
static size_t relaxed_step(struct dkim_body_canon *bc, const uint8_t *p, size_t n)
{
        uint8_t c = p[0];
        size_t i = 1;

        if (c == '\n') {
                line_end(bc);
        } else if (c == '\r') {
                if (n < 2)
                        bc->pending_cr = true;
                else if (p[1] == '\n')
                        line_end(bc), i = 2;
                else
                        content(bc, p, 1);      /* a bare CR is content */
        } else if (is_wsp(c)) {
                bc->pending_wsp = true;
        } else {
                /* Short, so the block path takes over soon. */
                while (i < n && i < 16 && !is_wsp(p[i]) && p[i] != '\r' && p[i] != '\n')
                        i++;
                content(bc, p, i);
        }
        return i;
}

static void relaxed_update(struct dkim_body_canon *bc, const uint8_t *p, size_t n)
{
        size_t i = 0;

        while (i < n) {
                if (!bc->pending_wsp && n - i >= BLOCK_READ)
                        i += relaxed_blocks(bc, p + i, n - i);
                else
                        i += relaxed_step(bc, p + i, n - i);
        }
}

/* A CR that ended the previous chunk is either half of a CRLF or content. */
static size_t resolve_pending_cr(struct dkim_body_canon *bc, const uint8_t *p, size_t n)
{
        bc->pending_cr = false;
        if (n > 0 && p[0] == '\n') {
                line_end(bc);
                return 1;
        }
        content(bc, (const uint8_t *)"\r", 1);
        return 0;
}

void dkim_body_canon_update(struct dkim_body_canon *bc, const void *data, size_t len)
{
        const uint8_t *p = data;

        if (len == 0)
                return;
        if (bc->pending_cr) {
                size_t used = resolve_pending_cr(bc, p, len);
                p += used;
                len -= used;
        }
        if (len == 0)
                return;
        if (bc->canon == DKIM_CANON_RELAXED)
                relaxed_update(bc, p, len);
        else
                simple_update(bc, p, len);
}

void dkim_body_canon_final(struct dkim_body_canon *bc)
{
        if (bc->pending_cr)
                resolve_pending_cr(bc, NULL, 0);
        /* The missing final line end is supplied; trailing empty lines
         * (pending_crlf) are dropped. */
        if (bc->line_started)
                line_end(bc);
        bc->pending_crlf = 0;
        bc->pending_wsp = false;
        /* Simple canonicalizes an empty body to one CRLF (RFC 6376 3.4.3);
         * relaxed leaves it empty (3.4.4). */
        if (bc->canon == DKIM_CANON_SIMPLE && !bc->emitted) {
                emit(bc, crlf_block, 2);
                bc->emitted = true;
        }
        stage_flush(bc);
}

/* ---- body hash ---- */

struct dkim_body_hash {
        EVP_MD_CTX *md;
        bool failed;    /* an EVP_DigestUpdate failed: the hash is wrong */
        bool finished;
        struct dkim_body_canon bc;
};

static void hash_sink(void *userdata, const uint8_t *data, size_t len)
{
        struct dkim_body_hash *bh = userdata;

        if (len > 0 && EVP_DigestUpdate(bh->md, data, len) != 1)
                bh->failed = true;
}

int dkim_body_hash_new(enum dkim_canon canon, struct dkim_body_hash **ret)
{
        struct dkim_body_hash *bh = calloc(1, sizeof(*bh));
        if (!bh)
                return DKIMSIGN_E_NOMEM;
        bh->md = EVP_MD_CTX_new();
        if (!bh->md || EVP_DigestInit_ex(bh->md, EVP_sha256(), NULL) != 1) {
                dkim_body_hash_free(bh);
                return DKIMSIGN_E_NOMEM;
        }
        dkim_body_canon_init(&bh->bc, canon, hash_sink, bh);
        *ret = bh;
        return 0;
}

struct dkim_body_hash *dkim_body_hash_free(struct dkim_body_hash *bh)
{
        if (!bh)
                return NULL;
        EVP_MD_CTX_free(bh->md);
        free(bh);
        return NULL;
}

void dkim_body_hash_update(struct dkim_body_hash *bh, const void *data, size_t len)
{
        if (bh->finished)
                return;
        dkim_body_canon_update(&bh->bc, data, len);
}

int dkim_body_hash_final(struct dkim_body_hash *bh, uint8_t ret_digest[DKIM_SHA256_LEN])
{
        uint8_t digest[EVP_MAX_MD_SIZE];
        unsigned int len = 0;

        if (bh->finished)
                return DKIMSIGN_E_INTERNAL;
        bh->finished = true;
        dkim_body_canon_final(&bh->bc);
        if (bh->failed || EVP_DigestFinal_ex(bh->md, digest, &len) != 1 ||
            len != DKIM_SHA256_LEN)
                return DKIMSIGN_E_INTERNAL;
        memcpy(ret_digest, digest, DKIM_SHA256_LEN);
        return 0;
}

/* ---- header fields ---- */

/* Small output buffer so relaxed header canonicalization does not call the
 * sink once per octet. */
struct hdr_out {
        dkim_sink_fn sink;
        void *userdata;
        size_t len;
        uint8_t buf[256];
};

static void hdr_flush(struct hdr_out *o)
{
        if (o->len > 0)
                o->sink(o->userdata, o->buf, o->len);
        o->len = 0;
}

static void hdr_put(struct hdr_out *o, uint8_t c)
{
        if (o->len == sizeof(o->buf))
                hdr_flush(o);
        o->buf[o->len++] = c;
}

static void hdr_put_run(struct hdr_out *o, const uint8_t *data, size_t len)
{
        if (len > sizeof(o->buf) - o->len) {
                hdr_flush(o);
                if (len >= sizeof(o->buf)) {
                        o->sink(o->userdata, data, len);
                        return;
                }
        }
        memcpy(o->buf + o->len, data, len);
        o->len += len;
}

/* Relaxed value: unfold, WSP runs -> one SP, none at either end. */
static void relaxed_value(struct hdr_out *o, const uint8_t *v, size_t n)
{
        bool wsp = false, any = false;
        size_t i = 0;

        while (i < n) {
                uint8_t c = v[i];
                if (c == '\r' && n - i >= 2 && v[i + 1] == '\n') {
                        /* Unfolding deletes the CRLF; the WSP after it is a
                         * WSP run like any other. */
                        i += 2;
                        continue;
                }
                if (is_wsp(c)) {
                        wsp = true;
                        i++;
                        continue;
                }
                if (wsp && any)
                        hdr_put(o, ' ');
                wsp = false;
                any = true;
                size_t start = i;
                while (i < n && !is_wsp(v[i]) && v[i] != '\r')
                        i++;
                if (i == start) {
                        /* A CR not followed by LF: content. */
                        i++;
                }
                hdr_put_run(o, v + start, i - start);
        }
}

static void relaxed_field(struct hdr_out *o, const uint8_t *f, size_t len)
{
        const uint8_t *colon = memchr(f, ':', len);
        size_t name_end = colon ? (size_t)(colon - f) : len;

        /* No WSP before the colon; names are lowercased. */
        size_t name_len = name_end;
        while (name_len > 0 && (is_wsp(f[name_len - 1]) || f[name_len - 1] == '\r' ||
                                f[name_len - 1] == '\n'))
                name_len--;
        for (size_t i = 0; i < name_len; i++) {
                uint8_t c = f[i];
                if (c >= 'A' && c <= 'Z')
                        c = (uint8_t)(c - 'A' + 'a');
                hdr_put(o, c);
        }
        if (!colon)
                return;
        hdr_put(o, ':');
        relaxed_value(o, colon + 1, len - name_end - 1);
}

void dkim_header_canon(enum dkim_canon canon, const uint8_t *field, size_t len,
                       bool add_crlf, dkim_sink_fn sink, void *userdata)
{
        if (canon != DKIM_CANON_RELAXED) {
                sink(userdata, field, len);
                if (add_crlf)
                        sink(userdata, (const uint8_t *)"\r\n", 2);
                return;
        }

        struct hdr_out o = { .sink = sink, .userdata = userdata, .len = 0 };
        relaxed_field(&o, field, len);
        if (add_crlf) {
                hdr_put(&o, '\r');
                hdr_put(&o, '\n');
        }
        hdr_flush(&o);
}
