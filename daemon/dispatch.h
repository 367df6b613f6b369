/* SPDX-License-Identifier: MIT */
/*
 * One SIGN request, from payload to reply: decode, policy, signature, reply.
 * Runs on a worker thread with that worker's token session; everything it
 * reads besides its arguments is immutable while it runs.
 */
#ifndef DISPATCH_H
#define DISPATCH_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"
#include "config.h"
#include "hsm.h"
#include "keys.h"

struct peer {
        uid_t uid;
        gid_t gid;
        pid_t pid;
};

struct sign_ctx {
        const struct config *config;
        const struct keytab *keys;
};

/* Sign the request in payload and append the reply frame (SIGNED or ERROR)
 * to out.  Logs one audit line.  Returns the outcome (0 or a dkimsign_err);
 * a reply is appended whatever the outcome, unless out itself fails. */
int dispatch_sign(const struct sign_ctx *ctx, struct hsm_session *session, const struct peer *peer,
                  uint32_t id, const uint8_t *payload, size_t len, struct buf *out);

#endif
