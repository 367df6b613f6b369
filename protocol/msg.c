/* SPDX-License-Identifier: MIT */
/*
 * Encoders and decoders of the protocol's messages.  See msg.h.  A decoder
 * zeroes its output on failure and never leaves a pointer outside the
 * payload it was given.
 */
#include <string.h>

#include "protocol/dkimsign-errors.h"
#include "protocol/frame.h"
#include "protocol/msg.h"

/* Encoding: a failed put rolls the output back to where the frame began. */
#define ENCODE_BEGIN(out, type, id)                                     \
        size_t frame_start_;                                            \
        int r = frame_begin((out), (type), (id), &frame_start_);        \
        if (r < 0)                                                      \
                return r

/* A text field over the protocol's own bound is malformed, not over a
 * configured limit: the two get different statuses. */
static int get_text(struct buf *p, size_t max, const char **ret, size_t *ret_len)
{
        int r = buf_get_string(p, max, ret, ret_len);

        return r == DKIMSIGN_E_TOO_LARGE ? DKIMSIGN_E_FORMAT : r;
}

static int encode_end(struct buf *out, size_t start, int r)
{
        if (r == 0)
                r = frame_end(out, start);
        if (r < 0)
                out->len = start;
        return r;
}

int msg_hello_encode(struct buf *out, uint32_t id, const struct msg_hello *m)
{
        ENCODE_BEGIN(out, MSG_HELLO, id);
        if (r == 0)
                r = buf_put_u16(out, m->min_version);
        if (r == 0)
                r = buf_put_u16(out, m->max_version);
        if (r == 0)
                r = buf_put_bytes(out, m->name, m->name_len);
        return encode_end(out, frame_start_, r);
}

int msg_hello_decode(struct buf *p, struct msg_hello *ret)
{
        struct msg_hello m = { 0 };
        int r;

        r = buf_get_u16(p, &m.min_version);
        if (r == 0)
                r = buf_get_u16(p, &m.max_version);
        if (r == 0)
                r = get_text(p, MSG_NAME_MAX, &m.name, &m.name_len);
        if (r == 0)
                r = buf_end(p);
        if (r == 0 && m.min_version > m.max_version)
                r = DKIMSIGN_E_FORMAT;
        *ret = r == 0 ? m : (struct msg_hello) { 0 };
        return r == DKIMSIGN_E_INCOMPLETE ? DKIMSIGN_E_FORMAT : r;
}

int msg_hello_ok_encode(struct buf *out, uint32_t id, const struct msg_hello_ok *m)
{
        ENCODE_BEGIN(out, MSG_HELLO_OK, id);
        if (r == 0)
                r = buf_put_u16(out, m->version);
        if (r == 0)
                r = buf_put_u32(out, m->max_frame);
        if (r == 0)
                r = buf_put_bytes(out, m->name, m->name_len);
        return encode_end(out, frame_start_, r);
}

int msg_hello_ok_decode(struct buf *p, struct msg_hello_ok *ret)
{
        struct msg_hello_ok m = { 0 };
        int r;

        r = buf_get_u16(p, &m.version);
        if (r == 0)
                r = buf_get_u32(p, &m.max_frame);
        if (r == 0)
                r = get_text(p, MSG_NAME_MAX, &m.name, &m.name_len);
        if (r == 0)
                r = buf_end(p);
        *ret = r == 0 ? m : (struct msg_hello_ok) { 0 };
        return r == DKIMSIGN_E_INCOMPLETE ? DKIMSIGN_E_FORMAT : r;
}

int msg_sign_encode(struct buf *out, uint32_t id, const struct msg_sign *m)
{
        ENCODE_BEGIN(out, MSG_SIGN, id);
        if (r == 0)
                r = buf_put_u8(out, m->header_canon);
        if (r == 0)
                r = buf_put_u8(out, m->body_canon);
        if (r == 0)
                r = buf_put_bytes(out, m->domain, m->domain_len);
        if (r == 0)
                r = buf_put_bytes(out, m->body_hash, MSG_BODY_HASH_LEN);
        if (r == 0)
                r = buf_put_bytes(out, m->headers, m->headers_len);
        return encode_end(out, frame_start_, r);
}

int msg_sign_decode(struct buf *p, size_t max_headers, struct msg_sign *ret)
{
        struct msg_sign m = { 0 };
        size_t hash_len = 0;
        int r;

        r = buf_get_u8(p, &m.header_canon);
        if (r == 0)
                r = buf_get_u8(p, &m.body_canon);
        if (r == 0)
                r = get_text(p, MSG_DOMAIN_MAX, &m.domain, &m.domain_len);
        if (r == 0)
                r = buf_get_bytes(p, &m.body_hash, &hash_len);
        if (r == 0)
                r = buf_get_bytes(p, &m.headers, &m.headers_len);
        if (r == 0)
                r = buf_end(p);
        if (r == 0 && (m.header_canon > 1 || m.body_canon > 1 || hash_len != MSG_BODY_HASH_LEN))
                r = DKIMSIGN_E_FORMAT;
        if (r == 0 && m.headers_len > max_headers)
                r = DKIMSIGN_E_TOO_LARGE;
        *ret = r == 0 ? m : (struct msg_sign) { 0 };
        return r == DKIMSIGN_E_INCOMPLETE ? DKIMSIGN_E_FORMAT : r;
}

int msg_seal_encode(struct buf *out, uint32_t id, const struct msg_seal *m)
{
        ENCODE_BEGIN(out, MSG_SEAL, id);
        if (r == 0)
                r = buf_put_u8(out, m->cv);
        if (r == 0)
                r = buf_put_u8(out, m->instance);
        if (r == 0)
                r = buf_put_bytes(out, m->domain, m->domain_len);
        if (r == 0)
                r = buf_put_bytes(out, m->authserv_id, m->authserv_id_len);
        if (r == 0)
                r = buf_put_bytes(out, m->results, m->results_len);
        if (r == 0)
                r = buf_put_bytes(out, m->body_hash, MSG_BODY_HASH_LEN);
        if (r == 0)
                r = buf_put_bytes(out, m->headers, m->headers_len);
        return encode_end(out, frame_start_, r);
}

int msg_seal_decode(struct buf *p, size_t max_headers, struct msg_seal *ret)
{
        struct msg_seal m = { 0 };
        size_t hash_len = 0;
        int r;

        r = buf_get_u8(p, &m.cv);
        if (r == 0)
                r = buf_get_u8(p, &m.instance);
        if (r == 0)
                r = get_text(p, MSG_DOMAIN_MAX, &m.domain, &m.domain_len);
        if (r == 0)
                r = get_text(p, MSG_AUTHSERV_MAX, &m.authserv_id, &m.authserv_id_len);
        if (r == 0)
                r = get_text(p, MSG_RESULTS_MAX, &m.results, &m.results_len);
        if (r == 0)
                r = buf_get_bytes(p, &m.body_hash, &hash_len);
        if (r == 0)
                r = buf_get_bytes(p, &m.headers, &m.headers_len);
        if (r == 0)
                r = buf_end(p);
        /* cv=none exactly at the first instance (RFC 8617 5.1.1). */
        if (r == 0 && (m.cv > MSG_ARC_CV_FAIL || m.instance == 0 || (m.instance == 1) != (m.cv == MSG_ARC_CV_NONE) ||
                       hash_len != MSG_BODY_HASH_LEN || m.domain_len == 0 || m.authserv_id_len == 0))
                r = DKIMSIGN_E_FORMAT;
        if (r == 0 && m.headers_len > max_headers)
                r = DKIMSIGN_E_TOO_LARGE;
        *ret = r == 0 ? m : (struct msg_seal) { 0 };
        return r == DKIMSIGN_E_INCOMPLETE ? DKIMSIGN_E_FORMAT : r;
}

int msg_signed_encode(struct buf *out, uint32_t id, const struct msg_signed *m)
{
        if (m->count == 0 || m->count > MSG_SIGNATURES_MAX)
                return DKIMSIGN_E_INTERNAL;
        ENCODE_BEGIN(out, MSG_SIGNED, id);
        if (r == 0)
                r = buf_put_u16(out, m->count);
        for (uint16_t i = 0; r == 0 && i < m->count; i++)
                r = buf_put_bytes(out, m->fields[i], m->field_lens[i]);
        return encode_end(out, frame_start_, r);
}

int msg_signed_decode(struct buf *p, struct msg_signed *ret)
{
        struct msg_signed m = { 0 };
        int r;

        r = buf_get_u16(p, &m.count);
        if (r == 0 && (m.count == 0 || m.count > MSG_SIGNATURES_MAX))
                r = DKIMSIGN_E_FORMAT;
        for (uint16_t i = 0; r == 0 && i < m.count; i++) {
                r = buf_get_bytes(p, &m.fields[i], &m.field_lens[i]);
                if (r == 0 && (m.field_lens[i] == 0 || m.field_lens[i] > MSG_FIELD_MAX))
                        r = DKIMSIGN_E_FORMAT;
                if (r == 0 && memchr(m.fields[i], 0, m.field_lens[i]))
                        r = DKIMSIGN_E_FORMAT;
        }
        if (r == 0)
                r = buf_end(p);
        *ret = r == 0 ? m : (struct msg_signed) { 0 };
        return r == DKIMSIGN_E_INCOMPLETE ? DKIMSIGN_E_FORMAT : r;
}

int msg_error_encode(struct buf *out, uint32_t id, const struct msg_error *m)
{
        ENCODE_BEGIN(out, MSG_ERROR, id);
        if (r == 0)
                r = buf_put_u16(out, m->status);
        if (r == 0)
                r = buf_put_u8(out, m->flags);
        if (r == 0)
                r = buf_put_u16(out, m->detail);
        if (r == 0)
                r = buf_put_bytes(out, m->text, m->text_len > MSG_TEXT_MAX ? MSG_TEXT_MAX : m->text_len);
        return encode_end(out, frame_start_, r);
}

int msg_error_decode(struct buf *p, struct msg_error *ret)
{
        struct msg_error m = { 0 };
        int r;

        r = buf_get_u16(p, &m.status);
        if (r == 0)
                r = buf_get_u8(p, &m.flags);
        if (r == 0)
                r = buf_get_u16(p, &m.detail);
        if (r == 0)
                r = get_text(p, MSG_TEXT_MAX, &m.text, &m.text_len);
        if (r == 0)
                r = buf_end(p);
        *ret = r == 0 ? m : (struct msg_error) { 0 };
        return r == DKIMSIGN_E_INCOMPLETE ? DKIMSIGN_E_FORMAT : r;
}

int msg_empty_encode(struct buf *out, uint8_t type, uint32_t id)
{
        ENCODE_BEGIN(out, type, id);
        return encode_end(out, frame_start_, r);
}

int msg_empty_decode(struct buf *p)
{
        return buf_end(p) < 0 ? DKIMSIGN_E_FORMAT : 0;
}

static int long_text_encode(struct buf *out, uint8_t type, uint32_t id, const char *text, size_t len, size_t max)
{
        if (len > max)
                return DKIMSIGN_E_TOO_LARGE;
        ENCODE_BEGIN(out, type, id);
        if (r == 0)
                r = buf_put_bytes(out, text, len);
        return encode_end(out, frame_start_, r);
}

static int long_text_decode(struct buf *p, size_t max, const char **ret, size_t *ret_len)
{
        const char *t = NULL;
        size_t n = 0;
        int r = get_text(p, max, &t, &n);

        if (r == 0)
                r = buf_end(p);
        *ret = r == 0 ? t : NULL;
        *ret_len = r == 0 ? n : 0;
        return r == DKIMSIGN_E_INCOMPLETE ? DKIMSIGN_E_FORMAT : r;
}

int msg_text_encode(struct buf *out, uint8_t type, uint32_t id, const char *text, size_t len)
{
        return long_text_encode(out, type, id, text, len, MSG_REPORT_MAX);
}

int msg_text_decode(struct buf *p, const char **ret, size_t *ret_len)
{
        return long_text_decode(p, MSG_REPORT_MAX, ret, ret_len);
}

int msg_metrics_encode(struct buf *out, uint32_t id, uint8_t format)
{
        ENCODE_BEGIN(out, MSG_METRICS, id);
        if (r == 0)
                r = buf_put_u8(out, format);
        return encode_end(out, frame_start_, r);
}

int msg_metrics_decode(struct buf *p, uint8_t *ret_format)
{
        uint8_t f = 0;
        int r = buf_get_u8(p, &f);

        if (r == 0)
                r = buf_end(p);
        if (r == 0 && f != MSG_METRICS_OPENMETRICS && f != MSG_METRICS_PROMETHEUS)
                r = DKIMSIGN_E_FORMAT;
        *ret_format = r == 0 ? f : 0;
        return r == DKIMSIGN_E_INCOMPLETE ? DKIMSIGN_E_FORMAT : r;
}

int msg_metrics_ok_encode(struct buf *out, uint32_t id, const char *text, size_t len)
{
        return long_text_encode(out, MSG_METRICS_OK, id, text, len, MSG_METRICS_MAX);
}

int msg_metrics_ok_decode(struct buf *p, const char **ret, size_t *ret_len)
{
        return long_text_decode(p, MSG_METRICS_MAX, ret, ret_len);
}

int msg_error_encode_code(struct buf *out, uint32_t id, int r, const char *text)
{
        enum wire_status s = wire_status_from_err(r);
        struct msg_error m = {
                .status = (uint16_t) s,
                .flags = wire_status_is_temporary(s) ? MSG_ERROR_TEMPORARY : 0,
                .detail = r < 0 && r >= DKIMSIGN_E_ERR_MIN_ ? (uint16_t) -r : 0,
                .text = text ? text : dkimsign_strerror(r),
        };

        m.text_len = strlen(m.text);
        return msg_error_encode(out, id, &m);
}

enum wire_status wire_status_from_err(int r)
{
        switch (r) {
        case DKIMSIGN_E_FORMAT:
        case DKIMSIGN_E_TRAILING:
        case DKIMSIGN_E_INCOMPLETE:
        case DKIMSIGN_E_PROTOCOL:
        case DKIMSIGN_E_ALG:
                return WIRE_BAD_REQUEST;
        case DKIMSIGN_E_VERSION:
                return WIRE_VERSION;
        case DKIMSIGN_E_TOO_LARGE:
                return WIRE_TOO_LARGE;
        case DKIMSIGN_E_NO_FROM:
        case DKIMSIGN_E_MULTI_FROM:
        case DKIMSIGN_E_HEADER:
        case DKIMSIGN_E_IDN:
                return WIRE_REFUSED;
        case DKIMSIGN_E_DENIED:
                return WIRE_DENIED;
        case DKIMSIGN_E_NO_KEY:
                return WIRE_NO_KEY;
        case DKIMSIGN_E_HSM:
        case DKIMSIGN_E_VERIFY:
        case DKIMSIGN_E_PIN:
        case DKIMSIGN_E_NO_TOKEN:
                return WIRE_TOKEN;
        case DKIMSIGN_E_BUSY:
        case DKIMSIGN_E_NOMEM:
        case DKIMSIGN_E_TIMEOUT:
        case DKIMSIGN_E_QUOTA:
                return WIRE_BUSY;
        default:
                return WIRE_INTERNAL;
        }
}

bool wire_status_is_temporary(enum wire_status s)
{
        return s == WIRE_TOKEN || s == WIRE_BUSY || s == WIRE_INTERNAL;
}

int wire_error_to_err(const struct msg_error *m)
{
        /* Trust the detail only as far as it is a code we know, and only
         * when its class agrees with the status; else fall back to the
         * status's class, so a newer daemon's codes still map sensibly. */
        int detail = -(int) m->detail;

        if (m->detail && detail >= DKIMSIGN_E_ERR_MIN_ &&
            wire_status_from_err(detail) == (enum wire_status) m->status)
                return detail;
        switch (m->status) {
        case WIRE_BAD_REQUEST: return DKIMSIGN_E_FORMAT;
        case WIRE_VERSION: return DKIMSIGN_E_VERSION;
        case WIRE_TOO_LARGE: return DKIMSIGN_E_TOO_LARGE;
        case WIRE_REFUSED: return DKIMSIGN_E_HEADER;
        case WIRE_DENIED: return DKIMSIGN_E_DENIED;
        case WIRE_NO_KEY: return DKIMSIGN_E_NO_KEY;
        case WIRE_TOKEN: return DKIMSIGN_E_HSM;
        case WIRE_BUSY: return DKIMSIGN_E_BUSY;
        default:
                return (m->flags & MSG_ERROR_TEMPORARY) ? DKIMSIGN_E_INTERNAL : DKIMSIGN_E_PROTOCOL;
        }
}

int msg_negotiate_version(uint16_t peer_min, uint16_t peer_max, uint16_t *ret)
{
        uint16_t hi = peer_max < PROTO_VERSION_MAX ? peer_max : PROTO_VERSION_MAX;
        uint16_t lo = peer_min > PROTO_VERSION_MIN ? peer_min : PROTO_VERSION_MIN;

        if (hi < lo)
                return DKIMSIGN_E_VERSION;
        *ret = hi;
        return 0;
}
