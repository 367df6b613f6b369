/* SPDX-License-Identifier: MIT */
/* Unit tests for protocol/frame.c and protocol/msg.c: framing bounds,
 * round trips, refusals, version negotiation and the status mapping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "protocol/buf.h"
#include "protocol/dkimsign-errors.h"
#include "protocol/frame.h"
#include "protocol/msg.h"

static void test_peek_bounds(void **state)
{
        static const uint8_t zero[] = { 0, 0, 0, 0 };
        static const uint8_t huge[] = { 0xff, 0xff, 0xff, 0xff };
        static const uint8_t three[] = { 0, 0, 0 };
        static const uint8_t ok[] = { 0, 0, 0, 5, 1, 0, 0, 0, 7 };
        size_t total = 1;

        assert_int_equal(frame_peek(three, sizeof(three), 1024, &total), DKIMSIGN_E_INCOMPLETE);
        assert_int_equal(total, 0);
        assert_int_equal(frame_peek(zero, sizeof(zero), 1024, &total), DKIMSIGN_E_FORMAT);
        assert_int_equal(frame_peek(huge, sizeof(huge), 1024, &total), DKIMSIGN_E_TOO_LARGE);
        assert_int_equal(frame_peek(ok, sizeof(ok), 1024, &total), 0);
        assert_int_equal(total, 9);
}

static void test_decode_exact_length(void **state)
{
        static const uint8_t ok[] = { 0, 0, 0, 5, 9, 0, 0, 0, 7, 0xee };
        struct frame f;

        assert_int_equal(frame_decode(ok, 9, &f), 0);
        assert_int_equal(f.type, 9);
        assert_int_equal(f.id, 7);
        assert_int_equal(buf_remaining(&f.payload), 0);
        assert_int_equal(frame_decode(ok, 10, &f), DKIMSIGN_E_TRAILING);
        assert_int_equal(frame_decode(ok, 8, &f), DKIMSIGN_E_INCOMPLETE);
}

static void test_hello_roundtrip(void **state)
{
        struct msg_hello in = { .min_version = 1, .max_version = 3, .name = "test", .name_len = 4 }, out;
        struct buf b;
        struct frame f;

        buf_init(&b, 1024);
        assert_int_equal(msg_hello_encode(&b, 42, &in), 0);
        assert_int_equal(frame_decode(b.data, b.len, &f), 0);
        assert_int_equal(f.type, MSG_HELLO);
        assert_int_equal(f.id, 42);
        assert_int_equal(msg_hello_decode(&f.payload, &out), 0);
        assert_int_equal(out.max_version, 3);
        assert_memory_equal(out.name, "test", 4);
        buf_deinit(&b);
}

static void test_sign_roundtrip_and_limits(void **state)
{
        uint8_t hash[MSG_BODY_HASH_LEN];
        const char hdr[] = "From: a@example.com\r\n";
        struct msg_sign in = { .header_canon = 1, .body_canon = 0, .domain = "example.com", .domain_len = 11,
                               .body_hash = hash, .headers = (const uint8_t *) hdr, .headers_len = strlen(hdr) };
        struct msg_sign out;
        struct buf b, p;
        struct frame f;

        memset(hash, 0x5a, sizeof(hash));
        buf_init(&b, 4096);
        assert_int_equal(msg_sign_encode(&b, 1, &in), 0);
        assert_int_equal(frame_decode(b.data, b.len, &f), 0);
        p = f.payload;
        assert_int_equal(msg_sign_decode(&p, 1024, &out), 0);
        assert_int_equal(out.header_canon, 1);
        assert_int_equal(out.headers_len, strlen(hdr));
        assert_memory_equal(out.body_hash, hash, sizeof(hash));
        /* The header block over the configured limit. */
        p = f.payload;
        assert_int_equal(msg_sign_decode(&p, 10, &out), DKIMSIGN_E_TOO_LARGE);
        assert_null(out.headers);
        /* Canonicalization out of range. */
        in.header_canon = 2;
        buf_reset(&b);
        assert_int_equal(msg_sign_encode(&b, 1, &in), 0);
        assert_int_equal(frame_decode(b.data, b.len, &f), 0);
        assert_int_equal(msg_sign_decode(&f.payload, 1024, &out), DKIMSIGN_E_FORMAT);
        buf_deinit(&b);
}

/* SEAL: a round trip, and the cv= that must fit the instance (none
 * exactly at i=1), every truncation refused. */
static void test_seal_roundtrip_and_cv(void **state)
{
        static const struct { uint8_t cv, instance; int want; } cases[] = {
                { MSG_ARC_CV_NONE, 1, 0 }, { MSG_ARC_CV_PASS, 2, 0 }, { MSG_ARC_CV_FAIL, 7, 0 },
                { MSG_ARC_CV_PASS, 1, DKIMSIGN_E_FORMAT }, { MSG_ARC_CV_NONE, 2, DKIMSIGN_E_FORMAT },
                { 3, 2, DKIMSIGN_E_FORMAT }, { MSG_ARC_CV_NONE, 0, DKIMSIGN_E_FORMAT },
        };
        uint8_t hash[MSG_BODY_HASH_LEN];
        const char hdr[] = "From: a@example.com\r\n";
        struct msg_seal in = { .domain = "list.example", .domain_len = 12, .authserv_id = "mx", .authserv_id_len = 2,
                               .results = "spf=pass", .results_len = 8, .body_hash = hash,
                               .headers = (const uint8_t *) hdr, .headers_len = strlen(hdr) };
        struct msg_seal out;
        struct buf b, p;
        struct frame f;

        memset(hash, 0x5a, sizeof(hash));
        buf_init(&b, 4096);
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                in.cv = cases[i].cv;
                in.instance = cases[i].instance;
                buf_reset(&b);
                assert_int_equal(msg_seal_encode(&b, 1, &in), 0);
                assert_int_equal(frame_decode(b.data, b.len, &f), 0);
                assert_int_equal(msg_seal_decode(&f.payload, 1024, &out), cases[i].want);
                if (cases[i].want == 0) {
                        assert_int_equal(out.instance, cases[i].instance);
                        assert_int_equal(out.results_len, 8);
                        assert_memory_equal(out.body_hash, hash, sizeof(hash));
                }
        }
        in.cv = MSG_ARC_CV_NONE;
        in.instance = 1;
        buf_reset(&b);
        assert_int_equal(msg_seal_encode(&b, 1, &in), 0);
        assert_int_equal(frame_decode(b.data, b.len, &f), 0);
        for (size_t cut = 0; cut < buf_remaining(&f.payload); cut++) {
                buf_view(&p, buf_ptr(&f.payload), cut);
                assert_int_equal(msg_seal_decode(&p, 1024, &out), DKIMSIGN_E_FORMAT);
        }
        p = f.payload;
        assert_int_equal(msg_seal_decode(&p, 10, &out), DKIMSIGN_E_TOO_LARGE);
        /* An empty sealing domain. */
        in.domain_len = 0;
        buf_reset(&b);
        assert_int_equal(msg_seal_encode(&b, 1, &in), 0);
        assert_int_equal(frame_decode(b.data, b.len, &f), 0);
        assert_int_equal(msg_seal_decode(&f.payload, 1024, &out), DKIMSIGN_E_FORMAT);
        buf_deinit(&b);
}

static void test_sign_refuses_trailing_and_truncation(void **state)
{
        uint8_t hash[MSG_BODY_HASH_LEN] = { 0 };
        struct msg_sign in = { .body_hash = hash, .headers = (const uint8_t *) "A: b\r\n", .headers_len = 6 };
        struct msg_sign out;
        struct buf b, p;
        struct frame f;

        buf_init(&b, 4096);
        assert_int_equal(msg_sign_encode(&b, 1, &in), 0);
        assert_int_equal(frame_decode(b.data, b.len, &f), 0);
        for (size_t cut = 0; cut < buf_remaining(&f.payload); cut++) {
                buf_view(&p, buf_ptr(&f.payload), cut);
                assert_int_equal(msg_sign_decode(&p, 1024, &out), DKIMSIGN_E_FORMAT);
        }
        assert_int_equal(buf_put_u8(&b, 0), 0);
        buf_view(&p, b.data + FRAME_LEN_SIZE + FRAME_HEAD_SIZE, b.len - FRAME_LEN_SIZE - FRAME_HEAD_SIZE);
        assert_int_equal(msg_sign_decode(&p, 1024, &out), DKIMSIGN_E_TRAILING);
        buf_deinit(&b);
}

static void test_error_mapping(void **state)
{
        static const struct { int err; enum wire_status status; bool temporary; } cases[] = {
                { DKIMSIGN_E_NO_FROM, WIRE_REFUSED, false },
                { DKIMSIGN_E_MULTI_FROM, WIRE_REFUSED, false },
                { DKIMSIGN_E_HEADER, WIRE_REFUSED, false },
                { DKIMSIGN_E_DENIED, WIRE_DENIED, false },
                { DKIMSIGN_E_NO_KEY, WIRE_NO_KEY, false },
                { DKIMSIGN_E_HSM, WIRE_TOKEN, true },
                { DKIMSIGN_E_BUSY, WIRE_BUSY, true },
                { DKIMSIGN_E_VERSION, WIRE_VERSION, false },
                { DKIMSIGN_E_TOO_LARGE, WIRE_TOO_LARGE, false },
                { DKIMSIGN_E_INTERNAL, WIRE_INTERNAL, true },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct buf b;
                struct frame f;
                struct msg_error e;

                buf_init(&b, 4096);
                assert_int_equal(wire_status_from_err(cases[i].err), cases[i].status);
                assert_int_equal(msg_error_encode_code(&b, 5, cases[i].err, "why"), 0);
                assert_int_equal(frame_decode(b.data, b.len, &f), 0);
                assert_int_equal(msg_error_decode(&f.payload, &e), 0);
                assert_int_equal(e.status, cases[i].status);
                assert_int_equal(!!(e.flags & MSG_ERROR_TEMPORARY), cases[i].temporary);
                assert_int_equal(wire_error_to_err(&e), cases[i].err);
                assert_int_equal(dkimsign_err_is_temporary(cases[i].err), cases[i].temporary);
                buf_deinit(&b);
        }
}

static void test_version_negotiation(void **state)
{
        uint16_t v = 0;

        assert_int_equal(msg_negotiate_version(1, 1, &v), 0);
        assert_int_equal(v, 1);
        /* A newer client that also speaks 1. */
        assert_int_equal(msg_negotiate_version(1, 9, &v), 0);
        assert_int_equal(v, PROTO_VERSION_MAX);
        /* A client that only speaks newer versions. */
        assert_int_equal(msg_negotiate_version(PROTO_VERSION_MAX + 1, PROTO_VERSION_MAX + 5, &v), DKIMSIGN_E_VERSION);
}

static void test_signed_bounds(void **state)
{
        struct msg_signed in = { .count = 2 }, out;
        struct buf b;
        struct frame f;

        in.fields[0] = (const uint8_t *) "DKIM-Signature: a";
        in.field_lens[0] = 17;
        in.fields[1] = (const uint8_t *) "DKIM-Signature: b";
        in.field_lens[1] = 17;
        buf_init(&b, 4096);
        assert_int_equal(msg_signed_encode(&b, 3, &in), 0);
        assert_int_equal(frame_decode(b.data, b.len, &f), 0);
        assert_int_equal(msg_signed_decode(&f.payload, &out), 0);
        assert_int_equal(out.count, 2);
        in.count = 0;
        assert_int_equal(msg_signed_encode(&b, 3, &in), DKIMSIGN_E_INTERNAL);
        buf_deinit(&b);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_peek_bounds),
                cmocka_unit_test(test_decode_exact_length),
                cmocka_unit_test(test_hello_roundtrip),
                cmocka_unit_test(test_sign_roundtrip_and_limits),
                cmocka_unit_test(test_seal_roundtrip_and_cv),
                cmocka_unit_test(test_sign_refuses_trailing_and_truncation),
                cmocka_unit_test(test_error_mapping),
                cmocka_unit_test(test_version_negotiation),
                cmocka_unit_test(test_signed_bounds),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
