/* SPDX-License-Identifier: MIT */
/*
 * What libdkimsign's files share: the client and message structures and
 * the request path.  client.c is the message and the connection; arc-*.c
 * are ARC sealing (the chain check and the SEAL request).  Not installed.
 */
#ifndef CLIENT_CLIENT_PRIVATE_H
#define CLIENT_CLIENT_PRIVATE_H

#include <stdbool.h>
#include <stdint.h>

#include "protocol/buf.h"
#include "protocol/msg.h"
#include "dkim/canon.h"
#include "client/dkimsign.h"

#define REPLY_MAX (MSG_SIGNATURES_MAX * (MSG_FIELD_MAX + 4) + 64)

struct dkimsign_client {
        char *path;
        int fd;
        uint32_t next_id;
        uint32_t max_frame;
        uint16_t version;              /* the protocol version agreed */
        struct buf in;
        char error[512];
};

enum msg_state {
        IN_HEADER,      /* collecting header lines */
        IN_BODY,        /* streaming the body into the hash */
        FINISHED,
};

struct dkimsign_message {
        enum msg_state state;
        enum dkimsign_canon hcanon, bcanon;
        char domain[MSG_DOMAIN_MAX + 1];
        struct buf header;             /* CRLF-normalized header block */
        bool line_empty;               /* nothing yet on the current header line */
        bool pending_cr;               /* header: a CR waiting for its LF */
        bool headers_added;            /* fed through add_header */
        bool ended_in_header;          /* no empty line before the end */
        struct dkim_body_hash *bh;
        uint8_t body_hash[DKIM_SHA256_LEN];
        bool arc;                      /* hash the body simple too (bh_simple) */
        struct dkim_body_hash *bh_simple;
        uint8_t body_hash_simple[DKIM_SHA256_LEN];
};

/* Record one sentence on the last failure; returns r. */
int client_set_error(dkimsign_client *c, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Something was written to the message already. */
bool client_message_started(const dkimsign_message *m);
/* End of input: close the header block and the body hash(es). */
int client_message_finish(dkimsign_message *m);
/* (Re)connect and agree on a version. */
int client_connect(dkimsign_client *c);
/* Send a SIGN or SEAL request frame and take the SIGNED reply's fields,
 * reconnecting once when the connection was lost. */
int client_request(dkimsign_client *c, const struct buf *req, uint32_t id, char **ret_fields);

#endif
