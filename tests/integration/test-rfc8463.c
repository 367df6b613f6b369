/* SPDX-License-Identifier: MIT */
/*
 * RFC 8463 Appendix A through the real signing path: the A.1 keys imported
 * into a SoftHSM token, the A.3 message's header block parsed and hashed by
 * the DKIM core with each signature's own tags (b= emptied), the digest
 * signed by the token: both b= values (ed25519-sha256 and rsa-sha256) must
 * come out byte for byte as in A.3, and each digest must be the SHA-256 of
 * the corpus's signing-input file.  Also the RFC 6376 A.2 signature
 * (simple/simple, Appendix C key).
 *
 * Self-contained: its own token in a temporary directory, removed at the end.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "protocol/buf.h"
#include "protocol/dkimsign-errors.h"
#include "test-util.h"
#include "dkim/header.h"
#include "hsm/hsm.h"
#include "dkim/sign.h"

static char tmpdir[PATH_MAX];
static struct hsm *token;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void) st; (void) flag; (void) ftw;
        return remove(path);
}

static int setup(void **state)
{
        const char *module = getenv("SOFTHSM_MODULE");
        char so[] = "87654321", user[] = "1234", pin[] = "1234";
        char path[PATH_MAX + 32];
        FILE *f;

        (void) state;
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/test-rfc8463-XXXXXX");
        if (!mkdtemp(tmpdir))
                return -1;
        snprintf(path, sizeof(path), "%s/tokens", tmpdir);
        mkdir(path, 0700);
        snprintf(path, sizeof(path), "%s/softhsm2.conf", tmpdir);
        f = fopen(path, "w");
        if (!f)
                return -1;
        fprintf(f, "directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n", tmpdir);
        fclose(f);
        setenv("SOFTHSM2_CONF", path, 1);
        if (!module)
                module = "/usr/lib/softhsm/libsofthsm2.so";
        if (hsm_init_token(module, "rfc8463", so, strlen(so), user, strlen(user)) < 0 ||
            hsm_open(module, "rfc8463", &token) < 0 || hsm_login(token, pin, strlen(pin)) < 0)
                return -1;
        return 0;
}

static int teardown(void **state)
{
        (void) state;
        token = hsm_close(token);
        nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        return 0;
}

static struct hsm_key *import_pem(const char *rel, const char *label)
{
        size_t len;
        uint8_t *pem = test_read_corpus(rel, &len);
        BIO *bio = BIO_new_mem_buf(pem, (int) len);
        EVP_PKEY *pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
        struct hsm_key *k = NULL;

        assert_non_null(pkey);
        assert_int_equal(hsm_import(token, label, pkey, &k), 0);
        assert_false(k->local);  /* imported keys are told apart */
        EVP_PKEY_free(pkey);
        BIO_free(bio);
        free(pem);
        return k;
}

/* The value of tag `name` in a field, with all whitespace removed. */
static void tag_value(const uint8_t *field, size_t len, const char *name, char *ret, size_t size)
{
        size_t n = 0, nl = strlen(name);

        for (size_t i = 0; i + nl + 1 < len; i++) {
                if ((i == 0 || field[i - 1] == ';' || field[i - 1] == ' ' || field[i - 1] == '\t' ||
                     field[i - 1] == '\n') && memcmp(field + i, name, nl) == 0 && field[i + nl] == '=') {
                        for (i += nl + 1; i < len && field[i] != ';' && n + 1 < size; i++)
                                if (field[i] > ' ')
                                        ret[n++] = (char) field[i];
                        break;
                }
        }
        ret[n] = 0;
}

/* Reproduce signature `which` (a DKIM-Signature field index) of a message. */
static void reproduce(const char *msg_rel, size_t which, const char *input_rel, struct hsm_key *key,
                      enum dkim_canon hcanon)
{
        static const struct dkim_header_limits limits = { .max_fields = 100, .max_line = 1000 };
        size_t msg_len, input_len, sig_len, field_len, hcount = 0;
        uint8_t *msg = test_read_corpus(msg_rel, &msg_len);
        uint8_t *input = test_read_corpus(input_rel, &input_len);
        uint8_t digest[DKIM_SHA256_LEN], expect_digest[DKIM_SHA256_LEN], sig[HSM_SIG_MAX];
        char hlist[512], b_expected[1024], *save = NULL;
        uint8_t emptied[2048];
        const char *hnames[32];
        const uint8_t *end = memmem(msg, msg_len, "\r\n\r\n", 4), *f, *bpos;
        struct hsm_session *session = NULL;
        struct dkim_headers h;
        struct buf b64;

        assert_non_null(end);
        assert_int_equal(dkim_headers_parse(msg, (size_t) (end - msg) + 2, &limits, &h), 0);
        assert_true(dkim_field_name_is(&h, which, "dkim-signature"));
        f = h.block + h.fields[which].off;
        tag_value(f, h.fields[which].len, "h", hlist, sizeof(hlist));
        tag_value(f, h.fields[which].len, "b", b_expected, sizeof(b_expected));
        for (char *t = strtok_r(hlist, ":", &save); t; t = strtok_r(NULL, ":", &save))
                hnames[hcount++] = t;
        /* The field with b='s value removed: everything up to "b=". */
        bpos = NULL;
        for (size_t i = h.fields[which].len; i-- > 2;)
                if (f[i] == '=' && f[i - 1] == 'b' && (f[i - 2] == ' ' || f[i - 2] == ';' || f[i - 2] == '\t')) {
                        bpos = f + i + 1;
                        break;
                }
        assert_non_null(bpos);
        assert_true(h.fields[which].len < sizeof(emptied));
        /* RFC 6376 3.7: the b= value (and only it) is removed, so a ';'
         * after it stays ("b=;" in RFC 6376 A.2). */
        {
                const uint8_t *fend = f + h.fields[which].len;
                const uint8_t *semi = memchr(bpos, ';', (size_t) (fend - bpos));
                size_t tail = semi ? (size_t) (fend - semi) : 0;

                field_len = (size_t) (bpos - f);
                memcpy(emptied, f, field_len);
                if (semi)
                        memcpy(emptied + field_len, semi, tail);
                field_len += tail;
        }

        struct dkim_sig_spec spec = { .header_canon = hcanon, .hnames = hnames, .hcount = hcount };
        assert_int_equal(dkim_sig_digest(&h, &spec, emptied, field_len, digest), 0);
        EVP_Digest(input, input_len, expect_digest, NULL, EVP_sha256(), NULL);
        assert_memory_equal(digest, expect_digest, sizeof(digest));

        assert_int_equal(hsm_session_open(token, &session), 0);
        assert_int_equal(hsm_sign(session, key, digest, sig, &sig_len), 0);
        buf_init(&b64, 2048);
        assert_int_equal(dkim_base64_put(&b64, sig, sig_len), 0);
        assert_int_equal(b64.len, strlen(b_expected));
        assert_memory_equal(b64.data, b_expected, b64.len);
        printf("  %s signature %zu: b= reproduced (%zu octets)\n", msg_rel, which + 1, sig_len);

        buf_deinit(&b64);
        hsm_session_close(session);
        dkim_headers_deinit(&h);
        free(msg);
        free(input);
}

static void test_rfc8463_ed25519(void **state)
{
        struct hsm_key *k = import_pem("rfc8463/a1-ed25519.private.pem", "brisbane._domainkey.football.example.com");

        (void) state;
        reproduce("rfc8463/a3-signed.eml", 0, "rfc8463/a3-ed25519-signing-input.bin", k, DKIM_CANON_RELAXED);
        hsm_key_free(k);
}

static void test_rfc8463_rsa(void **state)
{
        struct hsm_key *k = import_pem("rfc8463/a1-rsa.private.pem", "test._domainkey.football.example.com");

        (void) state;
        reproduce("rfc8463/a3-signed.eml", 1, "rfc8463/a3-rsa-signing-input.bin", k, DKIM_CANON_RELAXED);
        hsm_key_free(k);
}

static void test_rfc6376_a2(void **state)
{
        struct hsm_key *k = import_pem("rfc6376/appendix-c-brisbane.private.pem", "brisbane._domainkey.example.com");

        (void) state;
        reproduce("rfc6376/appendix-a2-signed.eml", 0, "rfc6376/appendix-a2-signing-input.bin", k,
                  DKIM_CANON_SIMPLE);
        hsm_key_free(k);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_rfc8463_ed25519),
                cmocka_unit_test(test_rfc8463_rsa),
                cmocka_unit_test(test_rfc6376_a2),
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
