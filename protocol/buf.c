/* SPDX-License-Identifier: MIT */
/*
 * Bounded byte buffer.  See buf.h.  Sizes are compared by subtraction so no
 * length from the wire can overflow a pointer or a size_t.
 */
#include <stdlib.h>
#include <string.h>

#include "protocol/buf.h"
#include "protocol/dkimsign-errors.h"

void buf_init(struct buf *b, size_t max)
{
        *b = (struct buf) { .max = max };
}

void buf_deinit(struct buf *b)
{
        if (!b->borrowed)
                free(b->data);
        *b = (struct buf) { 0 };
}

void buf_deinit_wipe(struct buf *b)
{
        if (!b->borrowed && b->data) {
                /* volatile so the compiler can't drop the wipe of a dead buffer */
                volatile uint8_t *p = b->data;
                for (size_t i = 0; i < b->size; i++)
                        p[i] = 0;
        }
        buf_deinit(b);
}

void buf_view(struct buf *b, const void *data, size_t len)
{
        *b = (struct buf) {
                .data = (uint8_t *) data,
                .size = len,
                .max = len,
                .len = len,
                .borrowed = true,
        };
}

int buf_consume(struct buf *b, size_t n)
{
        if (buf_remaining(b) < n)
                return DKIMSIGN_E_INCOMPLETE;
        b->off += n;
        if (b->off == b->len && !b->borrowed)
                b->off = b->len = 0;
        return 0;
}

void buf_compact(struct buf *b)
{
        if (b->borrowed || b->off == 0)
                return;
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
}

void buf_release_if_empty(struct buf *b)
{
        if (b->borrowed || b->off != b->len)
                return;
        free(b->data);
        b->data = NULL;
        b->size = b->off = b->len = 0;
}

void buf_reset(struct buf *b)
{
        if (b->borrowed)
                b->off = b->len;
        else
                b->off = b->len = 0;
}

static int get_raw(struct buf *b, size_t n, const uint8_t **ret)
{
        if (buf_remaining(b) < n)
                return DKIMSIGN_E_INCOMPLETE;
        *ret = b->data + b->off;
        b->off += n;
        return 0;
}

int buf_get_u8(struct buf *b, uint8_t *ret)
{
        const uint8_t *p;
        int r = get_raw(b, 1, &p);

        *ret = r < 0 ? 0 : p[0];
        return r;
}

int buf_get_u16(struct buf *b, uint16_t *ret)
{
        const uint8_t *p;
        int r = get_raw(b, 2, &p);

        *ret = r < 0 ? 0 : (uint16_t) ((p[0] << 8) | p[1]);
        return r;
}

int buf_get_u32(struct buf *b, uint32_t *ret)
{
        const uint8_t *p;
        int r = get_raw(b, 4, &p);

        *ret = r < 0 ? 0 : ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16) | ((uint32_t) p[2] << 8) | p[3];
        return r;
}

int buf_get_u64(struct buf *b, uint64_t *ret)
{
        const uint8_t *p;
        int r = get_raw(b, 8, &p);
        uint64_t v = 0;

        if (r == 0)
                for (int i = 0; i < 8; i++)
                        v = (v << 8) | p[i];
        *ret = v;
        return r;
}

int buf_get_bytes(struct buf *b, const uint8_t **ret, size_t *ret_len)
{
        size_t saved = b->off;
        const uint8_t *p;
        uint32_t n;
        int r;

        *ret = NULL;
        *ret_len = 0;
        r = buf_get_u32(b, &n);
        if (r < 0)
                return r;
        r = get_raw(b, n, &p);
        if (r < 0) {
                b->off = saved;
                return r;
        }
        *ret = p;
        *ret_len = n;
        return 0;
}

int buf_get_string(struct buf *b, size_t max, const char **ret, size_t *ret_len)
{
        size_t saved = b->off;
        const uint8_t *p;
        size_t n;
        int r;

        *ret = NULL;
        *ret_len = 0;
        r = buf_get_bytes(b, &p, &n);
        if (r < 0)
                return r;
        if (n > max)
                r = DKIMSIGN_E_TOO_LARGE;
        else if (memchr(p, 0, n))
                r = DKIMSIGN_E_FORMAT;
        if (r < 0) {
                b->off = saved;
                return r;
        }
        *ret = (const char *) p;
        *ret_len = n;
        return 0;
}

int buf_get_child(struct buf *b, struct buf *ret_child)
{
        const uint8_t *p;
        size_t n;
        int r = buf_get_bytes(b, &p, &n);

        if (r < 0) {
                *ret_child = (struct buf) { 0 };
                return r;
        }
        buf_view(ret_child, p, n);
        return 0;
}

int buf_end(const struct buf *b)
{
        return buf_remaining(b) ? DKIMSIGN_E_TRAILING : 0;
}

int buf_reserve(struct buf *b, size_t n, uint8_t **ret)
{
        if (b->borrowed)
                return DKIMSIGN_E_INTERNAL;
        if (b->max - b->len < n)
                return DKIMSIGN_E_NOSPACE;
        if (b->size - b->len < n) {
                size_t want = b->len + n;
                size_t size = b->size ? b->size : 256;
                uint8_t *p;

                while (size < want)
                        size = size > b->max / 2 ? b->max : size * 2;
                if (size > b->max)
                        size = b->max;
                p = realloc(b->data, size);
                if (!p)
                        return DKIMSIGN_E_NOMEM;
                b->data = p;
                b->size = size;
        }
        *ret = b->data + b->len;
        b->len += n;
        return 0;
}

int buf_put(struct buf *b, const void *data, size_t len)
{
        uint8_t *p;
        int r = buf_reserve(b, len, &p);

        if (r < 0)
                return r;
        if (len)
                memcpy(p, data, len);
        return 0;
}

int buf_put_u8(struct buf *b, uint8_t v)
{
        return buf_put(b, &v, 1);
}

int buf_put_u16(struct buf *b, uint16_t v)
{
        uint8_t p[2] = { (uint8_t) (v >> 8), (uint8_t) v };

        return buf_put(b, p, sizeof(p));
}

int buf_put_u32(struct buf *b, uint32_t v)
{
        uint8_t p[4] = { (uint8_t) (v >> 24), (uint8_t) (v >> 16), (uint8_t) (v >> 8), (uint8_t) v };

        return buf_put(b, p, sizeof(p));
}

int buf_put_u64(struct buf *b, uint64_t v)
{
        uint8_t p[8];

        for (int i = 7; i >= 0; i--, v >>= 8)
                p[i] = (uint8_t) v;
        return buf_put(b, p, sizeof(p));
}

int buf_put_bytes(struct buf *b, const void *data, size_t len)
{
        uint8_t *p;
        int r;

        if (len > UINT32_MAX)
                return DKIMSIGN_E_TOO_LARGE;
        if (b->max - b->len < 4 || b->max - b->len - 4 < len)
                return DKIMSIGN_E_NOSPACE;
        r = buf_reserve(b, 4 + len, &p);
        if (r < 0)
                return r;
        p[0] = (uint8_t) (len >> 24);
        p[1] = (uint8_t) (len >> 16);
        p[2] = (uint8_t) (len >> 8);
        p[3] = (uint8_t) len;
        if (len)
                memcpy(p + 4, data, len);
        return 0;
}

int buf_put_cstring(struct buf *b, const char *s)
{
        return buf_put_bytes(b, s, s ? strlen(s) : 0);
}

int buf_poke_u32(struct buf *b, size_t pos, uint32_t v)
{
        if (b->borrowed || pos > b->len || b->len - pos < 4)
                return DKIMSIGN_E_INTERNAL;
        b->data[pos] = (uint8_t) (v >> 24);
        b->data[pos + 1] = (uint8_t) (v >> 16);
        b->data[pos + 2] = (uint8_t) (v >> 8);
        b->data[pos + 3] = (uint8_t) v;
        return 0;
}
