/* SPDX-License-Identifier: MIT */
/* Unit tests for dkim/sign.c and dkim/record.c: the h= list a policy
 * selects, field folding, and the digest of RFC 8463 A.3 reproduced from
 * the corpus's signing input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "protocol/buf.h"
#include "protocol/dkimsign-errors.h"
#include "test-util.h"
#include "dkim/header.h"
#include "dkim/record.h"
#include "dkim/sign.h"

static const struct dkim_header_limits limits = { .max_fields = 100, .max_line = 1000 };

static void test_select_oversigns(void **state)
{
        const char block[] = "From: a@example.com\r\nTo: b@example.net\r\nTo: c@example.net\r\nX-Other: 1\r\n";
        const struct dkim_hpolicy pol[] = { { "from", true }, { "to", false }, { "subject", true }, { "x-none", false } };
        const char *names[16];
        struct dkim_headers h;
        size_t n = 0;

        assert_int_equal(dkim_headers_parse((const uint8_t *) block, strlen(block), &limits, &h), 0);
        assert_int_equal(dkim_select_headers(&h, pol, 4, names, 16, &n), 0);
        /* from x2 (1 + oversign), to x2 (occurrences), subject x1 (absent, oversigned). */
        assert_int_equal(n, 5);
        assert_string_equal(names[0], "from");
        assert_string_equal(names[1], "from");
        assert_string_equal(names[2], "to");
        assert_string_equal(names[3], "to");
        assert_string_equal(names[4], "subject");
        assert_int_equal(dkim_select_headers(&h, pol, 4, names, 4, &n), DKIMSIGN_E_TOO_LARGE);
        /* A policy without From can't sign. */
        assert_int_equal(dkim_select_headers(&h, pol + 1, 3, names, 16, &n), DKIMSIGN_E_CONFIG);
        dkim_headers_deinit(&h);
}

/* The two over-sign modes side by side, from the same header block: always
 * lists an absent field once, if-present leaves it out and lists a present
 * one N+1 times as always does. */
static void test_select_oversign_if_present(void **state)
{
        const char block[] = "From: a@example.com\r\nTo: b@example.net\r\nTo: c@example.net\r\nSubject: s\r\n";
        const struct dkim_hpolicy pol[] = {
                { "from", DKIM_OVERSIGN_IF_PRESENT }, { "to", DKIM_OVERSIGN_IF_PRESENT },
                { "cc", DKIM_OVERSIGN_IF_PRESENT }, { "reply-to", DKIM_OVERSIGN_ALWAYS },
                { "subject", DKIM_OVERSIGN_NO }, { "date", DKIM_OVERSIGN_NO },
        };
        static const char *const want[] = { "from", "from", "to", "to", "to", "reply-to", "subject" };
        const char *names[16];
        struct dkim_headers h;
        size_t n = 0;

        assert_int_equal(dkim_headers_parse((const uint8_t *) block, strlen(block), &limits, &h), 0);
        assert_int_equal(dkim_select_headers(&h, pol, 6, names, 16, &n), 0);
        assert_int_equal(n, sizeof(want) / sizeof(want[0]));
        for (size_t i = 0; i < n; i++)
                assert_string_equal(names[i], want[i]);
        /* The bound counts the extra instance too. */
        assert_int_equal(dkim_select_headers(&h, pol, 6, names, 6, &n), DKIMSIGN_E_TOO_LARGE);
        dkim_headers_deinit(&h);
}

/* h= at most DKIM_HLIST_MAX characters: OpenDKIM copies h= into 4096
 * octets and fails a signature whose list is longer (measured: 4095
 * passes, 4096 fails).  62 fields of a 64-character name and From make
 * 4034; one more of 60 makes 4095, of 61 4096. */
static void test_select_hlist_length(void **state)
{
        static const struct dkim_header_limits many = { .max_fields = 100, .max_line = 1000 };
        char name[65], last[2][64], block[8192];
        struct dkim_hpolicy pol[3] = { { "from", DKIM_OVERSIGN_NO }, { name, DKIM_OVERSIGN_NO } };
        const char *names[DKIM_HNAMES_MAX];
        size_t n = 0, len = 0;

        memset(name, 'x', 64);
        name[64] = 0;
        for (int k = 0; k < 2; k++) {
                memset(last[k], 'y', 60 + k);
                last[k][60 + k] = 0;
        }
        len += (size_t) snprintf(block + len, sizeof(block) - len, "From: a@example.com\r\n");
        for (int i = 0; i < 62; i++)
                len += (size_t) snprintf(block + len, sizeof(block) - len, "%s: v\r\n", name);
        for (int k = 0; k < 2; k++) {
                struct dkim_headers h;
                size_t blen = len + (size_t) snprintf(block + len, sizeof(block) - len, "%s: v\r\n", last[k]);

                pol[2] = (struct dkim_hpolicy) { last[k], DKIM_OVERSIGN_NO };
                assert_int_equal(dkim_headers_parse((const uint8_t *) block, blen, &many, &h), 0);
                assert_int_equal(dkim_select_headers(&h, pol, 3, names, DKIM_HNAMES_MAX, &n),
                                 k == 0 ? 0 : DKIMSIGN_E_TOO_LARGE);
                if (k == 0)
                        assert_int_equal(n, 64);
                dkim_headers_deinit(&h);
        }
}

/* i= goes after d=, as given; none without one. */
static void test_field_identity(void **state)
{
        const char *names[] = { "from" };
        uint8_t bh[DKIM_SHA256_LEN] = { 0 };
        struct dkim_sig_spec spec = {
                .alg = "ed25519-sha256", .header_canon = DKIM_CANON_RELAXED, .body_canon = DKIM_CANON_RELAXED,
                .domain = "example.com", .selector = "s", .identity = "\"j.doe\"@news.example.com",
                .timestamp = 1700000000, .body_hash = bh, .hnames = names, .hcount = 1,
        };
        struct buf b;

        buf_init(&b, 4096);
        assert_int_equal(dkim_sig_field_begin(&spec, &b), 0);
        /* It may be folded onto a line of its own. */
        assert_true((uint8_t *) memmem(b.data, b.len, "i=\"j.doe\"@news.example.com;", 27) >
                    (uint8_t *) memmem(b.data, b.len, "d=example.com;", 14));
        assert_non_null(memmem(b.data, b.len, "d=example.com;", 14));
        buf_deinit(&b);
        spec.identity = NULL;
        buf_init(&b, 4096);
        assert_int_equal(dkim_sig_field_begin(&spec, &b), 0);
        assert_null(memmem(b.data, b.len, "i=", 2));
        buf_deinit(&b);
}

static void test_field_is_folded_and_ends_with_b(void **state)
{
        const char *names[40];
        uint8_t bh[DKIM_SHA256_LEN] = { 1, 2, 3 };
        uint8_t sig[256];
        struct dkim_sig_spec spec = {
                .alg = "rsa-sha256", .header_canon = DKIM_CANON_RELAXED, .body_canon = DKIM_CANON_SIMPLE,
                .domain = "a-rather-long-subdomain.example.com", .selector = "sel2026", .timestamp = 1700000000,
                .expire = 1700604800, .body_hash = bh, .hnames = names, .hcount = 40,
        };
        struct buf b;
        size_t line = 0;

        for (size_t i = 0; i < 40; i++)
                names[i] = i % 2 ? "content-transfer-encoding" : "from";
        memset(sig, 0xa5, sizeof(sig));
        buf_init(&b, 16384);
        assert_int_equal(dkim_sig_field_begin(&spec, &b), 0);
        assert_true(b.len > 2 && memcmp(b.data + b.len - 2, "b=", 2) == 0);
        assert_int_equal(memcmp(b.data, "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/simple;", 52), 0);
        assert_non_null(memmem(b.data, b.len, "x=1700604800", 12));
        assert_null(memmem(b.data, b.len, "l=", 2));
        assert_int_equal(dkim_sig_field_finish(&b, sig, sizeof(sig)), 0);
        /* Every line fits in 78 octets and every fold is CRLF + TAB. */
        for (size_t i = 0; i < b.len; i++) {
                if (b.data[i] == '\n') {
                        assert_true(i > 0 && b.data[i - 1] == '\r');
                        assert_true(i + 1 < b.len && b.data[i + 1] == '\t');
                        line = 0;
                } else if (b.data[i] != '\r') {
                        assert_true(++line <= 78);
                }
        }
        buf_deinit(&b);
}

/* The digest of RFC 8463 A.3's rsa-sha256 signature, from its header
 * block and its own DKIM-Signature field with b= emptied, must be the
 * SHA-256 of the corpus's signing input; signing it with the A.1 key must
 * give A.3's b= exactly. */
static void test_rfc8463_digest_and_signature(void **state)
{
        static const char *const names[] = { "from", "to", "subject", "date", "message-id", "from", "subject", "date" };
        static const char expected_b[] =
                "F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQ"
                "TnGdaSGsgeefOsk2JzdA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=";
        size_t msg_len, input_len, pem_len;
        uint8_t *msg = test_read_corpus("rfc8463/a3-signed.eml", &msg_len);
        uint8_t *input = test_read_corpus("rfc8463/a3-rsa-signing-input.bin", &input_len);
        uint8_t *pem = test_read_corpus("rfc8463/a1-rsa.private.pem", &pem_len);
        uint8_t expected[DKIM_SHA256_LEN], digest[DKIM_SHA256_LEN], sig[512];
        struct dkim_sig_spec spec = { .header_canon = DKIM_CANON_RELAXED, .hnames = names, .hcount = 8 };
        struct dkim_headers h;
        const uint8_t *end = memmem(msg, msg_len, "\r\n\r\n", 4);
        const struct dkim_field *f;
        const uint8_t *bpos;
        size_t sig_len = sizeof(sig), field_len;
        struct buf b64;
        EVP_PKEY_CTX *ctx;
        EVP_PKEY *key;
        BIO *bio;

        assert_non_null(end);
        assert_int_equal(dkim_headers_parse(msg, (size_t) (end - msg) + 2, &limits, &h), 0);
        /* The second field is the rsa-sha256 DKIM-Signature. */
        f = &h.fields[1];
        bpos = memmem(h.block + f->off, f->len, "b=F45d", 6);
        assert_non_null(bpos);
        field_len = (size_t) (bpos - (h.block + f->off)) + 2;
        assert_int_equal(dkim_sig_digest(&h, &spec, h.block + f->off, field_len, digest), 0);
        EVP_Digest(input, input_len, expected, NULL, EVP_sha256(), NULL);
        assert_memory_equal(digest, expected, sizeof(digest));

        bio = BIO_new_mem_buf(pem, (int) pem_len);
        key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
        assert_non_null(key);
        ctx = EVP_PKEY_CTX_new(key, NULL);
        assert_true(EVP_PKEY_sign_init(ctx) > 0);
        assert_true(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) > 0);
        assert_true(EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) > 0);
        assert_true(EVP_PKEY_sign(ctx, sig, &sig_len, digest, sizeof(digest)) > 0);
        buf_init(&b64, 1024);
        assert_int_equal(dkim_base64_put(&b64, sig, sig_len), 0);
        assert_int_equal(b64.len, strlen(expected_b));
        assert_memory_equal(b64.data, expected_b, b64.len);

        buf_deinit(&b64);
        EVP_PKEY_CTX_free(ctx);
        EVP_PKEY_free(key);
        BIO_free(bio);
        dkim_headers_deinit(&h);
        free(msg);
        free(input);
        free(pem);
}

static void test_record_text_and_zone_split(void **state)
{
        size_t pem_len;
        uint8_t *pem = test_read_corpus("rfc8463/a1-ed25519.private.pem", &pem_len);
        BIO *bio = BIO_new_mem_buf(pem, (int) pem_len);
        EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
        struct buf text, zone;
        char long_text[600];

        assert_non_null(key);
        buf_init(&text, 4096);
        buf_init(&zone, 4096);
        assert_int_equal(dkim_record_text(key, &text), 0);
        /* RFC 8463 A.2's brisbane record. */
        assert_int_equal(text.len, strlen("v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="));
        assert_memory_equal(text.data, "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", text.len);
        assert_int_equal(dkim_record_zone_value((const char *) text.data, text.len, &zone), 0);
        assert_int_equal(zone.len, text.len + 2);
        buf_reset(&zone);
        memset(long_text, 'A', sizeof(long_text));
        assert_int_equal(dkim_record_zone_value(long_text, sizeof(long_text), &zone), 0);
        /* 600 octets: three character-strings of 255, 255 and 90. */
        assert_int_equal(zone.len, 2 + (255 + 2) + 3 + (255 + 2) + 3 + (90 + 2) + 2);
        buf_deinit(&text);
        buf_deinit(&zone);
        EVP_PKEY_free(key);
        BIO_free(bio);
        free(pem);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_select_oversigns),
                cmocka_unit_test(test_select_oversign_if_present),
                cmocka_unit_test(test_select_hlist_length),
                cmocka_unit_test(test_field_identity),
                cmocka_unit_test(test_field_is_folded_and_ends_with_b),
                cmocka_unit_test(test_rfc8463_digest_and_signature),
                cmocka_unit_test(test_record_text_and_zone_split),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
