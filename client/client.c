/* SPDX-License-Identifier: MIT */
/*
 * libdkimsign.  See dkimsign.h.
 *
 * The message side splits the stream into header block and body: the
 * header block is kept (bounded, line ends normalized to CRLF), the body
 * goes straight into the streaming canonicalizer and hash.  The connection
 * side is a blocking socket with timeouts, one request at a time.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "protocol/buf.h"
#include "dkim/canon.h"
#include "dkim/header.h"
#include "dkim/idn.h"
#include "client/dkimsign.h"
#include "protocol/frame.h"
#include "protocol/msg.h"
#include "client/client-private.h"

#define PUBLIC __attribute__((visibility("default")))

#define HEADER_MAX_DEFAULT (256 * 1024)
#define IO_TIMEOUT_S 30

int client_set_error(dkimsign_client *c, int r, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(c->error, sizeof(c->error), fmt, ap);
        va_end(ap);
        return r;
}

/* ---- canonicalization names ---- */

static int canon_word(const char *s, size_t len, enum dkimsign_canon *ret)
{
        if (len == 6 && strncmp(s, "simple", 6) == 0)
                *ret = DKIMSIGN_CANON_SIMPLE;
        else if (len == 7 && strncmp(s, "relaxed", 7) == 0)
                *ret = DKIMSIGN_CANON_RELAXED;
        else
                return DKIMSIGN_E_FORMAT;
        return 0;
}

PUBLIC int dkimsign_canon_parse(const char *s, enum dkimsign_canon *ret_header, enum dkimsign_canon *ret_body)
{
        const char *slash = strchr(s, '/');
        size_t hlen = slash ? (size_t) (slash - s) : strlen(s);
        const char *b = slash ? slash + 1 : s;
        enum dkimsign_canon h, bc;

        if (canon_word(s, hlen, &h) < 0 || canon_word(b, strlen(b), &bc) < 0)
                return DKIMSIGN_E_FORMAT;
        *ret_header = h;
        *ret_body = bc;
        return 0;
}

/* ---- connection ---- */

static void conn_drop(dkimsign_client *c)
{
        if (c->fd >= 0)
                close(c->fd);
        c->fd = -1;
        buf_reset(&c->in);
}

static int send_all(dkimsign_client *c, const uint8_t *p, size_t len)
{
        while (len) {
                ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return errno == EAGAIN ? DKIMSIGN_E_TIMEOUT : DKIMSIGN_E_CLOSED;
                p += n;
                len -= (size_t) n;
        }
        return 0;
}

/* Read one whole frame into c->in; *ret_total is its size. */
static int recv_frame(dkimsign_client *c, size_t *ret_total)
{
        for (;;) {
                size_t total;
                uint8_t *p;
                ssize_t n;
                int r = frame_peek(buf_ptr(&c->in), buf_remaining(&c->in), REPLY_MAX, &total);

                if (r == 0 && buf_remaining(&c->in) >= total) {
                        *ret_total = total;
                        return 0;
                }
                if (r < 0 && r != DKIMSIGN_E_INCOMPLETE)
                        return DKIMSIGN_E_PROTOCOL;
                buf_compact(&c->in);
                r = buf_reserve(&c->in, 4096, &p);
                if (r < 0)
                        return DKIMSIGN_E_PROTOCOL;
                do
                        n = recv(c->fd, p, 4096, 0);
                while (n < 0 && errno == EINTR);
                c->in.len -= 4096 - (n > 0 ? (size_t) n : 0);
                if (n == 0)
                        return DKIMSIGN_E_CLOSED;
                if (n < 0)
                        return errno == EAGAIN || errno == EWOULDBLOCK ? DKIMSIGN_E_TIMEOUT : DKIMSIGN_E_CLOSED;
        }
}

/* Send one request frame and wait for the reply with the same id. */
static int transact(dkimsign_client *c, const struct buf *req, uint32_t id, struct frame *ret,
                    size_t *ret_total)
{
        int r = send_all(c, req->data, req->len);

        while (r == 0) {
                size_t total;

                r = recv_frame(c, &total);
                if (r < 0)
                        break;
                r = frame_decode(buf_ptr(&c->in), total, ret);
                if (r < 0)
                        return DKIMSIGN_E_PROTOCOL;
                /* id 0 is the daemon speaking before reading (busy, stopping). */
                if (ret->id == id || ret->id == 0) {
                        *ret_total = total;
                        return 0;
                }
                buf_consume(&c->in, total);  /* a stale reply: not ours */
        }
        return r;
}

/* Turn an ERROR frame into a code and the daemon's sentence. */
static int take_error(dkimsign_client *c, struct frame *f)
{
        struct msg_error e;

        if (msg_error_decode(&f->payload, &e) < 0)
                return client_set_error(c, DKIMSIGN_E_PROTOCOL, "malformed error reply from dkimsignd");
        return client_set_error(c, wire_error_to_err(&e), "dkimsignd: %.*s", (int) e.text_len, e.text);
}

int client_connect(dkimsign_client *c)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct timeval tv = { .tv_sec = IO_TIMEOUT_S };
        struct msg_hello h = { .min_version = PROTO_VERSION_MIN, .max_version = PROTO_VERSION_MAX,
                               .name = "libdkimsign", .name_len = strlen("libdkimsign") };
        struct msg_hello_ok ok;
        struct frame f;
        struct buf req;
        size_t total;
        uint32_t id;
        int r;

        conn_drop(c);
        if (strlen(c->path) >= sizeof(sa.sun_path))
                return client_set_error(c, DKIMSIGN_E_CONFIG, "socket path too long: %s", c->path);
        memcpy(sa.sun_path, c->path, strlen(c->path) + 1);
        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
                return client_set_error(c, DKIMSIGN_E_SYSTEM, "socket: %s", strerror(errno));
        setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(c->fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                int e = errno;

                conn_drop(c);
                return client_set_error(c, DKIMSIGN_E_UNAVAILABLE, "cannot connect to dkimsignd at %s: %s", c->path,
                                 strerror(e));
        }
        buf_init(&req, 256);
        id = c->next_id++;
        r = msg_hello_encode(&req, id, &h);
        if (r == 0)
                r = transact(c, &req, id, &f, &total);
        buf_deinit(&req);
        if (r < 0) {
                conn_drop(c);
                return client_set_error(c, r == DKIMSIGN_E_CLOSED ? DKIMSIGN_E_UNAVAILABLE : r,
                                 "dkimsignd at %s did not answer HELLO: %s", c->path, dkimsign_strerror(r));
        }
        if (f.type == MSG_ERROR)
                r = take_error(c, &f);
        else if (f.type != MSG_HELLO_OK || msg_hello_ok_decode(&f.payload, &ok) < 0)
                r = client_set_error(c, DKIMSIGN_E_PROTOCOL, "unexpected answer to HELLO from dkimsignd");
        else if (ok.version < PROTO_VERSION_MIN || ok.version > PROTO_VERSION_MAX)
                r = client_set_error(c, DKIMSIGN_E_VERSION, "dkimsignd chose protocol version %u, which this library does not speak",
                              ok.version);
        else {
                c->max_frame = ok.max_frame;
                c->version = ok.version;
        }
        buf_consume(&c->in, total);
        if (r < 0)
                conn_drop(c);
        return r;
}

PUBLIC int dkimsign_client_open(const char *socket_path, dkimsign_client **ret)
{
        dkimsign_client *c = calloc(1, sizeof(*c));
        int r;

        if (!c)
                return DKIMSIGN_E_NOMEM;
        c->fd = -1;
        c->next_id = 1;
        buf_init(&c->in, REPLY_MAX + 4096);
        c->path = strdup(socket_path ? socket_path : DKIMSIGN_DEFAULT_SOCKET_PATH);
        if (!c->path) {
                dkimsign_client_free(c);
                return DKIMSIGN_E_NOMEM;
        }
        r = client_connect(c);
        *ret = c;
        return r;
}

PUBLIC void dkimsign_client_free(dkimsign_client *c)
{
        if (!c)
                return;
        conn_drop(c);
        buf_deinit(&c->in);
        free(c->path);
        free(c);
}

PUBLIC const char *dkimsign_client_error(const dkimsign_client *c)
{
        return c && c->error[0] ? c->error : "no error";
}

/* ---- message ---- */

PUBLIC int dkimsign_message_new(dkimsign_message **ret)
{
        dkimsign_message *m = calloc(1, sizeof(*m));

        if (!m)
                return DKIMSIGN_E_NOMEM;
        m->hcanon = DKIMSIGN_CANON_RELAXED;
        m->bcanon = DKIMSIGN_CANON_RELAXED;
        m->line_empty = true;
        buf_init(&m->header, HEADER_MAX_DEFAULT);
        *ret = m;
        return 0;
}

PUBLIC void dkimsign_message_free(dkimsign_message *m)
{
        if (!m)
                return;
        buf_deinit(&m->header);
        dkim_body_hash_free(m->bh);
        dkim_body_hash_free(m->bh_simple);
        free(m);
}

bool client_message_started(const dkimsign_message *m)
{
        return m->header.len > 0 || m->state != IN_HEADER || m->headers_added;
}

PUBLIC int dkimsign_message_set_canon(dkimsign_message *m, enum dkimsign_canon header, enum dkimsign_canon body)
{
        if (client_message_started(m))
                return DKIMSIGN_E_INTERNAL;
        if ((header != DKIMSIGN_CANON_SIMPLE && header != DKIMSIGN_CANON_RELAXED) ||
            (body != DKIMSIGN_CANON_SIMPLE && body != DKIMSIGN_CANON_RELAXED))
                return DKIMSIGN_E_FORMAT;
        m->hcanon = header;
        m->bcanon = body;
        return 0;
}

PUBLIC int dkimsign_message_set_domain(dkimsign_message *m, const char *domain)
{
        size_t n = domain ? strlen(domain) : 0;

        if (n > MSG_DOMAIN_MAX)
                return DKIMSIGN_E_TOO_LARGE;
        memcpy(m->domain, domain ? domain : "", n + 1);
        return 0;
}

PUBLIC int dkimsign_message_set_max_header(dkimsign_message *m, size_t max)
{
        if (client_message_started(m) || max < 64)
                return DKIMSIGN_E_INTERNAL;
        m->header.max = max;
        return 0;
}

static int start_body(dkimsign_message *m)
{
        int r = dkim_body_hash_new((enum dkim_canon) m->bcanon, &m->bh);

        /* ARC: a chain's signatures may have hashed the body simple. */
        if (r == 0 && m->arc)
                r = dkim_body_hash_new(DKIM_CANON_SIMPLE, &m->bh_simple);

        if (r == 0)
                m->state = IN_BODY;
        return r;
}

static void body_update(dkimsign_message *m, const void *data, size_t len)
{
        dkim_body_hash_update(m->bh, data, len);
        if (m->bh_simple)
                dkim_body_hash_update(m->bh_simple, data, len);
}

/* Header bytes, normalized to CRLF; returns how many were taken before the
 * empty line that ends the header (the rest is body). */
static int header_feed(dkimsign_message *m, const uint8_t *p, size_t len, size_t *ret_used)
{
        size_t i = 0;
        int r = 0;

        while (i < len && r == 0) {
                uint8_t ch = p[i++];

                if (m->pending_cr) {
                        m->pending_cr = false;
                        if (ch == '\n') {
                                /* CRLF: the line ends. */
                        } else {
                                /* A bare CR is kept; the daemon decides. */
                                r = buf_put_u8(&m->header, '\r');
                                m->line_empty = false;
                                if (r == 0 && ch == '\r') {
                                        m->pending_cr = true;
                                        continue;
                                }
                                if (r == 0)
                                        r = buf_put_u8(&m->header, ch);
                                continue;
                        }
                } else if (ch == '\r') {
                        m->pending_cr = true;
                        continue;
                } else if (ch != '\n') {
                        r = buf_put_u8(&m->header, ch);
                        m->line_empty = false;
                        continue;
                }
                /* End of a line (LF or CRLF). */
                if (m->line_empty) {
                        *ret_used = i;
                        return start_body(m);
                }
                r = buf_put(&m->header, "\r\n", 2);
                m->line_empty = true;
        }
        *ret_used = i;
        return r == DKIMSIGN_E_NOSPACE ? DKIMSIGN_E_TOO_LARGE : r;
}

PUBLIC int dkimsign_message_write(dkimsign_message *m, const void *data, size_t len)
{
        const uint8_t *p = data;
        size_t used = 0;
        int r;

        if (m->state == FINISHED || m->headers_added)
                return DKIMSIGN_E_INTERNAL;
        if (m->state == IN_HEADER) {
                r = header_feed(m, p, len, &used);
                if (r < 0)
                        return r;
                p += used;
                len -= used;
        }
        if (m->state == IN_BODY && len)
                body_update(m, p, len);
        return 0;
}

/* Append value with every line end normalized to CRLF. */
static int put_normalized(struct buf *b, const char *s)
{
        int r = 0;

        for (; *s && r == 0; s++) {
                if (*s == '\r' && s[1] == '\n')
                        continue;
                r = *s == '\n' ? buf_put(b, "\r\n", 2) : buf_put_u8(b, (uint8_t) *s);
        }
        return r;
}

/* A field name as RFC 5322 has it: printable US-ASCII, no colon. */
static bool field_name_ok(const char *name)
{
        for (const unsigned char *p = (const unsigned char *) name; *p; p++)
                if (*p < 33 || *p > 126 || *p == ':')
                        return false;
        return true;
}

/* Every line end in a value (LF or CRLF) must fold, i.e. be followed by a
 * space or tab: any other would end the field, or the header block, where
 * the MTA sends no such end. */
static bool field_value_ok(const char *v)
{
        for (; *v; v++) {
                if (*v == '\r' && v[1] == '\n')
                        v++;
                if (*v == '\n' && v[1] != ' ' && v[1] != '\t')
                        return false;
        }
        return true;
}

/* One field: name, sep, value (line ends made CRLF), CRLF. */
static int add_field(dkimsign_message *m, const char *name, const char *sep, const char *value)
{
        size_t start = m->header.len;
        int r;

        if (m->state != IN_HEADER || (m->header.len && !m->headers_added) || !*name)
                return DKIMSIGN_E_INTERNAL;
        if (!field_name_ok(name) || !field_value_ok(value))
                return DKIMSIGN_E_FORMAT;
        m->headers_added = true;
        r = buf_put(&m->header, name, strlen(name));
        if (r == 0)
                r = buf_put(&m->header, sep, strlen(sep));
        if (r == 0)
                r = put_normalized(&m->header, value);
        if (r == 0)
                r = buf_put(&m->header, "\r\n", 2);
        if (r < 0) {
                m->header.len = start;
                return r == DKIMSIGN_E_NOSPACE ? DKIMSIGN_E_TOO_LARGE : r;
        }
        return 0;
}

PUBLIC int dkimsign_message_add_header_raw(dkimsign_message *m, const char *name, const char *value)
{
        return add_field(m, name, ":", value);
}

/* A milter without SMFIP_HDR_LEADSPC gets the value without the
 * whitespace after the colon; one space is put back. */
PUBLIC int dkimsign_message_add_header(dkimsign_message *m, const char *name, const char *value)
{
        return add_field(m, name, ": ", value);
}

PUBLIC int dkimsign_message_write_body(dkimsign_message *m, const void *data, size_t len)
{
        int r;

        if (m->state == FINISHED || (m->state == IN_HEADER && !m->headers_added))
                return DKIMSIGN_E_INTERNAL;
        if (m->state == IN_HEADER) {
                r = start_body(m);
                if (r < 0)
                        return r;
        }
        body_update(m, data, len);
        return 0;
}

/* End of input: close the header block and the body hash. */
int client_message_finish(dkimsign_message *m)
{
        int r = 0;

        if (m->state == FINISHED)
                return 0;
        if (m->state == IN_HEADER) {
                /* No empty line: the whole message is header, the body empty. */
                m->ended_in_header = !m->headers_added;
                if (m->pending_cr) {
                        m->pending_cr = false;
                        m->line_empty = true;
                        r = buf_put(&m->header, "\r\n", 2);
                }
                if (r == 0 && !m->line_empty)
                        r = buf_put(&m->header, "\r\n", 2);
                if (r == 0)
                        r = start_body(m);
        }
        if (r == 0)
                r = dkim_body_hash_final(m->bh, m->body_hash);
        if (r == 0 && m->bh_simple)
                r = dkim_body_hash_final(m->bh_simple, m->body_hash_simple);
        if (r == 0)
                m->state = FINISHED;
        return r == DKIMSIGN_E_NOSPACE ? DKIMSIGN_E_TOO_LARGE : r;
}

PUBLIC int dkimsign_domain_to_ascii(const char *domain, char *ret, size_t size)
{
        char a[DKIM_DOMAIN_SIZE];
        int r;

        if (!domain || !ret)
                return DKIMSIGN_E_FORMAT;
        r = dkim_domain_to_ascii(domain, strlen(domain), a, NULL);
        if (r < 0)
                return r;
        if (strlen(a) >= size)
                return DKIMSIGN_E_NOSPACE;
        memcpy(ret, a, strlen(a) + 1);
        return 0;
}

/* The header block as collected so far, parsed as dkimsignd parses it.
 * Its limits are the largest dkimsignd can be configured with: a block
 * within them that the daemon's own limits refuse is refused there. */
PUBLIC int dkimsign_message_from_domain(const dkimsign_message *m, char *ret, size_t size)
{
        const struct dkim_header_limits limits = { .max_fields = 1000000, .max_line = 1024 * 1024 };
        struct dkim_headers h;
        char domain[DKIM_DOMAIN_SIZE];
        size_t len = m->header.len;
        int r;

        /* Fields given through add_header end in CRLF; a block written
         * with dkimsign_message_write may stop inside a field, which is
         * left out until it ends. */
        while (len > 0 && !(len >= 2 && m->header.data[len - 2] == '\r' && m->header.data[len - 1] == '\n'))
                len--;
        r = dkim_headers_parse(m->header.data, len, &limits, &h);
        if (r == 0) {
                r = dkim_headers_from_domain(&h, domain, NULL);
                dkim_headers_deinit(&h);
        } else if (r == DKIMSIGN_E_FORMAT && len == 0) {
                r = DKIMSIGN_E_NO_FROM;
        }
        if (r < 0)
                return r == DKIMSIGN_E_TOO_LARGE ? DKIMSIGN_E_FORMAT : r;
        if (strlen(domain) >= size)
                return DKIMSIGN_E_NOSPACE;
        memcpy(ret, domain, strlen(domain) + 1);
        return 0;
}

PUBLIC int dkimsign_message_ended_in_header(const dkimsign_message *m)
{
        return m->state == FINISHED && m->ended_in_header;
}

/* The SIGNED reply as one string of CRLF-terminated fields. */
static int take_signed(dkimsign_client *c, struct frame *f, char **ret)
{
        struct msg_signed s;
        struct buf out;
        int r;

        if (msg_signed_decode(&f->payload, &s) < 0)
                return client_set_error(c, DKIMSIGN_E_PROTOCOL, "malformed SIGNED reply from dkimsignd");
        buf_init(&out, REPLY_MAX + 1);
        r = 0;
        for (uint16_t i = 0; r == 0 && i < s.count; i++) {
                r = buf_put(&out, s.fields[i], s.field_lens[i]);
                if (r == 0)
                        r = buf_put(&out, "\r\n", 2);
        }
        if (r == 0)
                r = buf_put_u8(&out, 0);
        if (r < 0) {
                buf_deinit(&out);
                return client_set_error(c, DKIMSIGN_E_NOMEM, "out of memory");
        }
        *ret = (char *) out.data;  /* transferred */
        return 0;
}

static int sign_once(dkimsign_client *c, const struct buf *req, uint32_t id, char **ret)
{
        struct frame f;
        size_t total;
        int r = transact(c, req, id, &f, &total);

        if (r < 0)
                return r;
        if (f.type == MSG_SIGNED)
                r = take_signed(c, &f, ret);
        else if (f.type == MSG_ERROR)
                r = take_error(c, &f);
        else
                r = client_set_error(c, DKIMSIGN_E_PROTOCOL, "unexpected reply type %u from dkimsignd", f.type);
        buf_consume(&c->in, total);
        return r;
}

PUBLIC int dkimsign_sign(dkimsign_client *c, dkimsign_message *m, char **ret_fields)
{
        struct msg_sign s;
        struct buf req;
        uint32_t id;
        int r;

        r = client_message_finish(m);
        if (r == DKIMSIGN_E_TOO_LARGE)
                return client_set_error(c, r, "the header block is larger than %zu octets", m->header.max);
        if (r < 0)
                return client_set_error(c, r, "could not finish the message: %s", dkimsign_strerror(r));
        s = (struct msg_sign) {
                .header_canon = (uint8_t) m->hcanon,
                .body_canon = (uint8_t) m->bcanon,
                .domain = m->domain,
                .domain_len = strlen(m->domain),
                .body_hash = m->body_hash,
                .headers = m->header.data,
                .headers_len = m->header.len,
        };
        buf_init(&req, (size_t) m->header.len + 1024);
        id = c->next_id++;
        r = msg_sign_encode(&req, id, &s);
        if (r < 0) {
                buf_deinit(&req);
                return client_set_error(c, r, "could not encode the request: %s", dkimsign_strerror(r));
        }
        r = client_request(c, &req, id, ret_fields);
        buf_deinit(&req);
        return r;
}

int client_request(dkimsign_client *c, const struct buf *req, uint32_t id, char **ret_fields)
{
        int r;

        if (c->max_frame && req->len - FRAME_LEN_SIZE > c->max_frame)
                return client_set_error(c, DKIMSIGN_E_TOO_LARGE, "the header block is larger than dkimsignd accepts");
        /* Signing is idempotent, so a connection lost since the last call
         * (daemon restarted) is retried once on a fresh one. */
        r = c->fd >= 0 ? sign_once(c, req, id, ret_fields) : DKIMSIGN_E_CLOSED;
        if (r == DKIMSIGN_E_CLOSED) {
                r = client_connect(c);
                if (r == 0)
                        r = sign_once(c, req, id, ret_fields);
        }
        if (r == DKIMSIGN_E_CLOSED || r == DKIMSIGN_E_TIMEOUT) {
                conn_drop(c);
                r = client_set_error(c, DKIMSIGN_E_UNAVAILABLE, "dkimsignd at %s %s", c->path,
                                     r == DKIMSIGN_E_TIMEOUT ? "did not answer in time" : "closed the connection");
        }
        return r;
}
