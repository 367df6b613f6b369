/* SPDX-License-Identifier: MIT */
/*
 * One request to the running dkimsignd.  See daemonreq.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "protocol/dkimsign-errors.h"
#include "protocol/frame.h"
#include "protocol/msg.h"
#include "util/daemonreq.h"

#define REPLY_MAX (MSG_METRICS_MAX + 64)

/* Read frames until the one answering id; it is left at the start of in. */
static int read_reply(int fd, struct buf *in, uint32_t id, struct frame *ret, size_t *ret_total)
{
        for (;;) {
                size_t total;
                uint8_t *p;
                ssize_t n;
                int r = frame_peek(buf_ptr(in), buf_remaining(in), REPLY_MAX, &total);

                if (r == 0 && buf_remaining(in) >= total) {
                        r = frame_decode(buf_ptr(in), total, ret);
                        if (r < 0)
                                return DKIMSIGN_E_PROTOCOL;
                        if (ret->id == id || ret->id == 0) {
                                *ret_total = total;
                                return 0;
                        }
                        buf_consume(in, total);
                        continue;
                }
                if (r < 0 && r != DKIMSIGN_E_INCOMPLETE)
                        return DKIMSIGN_E_PROTOCOL;
                buf_compact(in);
                if (buf_reserve(in, 4096, &p) < 0)
                        return DKIMSIGN_E_PROTOCOL;
                do
                        n = recv(fd, p, 4096, 0);
                while (n < 0 && errno == EINTR);
                in->len -= 4096 - (n > 0 ? (size_t) n : 0);
                if (n == 0)
                        return DKIMSIGN_E_CLOSED;
                if (n < 0)
                        return errno == EAGAIN ? DKIMSIGN_E_TIMEOUT : DKIMSIGN_E_SYSTEM;
        }
}

/* The answer type expected for a request type. */
static uint8_t answer_type(uint8_t type)
{
        return type == MSG_STATUS ? MSG_STATUS_OK : type == MSG_RELOAD ? MSG_RELOADED : MSG_METRICS_OK;
}

int daemonreq_text(const char *path, uint8_t type, uint8_t format, unsigned timeout_s, char **ret_text,
                   size_t *ret_len, char *why, size_t whylen)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct timeval tv = { .tv_sec = timeout_s };
        struct msg_hello h = { .min_version = PROTO_VERSION_MIN, .max_version = PROTO_VERSION_MAX,
                               .name = "dkimsign-daemonreq", .name_len = strlen("dkimsign-daemonreq") };
        struct buf out, in;
        struct frame f;
        size_t total;
        int fd, r;

        if (strlen(path) >= sizeof(sa.sun_path)) {
                snprintf(why, whylen, "socket path too long: %s", path);
                return DKIMSIGN_E_CONFIG;
        }
        memcpy(sa.sun_path, path, strlen(path) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
            connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                snprintf(why, whylen, "cannot connect to dkimsignd at %s: %s", path, strerror(errno));
                if (fd >= 0)
                        close(fd);
                return DKIMSIGN_E_UNAVAILABLE;
        }
        buf_init(&out, 1024);
        buf_init(&in, REPLY_MAX + 4096);
        r = msg_hello_encode(&out, 1, &h);
        if (r == 0)
                r = type == MSG_METRICS ? msg_metrics_encode(&out, 2, format) : msg_empty_encode(&out, type, 2);
        if (r == 0 && send(fd, out.data, out.len, MSG_NOSIGNAL) != (ssize_t) out.len)
                r = DKIMSIGN_E_CLOSED;
        if (r == 0)
                r = read_reply(fd, &in, 1, &f, &total);
        if (r == 0 && f.type == MSG_HELLO_OK) {
                buf_consume(&in, total);
                r = read_reply(fd, &in, 2, &f, &total);
        }
        if (r < 0) {
                snprintf(why, whylen, "dkimsignd at %s: %s", path, dkimsign_strerror(r));
        } else if (f.type == MSG_ERROR) {
                struct msg_error e;

                r = msg_error_decode(&f.payload, &e) == 0 ? wire_error_to_err(&e) : DKIMSIGN_E_PROTOCOL;
                snprintf(why, whylen, "dkimsignd: %.*s", (int) e.text_len, e.text ? e.text : "malformed error");
        } else if (f.type == answer_type(type)) {
                const char *text;
                size_t len;

                r = type == MSG_METRICS ? msg_metrics_ok_decode(&f.payload, &text, &len)
                                        : msg_text_decode(&f.payload, &text, &len);
                /* Not NUL-terminated in the frame: copy with its length. */
                if (r == 0 && !(*ret_text = malloc(len + 1)))
                        r = DKIMSIGN_E_NOMEM;
                if (r == 0) {
                        memcpy(*ret_text, text, len);
                        (*ret_text)[len] = 0;
                        if (ret_len)
                                *ret_len = len;
                }
                if (r < 0)
                        snprintf(why, whylen, "dkimsignd sent a malformed reply");
        } else {
                r = DKIMSIGN_E_PROTOCOL;
                snprintf(why, whylen, "dkimsignd sent an unexpected reply (type %u)", f.type);
        }
        buf_deinit(&out);
        buf_deinit(&in);
        close(fd);
        return r;
}

