/* SPDX-License-Identifier: MIT */
/*
 * dkimsignctl's conversation with a running dkimsignd: one administrative
 * request (STATUS or RELOAD, docs/protocol.md) on its socket.
 */
#ifndef CTL_DAEMON_H
#define CTL_DAEMON_H

#include <stddef.h>
#include <stdint.h>

/* Send HELLO then type (MSG_STATUS or MSG_RELOAD) to the daemon at path;
 * *ret_text gets the reply's text (free() it).  On failure why says what
 * happened, in the daemon's own words when it answered ERROR. */
int ctl_daemon_request(const char *path, uint8_t type, char **ret_text, char *why, size_t whylen);

#endif
