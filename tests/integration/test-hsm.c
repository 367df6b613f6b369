/* SPDX-License-Identifier: MIT */
/*
 * hsm/ against a real SoftHSM token: token setup, login, key generation and
 * import, find/list/destroy, signing checked by OpenSSL and by the RFC 8463
 * test vectors, and, through a second PKCS#11 path that does not use hsm/,
 * that no private key made or imported by hsm/ can be read off the token.
 *
 * Self-contained: it builds its own SoftHSM configuration and token in a
 * temporary directory (SOFTHSM2_CONF) and removes it at the end.  It must
 * never touch the system token directory.
 * Environment: SOFTHSM_MODULE (the module path), DKIMSIGN_CORPUS.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dlfcn.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <p11-kit/pkcs11.h>

#include "protocol/dkimsign-errors.h"
#include "hsm/hsm.h"
/* test_open_uri moves h->slot, as a reinsertion that renumbers slots does. */
#define DKIMSIGN_HSM_INTERNAL
#include "hsm/hsm-private.h"

#define TOKEN "dkimsign-test"
#define SO_PIN "87654321"
#define USER_PIN "1234"

static char tmpdir[PATH_MAX];
static const char *module;

/* ---- fixture ---- */

static void file_write(const char *path, const char *text)
{
        FILE *f = fopen(path, "w");

        assert_non_null(f);
        assert_true(fputs(text, f) >= 0);
        assert_int_equal(fclose(f), 0);
}

static int group_setup(void **state)
{
        char so[] = SO_PIN, user[] = USER_PIN;
        char path[PATH_MAX + 32], conf[2 * PATH_MAX];
        const char *base = getenv("TMPDIR");

        module = getenv("SOFTHSM_MODULE");
        if (!module || !*module)
                module = "/usr/lib/softhsm/libsofthsm2.so";
        snprintf(tmpdir, sizeof(tmpdir), "%s/test-hsm-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(tmpdir))
                return -1;
        snprintf(path, sizeof(path), "%s/tokens", tmpdir);
        if (mkdir(path, 0700) < 0)
                return -1;
        snprintf(conf, sizeof(conf),
                 "directories.tokendir = %s/tokens\nobjectstore.backend = file\nlog.level = ERROR\n", tmpdir);
        snprintf(path, sizeof(path), "%s/softhsm2.conf", tmpdir);
        file_write(path, conf);
        setenv("SOFTHSM2_CONF", path, 1);

        if (hsm_init_token(module, TOKEN, so, strlen(so), user, strlen(user)) != 0)
                return -1;
        (void) state;
        return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void) st;
        (void) flag;
        (void) ftw;
        return remove(path);
}

static int group_teardown(void **state)
{
        (void) state;
        if (tmpdir[0])
                return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        return 0;
}

/* ---- helpers ---- */

static bool all_zero(const char *p, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (p[i] != 0)
                        return false;
        return true;
}

static struct hsm *open_login(void)
{
        char pin[] = USER_PIN;
        struct hsm *h = NULL;

        assert_int_equal(hsm_open(module, TOKEN, &h), 0);
        assert_int_equal(hsm_login(h, pin, strlen(pin)), 0);
        return h;
}

static size_t key_count(struct hsm *h)
{
        struct hsm_key **keys = NULL;
        size_t n = 0;

        assert_int_equal(hsm_list(h, &keys, &n), 0);
        hsm_key_list_free(keys, n);
        return n;
}

static void destroy_label(struct hsm *h, const char *label)
{
        struct hsm_key *k = NULL;

        assert_int_equal(hsm_find(h, label, &k), 0);
        assert_int_equal(hsm_destroy(h, k), 0);
        hsm_key_free(k);
}

static void corpus_path(char *buf, size_t size, const char *name)
{
        const char *dir = getenv("DKIMSIGN_CORPUS");

        assert_non_null(dir);
        assert_true((size_t) snprintf(buf, size, "%s/rfc8463/%s", dir, name) < size);
}

static EVP_PKEY *pem_load(const char *name)
{
        char path[PATH_MAX];
        EVP_PKEY *pkey;
        FILE *f;

        corpus_path(path, sizeof(path), name);
        f = fopen(path, "r");
        assert_non_null(f);
        pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
        fclose(f);
        assert_non_null(pkey);
        return pkey;
}

/* SHA-256 of a corpus file. */
static void corpus_digest(const char *name, uint8_t digest[32])
{
        char path[PATH_MAX];
        uint8_t data[4096];
        unsigned int len = 0;
        size_t n;
        FILE *f;

        corpus_path(path, sizeof(path), name);
        f = fopen(path, "rb");
        assert_non_null(f);
        n = fread(data, 1, sizeof(data), f);
        assert_true(feof(f));
        fclose(f);
        assert_int_equal(EVP_Digest(data, n, digest, &len, EVP_sha256(), NULL), 1);
        assert_int_equal(len, 32);
}

static size_t b64_decode(const char *s, uint8_t *out, size_t size)
{
        size_t len = strlen(s), pad = 0;
        int n;

        assert_true(len % 4 == 0 && len / 4 * 3 <= size);
        n = EVP_DecodeBlock(out, (const unsigned char *) s, (int) len);
        assert_true(n >= 0);
        while (len > 0 && s[--len] == '=')
                pad++;
        return (size_t) n - pad;
}

/* No cmocka assertions: worker threads call it. */
static void digest_fill(uint8_t digest[32], uint8_t seed)
{
        unsigned int len = 0;

        if (EVP_Digest(&seed, 1, digest, &len, EVP_sha256(), NULL) != 1)
                memset(digest, 0, 32);
}

/* OpenSSL's verdict on sig over the digest, with the key's public half only.
 * No cmocka assertions: worker threads call it. */
static bool sig_ok(const struct hsm_key *key, const uint8_t digest[32], const uint8_t *sig, size_t len)
{
        int ok = 0;

        if (!key->pubkey)
                return false;
        if (key->alg == HSM_ALG_RSA) {
                EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key->pubkey, NULL);

                if (ctx && EVP_PKEY_verify_init(ctx) == 1 && EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1 &&
                    EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1)
                        ok = EVP_PKEY_verify(ctx, sig, len, digest, 32);
                EVP_PKEY_CTX_free(ctx);
        } else {
                EVP_MD_CTX *ctx = EVP_MD_CTX_new();

                if (ctx && EVP_DigestVerifyInit_ex(ctx, NULL, NULL, NULL, NULL, key->pubkey, NULL) == 1)
                        ok = EVP_DigestVerify(ctx, sig, len, digest, 32);
                EVP_MD_CTX_free(ctx);
        }
        return ok == 1;
}

/* OpenSSL's own signature of the digest with a private key from a file. */
static size_t openssl_sign(EVP_PKEY *pkey, const uint8_t digest[32], uint8_t *sig, size_t size)
{
        size_t len = size;

        if (EVP_PKEY_is_a(pkey, "RSA")) {
                EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);

                assert_non_null(ctx);
                assert_int_equal(EVP_PKEY_sign_init(ctx), 1);
                assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING), 1);
                assert_int_equal(EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()), 1);
                assert_int_equal(EVP_PKEY_sign(ctx, sig, &len, digest, 32), 1);
                EVP_PKEY_CTX_free(ctx);
        } else {
                EVP_MD_CTX *ctx = EVP_MD_CTX_new();

                assert_non_null(ctx);
                assert_int_equal(EVP_DigestSignInit_ex(ctx, NULL, NULL, NULL, NULL, pkey, NULL), 1);
                assert_int_equal(EVP_DigestSign(ctx, sig, &len, digest, 32), 1);
                EVP_MD_CTX_free(ctx);
        }
        return len;
}

static void sign_check(struct hsm_session *s, struct hsm_key *key, uint8_t seed)
{
        uint8_t digest[32], sig[HSM_SIG_MAX];
        size_t len = 0;

        digest_fill(digest, seed);
        assert_int_equal(hsm_sign(s, key, digest, sig, &len), 0);
        assert_int_equal(len, key->alg == HSM_ALG_RSA ? key->bits / 8 : 64);
        assert_true(sig_ok(key, digest, sig, len));
        digest[0] ^= 1;
        assert_false(sig_ok(key, digest, sig, len));
}

/* ---- tests ---- */

static void test_names(void **state)
{
        char label[64];
        enum hsm_alg alg = 0;

        (void) state;
        assert_string_equal(hsm_alg_name(HSM_ALG_RSA), "rsa");
        assert_string_equal(hsm_alg_name(HSM_ALG_ED25519), "ed25519");
        assert_int_equal(hsm_alg_from_string("ed25519", &alg), 0);
        assert_int_equal(alg, HSM_ALG_ED25519);
        assert_int_equal(hsm_alg_from_string("rsa", &alg), 0);
        assert_int_equal(alg, HSM_ALG_RSA);
        assert_int_equal(hsm_alg_from_string("dsa", &alg), DKIMSIGN_E_ALG);
        assert_int_equal(alg, HSM_ALG_RSA);

        assert_int_equal(hsm_key_label("Sel1", "Example.COM", label, sizeof(label)), 0);
        assert_string_equal(label, "sel1._domainkey.example.com");
        assert_int_equal(hsm_key_label("sel1", "example.com", label, 27), DKIMSIGN_E_TOO_LARGE);
        assert_int_equal(hsm_key_label("sel1", "example.com", label, 28), 0);
        assert_int_equal(hsm_key_label("", "example.com", label, sizeof(label)), DKIMSIGN_E_FORMAT);
        assert_int_equal(hsm_key_label("a b", "example.com", label, sizeof(label)), DKIMSIGN_E_FORMAT);
        assert_int_equal(hsm_key_label("sel", "b\xc3\xbc" "cher.example", label, sizeof(label)), DKIMSIGN_E_FORMAT);
        assert_string_equal(label, "sel1._domainkey.example.com");

        assert_string_equal(hsm_ckr_name(CKR_PIN_INCORRECT), "CKR_PIN_INCORRECT");
        assert_string_equal(hsm_ckr_name(CKR_ATTRIBUTE_SENSITIVE), "CKR_ATTRIBUTE_SENSITIVE");
        assert_non_null(hsm_ckr_name(0x7777));
}

static void test_init_token(void **state)
{
        char so[] = SO_PIN, user[] = USER_PIN;
        char so2[] = "11112222", user2[] = "5555";
        struct hsm *h = NULL;

        (void) state;
        assert_int_equal(hsm_init_token(module, TOKEN, so, strlen(so), user, strlen(user)), DKIMSIGN_E_EXISTS);
        assert_true(all_zero(so, strlen(SO_PIN)) && all_zero(user, strlen(USER_PIN)));

        /* A 33-octet label does not fit CK_TOKEN_INFO. */
        strcpy(so, SO_PIN);
        strcpy(user, USER_PIN);
        assert_int_equal(hsm_init_token(module, "123456789012345678901234567890123", so, strlen(so), user,
                                        strlen(user)),
                         DKIMSIGN_E_TOO_LARGE);
        assert_true(all_zero(so, strlen(SO_PIN)) && all_zero(user, strlen(USER_PIN)));

        /* A second token, while the first is open: SoftHSM offers a new free slot. */
        h = open_login();
        assert_int_equal(hsm_init_token(module, "dkimsign-second", so2, strlen(so2), user2, strlen(user2)), 0);
        assert_true(all_zero(so2, strlen(so2)) && all_zero(user2, 4));
        hsm_close(h);
        assert_int_equal(hsm_open(module, "dkimsign-second", &h), 0);
        strcpy(user2, "5555");
        assert_int_equal(hsm_login(h, user2, strlen(user2)), 0);
        hsm_close(h);
}

static void test_open_errors(void **state)
{
        char path[PATH_MAX + 32];
        struct hsm *h = NULL;

        (void) state;
        errno = 0;
        assert_int_equal(hsm_open("/nonexistent/libpkcs11.so", TOKEN, &h), DKIMSIGN_E_SYSTEM);
        assert_int_equal(errno, ENOENT);
        assert_null(h);
        /* A bare name would be searched for on the library path. */
        assert_int_equal(hsm_open("libsofthsm2.so", TOKEN, &h), DKIMSIGN_E_SYSTEM);
        assert_int_equal(errno, EINVAL);
        /* Not a shared object, and a directory. */
        snprintf(path, sizeof(path), "%s/softhsm2.conf", tmpdir);
        assert_int_equal(hsm_open(path, TOKEN, &h), DKIMSIGN_E_SYSTEM);
        assert_int_equal(hsm_open(tmpdir, TOKEN, &h), DKIMSIGN_E_SYSTEM);
        assert_null(h);

        assert_int_equal(hsm_open(module, "no-such-token", &h), DKIMSIGN_E_NO_TOKEN);
        assert_int_equal(hsm_open(module, "dkimsign-tes", &h), DKIMSIGN_E_NO_TOKEN);
        assert_null(h);
        assert_int_equal(hsm_init_token("/nonexistent/libpkcs11.so", "x", (char[]) { "1234" }, 4,
                                        (char[]) { "1234" }, 4),
                         DKIMSIGN_E_SYSTEM);
}

static void test_login(void **state)
{
        char wrong[] = "9999", right[] = USER_PIN, path[PATH_MAX + 32];
        struct hsm *h = NULL;

        (void) state;
        assert_int_equal(hsm_open(module, TOKEN, &h), 0);
        assert_int_equal(hsm_login(h, wrong, strlen(wrong)), DKIMSIGN_E_PIN);
        assert_int_equal(hsm_last_ckr(), CKR_PIN_INCORRECT);
        assert_true(all_zero(wrong, 4));
        assert_int_equal(hsm_login(h, right, strlen(right)), 0);
        assert_true(all_zero(right, 4));
        assert_int_equal(hsm_last_ckr(), 0);
        strcpy(right, USER_PIN);
        assert_int_equal(hsm_login(h, right, strlen(right)), 0); /* already logged in */
        hsm_close(h);

        snprintf(path, sizeof(path), "%s/pin", tmpdir);
        assert_int_equal(hsm_open(module, TOKEN, &h), 0);
        assert_int_equal(hsm_login_pin_file(h, "/nonexistent/pin"), DKIMSIGN_E_SYSTEM);
        file_write(path, "");
        assert_int_equal(hsm_login_pin_file(h, path), DKIMSIGN_E_FORMAT);
        file_write(path, "4321\n");
        assert_int_equal(hsm_login_pin_file(h, path), DKIMSIGN_E_PIN);
        file_write(path, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                         "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                         "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        assert_int_equal(hsm_login_pin_file(h, path), DKIMSIGN_E_TOO_LARGE);
        file_write(path, USER_PIN " \r\nsecond line\n");
        assert_int_equal(hsm_login_pin_file(h, path), 0);
        hsm_close(h);
        unlink(path);
}

/* Today in UTC, YYYYMMDD: the created date of keys made now.  (A test run
 * across midnight UTC may fail once.) */
static const char *today(void)
{
        static char buf[16];
        time_t now = time(NULL);
        struct tm tm;

        assert_non_null(gmtime_r(&now, &tm));
        assert_int_equal(strftime(buf, sizeof(buf), "%Y%m%d", &tm), HSM_DATE_LEN);
        return buf;
}

static void key_check(const struct hsm_key *k, const char *label, enum hsm_alg alg, unsigned bits, bool local)
{
        assert_string_equal(k->label, label);
        assert_int_equal(k->alg, alg);
        assert_int_equal(k->bits, bits);
        assert_true(k->priv != 0);
        assert_true(k->pub != 0);
        assert_non_null(k->pubkey);
        assert_true(EVP_PKEY_is_a(k->pubkey, alg == HSM_ALG_RSA ? "RSA" : "ED25519"));
        assert_int_equal(k->local, local);
        if (local) {
                assert_true(k->always_sensitive);
                assert_true(k->never_extractable);
        }
        assert_string_equal(k->created, today());
        assert_string_equal(k->retired, "");
}

static void test_generate(void **state)
{
        static const struct {
                const char *label;
                enum hsm_alg alg;
                unsigned bits, want_bits;
        } cases[] = {
                { "rsa2048._domainkey.example.com", HSM_ALG_RSA, 0, 2048 },
                { "rsa1024._domainkey.example.com", HSM_ALG_RSA, 1024, 1024 },
                { "ed._domainkey.example.com", HSM_ALG_ED25519, 0, 256 },
        };
        struct hsm_key *k = NULL, *again = NULL;
        struct hsm *h = open_login();
        size_t before = key_count(h);

        (void) state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                assert_int_equal(hsm_generate(h, cases[i].label, cases[i].alg, cases[i].bits, &k), 0);
                key_check(k, cases[i].label, cases[i].alg, cases[i].want_bits, true);
                assert_int_equal(key_count(h), before + i + 1);

                /* The same label again, with either algorithm: refused, nothing added. */
                assert_int_equal(hsm_generate(h, cases[i].label, HSM_ALG_RSA, 1024, &again), DKIMSIGN_E_EXISTS);
                assert_int_equal(hsm_generate(h, cases[i].label, HSM_ALG_ED25519, 0, &again), DKIMSIGN_E_EXISTS);
                assert_null(again);
                assert_int_equal(key_count(h), before + i + 1);
                assert_int_equal(hsm_find(h, cases[i].label, &again), 0);
                assert_int_equal(again->priv, k->priv);
                assert_int_equal(again->pub, k->pub);
                assert_int_equal(EVP_PKEY_eq(again->pubkey, k->pubkey), 1);
                again = hsm_key_free(again);
                k = hsm_key_free(k);
        }
        assert_int_equal(hsm_generate(h, "small", HSM_ALG_RSA, 512, &k), DKIMSIGN_E_ALG);
        assert_int_equal(hsm_generate(h, "large", HSM_ALG_RSA, 8192, &k), DKIMSIGN_E_ALG);
        assert_int_equal(hsm_generate(h, "other", (enum hsm_alg) 99, 0, &k), DKIMSIGN_E_ALG);
        assert_int_equal(hsm_generate(h, "", HSM_ALG_ED25519, 0, &k), DKIMSIGN_E_FORMAT);
        assert_null(k);
        assert_int_equal(key_count(h), before + 3);

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
                destroy_label(h, cases[i].label);
        assert_int_equal(key_count(h), before);
        hsm_close(h);
}

static void test_find_list_destroy(void **state)
{
        static const char *const labels[] = { "b._domainkey.example.org", "a._domainkey.example.org",
                                              "c._domainkey.example.org" };
        struct hsm_key **keys = NULL, *k = NULL, *gone = NULL;
        struct hsm *h = open_login();
        size_t n = 0, before = key_count(h);

        (void) state;
        for (size_t i = 0; i < 3; i++) {
                assert_int_equal(hsm_generate(h, labels[i], i == 1 ? HSM_ALG_RSA : HSM_ALG_ED25519, 1024, &k), 0);
                k = hsm_key_free(k);
        }
        assert_int_equal(hsm_list(h, &keys, &n), 0);
        assert_int_equal(n, before + 3);
        for (size_t i = 1; i < n; i++)
                assert_true(strcmp(keys[i - 1]->label, keys[i]->label) <= 0);
        /* The listing (one search for all public objects) and a find (a
         * search for this key's) describe each key the same. */
        for (size_t i = 0; i < n; i++) {
                assert_int_equal(hsm_find(h, keys[i]->label, &k), 0);
                assert_int_equal(k->priv, keys[i]->priv);
                assert_int_equal(k->pub, keys[i]->pub);
                assert_true(k->pub != 0);
                assert_int_equal(k->alg, keys[i]->alg);
                assert_int_equal(k->bits, keys[i]->bits);
                assert_string_equal(k->created, keys[i]->created);
                assert_string_equal(k->retired, keys[i]->retired);
                assert_int_equal(k->local, keys[i]->local);
                assert_int_equal(EVP_PKEY_eq(k->pubkey, keys[i]->pubkey), 1);
                k = hsm_key_free(k);
        }
        hsm_key_list_free(keys, n);

        assert_int_equal(hsm_find(h, "nope._domainkey.example.org", &k), DKIMSIGN_E_NO_KEY);
        assert_null(k);

        assert_int_equal(hsm_find(h, labels[1], &gone), 0);
        assert_int_equal(hsm_destroy(h, gone), 0);
        assert_int_equal(hsm_find(h, labels[1], &k), DKIMSIGN_E_NO_KEY);
        assert_int_equal(key_count(h), before + 2);
        /* A stale handle destroys nothing. */
        assert_int_equal(hsm_destroy(h, gone), DKIMSIGN_E_NO_KEY);
        assert_int_equal(key_count(h), before + 2);
        gone = hsm_key_free(gone);

        destroy_label(h, labels[0]);
        destroy_label(h, labels[2]);
        assert_int_equal(key_count(h), before);
        hsm_close(h);
}

static void test_retire(void **state)
{
        static const char rsa[] = "old._domainkey.example.net", ed[] = "olded._domainkey.example.net";
        EVP_PKEY *file = pem_load("a1-ed25519.private.pem");
        struct hsm_key *k = NULL, *again = NULL, **keys = NULL, nopub;
        struct hsm *h = open_login();
        size_t n = 0, retired = 0;

        (void) state;
        assert_int_equal(hsm_generate(h, rsa, HSM_ALG_RSA, 1024, &k), 0);
        assert_string_equal(k->created, today());
        assert_string_equal(k->retired, "");
        assert_int_equal(hsm_retire(h, k), 0);
        /* The key passed in is a snapshot; the token has the date. */
        assert_string_equal(k->retired, "");
        assert_int_equal(hsm_find(h, rsa, &again), 0);
        assert_string_equal(again->retired, today());
        assert_string_equal(again->created, today());
        again = hsm_key_free(again);
        /* Retired once: the first date stays. */
        assert_int_equal(hsm_retire(h, k), DKIMSIGN_E_EXISTS);

        /* An imported key gets the same dates. */
        assert_int_equal(hsm_import(h, ed, file, &again), 0);
        assert_string_equal(again->created, today());
        assert_int_equal(hsm_retire(h, again), 0);
        again = hsm_key_free(again);

        assert_int_equal(hsm_list(h, &keys, &n), 0);
        for (size_t i = 0; i < n; i++)
                if (keys[i]->retired[0]) {
                        assert_string_equal(keys[i]->retired, today());
                        retired++;
                }
        assert_int_equal(retired, 2);
        hsm_key_list_free(keys, n);

        /* No public object to record the state on. */
        nopub = *k;
        nopub.pub = 0;
        assert_int_equal(hsm_retire(h, &nopub), DKIMSIGN_E_FORMAT);
        /* A stale handle retires nothing. */
        destroy_label(h, rsa);
        assert_int_equal(hsm_retire(h, k), DKIMSIGN_E_NO_KEY);
        k = hsm_key_free(k);
        destroy_label(h, ed);
        EVP_PKEY_free(file);
        hsm_close(h);
}

struct worker {
        struct hsm *h;
        const char *label;
        int failures;
};

static void *worker_run(void *arg)
{
        struct worker *w = arg;
        struct hsm_session *s = NULL;

        if (hsm_session_open(w->h, &s) < 0) {
                w->failures++;
                return NULL;
        }
        for (int i = 0; i < 20; i++) {
                uint8_t digest[32], sig[HSM_SIG_MAX];
                struct hsm_key *k = NULL;
                size_t len = 0;

                digest_fill(digest, (uint8_t) i);
                if (hsm_find(w->h, w->label, &k) < 0 || hsm_sign(s, k, digest, sig, &len) < 0 ||
                    !sig_ok(k, digest, sig, len))
                        w->failures++;
                hsm_key_free(k);
        }
        hsm_session_close(s);
        return NULL;
}

static void test_sign(void **state)
{
        static const char *const labels[] = { "s2048._domainkey.example.net", "s1024._domainkey.example.net",
                                              "sed._domainkey.example.net" };
        struct hsm_key *keys[3] = { 0 };
        uint8_t digest[32], sig1[HSM_SIG_MAX], sig2[HSM_SIG_MAX];
        struct hsm_session *s = NULL;
        struct worker w[4];
        pthread_t t[4];
        size_t l1 = 0, l2 = 0;
        struct hsm *h = open_login();

        (void) state;
        assert_int_equal(hsm_generate(h, labels[0], HSM_ALG_RSA, 2048, &keys[0]), 0);
        assert_int_equal(hsm_generate(h, labels[1], HSM_ALG_RSA, 1024, &keys[1]), 0);
        assert_int_equal(hsm_generate(h, labels[2], HSM_ALG_ED25519, 0, &keys[2]), 0);
        assert_int_equal(hsm_session_open(h, &s), 0);
        for (size_t i = 0; i < 3; i++)
                sign_check(s, keys[i], (uint8_t) i);

        /* Ed25519 is deterministic. */
        digest_fill(digest, 42);
        assert_int_equal(hsm_sign(s, keys[2], digest, sig1, &l1), 0);
        assert_int_equal(hsm_sign(s, keys[2], digest, sig2, &l2), 0);
        assert_int_equal(l1, 64);
        assert_memory_equal(sig1, sig2, 64);

        /* Several threads, each with its own session, finding and signing at once. */
        for (size_t i = 0; i < 4; i++) {
                w[i] = (struct worker) { .h = h, .label = labels[i % 3] };
                assert_int_equal(pthread_create(&t[i], NULL, worker_run, &w[i]), 0);
        }
        for (size_t i = 0; i < 4; i++) {
                assert_int_equal(pthread_join(t[i], NULL), 0);
                assert_int_equal(w[i].failures, 0);
        }

        for (size_t i = 0; i < 3; i++) {
                assert_int_equal(hsm_destroy(h, keys[i]), 0);
                /* A destroyed key is a missing key, not a token failure. */
                assert_int_equal(hsm_sign(s, keys[i], digest, sig1, &l1), DKIMSIGN_E_NO_KEY);
        }

        /* hsm_close() closes the session still open; the caller still frees it. */
        hsm_close(h);
        assert_int_equal(hsm_sign(s, keys[2], digest, sig1, &l1), DKIMSIGN_E_HSM);
        hsm_session_close(s);
        for (size_t i = 0; i < 3; i++)
                hsm_key_free(keys[i]);
}

/* The module finalized and initialized again (a reload): sessions and keys
 * of before still sign, with the right key, and a key made after is seen. */
static void test_reinitialize(void **state)
{
        static const char *const labels[] = { "ra._domainkey.reinit.example", "rb._domainkey.reinit.example",
                                              "rc._domainkey.reinit.example" };
        struct hsm_key *keys[3] = { 0 };
        struct hsm_session *s = NULL;
        struct hsm *h = NULL, *other = NULL;
        char pin[] = USER_PIN;
        unsigned long recoveries;

        (void) state;
        assert_int_equal(hsm_open(module, TOKEN, &h), 0);
        /* Without a kept PIN there is no logging in again: refused, nothing changed. */
        assert_int_equal(hsm_reinitialize(h, 1000), DKIMSIGN_E_INTERNAL);
        assert_non_null(strstr(hsm_last_why(), "no PIN is kept"));
        hsm_keep_pin(h);
        assert_int_equal(hsm_login(h, pin, strlen(pin)), 0);
        assert_int_equal(hsm_generate(h, labels[0], HSM_ALG_RSA, 1024, &keys[0]), 0);
        assert_int_equal(hsm_generate(h, labels[1], HSM_ALG_ED25519, 0, &keys[1]), 0);
        assert_int_equal(hsm_session_open(h, &s), 0);
        sign_check(s, keys[0], 1);
        sign_check(s, keys[1], 2);
        recoveries = hsm_recoveries(h);

        /* Another handle on the module: finalizing would pull its sessions away. */
        assert_int_equal(hsm_open(module, TOKEN, &other), 0);
        assert_int_equal(hsm_reinitialize(h, 1000), DKIMSIGN_E_BUSY);
        assert_non_null(strstr(hsm_last_why(), "shared"));
        assert_int_equal(hsm_reinitializations(h), 0);
        other = hsm_close(other);
        sign_check(s, keys[0], 3);

        assert_int_equal(hsm_reinitialize(h, 1000), 0);
        assert_int_equal(hsm_reinitializations(h), 1);
        /* New handles after C_Initialize may reuse the old numbers: a key
         * made now must not be what an old handle signs with. */
        assert_int_equal(hsm_generate(h, labels[2], HSM_ALG_RSA, 1024, &keys[2]), 0);
        for (size_t round = 0; round < 2; round++)
                for (size_t i = 0; i < 3; i++)
                        sign_check(s, keys[i], (uint8_t) (10 + round * 3 + i));
        /* A session renewed after a re-initialization is no token fault. */
        assert_int_equal(hsm_recoveries(h), recoveries);

        assert_int_equal(hsm_reinitialize(h, 1000), 0);
        for (size_t i = 0; i < 3; i++) {
                sign_check(s, keys[i], (uint8_t) (20 + i));
                /* Its public key's handle is of before: found by label,
                 * never trusted, so it can't be destroyed through it. */
                assert_int_equal(hsm_destroy(h, keys[i]), DKIMSIGN_E_NO_KEY);
                assert_non_null(strstr(hsm_last_why(), "initialized again"));
                destroy_label(h, labels[i]);
                hsm_key_free(keys[i]);
        }
        hsm_session_close(s);
        hsm_close(h);
}

/* RFC 8463 A.3: the token, given the A.1 keys, must produce the published b= values. */
static void test_import(void **state)
{
        static const char ed_b[] =
                "/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11BusFa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==";
        static const char rsa_b[] =
                "F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGs"
                "geefOsk2JzdA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=";
        EVP_PKEY *rsa = pem_load("a1-rsa.private.pem"), *ed = pem_load("a1-ed25519.private.pem");
        uint8_t digest[32], sig[HSM_SIG_MAX], sig2[HSM_SIG_MAX], want[HSM_SIG_MAX];
        struct hsm_key *kr = NULL, *ke = NULL, *k = NULL;
        struct hsm_session *s = NULL;
        size_t len = 0, len2 = 0, want_len;
        struct hsm *h = open_login();
        size_t before = key_count(h);
        EVP_PKEY *small, *ec;

        (void) state;
        assert_int_equal(hsm_import(h, "test._domainkey.football.example.com", rsa, &kr), 0);
        key_check(kr, "test._domainkey.football.example.com", HSM_ALG_RSA, 1024, false);
        assert_int_equal(EVP_PKEY_eq(kr->pubkey, rsa), 1);
        assert_int_equal(hsm_import(h, "brisbane._domainkey.football.example.com", ed, &ke), 0);
        key_check(ke, "brisbane._domainkey.football.example.com", HSM_ALG_ED25519, 256, false);
        assert_int_equal(EVP_PKEY_eq(ke->pubkey, ed), 1);
        assert_int_equal(key_count(h), before + 2);

        assert_int_equal(hsm_import(h, kr->label, ed, &k), DKIMSIGN_E_EXISTS);
        assert_int_equal(hsm_import(h, ke->label, rsa, &k), DKIMSIGN_E_EXISTS);
        small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 512);
        ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        assert_non_null(small);
        assert_non_null(ec);
        assert_int_equal(hsm_import(h, "small", small, &k), DKIMSIGN_E_ALG);
        assert_int_equal(hsm_import(h, "ec", ec, &k), DKIMSIGN_E_ALG);
        assert_null(k);
        assert_int_equal(key_count(h), before + 2);

        assert_int_equal(hsm_session_open(h, &s), 0);

        corpus_digest("a3-ed25519-signing-input.bin", digest);
        assert_int_equal(hsm_sign(s, ke, digest, sig, &len), 0);
        assert_int_equal(hsm_sign(s, ke, digest, sig2, &len2), 0);
        assert_int_equal(len, 64);
        assert_int_equal(len2, 64);
        assert_memory_equal(sig, sig2, 64);
        want_len = openssl_sign(ed, digest, want, sizeof(want));
        assert_int_equal(want_len, 64);
        assert_memory_equal(sig, want, 64);
        assert_int_equal(b64_decode(ed_b, want, sizeof(want)), 64);
        assert_memory_equal(sig, want, 64);
        assert_true(sig_ok(ke, digest, sig, len));

        corpus_digest("a3-rsa-signing-input.bin", digest);
        assert_int_equal(hsm_sign(s, kr, digest, sig, &len), 0);
        assert_int_equal(len, 128);
        want_len = openssl_sign(rsa, digest, want, sizeof(want));
        assert_int_equal(want_len, 128);
        assert_memory_equal(sig, want, 128);
        assert_int_equal(b64_decode(rsa_b, want, sizeof(want)), 128);
        assert_memory_equal(sig, want, 128);
        assert_true(sig_ok(kr, digest, sig, len));

        hsm_session_close(s);
        assert_int_equal(hsm_destroy(h, kr), 0);
        assert_int_equal(hsm_destroy(h, ke), 0);
        assert_int_equal(key_count(h), before);
        hsm_key_free(kr);
        hsm_key_free(ke);
        EVP_PKEY_free(small);
        EVP_PKEY_free(ec);
        EVP_PKEY_free(rsa);
        EVP_PKEY_free(ed);
        hsm_close(h);
}

/* ---- the private keys can't be read: checked without hsm/ ---- */

struct raw {
        void *dl;
        CK_FUNCTION_LIST *p11;
        CK_SESSION_HANDLE s;
};

static void raw_open(struct raw *raw)
{
        CK_C_GetFunctionList get_list;
        CK_SLOT_ID slots[64];
        CK_ULONG n = 64;
        bool found = false;

        raw->dl = dlopen(module, RTLD_NOW | RTLD_LOCAL);
        assert_non_null(raw->dl);
        get_list = (CK_C_GetFunctionList) dlsym(raw->dl, "C_GetFunctionList");
        assert_non_null(get_list);
        assert_int_equal(get_list(&raw->p11), CKR_OK);
        /* CKR_OK, not ALREADY_INITIALIZED: hsm_close() finalized, so this is a fresh start. */
        assert_int_equal(raw->p11->C_Initialize(NULL), CKR_OK);
        assert_int_equal(raw->p11->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
        for (CK_ULONG i = 0; i < n && !found; i++) {
                CK_TOKEN_INFO info;
                char label[sizeof(info.label) + 1];

                assert_int_equal(raw->p11->C_GetTokenInfo(slots[i], &info), CKR_OK);
                memcpy(label, info.label, sizeof(info.label));
                label[sizeof(info.label)] = '\0';
                if (strncmp(label, TOKEN " ", strlen(TOKEN) + 1) != 0)
                        continue;
                assert_int_equal(raw->p11->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                                                         &raw->s),
                                 CKR_OK);
                found = true;
        }
        assert_true(found);
        assert_int_equal(raw->p11->C_Login(raw->s, CKU_USER, (CK_UTF8CHAR *) USER_PIN, strlen(USER_PIN)), CKR_OK);
}

static void raw_close(struct raw *raw)
{
        raw->p11->C_Logout(raw->s);
        raw->p11->C_CloseSession(raw->s);
        assert_int_equal(raw->p11->C_Finalize(NULL), CKR_OK);
        dlclose(raw->dl);
}

static CK_OBJECT_HANDLE raw_find(struct raw *raw, const char *label)
{
        CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
        CK_ATTRIBUTE t[] = {
                { CKA_CLASS, &cls, sizeof(cls) },
                { CKA_LABEL, (void *) label, strlen(label) },
        };
        CK_OBJECT_HANDLE objs[2];
        CK_ULONG n = 0;

        assert_int_equal(raw->p11->C_FindObjectsInit(raw->s, t, 2), CKR_OK);
        assert_int_equal(raw->p11->C_FindObjects(raw->s, objs, 2, &n), CKR_OK);
        assert_int_equal(raw->p11->C_FindObjectsFinal(raw->s), CKR_OK);
        assert_int_equal(n, 1);
        return objs[0];
}

static CK_BBOOL raw_bool(struct raw *raw, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type)
{
        CK_BBOOL v = 0x55;
        CK_ATTRIBUTE a = { type, &v, sizeof(v) };

        assert_int_equal(raw->p11->C_GetAttributeValue(raw->s, obj, &a, 1), CKR_OK);
        assert_int_equal(a.ulValueLen, sizeof(v));
        return v;
}

/* Neither the length nor the value of a secret attribute comes back. */
static void raw_secret(struct raw *raw, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type)
{
        uint8_t buf[1024];
        CK_ATTRIBUTE a = { type, NULL, 0 };

        assert_int_equal(raw->p11->C_GetAttributeValue(raw->s, obj, &a, 1), CKR_ATTRIBUTE_SENSITIVE);
        assert_true(a.ulValueLen == CK_UNAVAILABLE_INFORMATION);
        memset(buf, 0, sizeof(buf));
        a = (CK_ATTRIBUTE) { type, buf, sizeof(buf) };
        assert_int_equal(raw->p11->C_GetAttributeValue(raw->s, obj, &a, 1), CKR_ATTRIBUTE_SENSITIVE);
        assert_true(a.ulValueLen == CK_UNAVAILABLE_INFORMATION);
        assert_true(all_zero((const char *) buf, sizeof(buf)));
}

static void raw_check(struct raw *raw, const char *label, bool rsa, bool local)
{
        static const CK_ATTRIBUTE_TYPE rsa_secrets[] = { CKA_PRIVATE_EXPONENT, CKA_PRIME_1, CKA_PRIME_2,
                                                         CKA_EXPONENT_1, CKA_EXPONENT_2, CKA_COEFFICIENT };
        CK_OBJECT_HANDLE obj = raw_find(raw, label);
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_ATTRIBUTE make_extractable = { CKA_EXTRACTABLE, &yes, sizeof(yes) };
        CK_ATTRIBUTE make_readable = { CKA_SENSITIVE, &no, sizeof(no) };
        CK_ATTRIBUTE start = { CKA_START_DATE, NULL, 0 };

        if (rsa)
                for (size_t i = 0; i < sizeof(rsa_secrets) / sizeof(rsa_secrets[0]); i++)
                        raw_secret(raw, obj, rsa_secrets[i]);
        else
                raw_secret(raw, obj, CKA_VALUE);
        assert_int_equal(raw_bool(raw, obj, CKA_SENSITIVE), CK_TRUE);
        assert_int_equal(raw_bool(raw, obj, CKA_EXTRACTABLE), CK_FALSE);
        assert_int_equal(raw_bool(raw, obj, CKA_PRIVATE), CK_TRUE);
        assert_int_equal(raw_bool(raw, obj, CKA_TOKEN), CK_TRUE);
        assert_int_equal(raw_bool(raw, obj, CKA_DECRYPT), CK_FALSE);
        assert_int_equal(raw_bool(raw, obj, CKA_LOCAL), local ? CK_TRUE : CK_FALSE);
        /* The dates live on the public half: on a private object SoftHSM
         * 2.6.1 stores them but can't read them back (CKR_GENERAL_ERROR),
         * which would break any tool that asks. */
        assert_int_equal(raw->p11->C_GetAttributeValue(raw->s, obj, &start, 1), CKR_OK);
        assert_int_equal(start.ulValueLen, 0);

        /* And they can't be made readable afterwards. */
        assert_int_not_equal(raw->p11->C_SetAttributeValue(raw->s, obj, &make_extractable, 1), CKR_OK);
        assert_int_not_equal(raw->p11->C_SetAttributeValue(raw->s, obj, &make_readable, 1), CKR_OK);
        assert_int_equal(raw_bool(raw, obj, CKA_SENSITIVE), CK_TRUE);
        assert_int_equal(raw_bool(raw, obj, CKA_EXTRACTABLE), CK_FALSE);
}

static void test_not_extractable(void **state)
{
        static const char gen_rsa[] = "x-gen-rsa", gen_ed[] = "x-gen-ed", imp_rsa[] = "x-imp-rsa",
                          imp_ed[] = "x-imp-ed";
        EVP_PKEY *rsa = pem_load("a1-rsa.private.pem"), *ed = pem_load("a1-ed25519.private.pem");
        struct hsm_key *k = NULL;
        struct raw raw = { 0 };
        struct hsm *h = open_login();

        (void) state;
        assert_int_equal(hsm_generate(h, gen_rsa, HSM_ALG_RSA, 2048, &k), 0);
        k = hsm_key_free(k);
        assert_int_equal(hsm_generate(h, gen_ed, HSM_ALG_ED25519, 0, &k), 0);
        k = hsm_key_free(k);
        assert_int_equal(hsm_import(h, imp_rsa, rsa, &k), 0);
        k = hsm_key_free(k);
        assert_int_equal(hsm_import(h, imp_ed, ed, &k), 0);
        k = hsm_key_free(k);
        h = hsm_close(h);

        raw_open(&raw);
        raw_check(&raw, gen_rsa, true, true);
        raw_check(&raw, gen_ed, false, true);
        raw_check(&raw, imp_rsa, true, false);
        raw_check(&raw, imp_ed, false, false);
        raw_close(&raw);

        h = open_login();
        destroy_label(h, gen_rsa);
        destroy_label(h, gen_ed);
        destroy_label(h, imp_rsa);
        destroy_label(h, imp_ed);
        hsm_close(h);
        EVP_PKEY_free(rsa);
        EVP_PKEY_free(ed);
}

/* ---- signing through session copies of the keys ---- */

/* The raw path beside an open struct hsm: the module is initialized and
 * logged in already, and must stay so. */
static void raw_attach(struct raw *raw)
{
        CK_C_GetFunctionList get_list;
        CK_SLOT_ID slots[64];
        CK_ULONG n = 64;

        raw->dl = dlopen(module, RTLD_NOW | RTLD_LOCAL);
        assert_non_null(raw->dl);
        get_list = (CK_C_GetFunctionList) dlsym(raw->dl, "C_GetFunctionList");
        assert_non_null(get_list);
        assert_int_equal(get_list(&raw->p11), CKR_OK);
        assert_int_equal(raw->p11->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
        for (CK_ULONG i = 0; i < n; i++) {
                CK_TOKEN_INFO info;

                assert_int_equal(raw->p11->C_GetTokenInfo(slots[i], &info), CKR_OK);
                if (memcmp(info.label, TOKEN " ", strlen(TOKEN) + 1) == 0) {
                        assert_int_equal(raw->p11->C_OpenSession(slots[i], CKF_SERIAL_SESSION, NULL, NULL, &raw->s),
                                         CKR_OK);
                        return;
                }
        }
        fail_msg("no token %s", TOKEN);
}

static void raw_detach(struct raw *raw)
{
        assert_int_equal(raw->p11->C_CloseSession(raw->s), CKR_OK);
        dlclose(raw->dl);
}

/* How many session objects (copies) of the private key label there are. */
static CK_ULONG raw_copies(struct raw *raw, const char *label, CK_OBJECT_HANDLE *ret)
{
        CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
        CK_BBOOL no = CK_FALSE;
        CK_ATTRIBUTE t[] = {
                { CKA_CLASS, &cls, sizeof(cls) },
                { CKA_LABEL, (void *) label, strlen(label) },
                { CKA_TOKEN, &no, sizeof(no) },
        };
        CK_OBJECT_HANDLE objs[2];
        CK_ULONG n = 0;

        assert_int_equal(raw->p11->C_FindObjectsInit(raw->s, t, 3), CKR_OK);
        assert_int_equal(raw->p11->C_FindObjects(raw->s, objs, 2, &n), CKR_OK);
        assert_int_equal(raw->p11->C_FindObjectsFinal(raw->s), CKR_OK);
        if (ret && n > 0)
                *ret = objs[0];
        return n;
}

static size_t listed_with_prefix(struct hsm *h, const char *prefix)
{
        struct hsm_key **keys = NULL;
        size_t n = 0, count = 0;

        assert_int_equal(hsm_list(h, &keys, &n), 0);
        for (size_t i = 0; i < n; i++)
                count += strncmp(keys[i]->label, prefix, strlen(prefix)) == 0;
        hsm_key_list_free(keys, n);
        return count;
}

/* Copies sign as their keys do, are bounded, as locked down as the keys,
 * never found or listed as keys of their own, and go with a listing and
 * with their key. */
static void test_key_copies(void **state)
{
        static const char *const labels[] = { "c-rsa._domainkey.example.net", "c-ed1._domainkey.example.net",
                                              "c-ed2._domainkey.example.net" };
        struct hsm_key *keys[3] = { 0 }, *found = NULL;
        uint8_t digest[32], sig[HSM_SIG_MAX], plain[HSM_SIG_MAX];
        struct hsm_session *s = NULL, *s0 = NULL;
        struct hsm *h = open_login(), *h0 = NULL;
        size_t len = 0, len0 = 0;
        CK_OBJECT_HANDLE copy = CK_INVALID_HANDLE;
        CK_BBOOL yes = CK_TRUE;
        CK_ATTRIBUTE make_extractable = { CKA_EXTRACTABLE, &yes, sizeof(yes) };
        struct raw raw = { 0 };

        (void) state;
        assert_int_equal(hsm_key_copies(h, HSM_KEY_COPIES_MAX + 1), DKIMSIGN_E_INTERNAL);
        assert_int_equal(hsm_key_copies(h, 2), 0);
        assert_int_equal(hsm_key_copies(h, 2), DKIMSIGN_E_INTERNAL);
        assert_int_equal(hsm_generate(h, labels[0], HSM_ALG_RSA, 1024, &keys[0]), 0);
        assert_int_equal(hsm_generate(h, labels[1], HSM_ALG_ED25519, 0, &keys[1]), 0);
        assert_int_equal(hsm_generate(h, labels[2], HSM_ALG_ED25519, 0, &keys[2]), 0);
        assert_int_equal(hsm_session_open(h, &s), 0);
        assert_int_equal(hsm_key_copies_live(h), 0);

        /* At most two copies: the third key signs with its token object. */
        for (size_t i = 0; i < 3; i++)
                sign_check(s, keys[i], (uint8_t) i);
        assert_int_equal(hsm_key_copies_live(h), 2);

        /* A copy signs as its key does: both schemes are deterministic, and
         * h0 makes no copies. */
        assert_int_equal(hsm_open(module, TOKEN, &h0), 0);
        assert_int_equal(hsm_session_open(h0, &s0), 0);
        for (size_t i = 0; i < 3; i++) {
                digest_fill(digest, (uint8_t) (10 + i));
                assert_int_equal(hsm_sign(s, keys[i], digest, sig, &len), 0);
                assert_int_equal(hsm_sign(s0, keys[i], digest, plain, &len0), 0);
                assert_int_equal(len, len0);
                assert_memory_equal(sig, plain, len);
        }
        assert_int_equal(hsm_key_copies_live(h0), 0);
        hsm_session_close(s0);
        hsm_close(h0);

        /* Through PKCS#11 directly: session objects, locked down as the keys. */
        raw_attach(&raw);
        assert_int_equal(raw_copies(&raw, labels[0], &copy), 1);
        for (size_t i = 0; i < 6; i++)
                raw_secret(&raw, copy, (CK_ATTRIBUTE_TYPE[]) { CKA_PRIVATE_EXPONENT, CKA_PRIME_1, CKA_PRIME_2,
                                                               CKA_EXPONENT_1, CKA_EXPONENT_2, CKA_COEFFICIENT }[i]);
        assert_int_equal(raw_copies(&raw, labels[1], &copy), 1);
        raw_secret(&raw, copy, CKA_VALUE);
        assert_int_equal(raw_bool(&raw, copy, CKA_SENSITIVE), CK_TRUE);
        assert_int_equal(raw_bool(&raw, copy, CKA_EXTRACTABLE), CK_FALSE);
        assert_int_equal(raw_bool(&raw, copy, CKA_PRIVATE), CK_TRUE);
        assert_int_not_equal(raw.p11->C_SetAttributeValue(raw.s, copy, &make_extractable, 1), CKR_OK);
        assert_int_equal(raw_copies(&raw, labels[2], NULL), 0);

        /* A copy that vanishes (destroyed behind hsm/'s back, as a token
         * reset would) is forgotten: the key signs with its token object
         * and gets a new copy at its next signature. */
        assert_int_equal(raw.p11->C_DestroyObject(raw.s, copy), CKR_OK);
        sign_check(s, keys[1], 20);
        assert_int_equal(hsm_key_copies_live(h), 1);
        sign_check(s, keys[1], 21);
        assert_int_equal(hsm_key_copies_live(h), 2);
        assert_int_equal(raw_copies(&raw, labels[1], NULL), 1);

        /* Never found or listed as keys; a listing drops them all. */
        assert_int_equal(hsm_find(h, labels[1], &found), 0);
        assert_int_equal(found->priv, keys[1]->priv);
        found = hsm_key_free(found);
        assert_int_equal(listed_with_prefix(h, "c-"), 3);
        assert_int_equal(hsm_key_copies_live(h), 0);
        for (size_t i = 0; i < 3; i++)
                assert_int_equal(raw_copies(&raw, labels[i], NULL), 0);

        /* Made again at the next signature; destroying the key takes its
         * copy along, so it stops signing at once. */
        sign_check(s, keys[2], 7);
        assert_int_equal(hsm_key_copies_live(h), 1);
        assert_int_equal(hsm_destroy(h, keys[2]), 0);
        assert_int_equal(hsm_key_copies_live(h), 0);
        assert_int_equal(raw_copies(&raw, labels[2], NULL), 0);
        assert_int_equal(hsm_sign(s, keys[2], digest, sig, &len), DKIMSIGN_E_NO_KEY);
        raw_detach(&raw);

        assert_int_equal(hsm_destroy(h, keys[0]), 0);
        assert_int_equal(hsm_destroy(h, keys[1]), 0);
        hsm_session_close(s);
        hsm_close(h);
        for (size_t i = 0; i < 3; i++)
                hsm_key_free(keys[i]);
}

/* An Ed25519 key pair labelled label, made through PKCS#11 directly with
 * CKA_COPYABLE false (it can't be changed later on SoftHSM), on raw's
 * slot; the caller finds it with hsm_find. */
static void raw_generate_not_copyable(struct raw *raw, const char *label)
{
        static const uint8_t oid[] = { 0x06, 0x03, 0x2b, 0x65, 0x70 };
        static const uint8_t id[] = { 0x6e, 0x63 };
        CK_MECHANISM mech = { CKM_EC_EDWARDS_KEY_PAIR_GEN, NULL, 0 };
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_ATTRIBUTE pub[] = {
                { CKA_TOKEN, &yes, sizeof(yes) },
                { CKA_EC_PARAMS, (void *) oid, sizeof(oid) },
                { CKA_LABEL, (void *) label, strlen(label) },
                { CKA_ID, (void *) id, sizeof(id) },
                { CKA_VERIFY, &yes, sizeof(yes) },
        };
        CK_ATTRIBUTE priv[] = {
                { CKA_TOKEN, &yes, sizeof(yes) },
                { CKA_PRIVATE, &yes, sizeof(yes) },
                { CKA_SENSITIVE, &yes, sizeof(yes) },
                { CKA_EXTRACTABLE, &no, sizeof(no) },
                { CKA_SIGN, &yes, sizeof(yes) },
                { CKA_LABEL, (void *) label, strlen(label) },
                { CKA_ID, (void *) id, sizeof(id) },
                { CKA_COPYABLE, &no, sizeof(no) },
        };
        CK_OBJECT_HANDLE pub_obj, priv_obj;
        CK_SESSION_HANDLE rw;
        CK_SESSION_INFO info;

        assert_int_equal(raw->p11->C_GetSessionInfo(raw->s, &info), CKR_OK);
        assert_int_equal(raw->p11->C_OpenSession(info.slotID, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &rw),
                         CKR_OK);
        assert_int_equal(raw->p11->C_GenerateKeyPair(rw, &mech, pub, sizeof(pub) / sizeof(pub[0]), priv,
                                                     sizeof(priv) / sizeof(priv[0]), &pub_obj, &priv_obj),
                         CKR_OK);
        assert_int_equal(raw->p11->C_CloseSession(rw), CKR_OK);
        assert_int_equal(raw_bool(raw, priv_obj, CKA_COPYABLE), CK_FALSE);
}

/* A key that is not CKA_COPYABLE signs with its token object, and the
 * other keys still get copies: the refusal is that key's, not the
 * token's (a token that copies no key is asked once: test-faults.py). */
static void test_key_copies_not_copyable(void **state)
{
        static const char *const labels[] = { "nc-fixed._domainkey.example.net", "nc-free._domainkey.example.net" };
        struct hsm_key *keys[2] = { 0 };
        struct hsm_session *s = NULL;
        struct hsm *h = open_login();
        struct raw raw = { 0 };

        (void) state;
        assert_int_equal(hsm_key_copies(h, 4), 0);
        raw_attach(&raw);
        raw_generate_not_copyable(&raw, labels[0]);
        assert_int_equal(hsm_find(h, labels[0], &keys[0]), 0);
        assert_int_equal(hsm_generate(h, labels[1], HSM_ALG_ED25519, 0, &keys[1]), 0);

        assert_int_equal(hsm_session_open(h, &s), 0);
        sign_check(s, keys[0], 1);
        assert_int_equal(hsm_key_copies_live(h), 0);
        sign_check(s, keys[1], 2);
        assert_int_equal(hsm_key_copies_live(h), 1);
        sign_check(s, keys[0], 3);
        assert_int_equal(hsm_key_copies_live(h), 1);
        assert_int_equal(raw_copies(&raw, labels[0], NULL), 0);
        assert_int_equal(raw_copies(&raw, labels[1], NULL), 1);
        raw_detach(&raw);

        for (size_t i = 0; i < 2; i++) {
                assert_int_equal(hsm_destroy(h, keys[i]), 0);
                hsm_key_free(keys[i]);
        }
        hsm_session_close(s);
        hsm_close(h);
}

static CK_OBJECT_HANDLE raw_find_class(struct raw *raw, const char *label, CK_OBJECT_CLASS cls)
{
        CK_ATTRIBUTE t[] = {
                { CKA_CLASS, &cls, sizeof(cls) },
                { CKA_LABEL, (void *) label, strlen(label) },
        };
        CK_OBJECT_HANDLE obj = CK_INVALID_HANDLE;
        CK_ULONG n = 0;

        assert_int_equal(raw->p11->C_FindObjectsInit(raw->s, t, 2), CKR_OK);
        assert_int_equal(raw->p11->C_FindObjects(raw->s, &obj, 1, &n), CKR_OK);
        assert_int_equal(raw->p11->C_FindObjectsFinal(raw->s), CKR_OK);
        assert_int_equal(n, 1);
        return obj;
}

/* Destroy every object whose label begins with prefix; how many. */
static int raw_destroy_prefix(struct raw *raw, const char *prefix)
{
        CK_OBJECT_HANDLE objs[64];
        CK_ULONG n = 0;
        int destroyed = 0;

        assert_int_equal(raw->p11->C_FindObjectsInit(raw->s, NULL, 0), CKR_OK);
        assert_int_equal(raw->p11->C_FindObjects(raw->s, objs, 64, &n), CKR_OK);
        assert_int_equal(raw->p11->C_FindObjectsFinal(raw->s), CKR_OK);
        for (CK_ULONG i = 0; i < n; i++) {
                char label[1024];
                CK_ATTRIBUTE a = { CKA_LABEL, label, sizeof(label) - 1 };

                if (raw->p11->C_GetAttributeValue(raw->s, objs[i], &a, 1) != CKR_OK)
                        continue;
                label[a.ulValueLen] = '\0';
                if (strncmp(label, prefix, strlen(prefix)) == 0 && raw->p11->C_DestroyObject(raw->s, objs[i]) == CKR_OK)
                        destroyed++;
        }
        return destroyed;
}

static const struct hsm_key *listed(struct hsm_key **keys, size_t n, const char *label)
{
        for (size_t i = 0; i < n; i++)
                if (strcmp(keys[i]->label, label) == 0)
                        return keys[i];
        return NULL;
}

/* What else a shared token may hold: a key of another algorithm is left
 * out of the listing; a key pair whose public object is gone is listed
 * (an RSA key still has its public half from the private object, an
 * Ed25519 key has none and can't sign here). */
static void test_list_foreign_objects(void **state)
{
        static const uint8_t p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
        static const char ec[] = "x-p256", rsa_alone[] = "x-rsa-alone", ed_alone[] = "x-ed-alone";
        CK_MECHANISM mech = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
        CK_BBOOL yes = CK_TRUE;
        CK_ATTRIBUTE pub_t[] = {
                { CKA_TOKEN, &yes, sizeof(yes) },
                { CKA_LABEL, (void *) ec, strlen(ec) },
                { CKA_EC_PARAMS, (void *) p256, sizeof(p256) },
        };
        CK_ATTRIBUTE priv_t[] = {
                { CKA_TOKEN, &yes, sizeof(yes) },
                { CKA_LABEL, (void *) ec, strlen(ec) },
                { CKA_SIGN, &yes, sizeof(yes) },
        };
        CK_OBJECT_HANDLE pub, priv, odd_pub, odd_priv, data;
        struct hsm_key **keys = NULL, *k = NULL;
        const struct hsm_key *got;
        struct raw raw = { 0 };
        size_t n = 0, before;
        struct hsm *h = open_login();
        /* A key pair another tool made: a label too long for a DKIM key's,
         * and a date on its private half, which SoftHSM 2.6.1 stores but
         * fails every later read of it with (CKR_GENERAL_ERROR, after
         * marking the too-long label unavailable): hsm/ reads it again
         * for class and name, within its buffers. */
        static const uint8_t ed_oid[] = { 0x06, 0x03, 0x2b, 0x65, 0x70 };
        char long_label[700];  /* past a name's label and CKA_ID buffers together */
        CK_DATE date = { { '2', '0', '2', '6' }, { '0', '1' }, { '0', '2' } };
        CK_MECHANISM ed_mech = { CKM_EC_EDWARDS_KEY_PAIR_GEN, NULL, 0 };
        CK_ATTRIBUTE odd_pub_t[] = {
                { CKA_TOKEN, &yes, sizeof(yes) },
                { CKA_LABEL, long_label, sizeof(long_label) },
                { CKA_EC_PARAMS, (void *) ed_oid, sizeof(ed_oid) },
        };
        CK_ATTRIBUTE odd_priv_t[] = {
                { CKA_TOKEN, &yes, sizeof(yes) },
                { CKA_PRIVATE, &yes, sizeof(yes) },
                { CKA_LABEL, long_label, sizeof(long_label) },
                { CKA_START_DATE, &date, sizeof(date) },
        };
        CK_OBJECT_CLASS data_class = CKO_DATA;
        CK_ATTRIBUTE data_t[] = {
                { CKA_CLASS, &data_class, sizeof(data_class) },
                { CKA_TOKEN, &yes, sizeof(yes) },
                { CKA_LABEL, (void *) ec, strlen(ec) },
                { CKA_VALUE, (void *) "not a key", 9 },
        };

        (void) state;
        memset(long_label, 'L', sizeof(long_label));
        before = key_count(h);
        assert_int_equal(hsm_generate(h, rsa_alone, HSM_ALG_RSA, 1024, &k), 0);
        k = hsm_key_free(k);
        assert_int_equal(hsm_generate(h, ed_alone, HSM_ALG_ED25519, 0, &k), 0);
        k = hsm_key_free(k);
        h = hsm_close(h);

        raw_open(&raw);
        assert_int_equal(raw.p11->C_GenerateKeyPair(raw.s, &mech, pub_t, 3, priv_t, 3, &pub, &priv), CKR_OK);
        assert_int_equal(raw.p11->C_GenerateKeyPair(raw.s, &ed_mech, odd_pub_t, 3, odd_priv_t, 4, &odd_pub, &odd_priv),
                         CKR_OK);
        assert_int_equal(raw.p11->C_CreateObject(raw.s, data_t, 4, &data), CKR_OK);
        assert_int_equal(raw.p11->C_DestroyObject(raw.s, raw_find_class(&raw, rsa_alone, CKO_PUBLIC_KEY)), CKR_OK);
        assert_int_equal(raw.p11->C_DestroyObject(raw.s, raw_find_class(&raw, ed_alone, CKO_PUBLIC_KEY)), CKR_OK);
        raw_close(&raw);

        h = open_login();
        assert_int_equal(hsm_list(h, &keys, &n), 0);
        assert_int_equal(n, before + 2);
        assert_null(listed(keys, n, ec));
        got = listed(keys, n, rsa_alone);
        assert_non_null(got);
        assert_int_equal(got->pub, 0);
        assert_non_null(got->pubkey);
        assert_int_equal(got->bits, 1024);
        assert_string_equal(got->created, "");
        got = listed(keys, n, ed_alone);
        assert_non_null(got);
        assert_int_equal(got->pub, 0);
        assert_null(got->pubkey);
        hsm_key_list_free(keys, n);

        destroy_label(h, rsa_alone);
        /* hsm_find refuses a key without its public half; destroy it raw. */
        assert_int_equal(hsm_find(h, ed_alone, &k), DKIMSIGN_E_NO_KEY);
        h = hsm_close(h);
        raw_open(&raw);
        assert_int_equal(raw.p11->C_DestroyObject(raw.s, raw_find_class(&raw, ed_alone, CKO_PRIVATE_KEY)), CKR_OK);
        /* Handles do not outlive a C_Finalize: by label again. */
        assert_int_equal(raw.p11->C_DestroyObject(raw.s, raw_find_class(&raw, ec, CKO_PUBLIC_KEY)), CKR_OK);
        assert_int_equal(raw.p11->C_DestroyObject(raw.s, raw_find_class(&raw, ec, CKO_PRIVATE_KEY)), CKR_OK);
        assert_int_equal(raw.p11->C_DestroyObject(raw.s, raw_find_class(&raw, ec, CKO_DATA)), CKR_OK);
        long_label[sizeof(long_label) - 1] = '\0';  /* raw_find_class takes a string: all but the last L */
        assert_int_equal(raw_destroy_prefix(&raw, long_label), 2);
        raw_close(&raw);
        h = open_login();
        assert_int_equal(key_count(h), before);
        hsm_close(h);
}

/* What the token can do, judged before acting: the sentences name the
 * limit and what to do (a pure function: the modules' limits below are
 * those probed on tpm2-pkcs11 1.9.0 and opencryptoki 3.8.1). */
static void test_caps_check(void **state)
{
        const struct hsm_caps tpm2 = { .known = true, .rsa_gen = true, .rsa_sign = true, .rsa_gen_min = 1024,
                                       .rsa_gen_max = 3072, .rsa_sign_min = 1024, .rsa_sign_max = 3072 };
        const struct hsm_caps ock = { .known = true, .rsa_gen = true, .rsa_sign = true, .rsa_gen_min = 512,
                                      .rsa_gen_max = 4096, .rsa_sign_min = 512, .rsa_sign_max = 4096 };
        const struct hsm_caps unknown = { .rsa_gen = true, .rsa_sign = true, .ed_gen = true, .ed_sign = true };
        const struct hsm_caps no_gen = { .known = true, .rsa_sign = true, .ed_sign = true };
        char why[512];

        (void) state;
        assert_int_equal(hsm_caps_check(&tpm2, HSM_ALG_RSA, 4096, true, why, sizeof(why)), DKIMSIGN_E_ALG);
        assert_string_equal(why, "this token makes RSA keys of 1024 to 3072 bits; use --bits 3072");
        assert_int_equal(hsm_caps_check(&tpm2, HSM_ALG_RSA, 3072, true, why, sizeof(why)), 0);
        assert_int_equal(hsm_caps_check(&tpm2, HSM_ALG_RSA, 0, true, why, sizeof(why)), 0);
        assert_int_equal(hsm_caps_check(&tpm2, HSM_ALG_ED25519, 0, true, why, sizeof(why)), DKIMSIGN_E_ALG);
        assert_string_equal(why, "this token has no Ed25519 (CKM_EDDSA); use --algorithm rsa");
        assert_int_equal(hsm_caps_check(&tpm2, HSM_ALG_ED25519, 0, false, why, sizeof(why)), DKIMSIGN_E_ALG);
        assert_string_equal(why, "this token has no Ed25519 (CKM_EDDSA); use an RSA key");
        assert_int_equal(hsm_caps_check(&tpm2, HSM_ALG_RSA, 4096, false, why, sizeof(why)), DKIMSIGN_E_ALG);
        assert_non_null(strstr(why, "this token signs with RSA keys of 1024 to 3072 bits, and this key has 4096"));
        /* The token's range within DKIM's (RFC 8301: 1024 and up). */
        assert_int_equal(hsm_caps_check(&ock, HSM_ALG_RSA, 4096, true, why, sizeof(why)), 0);
        assert_int_equal(hsm_caps_check(&ock, HSM_ALG_RSA, 8192, true, why, sizeof(why)), DKIMSIGN_E_ALG);
        assert_string_equal(why, "this token makes RSA keys of 1024 to 4096 bits; use --bits 4096");
        /* A token that did not answer: nothing refused on a guess. */
        assert_int_equal(hsm_caps_check(&unknown, HSM_ALG_ED25519, 0, true, why, sizeof(why)), 0);
        assert_int_equal(hsm_caps_check(&unknown, HSM_ALG_RSA, 4096, true, why, sizeof(why)), 0);
        /* Signs but does not generate: import instead. */
        assert_int_equal(hsm_caps_check(&no_gen, HSM_ALG_ED25519, 0, true, why, sizeof(why)), DKIMSIGN_E_ALG);
        assert_non_null(strstr(why, "CKM_EC_EDWARDS_KEY_PAIR_GEN"));
        assert_int_equal(hsm_caps_check(&no_gen, HSM_ALG_ED25519, 0, false, why, sizeof(why)), 0);
        assert_int_equal(hsm_caps_check(&no_gen, HSM_ALG_RSA, 2048, true, why, sizeof(why)), DKIMSIGN_E_ALG);
        assert_non_null(strstr(why, "CKM_RSA_PKCS_KEY_PAIR_GEN"));
}

/* SoftHSM's own answers, and the uses of a key made here. */
static void test_token_caps_and_uses(void **state)
{
        struct hsm *h = open_login();
        struct hsm_caps caps;
        struct hsm_key *k = NULL;
        char uses[64];

        (void) state;
        assert_int_equal(hsm_token_caps(h, &caps), 0);
        assert_true(caps.known && caps.rsa_gen && caps.rsa_sign && caps.ed_gen && caps.ed_sign);
        assert_true(caps.rsa_gen_max >= HSM_RSA_MAX_BITS);
        assert_int_equal(caps.pin_min, 4);
        assert_int_equal(caps.pin_max, 255);
        assert_int_equal(hsm_generate(h, "uses._domainkey.example.com", HSM_ALG_ED25519, 0, &k), 0);
        assert_int_equal(k->uses, HSM_USE_SIGN);
        assert_false(k->always_authenticate);
        assert_null(k->refused);
        assert_string_equal(hsm_uses_format(k->uses | HSM_USE_DECRYPT, ",", uses, sizeof(uses)), "sign,decrypt");
        assert_string_equal(hsm_uses_format(0, ",", uses, sizeof(uses)), "none");
        destroy_label(h, k->label);
        hsm_key_free(k);
        hsm_close(h);
}

/* A PIN the free slot's token would not take is refused before
 * C_InitToken: nothing is initialized, and the token is made afterwards
 * with good PINs. */
static void test_init_token_pin_length(void **state)
{
        char so[] = SO_PIN, user[300], so_short[] = "12", user2[] = "4321";
        struct hsm *h = NULL;

        (void) state;
        memset(user, '7', sizeof(user) - 1);
        user[256] = '\0';   /* 256 characters: SoftHSM takes 4 to 255 */
        assert_int_equal(hsm_init_token(module, "dkimsign-pinlen", so, strlen(SO_PIN), user, 256), DKIMSIGN_E_PIN);
        assert_string_equal(hsm_last_why(), "this token takes PINs of 4 to 255 characters; the user PIN has 256");
        assert_true(all_zero(so, strlen(SO_PIN)) && all_zero(user, 256));
        assert_int_equal(hsm_open(module, "dkimsign-pinlen", &h), DKIMSIGN_E_NO_TOKEN);
        strcpy(user2, "4321");
        assert_int_equal(hsm_init_token(module, "dkimsign-pinlen", so_short, 2, user2, 4), DKIMSIGN_E_PIN);
        assert_string_equal(hsm_last_why(), "this token takes PINs of 4 to 255 characters; the SO PIN has 2");
        assert_int_equal(hsm_open(module, "dkimsign-pinlen", &h), DKIMSIGN_E_NO_TOKEN);

        strcpy(so, SO_PIN);
        strcpy(user2, "4321");
        assert_int_equal(hsm_init_token(module, "dkimsign-pinlen", so, strlen(so), user2, 4), 0);
        assert_int_equal(hsm_open(module, "dkimsign-pinlen", &h), 0);
        strcpy(user2, "4321");
        assert_int_equal(hsm_login(h, user2, 4), 0);
        hsm_close(h);
}

/* A token chosen by a PKCS#11 URI: by its label, its serial, label and
 * manufacturer, with the module in the URI; none or several matching are
 * refused, saying which; found again by the URI when its slot moved; and
 * init-token by URI. */
/* A slot of h's module other than slot, whose token is not initialized
 * (SoftHSM always has such a free one): where a moved token's old slot
 * number leads after a reinsertion. */
static CK_SLOT_ID other_slot(struct hsm *h, CK_SLOT_ID slot)
{
        CK_SLOT_ID slots[64];
        CK_ULONG n = 64;
        CK_TOKEN_INFO info;

        assert_int_equal(h->p11->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
        for (CK_ULONG i = 0; i < n; i++)
                if (slots[i] != slot && h->p11->C_GetTokenInfo(slots[i], &info) == CKR_OK &&
                    !(info.flags & CKF_TOKEN_INITIALIZED))
                        return slots[i];
        fail_msg("no other slot");
        return slot;
}

static void test_open_uri(void **state)
{
        char uri[HSM_URI_MAX + 1], want[1024], so[] = SO_PIN, user[] = USER_PIN;
        struct hsm_token_id id, id2;
        struct hsm_session *s = NULL;
        struct hsm *h = NULL;
        CK_SLOT_ID slot;

        (void) state;
        assert_int_equal(hsm_open_uri("pkcs11:token=" TOKEN, module, &h), 0);
        hsm_token_id(h, &id);
        assert_string_equal(id.label, TOKEN);
        assert_string_equal(id.manufacturer, "SoftHSM project");
        assert_string_equal(id.model, "SoftHSM v2");
        assert_int_equal(strlen(id.serial), 16);
        h = hsm_close(h);
        snprintf(uri, sizeof(uri), "pkcs11:serial=%s", id.serial);
        assert_int_equal(hsm_open_uri(uri, module, &h), 0);
        hsm_token_id(h, &id2);
        assert_string_equal(id2.label, TOKEN);
        h = hsm_close(h);
        snprintf(uri, sizeof(uri), "pkcs11:token=%s;manufacturer=SoftHSM%%20project?module-path=%s", TOKEN, module);
        assert_int_equal(hsm_open_uri(uri, NULL, &h), 0);
        h = hsm_close(h);
        assert_int_equal(hsm_open_uri(uri, module, &h), 0);
        h = hsm_close(h);

        /* None, several, and what can't be matched or loaded. */
        assert_int_equal(hsm_open_uri("pkcs11:token=" TOKEN ";model=other", module, &h), DKIMSIGN_E_NO_TOKEN);
        snprintf(want, sizeof(want), "no token of %s matches pkcs11:token=" TOKEN ";model=other", module);
        assert_string_equal(hsm_last_why(), want);
        assert_int_equal(hsm_open_uri("pkcs11:model=SoftHSM%20v2", module, &h), DKIMSIGN_E_EXISTS);
        snprintf(want, sizeof(want), " tokens of %s match pkcs11:model=SoftHSM%%20v2 (serials ", module);
        assert_non_null(strstr(hsm_last_why(), want));
        assert_non_null(strstr(hsm_last_why(), id.serial));
        assert_non_null(strstr(hsm_last_why(), "): add serial= to the uri to choose one"));
        assert_null(h);
        assert_int_equal(hsm_open_uri("pkcs11:token=" TOKEN ";object=k", module, &h), DKIMSIGN_E_FORMAT);
        assert_string_equal(hsm_last_why(), "object= selects objects, not a token: dkimsign finds its keys on the "
                                            "token itself; drop it");
        assert_int_equal(hsm_open_uri("pkcs11:token=" TOKEN "?module-path=/usr/lib/other.so", module, &h),
                         DKIMSIGN_E_FORMAT);
        snprintf(want, sizeof(want), "the module-path of pkcs11:token=" TOKEN "?module-path=/usr/lib/other.so is "
                 "not the module %s", module);
        assert_string_equal(hsm_last_why(), want);
        assert_int_equal(hsm_open_uri("pkcs11:token=" TOKEN, NULL, &h), DKIMSIGN_E_FORMAT);
        assert_string_equal(hsm_last_why(), "pkcs11:token=" TOKEN " has no module-path, and no module is given");
        assert_null(h);

        /* A reinsertion that renumbered the slots: the token is found
         * again by the URI, on its new slot. */
        snprintf(uri, sizeof(uri), "pkcs11:serial=%s", id.serial);
        assert_int_equal(hsm_open_uri(uri, module, &h), 0);
        assert_int_equal(hsm_login(h, user, strlen(user)), 0);
        slot = h->slot;
        /* Another slot that exists (SoftHSM throws, inside, for one that
         * does not, which ASan's C++ interceptor can't take in a C test). */
        h->slot = other_slot(h, slot);
        assert_int_equal(hsm_session_open(h, &s), 0);
        assert_int_equal(h->slot, slot);
        hsm_session_close(s);
        h = hsm_close(h);
        /* And after the module is initialized again (a reload). */
        assert_int_equal(hsm_open_uri(uri, module, &h), 0);
        hsm_keep_pin(h);
        strcpy(user, USER_PIN);
        assert_int_equal(hsm_login(h, user, strlen(user)), 0);
        h->slot = other_slot(h, slot);
        assert_int_equal(hsm_reinitialize(h, 1000), 0);
        assert_int_equal(h->slot, slot);
        assert_int_equal(hsm_session_open(h, &s), 0);
        hsm_session_close(s);
        h = hsm_close(h);

        /* init-token by URI: token= is the label; the first free token that
         * matches the rest is the one initialized. */
        assert_int_equal(hsm_init_token_uri("pkcs11:token=" TOKEN, module, so, strlen(so), user, strlen(user), &id2),
                         DKIMSIGN_E_EXISTS);
        assert_true(all_zero(so, strlen(SO_PIN)) && all_zero(user, strlen(USER_PIN)));
        snprintf(want, sizeof(want), "a token of %s matches pkcs11:token=" TOKEN " already (label '" TOKEN "', "
                 "serial ", module);
        assert_true(strncmp(hsm_last_why(), want, strlen(want)) == 0);
        strcpy(so, SO_PIN);
        strcpy(user, USER_PIN);
        assert_int_equal(hsm_init_token_uri("pkcs11:manufacturer=SoftHSM%20project", module, so, strlen(so), user,
                                            strlen(user), &id2),
                         DKIMSIGN_E_FORMAT);
        assert_string_equal(hsm_last_why(), "pkcs11:manufacturer=SoftHSM%20project has no token=: init-token gives "
                                            "the new token that label");
        strcpy(so, SO_PIN);
        strcpy(user, USER_PIN);
        assert_int_equal(hsm_init_token_uri("pkcs11:token=by-uri;model=other", module, so, strlen(so), user,
                                            strlen(user), &id2),
                         DKIMSIGN_E_NO_TOKEN);
        snprintf(want, sizeof(want), "no free token of %s matches pkcs11:token=by-uri;model=other (its attributes "
                 "but token=, which is the label to give)", module);
        assert_string_equal(hsm_last_why(), want);
        strcpy(so, SO_PIN);
        strcpy(user, USER_PIN);
        assert_int_equal(hsm_init_token_uri("pkcs11:token=by-uri;manufacturer=SoftHSM%20project", module, so,
                                            strlen(so), user, strlen(user), &id2),
                         0);
        assert_true(all_zero(so, strlen(SO_PIN)) && all_zero(user, strlen(USER_PIN)));
        assert_string_equal(id2.label, "by-uri");
        assert_int_equal(strlen(id2.serial), 16);
        snprintf(uri, sizeof(uri), "pkcs11:token=by-uri;serial=%s", id2.serial);
        assert_int_equal(hsm_open_uri(uri, module, &h), 0);
        strcpy(user, USER_PIN);
        assert_int_equal(hsm_login(h, user, strlen(user)), 0);
        h = hsm_close(h);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_names),
                cmocka_unit_test(test_init_token),
                cmocka_unit_test(test_open_errors),
                cmocka_unit_test(test_login),
                cmocka_unit_test(test_generate),
                cmocka_unit_test(test_find_list_destroy),
                cmocka_unit_test(test_retire),
                cmocka_unit_test(test_sign),
                cmocka_unit_test(test_reinitialize),
                cmocka_unit_test(test_import),
                cmocka_unit_test(test_not_extractable),
                cmocka_unit_test(test_list_foreign_objects),
                cmocka_unit_test(test_key_copies),
                cmocka_unit_test(test_key_copies_not_copyable),
                cmocka_unit_test(test_caps_check),
                cmocka_unit_test(test_token_caps_and_uses),
                cmocka_unit_test(test_init_token_pin_length),
                cmocka_unit_test(test_open_uri),
        };

        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
