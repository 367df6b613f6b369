/* SPDX-License-Identifier: MIT */
/*
 * One SIGN request, from payload to reply: decode, policy, signature, reply.
 * Runs on a worker thread with that worker's token session; everything it
 * reads besides its arguments is immutable while it runs.
 */
#ifndef DAEMON_DISPATCH_H
#define DAEMON_DISPATCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "protocol/buf.h"
#include "keys/config.h"
#include "hsm/hsm.h"
#include "keys/keys.h"
#include "daemon/peer.h"
#include "daemon/quota.h"
#include "daemon/counters.h"

/*
 * One generation of configuration and keys.  A reload makes a new one;
 * requests in flight keep the one they started with, which is freed when
 * the last of them is done.  References are taken and dropped on the event
 * loop's thread only.
 */
struct sign_ctx {
        struct config *config;   /* owned */
        struct keytab *keys;     /* owned */
        struct quota_table *quota;  /* borrowed: the process's, outlives every generation; NULL: none */
        struct counters *counters;  /* borrowed, likewise; NULL: nothing counted */
        unsigned refs;
};

/* Takes ownership of config and keys (freed even on failure). */
int sign_ctx_new(struct config *config, struct keytab *keys, struct sign_ctx **ret);
struct sign_ctx *sign_ctx_ref(struct sign_ctx *ctx);
/* Drops a reference; frees the generation with the last.  Accepts NULL. */
struct sign_ctx *sign_ctx_unref(struct sign_ctx *ctx);

/* Sign the request in payload and append the reply frame (SIGNED or ERROR)
 * to out.  Logs one audit line.  Returns the outcome (0 or a dkimsign_err);
 * a reply is appended whatever the outcome, unless out itself fails. */
int dispatch_sign(const struct sign_ctx *ctx, struct hsm_session *session, const struct peer *peer,
                  uint32_t id, const uint8_t *payload, size_t len, struct buf *out);

/* The same for a SEAL request (dispatch-seal.c): one ARC set, answered by
 * SIGNED with ARC-Seal, ARC-Message-Signature, ARC-Authentication-Results. */
int dispatch_seal(const struct sign_ctx *ctx, struct hsm_session *session, const struct peer *peer,
                  uint32_t id, const uint8_t *payload, size_t len, struct buf *out);

#endif
