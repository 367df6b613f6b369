/* SPDX-License-Identifier: MIT */
/*
 * libdkimsign's message side: the header block it sends to dkimsignd.  A
 * fake daemon (a thread on a Unix socket in a temporary directory) answers
 * HELLO and SIGN and keeps what the SIGN request carried, so the test sees
 * the octets the daemon would sign.  The property checked: header fields
 * given one by one as an MTA passes them (dkimsign_message_add_header_raw)
 * give the same header block and body hash as the raw message written
 * whole (dkimsign_message_write), whatever the whitespace after the colon
 * and the folding; malformed fields are refused.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>

#include "protocol/buf.h"
#include "client/dkimsign.h"
#include "protocol/frame.h"
#include "protocol/msg.h"

#define BLOCK_MAX 8192

/* ---- a fake dkimsignd: one connection, HELLO then SIGN requests ---- */

struct fake {
        char dir[64];
        char path[128];
        int listen_fd;
        pthread_t thread;
        uint8_t headers[BLOCK_MAX];
        size_t headers_len;
        uint8_t body_hash[MSG_BODY_HASH_LEN];
        int signs;
};

static int write_all(int fd, const uint8_t *p, size_t len)
{
        while (len) {
                ssize_t n = write(fd, p, len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return -1;
                p += n;
                len -= (size_t) n;
        }
        return 0;
}

/* One whole frame into in; its size, or 0 at the end of the connection. */
static size_t read_frame(int fd, struct buf *in)
{
        for (;;) {
                size_t total;
                uint8_t *p;
                ssize_t n;
                int r = frame_peek(buf_ptr(in), buf_remaining(in), FRAME_DEFAULT_MAX, &total);

                if (r == 0 && buf_remaining(in) >= total)
                        return total;
                if (r < 0 && r != DKIMSIGN_E_INCOMPLETE)
                        return 0;
                if (buf_reserve(in, 4096, &p) < 0)
                        return 0;
                n = read(fd, p, 4096);
                in->len -= 4096 - (n > 0 ? (size_t) n : 0);
                if (n <= 0)
                        return 0;
        }
}

static void fake_reply(struct fake *f, int fd, const struct frame *req)
{
        static const char field[] = "DKIM-Signature: v=1; d=example.com; b=fake";
        struct msg_hello_ok ok = { .version = PROTO_VERSION_MAX, .max_frame = FRAME_DEFAULT_MAX,
                                   .name = "fake", .name_len = 4 };
        struct msg_signed sig = { .count = 1, .fields = { (const uint8_t *) field },
                                  .field_lens = { sizeof(field) - 1 } };
        struct buf payload = req->payload, out;
        struct msg_sign s;
        int r = -1;

        buf_init(&out, 64 * 1024);
        if (req->type == MSG_HELLO) {
                r = msg_hello_ok_encode(&out, req->id, &ok);
        } else if (req->type == MSG_SIGN && msg_sign_decode(&payload, BLOCK_MAX, &s) == 0) {
                memcpy(f->headers, s.headers, s.headers_len);
                f->headers_len = s.headers_len;
                memcpy(f->body_hash, s.body_hash, MSG_BODY_HASH_LEN);
                f->signs++;
                r = msg_signed_encode(&out, req->id, &sig);
        }
        if (r == 0)
                write_all(fd, out.data, out.len);
        buf_deinit(&out);
}

static void *fake_serve(void *arg)
{
        struct fake *f = arg;
        int fd = accept(f->listen_fd, NULL, NULL);
        struct buf in;
        size_t total;

        if (fd < 0)
                return NULL;
        buf_init(&in, 1024 * 1024);
        while ((total = read_frame(fd, &in)) > 0) {
                struct frame req;

                if (frame_decode(buf_ptr(&in), total, &req) < 0)
                        break;
                fake_reply(f, fd, &req);
                buf_consume(&in, total);
                buf_compact(&in);
        }
        buf_deinit(&in);
        close(fd);
        return NULL;
}

static void fake_start(struct fake *f)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        memset(f, 0, sizeof(*f));
        strcpy(f->dir, "/tmp/test-client-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        snprintf(f->path, sizeof(f->path), "%s/sock", f->dir);
        memcpy(sa.sun_path, f->path, strlen(f->path) + 1);
        f->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(f->listen_fd >= 0);
        assert_int_equal(bind(f->listen_fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(listen(f->listen_fd, 1), 0);
        assert_int_equal(pthread_create(&f->thread, NULL, fake_serve, f), 0);
}

static void fake_stop(struct fake *f)
{
        pthread_join(f->thread, NULL);
        close(f->listen_fd);
        unlink(f->path);
        rmdir(f->dir);
}

/* Sign m through a fake daemon; f keeps what the daemon got. */
static void sign_through_fake(dkimsign_message *m, struct fake *f)
{
        dkimsign_client *c = NULL;
        char *fields = NULL;

        fake_start(f);
        assert_int_equal(dkimsign_client_open(f->path, &c), 0);
        assert_int_equal(dkimsign_sign(c, m, &fields), 0);
        assert_string_equal(fields, "DKIM-Signature: v=1; d=example.com; b=fake\r\n");
        free(fields);
        dkimsign_client_free(c);        /* the fake's connection ends */
        fake_stop(f);
        assert_int_equal(f->signs, 1);
}

/* ---- header fields as an MTA passes them ---- */

static const char BODY[] = "Hello.\r\n\r\n  Indented  line \r\n";

struct field {
        const char *name;
        const char *value;      /* after the colon, as it stands; LF folds */
};

/* The same message as written whole: name ":" value, CRLF line ends. */
static size_t message_text(const struct field *fields, char *out, size_t max)
{
        size_t n = 0;

        for (const struct field *f = fields; f->name; f++) {
                n += (size_t) snprintf(out + n, max - n, "%s:", f->name);
                for (const char *v = f->value; *v; v++) {
                        if (*v == '\n' && (v == f->value || v[-1] != '\r'))
                                out[n++] = '\r';
                        out[n++] = *v;
                }
                n += (size_t) snprintf(out + n, max - n, "\r\n");
        }
        n += (size_t) snprintf(out + n, max - n, "\r\n%s", BODY);
        assert_true(n < max);
        return n;
}

static const struct field *const CASES[] = {
        (const struct field[]) { { "From", " a@example.com" }, { "Subject", "x" }, { 0 } },
        (const struct field[]) { { "From", " a@example.com" }, { "Subject", "\tx" }, { 0 } },
        (const struct field[]) { { "From", " a@example.com" }, { "Subject", "" }, { 0 } },
        (const struct field[]) { { "From", " a@example.com" }, { "Subject", " " }, { 0 } },
        (const struct field[]) { { "From", " a@example.com" }, { "Subject", "  two" }, { 0 } },
        (const struct field[]) { { "From", "a@example.com" }, { "Subject", "\n\tfolded at once" }, { 0 } },
        (const struct field[]) { { "From", " a@example.com" }, { "Subject", " a \n\t b\r\n c" }, { 0 } },
        (const struct field[]) { { "To", " b@example.net,\n  c@example.net \n\td@example.net" },
                                 { "From", "\ta@example.com" }, { "X-Empty", "" }, { 0 } },
};

static void test_raw_fields_sign_as_written(void **state)
{
        (void) state;
        for (size_t i = 0; i < sizeof(CASES) / sizeof(CASES[0]); i++) {
                struct fake whole, fields;
                dkimsign_message *m = NULL;
                char text[BLOCK_MAX];
                size_t len = message_text(CASES[i], text, sizeof(text));

                assert_int_equal(dkimsign_message_new(&m), 0);
                assert_int_equal(dkimsign_message_set_canon(m, DKIMSIGN_CANON_SIMPLE, DKIMSIGN_CANON_SIMPLE), 0);
                assert_int_equal(dkimsign_message_write(m, text, len), 0);
                sign_through_fake(m, &whole);
                dkimsign_message_free(m);

                assert_int_equal(dkimsign_message_new(&m), 0);
                assert_int_equal(dkimsign_message_set_canon(m, DKIMSIGN_CANON_SIMPLE, DKIMSIGN_CANON_SIMPLE), 0);
                for (const struct field *f = CASES[i]; f->name; f++)
                        assert_int_equal(dkimsign_message_add_header_raw(m, f->name, f->value), 0);
                assert_int_equal(dkimsign_message_write_body(m, BODY, strlen(BODY)), 0);
                sign_through_fake(m, &fields);
                dkimsign_message_free(m);

                /* The header block is what was written, not a rebuild. */
                assert_int_equal(fields.headers_len, whole.headers_len);
                assert_memory_equal(fields.headers, whole.headers, whole.headers_len);
                assert_memory_equal(fields.body_hash, whole.body_hash, MSG_BODY_HASH_LEN);
                assert_memory_equal(fields.headers, text, whole.headers_len);
        }
}

/* dkimsign_message_add_header() keeps what it always did: one space. */
static void test_add_header_puts_one_space(void **state)
{
        static const char expect[] = "From: a@example.com\r\nSubject: x\r\n\tfolded\r\nX-Empty: \r\n";
        dkimsign_message *m = NULL;
        struct fake f;

        (void) state;
        assert_int_equal(dkimsign_message_new(&m), 0);
        assert_int_equal(dkimsign_message_add_header(m, "From", "a@example.com"), 0);
        assert_int_equal(dkimsign_message_add_header(m, "Subject", "x\n\tfolded"), 0);
        assert_int_equal(dkimsign_message_add_header(m, "X-Empty", ""), 0);
        sign_through_fake(m, &f);
        dkimsign_message_free(m);
        assert_int_equal(f.headers_len, strlen(expect));
        assert_memory_equal(f.headers, expect, strlen(expect));
}

/* A field no MTA passes is refused and leaves the message as it was. */
static void test_malformed_fields_refused(void **state)
{
        static const struct { const char *name, *value; int r; } bad[] = {
                { "", "x", DKIMSIGN_E_INTERNAL },
                { "Sub ject", " x", DKIMSIGN_E_FORMAT },
                { "Subject:", " x", DKIMSIGN_E_FORMAT },
                { "Sub\x01ject", " x", DKIMSIGN_E_FORMAT },
                { "Sub\xc3\xa9", " x", DKIMSIGN_E_FORMAT },
                { "Subject", " a\nb", DKIMSIGN_E_FORMAT },          /* a new field */
                { "Subject", " a\r\nBcc: x", DKIMSIGN_E_FORMAT },
                { "Subject", " a\n", DKIMSIGN_E_FORMAT },           /* ends the header */
                { "Subject", " a\r\n", DKIMSIGN_E_FORMAT },
                { "Subject", "\n", DKIMSIGN_E_FORMAT },
        };
        static const char expect[] = "From: a@example.com\r\n";
        dkimsign_message *m = NULL;
        struct fake f;

        (void) state;
        assert_int_equal(dkimsign_message_new(&m), 0);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                assert_int_equal(dkimsign_message_add_header_raw(m, bad[i].name, bad[i].value), bad[i].r);
                assert_int_equal(dkimsign_message_add_header(m, bad[i].name, bad[i].value), bad[i].r);
        }
        assert_int_equal(dkimsign_message_add_header_raw(m, "From", " a@example.com"), 0);
        sign_through_fake(m, &f);
        dkimsign_message_free(m);
        assert_int_equal(f.headers_len, strlen(expect));
        assert_memory_equal(f.headers, expect, strlen(expect));
}

/* Fields one by one and the message written whole don't mix. */
static void test_fields_after_write_refused(void **state)
{
        dkimsign_message *m = NULL;

        (void) state;
        assert_int_equal(dkimsign_message_new(&m), 0);
        assert_int_equal(dkimsign_message_write(m, "From: a@example.com\r\n", 21), 0);
        assert_int_equal(dkimsign_message_add_header_raw(m, "Subject", " x"), DKIMSIGN_E_INTERNAL);
        assert_int_equal(dkimsign_message_add_header(m, "Subject", "x"), DKIMSIGN_E_INTERNAL);
        dkimsign_message_free(m);
}

/* Past the header limit: DKIMSIGN_E_TOO_LARGE, and the block unchanged. */
static void test_raw_field_over_limit(void **state)
{
        static const char expect[] = "From: a@example.com\r\n";
        dkimsign_message *m = NULL;
        char big[200];
        struct fake f;

        (void) state;
        memset(big, 'x', sizeof(big) - 1);
        big[sizeof(big) - 1] = 0;
        assert_int_equal(dkimsign_message_new(&m), 0);
        assert_int_equal(dkimsign_message_set_max_header(m, 64), 0);
        assert_int_equal(dkimsign_message_add_header_raw(m, "From", " a@example.com"), 0);
        assert_int_equal(dkimsign_message_add_header_raw(m, "Subject", big), DKIMSIGN_E_TOO_LARGE);
        sign_through_fake(m, &f);
        dkimsign_message_free(m);
        assert_int_equal(f.headers_len, strlen(expect));
        assert_memory_equal(f.headers, expect, strlen(expect));
}

/* The From domain the library reads is the one the daemon signs for: the
 * address in angle brackets, not one in a comment or a display name. */
static void test_from_domain(void **state)
{
        static const struct {
                const char *fields[3];
                int r;
                const char *domain;
        } cases[] = {
                { { "From", " Alice <alice@A.Example>" }, 0, "a.example" },
                { { "From", " ceo@b.example (alice@a.example)" }, 0, "b.example" },
                { { "From", " \"alice@a.example\" <ceo@b.example>" }, 0, "b.example" },
                { { "From", " \"x\"@b.example" }, 0, "b.example" },
                { { "Subject", " no From" }, DKIMSIGN_E_NO_FROM, NULL },
                { { "From", " a@a.example, b@b.example" }, DKIMSIGN_E_MULTI_FROM, NULL },
                { { "From", " a@a.example", "FROM" }, DKIMSIGN_E_MULTI_FROM, NULL },
                { { "From", " undisclosed:;" }, DKIMSIGN_E_FORMAT, NULL },
                { { "From", " a@[192.0.2.1]" }, DKIMSIGN_E_FORMAT, NULL },
                /* RFC 6532 mail: the A-label form the daemon signs for. */
                { { "From", " J\xc3\xb6rg <j\xc3\xb6rg@B\xc3\xbc" "cher.example>" }, 0, "xn--bcher-kva.example" },
                { { "From", " joe@a\xe2\x80\x8d" "b.example" }, DKIMSIGN_E_IDN, NULL },
        };
        char domain[254];

        (void) state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                dkimsign_message *m = NULL;

                assert_int_equal(dkimsign_message_new(&m), 0);
                assert_int_equal(dkimsign_message_add_header_raw(m, cases[i].fields[0], cases[i].fields[1]), 0);
                if (cases[i].fields[2])
                        assert_int_equal(dkimsign_message_add_header_raw(m, cases[i].fields[2], " b@b.example"), 0);
                assert_int_equal(dkimsign_message_from_domain(m, domain, sizeof(domain)), cases[i].r);
                if (cases[i].domain)
                        assert_string_equal(domain, cases[i].domain);
                dkimsign_message_free(m);
        }
        /* Nothing given yet; a buffer too small. */
        dkimsign_message *m = NULL;
        assert_int_equal(dkimsign_message_new(&m), 0);
        assert_int_equal(dkimsign_message_from_domain(m, domain, sizeof(domain)), DKIMSIGN_E_NO_FROM);
        assert_int_equal(dkimsign_message_add_header_raw(m, "From", " a@a.example"), 0);
        assert_int_equal(dkimsign_message_from_domain(m, domain, 9), DKIMSIGN_E_NOSPACE);
        assert_int_equal(dkimsign_message_from_domain(m, domain, 10), 0);
        assert_string_equal(domain, "a.example");
        dkimsign_message_free(m);
}

/* A caller's own domains in the form the From domain comes in. */
static void test_domain_to_ascii(void **state)
{
        char out[254];

        (void) state;
        assert_int_equal(dkimsign_domain_to_ascii("B\xc3\xbc" "cher.Example", out, sizeof(out)), 0);
        assert_string_equal(out, "xn--bcher-kva.example");
        assert_int_equal(dkimsign_domain_to_ascii("Example.COM", out, sizeof(out)), 0);
        assert_string_equal(out, "example.com");
        assert_int_equal(dkimsign_domain_to_ascii("b\xc3\xbc" "cher.example", out, 21), DKIMSIGN_E_NOSPACE);
        assert_int_equal(dkimsign_domain_to_ascii("b\xc3\xbc" "cher.example", out, 22), 0);
        assert_int_equal(dkimsign_domain_to_ascii("ex_ample.com", out, sizeof(out)), DKIMSIGN_E_FORMAT);
        assert_int_equal(dkimsign_domain_to_ascii("\xe2\x98\x83.example", out, sizeof(out)), DKIMSIGN_E_IDN);
        assert_int_equal(dkimsign_domain_to_ascii(NULL, out, sizeof(out)), DKIMSIGN_E_FORMAT);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_raw_fields_sign_as_written),
                cmocka_unit_test(test_add_header_puts_one_space),
                cmocka_unit_test(test_malformed_fields_refused),
                cmocka_unit_test(test_fields_after_write_refused),
                cmocka_unit_test(test_raw_field_over_limit),
                cmocka_unit_test(test_from_domain),
                cmocka_unit_test(test_domain_to_ascii),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
