/* SPDX-License-Identifier: MIT */
/*
 * Framing of the dkimsign wire protocol (docs/protocol.md).
 *
 * A frame is a big-endian u32 length N, then N octets: a u8 message type, a
 * u32 request id chosen by the client, and the type's payload.  The length
 * is checked against the receiver's maximum before any of the body is
 * buffered.  Pure code: no I/O.
 */
#ifndef PROTOCOL_FRAME_H
#define PROTOCOL_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "protocol/buf.h"

#define FRAME_LEN_SIZE 4
#define FRAME_HEAD_SIZE 5            /* type + request id */
#define FRAME_MIN_MAX 1024           /* no configured maximum may be smaller */
#define FRAME_DEFAULT_MAX (1024 * 1024)

struct frame {
        uint8_t type;
        uint32_t id;
        struct buf payload;          /* a view into the frame's bytes */
};

/*
 * Look at the start of a byte stream.  DKIMSIGN_E_INCOMPLETE: the length
 * prefix is not all there yet.  DKIMSIGN_E_TOO_LARGE: it announces more than
 * max_frame octets.  DKIMSIGN_E_FORMAT: fewer than FRAME_HEAD_SIZE.  On
 * success *ret_total is the whole frame's size, prefix included (it may not
 * all be buffered yet).
 */
int frame_peek(const uint8_t *data, size_t len, size_t max_frame, size_t *ret_total);

/* Decode one complete frame of exactly len octets (prefix included).  The
 * payload borrows data. */
int frame_decode(const uint8_t *data, size_t len, struct frame *ret);

/* Start a frame in out: a length placeholder, type and id.  *ret_start marks
 * it for frame_end(), which fills in the length once the payload is put. */
int frame_begin(struct buf *out, uint8_t type, uint32_t id, size_t *ret_start);
int frame_end(struct buf *out, size_t start);

#endif
