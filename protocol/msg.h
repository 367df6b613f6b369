/* SPDX-License-Identifier: MIT */
/*
 * Message types of the dkimsign wire protocol, versions 1 and 2 (docs/protocol.md),
 * their encoders and decoders, and the mapping of error codes to the few
 * stable wire statuses.
 *
 * Decoders are pure functions from a frame's payload to a struct whose
 * pointers borrow the payload; they check every length against the
 * protocol's bounds and refuse trailing octets.  Encoders append one whole
 * frame to an output buffer.  No I/O, no allocation besides the buffer's.
 */
#ifndef PROTOCOL_MSG_H
#define PROTOCOL_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/buf.h"

#define PROTO_VERSION_MIN 1
/* Version 2 adds METRICS and SEAL (docs/protocol.md); a version 1 peer
 * never sees either. */
#define PROTO_VERSION_MAX 2
#define PROTO_VERSION_METRICS 2
/* The first version with SEAL (ARC, RFC 8617). */
#define PROTO_VERSION_SEAL 2

enum msg_type {
        MSG_HELLO = 1,       /* client -> daemon: versions it speaks */
        MSG_HELLO_OK = 2,    /* daemon -> client: the version chosen, limits */
        MSG_SIGN = 3,        /* client -> daemon: header block + body hash */
        MSG_SIGNED = 4,      /* daemon -> client: DKIM-Signature field(s) */
        MSG_ERROR = 5,       /* daemon -> client: status, detail, sentence */
        MSG_STATUS = 6,      /* admin -> daemon: live figures, please */
        MSG_STATUS_OK = 7,   /* daemon -> admin: "key=value" lines */
        MSG_RELOAD = 8,      /* admin -> daemon: re-read configuration and keys */
        MSG_RELOADED = 9,    /* daemon -> admin: a sentence on what was loaded */
        MSG_METRICS = 10,    /* monitor -> daemon (version 2): the metrics, in a format */
        MSG_METRICS_OK = 11, /* daemon -> monitor: the exposition text */
        MSG_SEAL = 12,       /* client -> daemon (version 2): an ARC set, answered by SIGNED */
};

/* The formats a METRICS request may ask for. */
enum msg_metrics_format {
        MSG_METRICS_OPENMETRICS = 0,  /* OpenMetrics 1.0.0 text (application/openmetrics-text) */
        MSG_METRICS_PROMETHEUS = 1,   /* Prometheus text 0.0.4 (text/plain), for node_exporter's textfiles */
};

/* Bounds of fields, fixed by the protocol (limits below these are config). */
#define MSG_NAME_MAX 64          /* client / server software name */
#define MSG_DOMAIN_MAX 253
#define MSG_TEXT_MAX 1024        /* an error sentence */
#define MSG_BODY_HASH_LEN 32     /* SHA-256 */
#define MSG_SIGNATURES_MAX 8
#define MSG_FIELD_MAX 16384      /* one DKIM-Signature field */
#define MSG_REPORT_MAX 16384     /* a STATUS_OK or RELOADED text */
#define MSG_METRICS_MAX (4 * 1024 * 1024)  /* a METRICS_OK text */
#define MSG_AUTHSERV_MAX 253     /* an authserv-id (RFC 8601 2.5: usually a host name) */
#define MSG_RESULTS_MAX 8192     /* the results an ARC-Authentication-Results records */
#define MSG_ARC_INSTANCE_MAX 50  /* RFC 8617 4.2.1: i= is 1 to 50 */

/* Stable wire statuses: what a client must act on.  Each is permanent or
 * temporary, and the ERROR frame says which, so an old client can handle a
 * status it does not know. */
enum wire_status {
        WIRE_BAD_REQUEST = 1,   /* permanent: the request is malformed */
        WIRE_VERSION = 2,       /* permanent: no protocol version in common */
        WIRE_TOO_LARGE = 3,     /* permanent: over a configured limit */
        WIRE_REFUSED = 4,       /* permanent: the message can't be signed safely */
        WIRE_DENIED = 5,        /* permanent: peer not authorized for the domain */
        WIRE_NO_KEY = 6,        /* permanent: no active key for the domain */
        WIRE_TOKEN = 7,         /* temporary: the token failed */
        WIRE_BUSY = 8,          /* temporary: at a limit, retry later */
        WIRE_INTERNAL = 9,      /* temporary: daemon-side failure */
};

#define MSG_ERROR_TEMPORARY 0x01

struct msg_hello {
        uint16_t min_version;
        uint16_t max_version;
        const char *name;       /* borrowed, not NUL-terminated */
        size_t name_len;
};

struct msg_hello_ok {
        uint16_t version;
        uint32_t max_frame;
        const char *name;
        size_t name_len;
};

struct msg_sign {
        uint8_t header_canon;   /* enum dkim_canon */
        uint8_t body_canon;
        const char *domain;     /* empty: sign for the From domain */
        size_t domain_len;
        const uint8_t *body_hash;       /* MSG_BODY_HASH_LEN octets */
        const uint8_t *headers;         /* header block, CRLF lines, no blank line */
        size_t headers_len;
};

/* An ARC-Seal's cv= (RFC 8617 4.1.3). */
enum msg_arc_cv {
        MSG_ARC_CV_NONE = 0,    /* no chain before this set: instance 1 */
        MSG_ARC_CV_PASS = 1,
        MSG_ARC_CV_FAIL = 2,
};

/* SEAL: the ARC set of the given instance for a header block (which holds
 * the sets before it) and the relaxed body hash. */
struct msg_seal {
        uint8_t cv;                     /* enum msg_arc_cv, as the client decided */
        uint8_t instance;               /* the new set's i=, 1 to 255 on the wire */
        const char *domain;             /* the sealing domain (d=), not empty */
        size_t domain_len;
        const char *authserv_id;        /* the AAR's authserv-id, not empty */
        size_t authserv_id_len;
        const char *results;            /* the AAR's results, unfolded; empty: "none" */
        size_t results_len;
        const uint8_t *body_hash;       /* MSG_BODY_HASH_LEN octets, relaxed body */
        const uint8_t *headers;
        size_t headers_len;
};

struct msg_signed {
        uint16_t count;
        const uint8_t *fields[MSG_SIGNATURES_MAX];  /* without the final CRLF */
        size_t field_lens[MSG_SIGNATURES_MAX];
};

struct msg_error {
        uint16_t status;        /* enum wire_status */
        uint8_t flags;          /* MSG_ERROR_TEMPORARY */
        uint16_t detail;        /* -dkimsign_err, 0 if none */
        const char *text;
        size_t text_len;
};

int msg_hello_encode(struct buf *out, uint32_t id, const struct msg_hello *m);
int msg_hello_decode(struct buf *payload, struct msg_hello *ret);
int msg_hello_ok_encode(struct buf *out, uint32_t id, const struct msg_hello_ok *m);
int msg_hello_ok_decode(struct buf *payload, struct msg_hello_ok *ret);
/* max_headers bounds headers_len (a configured limit). */
int msg_sign_encode(struct buf *out, uint32_t id, const struct msg_sign *m);
int msg_sign_decode(struct buf *payload, size_t max_headers, struct msg_sign *ret);
/* The decoder refuses a cv that does not fit the instance (none exactly at
 * i=1), an empty domain or authserv-id. */
int msg_seal_encode(struct buf *out, uint32_t id, const struct msg_seal *m);
int msg_seal_decode(struct buf *payload, size_t max_headers, struct msg_seal *ret);
int msg_signed_encode(struct buf *out, uint32_t id, const struct msg_signed *m);
int msg_signed_decode(struct buf *payload, struct msg_signed *ret);
int msg_error_encode(struct buf *out, uint32_t id, const struct msg_error *m);
int msg_error_decode(struct buf *payload, struct msg_error *ret);

/* Messages whose payload is empty (STATUS, RELOAD) or one text field
 * (STATUS_OK, RELOADED, at most MSG_REPORT_MAX). */
int msg_empty_encode(struct buf *out, uint8_t type, uint32_t id);
int msg_empty_decode(struct buf *payload);
int msg_text_encode(struct buf *out, uint8_t type, uint32_t id, const char *text, size_t len);
int msg_text_decode(struct buf *payload, const char **ret, size_t *ret_len);

/* METRICS: one u8, an enum msg_metrics_format (another is DKIMSIGN_E_FORMAT).
 * METRICS_OK: one text field of at most MSG_METRICS_MAX octets. */
int msg_metrics_encode(struct buf *out, uint32_t id, uint8_t format);
int msg_metrics_decode(struct buf *payload, uint8_t *ret_format);
int msg_metrics_ok_encode(struct buf *out, uint32_t id, const char *text, size_t len);
int msg_metrics_ok_decode(struct buf *payload, const char **ret, size_t *ret_len);

/* An ERROR frame for code r (a dkimsign_err) with a sentence. */
int msg_error_encode_code(struct buf *out, uint32_t id, int r, const char *text);

/* The one place where error codes meet wire statuses. */
enum wire_status wire_status_from_err(int r);
bool wire_status_is_temporary(enum wire_status s);
/* The dkimsign_err a client reports for an ERROR frame. */
int wire_error_to_err(const struct msg_error *m);

/* The highest version both sides speak, or DKIMSIGN_E_VERSION. */
int msg_negotiate_version(uint16_t peer_min, uint16_t peer_max, uint16_t *ret);

#endif
