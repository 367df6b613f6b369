/* SPDX-License-Identifier: MIT */
/*
 * dkimsignctl status and reload: one administrative request to the
 * running dkimsignd over its socket (docs/protocol.md).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl/ctl.h"
#include "protocol/dkimsign-errors.h"
#include "protocol/frame.h"
#include "protocol/msg.h"

/*
 * One administrative request to dkimsignd.  See ctl-daemon.h.  A blocking
 * socket with a timeout: a daemon that does not answer is reported, not
 * waited for forever.
 */


#define TIMEOUT_S 30
#define REPLY_MAX (MSG_REPORT_MAX + 64)

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

int ctl_daemon_request(const char *path, uint8_t type, char **ret_text, char *why, size_t whylen)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct timeval tv = { .tv_sec = TIMEOUT_S };
        struct msg_hello h = { .min_version = PROTO_VERSION_MIN, .max_version = PROTO_VERSION_MAX,
                               .name = "dkimsignctl", .name_len = strlen("dkimsignctl") };
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
                r = msg_empty_encode(&out, type, 2);
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
        } else if ((f.type == MSG_STATUS_OK && type == MSG_STATUS) || (f.type == MSG_RELOADED && type == MSG_RELOAD)) {
                const char *text;
                size_t len;

                r = msg_text_decode(&f.payload, &text, &len);
                /* Not NUL-terminated in the frame: copy with its length. */
                if (r == 0 && !(*ret_text = malloc(len + 1)))
                        r = DKIMSIGN_E_NOMEM;
                if (r == 0) {
                        memcpy(*ret_text, text, len);
                        (*ret_text)[len] = 0;
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

/* ---- the running daemon ---- */

static int cmd_daemon(const struct options *o, uint8_t type)
{
        struct config *c = NULL;
        char why[1024], *text = NULL;
        int r;

        if (load_config(o, &c))
                return EXIT_FAIL;
        r = ctl_daemon_request(c->socket_path, type, &text, why, sizeof(why));
        config_free(c);
        if (r < 0)
                return die("%s", why);
        fputs(text, stdout);
        if (*text && text[strlen(text) - 1] != '\n')
                fputc('\n', stdout);
        free(text);
        return 0;
}

int cmd_status(const struct options *o)
{
        return cmd_daemon(o, MSG_STATUS);
}

int cmd_reload(const struct options *o)
{
        return cmd_daemon(o, MSG_RELOAD);
}
