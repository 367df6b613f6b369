/* SPDX-License-Identifier: MIT */
/*
 * The answer to a METRICS request: the counters of every signer process
 * (counters.h) and this process's view of the keys and their lifecycle,
 * as text (metrics.h).  Runs on the event loop's thread.
 */
#ifndef DAEMON_METRICSREQ_H
#define DAEMON_METRICSREQ_H

#include <stdint.h>

#include "protocol/buf.h"
#include "daemon/counters.h"
#include "daemon/dispatch.h"

/* The text in format (enum msg_metrics_format) into out (bounded by its
 * maximum), at now (Unix seconds).  DKIMSIGN_E_TOO_LARGE when it does not
 * fit, DKIMSIGN_E_NOMEM. */
int metricsreq_answer(const struct sign_ctx *ctx, const struct counters *c, int format, int64_t now,
                      struct buf *out);

/* Post the DNS results this process knows (those of its own lookups) on
 * the shared board, for processes that look nothing up.  Once a second. */
void metricsreq_post_dns(const struct sign_ctx *ctx, struct counters *c);

#endif
