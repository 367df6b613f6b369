/* SPDX-License-Identifier: MIT */
/*
 * Frame boundaries of the wire protocol.  See frame.h.  Never reads past the
 * octets it is given and never trusts a length before comparing it.
 */
#include "protocol/dkimsign-errors.h"
#include "protocol/frame.h"

int frame_peek(const uint8_t *data, size_t len, size_t max_frame, size_t *ret_total)
{
        struct buf b;
        uint32_t n;

        *ret_total = 0;
        buf_view(&b, data, len);
        if (buf_get_u32(&b, &n) < 0)
                return DKIMSIGN_E_INCOMPLETE;
        if (n > max_frame)
                return DKIMSIGN_E_TOO_LARGE;
        if (n < FRAME_HEAD_SIZE)
                return DKIMSIGN_E_FORMAT;
        *ret_total = (size_t) n + FRAME_LEN_SIZE;
        return 0;
}

int frame_decode(const uint8_t *data, size_t len, struct frame *ret)
{
        struct buf b;
        uint32_t n;
        uint8_t type;
        uint32_t id;
        int r;

        *ret = (struct frame) { 0 };
        buf_view(&b, data, len);
        r = buf_get_u32(&b, &n);
        if (r < 0)
                return r;
        if (n != buf_remaining(&b))
                return n > buf_remaining(&b) ? DKIMSIGN_E_INCOMPLETE : DKIMSIGN_E_TRAILING;
        if (n < FRAME_HEAD_SIZE)
                return DKIMSIGN_E_FORMAT;
        r = buf_get_u8(&b, &type);
        if (r == 0)
                r = buf_get_u32(&b, &id);
        if (r < 0)
                return r;
        ret->type = type;
        ret->id = id;
        buf_view(&ret->payload, buf_ptr(&b), buf_remaining(&b));
        return 0;
}

int frame_begin(struct buf *out, uint8_t type, uint32_t id, size_t *ret_start)
{
        size_t start = out->len;
        int r;

        r = buf_put_u32(out, 0);
        if (r == 0)
                r = buf_put_u8(out, type);
        if (r == 0)
                r = buf_put_u32(out, id);
        if (r < 0) {
                out->len = start;
                return r;
        }
        *ret_start = start;
        return 0;
}

int frame_end(struct buf *out, size_t start)
{
        size_t n = out->len - start - FRAME_LEN_SIZE;

        if (n > UINT32_MAX)
                return DKIMSIGN_E_TOO_LARGE;
        return buf_poke_u32(out, start, (uint32_t) n);
}
