/* SPDX-License-Identifier: MIT */
/*
 * RFC 6376 section 3.4 canonicalization, simple and relaxed, for header
 * fields and for the body.
 *
 * The body canonicalizer is a streaming state machine: it takes the raw body
 * in chunks of any size, split anywhere (even between CR and LF), and emits
 * canonical octets to a sink.  Its memory is constant whatever the body size.
 * Input line ends may be CRLF or bare LF; a bare LF is treated as CRLF, the
 * way an MTA normalizes a message before SMTP.  A missing final line end is
 * supplied, as SMTP does.
 *
 * Pure code: no I/O, no allocation in the body canonicalizer, no logging.
 */
#ifndef DKIM_CANON_H
#define DKIM_CANON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DKIM_SHA256_LEN 32

enum dkim_canon {
        DKIM_CANON_SIMPLE = 0,
        DKIM_CANON_RELAXED = 1,
};

/* Receives canonical octets.  May be called with len 0. */
typedef void (*dkim_sink_fn)(void *userdata, const uint8_t *data, size_t len);

/* Parse "simple" / "relaxed" (case-insensitive); 0 or DKIMSIGN_E_FORMAT. */
int dkim_canon_from_string(const char *s, enum dkim_canon *ret);
const char *dkim_canon_to_string(enum dkim_canon c);

/*
 * Streaming body canonicalizer.  The fields are private to canon.c; the
 * struct is public only so callers can embed it without an allocation.
 */
struct dkim_body_canon {
        enum dkim_canon canon;
        dkim_sink_fn sink;
        void *userdata;
        uint64_t pending_crlf;  /* empty lines held back: they vanish at the end */
        bool line_started;      /* the current line has canonical content */
        bool pending_wsp;       /* relaxed: whitespace seen, not yet emitted */
        bool pending_cr;        /* the last input byte was a CR */
        bool emitted;           /* anything at all was emitted */
        uint8_t stage[16384];   /* coalesces small runs into large sink calls */
        size_t stage_len;
};

void dkim_body_canon_init(struct dkim_body_canon *bc, enum dkim_canon canon,
                          dkim_sink_fn sink, void *userdata);
void dkim_body_canon_update(struct dkim_body_canon *bc, const void *data, size_t len);
/* Flushes the end of the body (final CRLF rules, simple's empty body). */
void dkim_body_canon_final(struct dkim_body_canon *bc);

/* Body canonicalizer feeding SHA-256: the bh= value before base64. */
struct dkim_body_hash;

/* 0, or DKIMSIGN_E_NOMEM.  Free with dkim_body_hash_free(). */
int dkim_body_hash_new(enum dkim_canon canon, struct dkim_body_hash **ret);
/* Accepts NULL; returns NULL. */
struct dkim_body_hash *dkim_body_hash_free(struct dkim_body_hash *bh);
void dkim_body_hash_update(struct dkim_body_hash *bh, const void *data, size_t len);
/* Finishes the hash; the object may not be updated afterwards.  0 or
 * DKIMSIGN_E_INTERNAL (an OpenSSL failure). */
int dkim_body_hash_final(struct dkim_body_hash *bh, uint8_t ret_digest[DKIM_SHA256_LEN]);

/*
 * Canonicalize one header field.  field/len are the field's raw octets as in
 * the message, folded continuation lines included, WITHOUT the final CRLF.
 * Emits the canonical form to sink, followed by CRLF when add_crlf is true
 * (false only for the DKIM-Signature field being signed, RFC 6376 3.7).
 * Lines inside the field are CRLF-separated (the header parser guarantees it).
 */
void dkim_header_canon(enum dkim_canon canon, const uint8_t *field, size_t len,
                       bool add_crlf, dkim_sink_fn sink, void *userdata);

#endif
