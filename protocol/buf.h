/* SPDX-License-Identifier: MIT */
/*
 * Bounded byte buffer for the wire format (after openssh's sshbuf).
 *
 * A buffer holds data between a read offset and an end, and a hard maximum
 * fixed at creation that no put can exceed.  A view borrows bytes read-only.
 * Integers are big-endian.  Every get checks the remaining length first,
 * advances only on success and zeroes its outputs on failure; a failed put
 * leaves the buffer unchanged.  No I/O, no logging, no globals.
 */
#ifndef PROTOCOL_BUF_H
#define PROTOCOL_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf {
        uint8_t *data;   /* owned, unless borrowed */
        size_t size;     /* allocated octets */
        size_t max;      /* hard maximum of len */
        size_t off;      /* read offset */
        size_t len;      /* end of the data */
        bool borrowed;   /* a read-only view over someone else's bytes */
};

/* An empty, owned buffer that may grow to max octets.  Never fails: memory
 * is allocated by the first put. */
void buf_init(struct buf *b, size_t max);
/* Free owned memory (buf_deinit_wipe zeroes it first); accept a zeroed buf. */
void buf_deinit(struct buf *b);
void buf_deinit_wipe(struct buf *b);
/* A read-only view over data; nothing to free. */
void buf_view(struct buf *b, const void *data, size_t len);

static inline size_t buf_remaining(const struct buf *b) { return b->len - b->off; }
static inline const uint8_t *buf_ptr(const struct buf *b) { return b->data ? b->data + b->off : (const uint8_t *) ""; }

/* Drop n unread octets (n <= remaining) and, when empty, rewind. */
int buf_consume(struct buf *b, size_t n);
/* Move unread octets to the front.  Puts never move data by themselves, so
 * positions saved before a put (frame_begin) stay valid until this call. */
void buf_compact(struct buf *b);
/* When nothing is left unread, free the memory (the buffer stays usable
 * and allocates again on the next put): idle holders keep nothing. */
void buf_release_if_empty(struct buf *b);
/* Empty the buffer, keeping its memory. */
void buf_reset(struct buf *b);

int buf_get_u8(struct buf *b, uint8_t *ret);
int buf_get_u16(struct buf *b, uint16_t *ret);
int buf_get_u32(struct buf *b, uint32_t *ret);
int buf_get_u64(struct buf *b, uint64_t *ret);
/* u32 length, then that many octets: *ret points into the buffer (borrowed). */
int buf_get_bytes(struct buf *b, const uint8_t **ret, size_t *ret_len);
/* As buf_get_bytes, for text: refuses an interior NUL (DKIMSIGN_E_FORMAT) and
 * more than max octets (DKIMSIGN_E_TOO_LARGE).  Not NUL-terminated. */
int buf_get_string(struct buf *b, size_t max, const char **ret, size_t *ret_len);
/* A view bounded to the next length-prefixed field. */
int buf_get_child(struct buf *b, struct buf *ret_child);
/* DKIMSIGN_E_TRAILING when octets are left unread. */
int buf_end(const struct buf *b);

/* Room for n more octets at the end; *ret points at them (valid until the
 * next put).  The caller fills them. */
int buf_reserve(struct buf *b, size_t n, uint8_t **ret);
int buf_put(struct buf *b, const void *data, size_t len);
int buf_put_u8(struct buf *b, uint8_t v);
int buf_put_u16(struct buf *b, uint16_t v);
int buf_put_u32(struct buf *b, uint32_t v);
int buf_put_u64(struct buf *b, uint64_t v);
int buf_put_bytes(struct buf *b, const void *data, size_t len);
int buf_put_cstring(struct buf *b, const char *s);
/* Overwrite 4 octets at absolute position pos (pos + 4 <= len). */
int buf_poke_u32(struct buf *b, size_t pos, uint32_t v);

#endif
