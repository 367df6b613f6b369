/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the daemon's and the client's view of a byte stream.  Splits
 * the input into frames as the event loop does and runs every message
 * decoder on every frame; a decoded message is re-encoded and must decode
 * to the same thing.
 */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "protocol/buf.h"
#include "protocol/dkimsign-errors.h"
#include "protocol/frame.h"
#include "protocol/msg.h"

#define INPUT_MAX (1024 * 1024)

static void decode_all(const struct frame *f)
{
        struct buf p = f->payload;
        struct msg_hello h;
        struct msg_hello_ok ok;
        struct msg_sign s;
        struct msg_signed sd;
        struct msg_error e;
        struct buf out;

        buf_init(&out, INPUT_MAX * 2);
        if (msg_hello_decode(&p, &h) == 0) {
                struct buf again;
                struct msg_hello h2;
                struct frame f2;

                assert(msg_hello_encode(&out, f->id, &h) == 0);
                assert(frame_decode(out.data, out.len, &f2) == 0);
                again = f2.payload;
                assert(msg_hello_decode(&again, &h2) == 0);
                assert(h2.min_version == h.min_version && h2.max_version == h.max_version);
                assert(h2.name_len == h.name_len && memcmp(h2.name, h.name, h.name_len) == 0);
        }
        p = f->payload;
        (void) msg_hello_ok_decode(&p, &ok);
        p = f->payload;
        if (msg_sign_decode(&p, 65536, &s) == 0) {
                buf_reset(&out);
                assert(msg_sign_encode(&out, f->id, &s) == 0);
                assert(out.len == buf_remaining(&f->payload) + FRAME_LEN_SIZE + FRAME_HEAD_SIZE);
        }
        p = f->payload;
        (void) msg_signed_decode(&p, &sd);
        p = f->payload;
        if (msg_error_decode(&p, &e) == 0)
                (void) wire_error_to_err(&e);
        p = f->payload;
        (void) msg_empty_decode(&p);
        p = f->payload;
        {
                const char *text;
                size_t len;

                if (msg_text_decode(&p, &text, &len) == 0) {
                        buf_reset(&out);
                        assert(msg_text_encode(&out, f->type, f->id, text, len) == 0);
                }
        }
        buf_deinit(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        size_t off = 0;

        if (size > INPUT_MAX)
                return 0;
        while (off < size) {
                struct frame f;
                size_t total;
                int r = frame_peek(data + off, size - off, 65536 + 64, &total);

                if (r < 0 || total > size - off)
                        break;
                if (frame_decode(data + off, total, &f) == 0)
                        decode_all(&f);
                off += total;
        }
        return 0;
}
