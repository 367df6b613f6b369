/* SPDX-License-Identifier: MIT */
/*
 * One request to the running dkimsignd over its socket, for the programs
 * that ask it for text: dkimsignctl (STATUS, RELOAD, METRICS) and
 * dkimsign-exporter (METRICS).  HELLO, the request, its answer; a daemon
 * that does not answer within the timeout is reported, not waited for.
 */
#ifndef UTIL_DAEMONREQ_H
#define UTIL_DAEMONREQ_H

#include <stddef.h>
#include <stdint.h>

/*
 * Send HELLO then type (MSG_STATUS, MSG_RELOAD, or MSG_METRICS with
 * format, an enum msg_metrics_format) to the daemon at path; *ret_text
 * gets the answer's text, NUL-terminated (free() it), *ret_len its length
 * (may be NULL).  On failure why says what happened, in the daemon's own
 * words when it answered ERROR: DKIMSIGN_E_UNAVAILABLE (no daemon),
 * DKIMSIGN_E_DENIED, DKIMSIGN_E_TIMEOUT, DKIMSIGN_E_PROTOCOL, ...
 */
int daemonreq_text(const char *path, uint8_t type, uint8_t format, unsigned timeout_s, char **ret_text,
                   size_t *ret_len, char *why, size_t whylen);

#endif
