/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for dkim/dkimrec.c: the tag-list of DKIM key records (RFC 6376
 * 3.6.1) with its errors, the records dkim_record_text writes parsed back,
 * and the comparison with a public key: SubjectPublicKeyInfo and bare
 * RSAPublicKey forms, Ed25519, another key, the wrong k=, revocation.
 * Keys are generated fresh with OpenSSL (nothing secret is stored).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "protocol/buf.h"
#include "dkim/dkimrec.h"
#include "protocol/dkimsign-errors.h"
#include "dkim/record.h"
#include "dkim/sign.h"

struct parse_case {
        const char *text;
        int r;
        const char *why;
};

static const struct parse_case parse_cases[] = {
        { "v=DKIM1; k=rsa; p=AAAA", 0, NULL },
        { "p=AAAA", 0, NULL },
        { "v=DKIM1; p=AAAA;", 0, NULL },
        { " v = DKIM1 ;\r\n\tk = rsa ; p = AA AA ", 0, NULL },
        { "v=DKIM1; p=", 0, NULL },                          /* revoked */
        { "v=DKIM1; p=AAAA; foo=bar; x_y=1", 0, NULL },      /* unknown tags ignored */
        { "v=DKIM1; k=foo; p=AAAA", 0, NULL },               /* unknown k=: parses, unusable */
        { "v=DKIM1; h=sha1:sha256; s=email; t=y:s; n=note; p=AAAA", 0, NULL },
        { "", DKIMSIGN_E_FORMAT, "no p= tag" },
        { "v=DKIM1; k=rsa", DKIMSIGN_E_FORMAT, "no p= tag" },
        { "k=rsa; v=DKIM1; p=AAAA", DKIMSIGN_E_FORMAT, "must be the first" },
        { "v=DKIM2; p=AAAA", DKIMSIGN_E_FORMAT, "must be \"DKIM1\"" },
        { "v=DKIM1; p=AAAA; p=AAAA", DKIMSIGN_E_FORMAT, "more than once" },
        { "v=DKIM1; k=rsa; k=rsa; p=AAAA", DKIMSIGN_E_FORMAT, "more than once" },
        { "v=DKIM1;; p=AAAA", DKIMSIGN_E_FORMAT, "empty tag" },
        { "; p=AAAA", DKIMSIGN_E_FORMAT, "empty tag" },
        { "v=DKIM1; p", DKIMSIGN_E_FORMAT, "no \"=\"" },
        { "v=DKIM1; 9=1; p=AAAA", DKIMSIGN_E_FORMAT, "letter" },
        { "v=DKIM1; p=AAA", DKIMSIGN_E_FORMAT, "base64" },
        { "v=DKIM1; p=AA=A", DKIMSIGN_E_FORMAT, "base64" },
        { "v=DKIM1; p=A===", DKIMSIGN_E_FORMAT, "base64" },
        { "v=DKIM1; p=AB==", DKIMSIGN_E_FORMAT, "base64" },     /* non-zero padding bits */
        { "v=DKIM1; p=AAA*", DKIMSIGN_E_FORMAT, "base64" },
        { "v=DKIM1; p=AAAA\x7f", DKIMSIGN_E_FORMAT, "printable" },
        { "v=DKIM1; n=caf\xc3\xa9; p=AAAA", DKIMSIGN_E_FORMAT, "printable" },
};

static void test_parse_cases(void **state)
{
        (void) state;
        for (size_t i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
                const struct parse_case *c = &parse_cases[i];
                struct dkim_keyrec rec;
                char why[200];
                int r;

                r = dkim_keyrec_parse(c->text, strlen(c->text), &rec, why, sizeof(why));
                if (r != c->r)
                        fail_msg("\"%s\": %d (%s), expected %d", c->text, r, why, c->r);
                if (r == 0)
                        dkim_keyrec_clear(&rec);
                else if (!strstr(why, c->why))
                        fail_msg("\"%s\": reason \"%s\" lacks \"%s\"", c->text, why, c->why);
        }
}

static void test_fields(void **state)
{
        const char *text = "v=DKIM1; h=sha1 : sha256; k=ed25519; s=email:*; t=y:s:x; n=hello world; p=AAECAw==";
        struct dkim_keyrec rec;
        char why[200];

        (void) state;
        assert_int_equal(dkim_keyrec_parse(text, strlen(text), &rec, why, sizeof(why)), 0);
        assert_true(rec.has_version);
        assert_int_equal(rec.alg, DKIM_KEYREC_ED25519);
        assert_string_equal(rec.k, "ed25519");
        assert_true(rec.h_allows_sha256);
        assert_true(rec.s_allows_email);
        assert_true(rec.testing);
        assert_true(rec.strict);
        assert_false(rec.revoked);
        assert_string_equal(rec.n, "hello world");
        assert_int_equal(rec.p_len, 4);
        assert_memory_equal(rec.p, "\x00\x01\x02\x03", 4);
        dkim_keyrec_clear(&rec);
        dkim_keyrec_clear(&rec);

        text = "p=; h=sha1; s=other; k=RSA";
        assert_int_equal(dkim_keyrec_parse(text, strlen(text), &rec, why, sizeof(why)), 0);
        assert_false(rec.has_version);
        assert_true(rec.revoked);
        assert_null(rec.p);
        assert_false(rec.h_allows_sha256);
        assert_false(rec.s_allows_email);
        assert_int_equal(rec.alg, DKIM_KEYREC_RSA);   /* ABNF literals match in any case */
        dkim_keyrec_clear(&rec);

        text = "p=AAAA";
        assert_int_equal(dkim_keyrec_parse(text, strlen(text), &rec, why, sizeof(why)), 0);
        assert_string_equal(rec.k, "rsa");
        assert_int_equal(rec.alg, DKIM_KEYREC_RSA);
        assert_false(rec.testing);
        dkim_keyrec_clear(&rec);

        assert_int_equal(dkim_keyrec_parse("p=AAAA\0", 7, &rec, why, sizeof(why)), DKIMSIGN_E_FORMAT);
}

static EVP_PKEY *keygen(const char *alg)
{
        EVP_PKEY *k = strcmp(alg, "rsa") == 0 ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 1024)
                                              : EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");

        assert_non_null(k);
        return k;
}

/* The record dkim_record_text writes for k, parsed. */
static void record_of(EVP_PKEY *k, const char *extra, struct dkim_keyrec *ret)
{
        struct buf b;
        char why[200];

        buf_init(&b, 8192);
        assert_int_equal(dkim_record_text(k, &b), 0);
        if (extra)
                assert_int_equal(buf_put(&b, extra, strlen(extra)), 0);
        assert_int_equal(dkim_keyrec_parse((const char *) b.data, b.len, ret, why, sizeof(why)), 0);
        buf_deinit(&b);
}

static void test_matches(void **state)
{
        EVP_PKEY *rsa = keygen("rsa"), *rsa2 = keygen("rsa"), *ed = keygen("ed25519"), *ed2 = keygen("ed25519");
        struct dkim_keyrec rec;
        EVP_PKEY *back = NULL;
        char why[200];

        (void) state;
        record_of(rsa, NULL, &rec);
        assert_int_equal(dkim_keyrec_matches(&rec, rsa, why, sizeof(why)), 0);
        assert_int_equal(dkim_keyrec_matches(&rec, rsa2, why, sizeof(why)), DKIMSIGN_E_NO_KEY);
        assert_non_null(strstr(why, "different RSA key"));
        assert_int_equal(dkim_keyrec_matches(&rec, ed, why, sizeof(why)), DKIMSIGN_E_NO_KEY);
        assert_non_null(strstr(why, "k=rsa"));
        assert_int_equal(dkim_keyrec_pubkey(&rec, &back), 0);
        assert_int_equal(EVP_PKEY_get_bits(back), 1024);
        assert_int_equal(EVP_PKEY_eq(back, rsa), 1);
        EVP_PKEY_free(back);
        dkim_keyrec_clear(&rec);

        record_of(ed, "; t=y", &rec);
        assert_true(rec.testing);
        assert_int_equal(dkim_keyrec_matches(&rec, ed, why, sizeof(why)), 0);
        assert_int_equal(dkim_keyrec_matches(&rec, ed2, why, sizeof(why)), DKIMSIGN_E_NO_KEY);
        assert_non_null(strstr(why, "different Ed25519 key"));
        assert_int_equal(dkim_keyrec_matches(&rec, rsa, why, sizeof(why)), DKIMSIGN_E_NO_KEY);
        assert_int_equal(dkim_keyrec_pubkey(&rec, &back), 0);
        assert_int_equal(EVP_PKEY_eq(back, ed), 1);
        EVP_PKEY_free(back);
        dkim_keyrec_clear(&rec);

        EVP_PKEY_free(rsa);
        EVP_PKEY_free(rsa2);
        EVP_PKEY_free(ed);
        EVP_PKEY_free(ed2);
}

/* Some publishers write the bare PKCS#1 RSAPublicKey in p=. */
static void test_matches_pkcs1(void **state)
{
        EVP_PKEY *rsa = keygen("rsa");
        unsigned char *der = NULL;
        struct dkim_keyrec rec;
        struct buf b;
        EVP_PKEY *back = NULL;
        char why[200];
        int len;

        (void) state;
        len = i2d_PublicKey(rsa, &der);
        assert_true(len > 0);
        buf_init(&b, 8192);
        assert_int_equal(buf_put(&b, "v=DKIM1; p=", 11), 0);
        assert_int_equal(dkim_base64_put(&b, der, (size_t) len), 0);
        assert_int_equal(dkim_keyrec_parse((const char *) b.data, b.len, &rec, why, sizeof(why)), 0);
        assert_int_equal(dkim_keyrec_matches(&rec, rsa, why, sizeof(why)), 0);
        assert_int_equal(dkim_keyrec_pubkey(&rec, &back), 0);
        assert_int_equal(EVP_PKEY_eq(back, rsa), 1);
        EVP_PKEY_free(back);
        dkim_keyrec_clear(&rec);
        buf_deinit(&b);
        OPENSSL_free(der);
        EVP_PKEY_free(rsa);
}

static void test_revoked_and_garbage(void **state)
{
        EVP_PKEY *rsa = keygen("rsa");
        struct dkim_keyrec rec;
        EVP_PKEY *back = NULL;
        char why[200];

        (void) state;
        assert_int_equal(dkim_keyrec_parse("v=DKIM1; p=", 11, &rec, why, sizeof(why)), 0);
        assert_int_equal(dkim_keyrec_matches(&rec, rsa, why, sizeof(why)), DKIMSIGN_E_NO_KEY);
        assert_non_null(strstr(why, "revoked"));
        assert_int_equal(dkim_keyrec_pubkey(&rec, &back), DKIMSIGN_E_NO_KEY);
        dkim_keyrec_clear(&rec);

        /* Valid base64, not a key. */
        assert_int_equal(dkim_keyrec_parse("v=DKIM1; p=AAECAwQF", 19, &rec, why, sizeof(why)), 0);
        assert_int_equal(dkim_keyrec_matches(&rec, rsa, why, sizeof(why)), DKIMSIGN_E_NO_KEY);
        assert_int_equal(dkim_keyrec_pubkey(&rec, &back), DKIMSIGN_E_FORMAT);
        dkim_keyrec_clear(&rec);
        assert_int_equal(dkim_keyrec_parse("v=DKIM1; k=ed25519; p=AAECAwQF", 30, &rec, why, sizeof(why)), 0);
        assert_int_equal(dkim_keyrec_pubkey(&rec, &back), DKIMSIGN_E_FORMAT);
        dkim_keyrec_clear(&rec);
        assert_int_equal(dkim_keyrec_parse("v=DKIM1; k=dsa; p=AAECAwQF", 26, &rec, why, sizeof(why)), 0);
        assert_int_equal(dkim_keyrec_pubkey(&rec, &back), DKIMSIGN_E_ALG);
        dkim_keyrec_clear(&rec);
        EVP_PKEY_free(rsa);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_cases),
                cmocka_unit_test(test_fields),
                cmocka_unit_test(test_matches),
                cmocka_unit_test(test_matches_pkcs1),
                cmocka_unit_test(test_revoked_and_garbage),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
