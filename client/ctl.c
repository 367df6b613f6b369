/* SPDX-License-Identifier: MIT */
/*
 * dkimsignctl: the administrator's one tool for the token and its DKIM
 * keys.  It initializes the token, generates keys on it, imports existing
 * keys (one PEM file, or every key of an OpenDKIM KeyTable), lists them,
 * prints their DNS records, and retires and destroys them.  It talks to the
 * token directly (PKCS#11), with the PIN from the file the configuration
 * names or from a systemd credential.
 *
 * It must never take a PIN from the command line, never print a PIN or any
 * private key material, and never leave the token half changed: every input
 * is checked before the first write, and a multi-key import that fails
 * half-way removes what it added.
 *
 * Exit status: 0 success; 1 failure (one line on stderr says why); 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "ctl-check.h"
#include "ctl-daemon.h"
#include "ctl-lifecycle.h"
#include "ctl-report.h"
#include "msg.h"
#include "readfile.h"
#include "dkimsign-build.h"
#include "dkimsign-errors.h"
#include "header.h"
#include "hsm.h"
#include "keys.h"
#include "log.h"
#include "record.h"
#include "sign.h"

#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define PIN_MAX 256
#define KEY_FILE_MAX (64 * 1024)          /* a 4096-bit RSA PEM is about 3.3 kB */
#define TABLE_FILE_MAX (16 * 1024 * 1024)
#define FINGERPRINT_SIZE 64               /* "SHA256:" + 43 base64 characters */
#define SECTION_KEYS_MAX 2                /* dkimsignd signs with one key per algorithm */

/* Command options, as bits: each command says which it accepts. */
enum {
        OPT_DOMAIN = 1 << 0,
        OPT_SELECTOR = 1 << 1,
        OPT_ALGORITHM = 1 << 2,
        OPT_BITS = 1 << 3,
        OPT_SO_PIN_FILE = 1 << 4,
        OPT_JSON = 1 << 5,
        OPT_YES = 1 << 6,
        OPT_CONFIG_OUT = 1 << 7,
        OPT_RESOLVER = 1 << 8,
};

static const char *const opt_names[] = {
        "--domain", "--selector", "--algorithm", "--bits", "--so-pin-file", "--json", "--yes", "--config-out",
        "--resolver",
};

struct options {
        const char *config;
        const char *domain;
        const char *selector;
        const char *algorithm;
        const char *so_pin_file;
        const char *config_out;
        const char *resolver;    /* check: the DNS resolver to ask */
        unsigned bits;
        bool json;
        bool yes;
        unsigned given;          /* OPT_* bits seen on the command line */
        char **args;             /* the command's operands (borrowed from argv) */
        size_t nargs;
};

struct command {
        const char *name;
        int (*run)(const struct options *o);
        unsigned opts;           /* the OPT_* it accepts */
        size_t min_args, max_args;
        const char *synopsis;
        const char *help;
};

static int die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int die(const char *fmt, ...)
{
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = ctl_vreport(EXIT_FAIL, fmt, ap);
        va_end(ap);
        return r;
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = ctl_vreport(EXIT_USAGE, fmt, ap);
        va_end(ap);
        return r;
}

/* ---- shared helpers ---- */

static int load_config(const struct options *o, struct config **ret)
{
        char err[1024];

        if (config_load(o->config, ret, err, sizeof(err)) < 0)
                return die("configuration: %s", err);
        /* Before the module is loaded (init-token and every open_token). */
        if (config_apply_module_env(*ret) < 0) {
                *ret = config_free(*ret);
                return die("[token] module_env: %s", strerror(errno));
        }
        return 0;
}

static int open_token(const struct config *c, struct hsm **ret)
{
        char pin_path[4096];
        int r = hsm_open(c->module, c->token_label, ret);

        if (r == DKIMSIGN_E_SYSTEM)
                return die("cannot load the PKCS#11 module %s: %s", c->module, strerror(errno));
        if (r < 0)
                return die("token '%s' in %s: %s", c->token_label, c->module, dkimsign_strerror(r));
        r = config_pin_path(c, pin_path, sizeof(pin_path));
        if (r < 0) {
                *ret = hsm_close(*ret);
                return die("no PIN: set [token] pin_file in %s, or pass a 'pin' credential", c->path);
        }
        r = hsm_login_pin_file(*ret, pin_path);
        if (r < 0) {
                *ret = hsm_close(*ret);
                if (r == DKIMSIGN_E_SYSTEM)
                        return die("cannot read the PIN file %s: %s", pin_path, strerror(errno));
                return die("login to token '%s' with the PIN in %s: %s", c->token_label, pin_path,
                           dkimsign_strerror(r));
        }
        return 0;
}

/* Configuration and a logged-in token, or a message and EXIT_FAIL. */
static int open_all(const struct options *o, struct config **ret_c, struct hsm **ret_h)
{
        *ret_c = NULL;
        *ret_h = NULL;
        if (load_config(o, ret_c))
                return EXIT_FAIL;
        if (open_token(*ret_c, ret_h)) {
                *ret_c = config_free(*ret_c);
                return EXIT_FAIL;
        }
        return 0;
}

/* Read a PIN file's first line into pin (PIN_MAX bytes). */
static int read_pin(const char *path, char *pin, size_t *ret_len)
{
        ssize_t n;
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                return -1;
        n = read(fd, pin, PIN_MAX - 1);
        close(fd);
        if (n <= 0)
                return -1;
        pin[n] = 0;
        pin[strcspn(pin, "\r\n")] = 0;
        *ret_len = strlen(pin);
        return *ret_len ? 0 : -1;
}

static bool selector_is_valid(const char *s)
{
        return strlen(s) <= DKIM_SELECTOR_MAX && dkim_domain_is_valid(s, strlen(s));
}

static void lowercase(char *s)
{
        for (; *s; s++)
                if (*s >= 'A' && *s <= 'Z')
                        *s = (char) (*s + 32);
}

static int check_name_options(const struct options *o, const char *cmd)
{
        if (!o->domain || !o->selector)
                return usage_error("%s needs --domain and --selector", cmd);
        if (!dkim_domain_is_valid(o->domain, strlen(o->domain)))
                return usage_error("'%s' is not a valid domain name", o->domain);
        if (!selector_is_valid(o->selector))
                return usage_error("'%s' is not a valid selector (letters, digits, '-', dot-separated)",
                                   o->selector);
        return 0;
}

static int make_label(const char *selector, const char *domain, char *label, size_t size)
{
        if (hsm_key_label(selector, domain, label, size) < 0)
                return die("the key name %s._domainkey.%s is too long", selector, domain);
        lowercase(label);
        return 0;
}

static int print_record(const struct hsm_key *k, const char *label)
{
        struct buf text, zone;
        int r;

        buf_init(&text, 8192);
        buf_init(&zone, 16384);
        r = dkim_record_text(k->pubkey, &text);
        if (r == 0)
                r = dkim_record_zone_value((const char *) text.data, text.len, &zone);
        if (r == 0) {
                printf("%s. IN TXT %.*s\n", label, (int) zone.len, (const char *) zone.data);
                printf("; as one string:\n; %.*s\n", (int) text.len, (const char *) text.data);
        }
        buf_deinit(&text);
        buf_deinit(&zone);
        return r < 0 ? die("building the DNS record: %s", dkimsign_strerror(r)) : 0;
}

/* "YYYYMMDD" as "YYYY-MM-DD" into ret (11 bytes); "" stays "". */
static const char *date_show(const char *d, char ret[11])
{
        if (!d[0])
                ret[0] = '\0';
        else
                snprintf(ret, 11, "%.4s-%.2s-%.2s", d, d + 4, d + 6);
        return ret;
}

/* "SHA256:" and the unpadded base64 of SHA-256 over the DER
 * SubjectPublicKeyInfo, as ssh-keygen -l prints it. */
static int fingerprint(EVP_PKEY *pub, char ret[FINGERPRINT_SIZE])
{
        unsigned char *der = NULL, md[32], b64[48];
        unsigned int md_len = 0;
        int len, n;

        len = i2d_PUBKEY(pub, &der);
        if (len <= 0)
                return -1;
        n = EVP_Digest(der, (size_t) len, md, &md_len, EVP_sha256(), NULL);
        OPENSSL_free(der);
        if (n != 1 || md_len != sizeof(md))
                return -1;
        n = EVP_EncodeBlock(b64, md, (int) sizeof(md));
        while (n > 0 && b64[n - 1] == '=')
                n--;
        snprintf(ret, FINGERPRINT_SIZE, "SHA256:%.*s", n, (const char *) b64);
        return 0;
}

/* A CK_DATE as "YYYY-MM-DD", or null when unset. */
static void json_date(const char *d)
{
        char buf[11];

        if (d[0])
                ctl_json_string(date_show(d, buf));
        else
                fputs("null", stdout);
}

static bool key_generated(const struct hsm_key *k)
{
        return k->local && k->never_extractable && k->always_sensitive;
}

/* ---- reading key files ---- */

/* The DER of one PEM private key block: PKCS#8 or PKCS#1 (RSA). */
static EVP_PKEY *der_private_key(const char *name, const unsigned char *der, long len)
{
        const unsigned char *p = der;
        EVP_PKEY *pkey = NULL;

        if (strcmp(name, PEM_STRING_PKCS8INF) == 0) {
                PKCS8_PRIV_KEY_INFO *p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, len);

                if (p8 && p == der + len)
                        pkey = EVP_PKCS82PKEY(p8);
                PKCS8_PRIV_KEY_INFO_free(p8);
        } else {
                pkey = d2i_PrivateKey(EVP_PKEY_RSA, NULL, &p, len);
                if (pkey && p != der + len)
                        pkey = (EVP_PKEY_free(pkey), NULL);
        }
        return pkey;
}

/* Why a decoded key can't be a DKIM key, or NULL. */
static const char *key_unsuitable(EVP_PKEY *pkey, char *buf, size_t size)
{
        EVP_PKEY_CTX *ctx;
        int ok;

        if (EVP_PKEY_is_a(pkey, "RSA")) {
                int bits = EVP_PKEY_get_bits(pkey);
                BIGNUM *third = NULL;

                if (bits < HSM_RSA_MIN_BITS || bits > HSM_RSA_MAX_BITS) {
                        snprintf(buf, size, "a %d-bit RSA key; DKIM RSA keys are %d to %d bits (RFC 8301)", bits,
                                 HSM_RSA_MIN_BITS, HSM_RSA_MAX_BITS);
                        return buf;
                }
                if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_FACTOR3, &third)) {
                        BN_clear_free(third);
                        return "a multi-prime RSA key, which a PKCS#11 token can't hold";
                }
        } else if (!EVP_PKEY_is_a(pkey, "ED25519")) {
                snprintf(buf, size, "a key of type %s; DKIM keys are RSA or Ed25519", EVP_PKEY_get0_type_name(pkey));
                return buf;
        }
        /* A damaged key would sign garbage: its parts must belong together. */
        ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
        ok = ctx && EVP_PKEY_check(ctx) == 1;
        EVP_PKEY_CTX_free(ctx);
        return ok ? NULL : "an inconsistent key (its parts do not belong together)";
}

/*
 * The one unencrypted private key of a PEM file, RSA (1024..4096 bits) or
 * Ed25519.  Everything read is wiped.  On failure a sentence in why that
 * names the file and never quotes it.
 */
static int pem_private_key(const char *path, EVP_PKEY **ret, char *why, size_t whylen)
{
        char *text = NULL, reason[160];
        const char *bad = NULL;
        EVP_PKEY *pkey = NULL;
        size_t text_len = 0;
        unsigned keys = 0;
        bool encrypted = false, other = false, malformed = false;
        BIO *bio;

        if (readfile(path, KEY_FILE_MAX, 0, &text, &text_len, why, whylen) < 0)
                return -1;
        bio = BIO_new_mem_buf(text, (int) text_len);
        while (bio) {
                char *name = NULL, *header = NULL;
                unsigned char *data = NULL;
                long len = 0;

                /* PEM_FLAG_SECURE: its copies of the base64 text are wiped too. */
                if (!PEM_read_bio_ex(bio, &name, &header, &data, &len, PEM_FLAG_SECURE | PEM_FLAG_EAY_COMPATIBLE)) {
                        unsigned long e = ERR_peek_last_error();

                        /* No further BEGIN line is the normal end. */
                        if (!(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE))
                                malformed = true;
                        break;
                }
                if (strcmp(name, PEM_STRING_PKCS8) == 0 ||
                    ((strcmp(name, PEM_STRING_PKCS8INF) == 0 || strcmp(name, PEM_STRING_RSA) == 0) &&
                     strstr(header, "ENCRYPTED")))
                        encrypted = true;
                else if (strcmp(name, PEM_STRING_PKCS8INF) == 0 || strcmp(name, PEM_STRING_RSA) == 0) {
                        if (++keys == 1 && !(pkey = der_private_key(name, data, len)))
                                malformed = true;
                } else if (strstr(name, "PRIVATE KEY"))
                        other = true;
                OPENSSL_secure_free(name);
                OPENSSL_secure_free(header);
                OPENSSL_secure_clear_free(data, (size_t) (len > 0 ? len : 0));
        }
        BIO_free(bio);
        ERR_clear_error();
        readfile_free(text, text_len);

        if (encrypted)
                bad = "the key is encrypted; decrypt it to a private file first (openssl pkey), import that, "
                      "then remove it";
        else if (malformed)
                bad = "malformed PEM (a damaged block, or not a valid PKCS#8 or PKCS#1 private key)";
        else if (keys > 1)
                bad = "more than one private key in the file";
        else if (keys == 0 && other)
                bad = "a kind of private key DKIM does not use; DKIM keys are RSA or Ed25519";
        else if (keys == 0)
                bad = "no PEM private key (BEGIN PRIVATE KEY or BEGIN RSA PRIVATE KEY)";
        else if (!pkey)
                bad = "malformed private key";
        else
                bad = key_unsuitable(pkey, reason, sizeof(reason));
        if (bad) {
                snprintf(why, whylen, "%s: %s", path, bad);
                EVP_PKEY_free(pkey);
                return -1;
        }
        *ret = pkey;
        return 0;
}

/* ---- init-token, keygen, dns-record ---- */

static int cmd_init_token(const struct options *o)
{
        char so_pin[PIN_MAX] = { 0 }, pin[PIN_MAX] = { 0 }, pin_path[4096];
        size_t so_len = 0, pin_len = 0;
        struct config *c = NULL;
        int r, status = 0;

        if (!o->so_pin_file)
                return usage_error("init-token needs --so-pin-file FILE");
        if (load_config(o, &c))
                return EXIT_FAIL;
        if (config_pin_path(c, pin_path, sizeof(pin_path)) < 0) {
                status = die("no user PIN: set [token] pin_file in %s", c->path);
        } else if (read_pin(o->so_pin_file, so_pin, &so_len) < 0) {
                status = die("cannot read an SO PIN from %s", o->so_pin_file);
        } else if (read_pin(pin_path, pin, &pin_len) < 0) {
                status = die("cannot read a user PIN from %s", pin_path);
        } else {
                r = hsm_init_token(c->module, c->token_label, so_pin, so_len, pin, pin_len);
                if (r < 0)
                        status = die("initializing token '%s' in %s: %s", c->token_label, c->module,
                                     dkimsign_strerror(r));
                else
                        printf("initialized token '%s'\n", c->token_label);
        }
        OPENSSL_cleanse(so_pin, sizeof(so_pin));
        OPENSSL_cleanse(pin, sizeof(pin));
        config_free(c);
        return status;
}

static int cmd_keygen(const struct options *o)
{
        char label[HSM_LABEL_MAX + 1];
        enum hsm_alg alg = HSM_ALG_RSA;
        struct config *c = NULL;
        struct hsm *h = NULL;
        struct hsm_key *k = NULL;
        int r, status;

        status = check_name_options(o, "keygen");
        if (status)
                return status;
        if (o->algorithm && hsm_alg_from_string(o->algorithm, &alg) < 0)
                return usage_error("--algorithm takes rsa or ed25519");
        if (o->bits && (alg != HSM_ALG_RSA || o->bits < HSM_RSA_MIN_BITS || o->bits > HSM_RSA_MAX_BITS))
                return usage_error("--bits is for RSA keys, from %d to %d (RFC 8301)", HSM_RSA_MIN_BITS,
                                   HSM_RSA_MAX_BITS);
        if (make_label(o->selector, o->domain, label, sizeof(label)) || open_all(o, &c, &h))
                return EXIT_FAIL;
        r = hsm_generate(h, label, alg, o->bits, &k);
        if (r == DKIMSIGN_E_EXISTS)
                status = die("a key named %s already exists on the token; choose another selector", label);
        else if (r < 0)
                status = die("generating %s key %s: %s (%s)", hsm_alg_name(alg), label, dkimsign_strerror(r),
                             hsm_ckr_name(hsm_last_ckr()));
        else {
                printf("generated %s %u-bit key %s on token '%s'\n", hsm_alg_name(alg), k->bits, label,
                       c->token_label);
                printf("publish this record, then sign:\n");
                status = print_record(k, label);
        }
        hsm_key_free(k);
        hsm_close(h);
        config_free(c);
        return status;
}

/* The key S._domainkey.D named by --domain and --selector, on an open token. */
static int find_named(const struct config *c, struct hsm *h, const char *label, struct hsm_key **ret)
{
        int r = hsm_find(h, label, ret);

        if (r == DKIMSIGN_E_NO_KEY)
                return die("no key named %s on token '%s'", label, c->token_label);
        if (r == DKIMSIGN_E_EXISTS)
                return die("several keys are named %s on token '%s'; dkimsignctl will not guess", label,
                           c->token_label);
        if (r < 0)
                return die("finding key %s: %s", label, dkimsign_strerror(r));
        return 0;
}

static int cmd_dns_record(const struct options *o)
{
        char label[HSM_LABEL_MAX + 1];
        struct config *c = NULL;
        struct hsm *h = NULL;
        struct hsm_key *k = NULL;
        int status;

        status = check_name_options(o, "dns-record");
        if (status)
                return status;
        if (make_label(o->selector, o->domain, label, sizeof(label)) || open_all(o, &c, &h))
                return EXIT_FAIL;
        status = find_named(c, h, label, &k);
        if (status == 0)
                status = print_record(k, label);
        hsm_key_free(k);
        hsm_close(h);
        config_free(c);
        return status;
}

/* ---- list ---- */

/* A lifecycle time as JSON: "YYYY-MM-DDTHH:MM:SSZ" or null. */
static void json_time(int64_t t)
{
        char buf[24];

        if (!t) {
                fputs("null", stdout);
                return;
        }
        keystate_utc(t, buf);
        ctl_json_string(buf);
}

static void list_json(const struct keytab *t, const struct ctl_key_life *life, char (*fps)[FINGERPRINT_SIZE])
{
        printf("[");
        for (size_t i = 0; i < t->count; i++) {
                const struct signer_key *k = &t->keys[i];
                const struct ctl_key_life *l = &life[i];

                printf("%s\n  {\"domain\": ", i ? "," : "");
                ctl_json_string(k->domain);
                printf(", \"selector\": ");
                ctl_json_string(k->selector);
                printf(", \"algorithm\": \"%s\", \"bits\": %u, \"state\": \"%s\", \"unpublished_signing\": %s",
                       hsm_alg_name(k->key->alg), k->key->bits, key_state_name(l->state),
                       l->unpublished ? "true" : "false");
                printf(", \"first_seen\": ");
                json_time(l->seen);
                printf(", \"active_since\": ");
                json_time(l->active);
                printf(", \"signs_from\": ");
                json_time(l->signs_from);
                printf(", \"retires\": ");
                json_time(l->retires);
                printf(", \"created\": ");
                json_date(k->key->created);
                printf(", \"retired\": ");
                json_date(k->key->retired);
                printf(", \"origin\": \"%s\", \"fingerprint\": ", key_generated(k->key) ? "generated" : "imported");
                ctl_json_string(fps[i]);
                printf(", \"local\": %s, \"always_sensitive\": %s, \"never_extractable\": %s}",
                       k->key->local ? "true" : "false", k->key->always_sensitive ? "true" : "false",
                       k->key->never_extractable ? "true" : "false");
        }
        printf("%s]\n", t->count ? "\n" : "");
}

/* One line under the table for each key that is not retired: what the
 * lifecycle says about it, and when it was first seen in DNS. */
static void list_life_notes(const struct keytab *t, const struct ctl_key_life *life)
{
        bool header = false;

        for (size_t i = 0; i < t->count; i++) {
                const struct ctl_key_life *l = &life[i];
                char seen[24] = "not yet", a[24], b[24];

                if (l->state == KEY_RETIRED)
                        continue;
                if (!header) {
                        printf("\nDNS lifecycle (first seen = when dkimsignd first saw the record in DNS):\n");
                        header = true;
                }
                if (l->seen)
                        keystate_utc(l->seen, seen);
                printf("  %s._domainkey.%s: ", t->keys[i].selector, t->keys[i].domain);
                if (l->unpublished) {
                        printf("signs unpublished (unpublished = sign), first seen %s\n", seen);
                } else if (l->state == KEY_ACTIVE && l->retires) {
                        keystate_utc(l->active, a);
                        keystate_utc(l->retires, b);
                        printf("active since %s, first seen %s; a newer key is active: retires %s\n", a, seen, b);
                } else if (l->state == KEY_ACTIVE) {
                        keystate_utc(l->active, a);
                        printf("active since %s, first seen %s\n", a, seen);
                } else if (l->state == KEY_PUBLISHED) {
                        keystate_utc(l->signs_from, a);
                        printf("published, first seen %s; signs from %s\n", seen, a);
                } else {
                        printf("pending: its record has not been seen in DNS yet (dkimsignctl dns-record)\n");
                }
        }
}

static void list_table(const struct keytab *t, const struct ctl_key_life *life, char (*fps)[FINGERPRINT_SIZE])
{
        int dw = (int) strlen("DOMAIN"), sw = (int) strlen("SELECTOR");

        for (size_t i = 0; i < t->count; i++) {
                if ((int) strlen(t->keys[i].domain) > dw)
                        dw = (int) strlen(t->keys[i].domain);
                if ((int) strlen(t->keys[i].selector) > sw)
                        sw = (int) strlen(t->keys[i].selector);
        }
        printf("%-*s %-*s %-9s %4s %-9s %-10s %-9s %s\n", dw, "DOMAIN", sw, "SELECTOR", "ALG", "BITS", "STATE",
               "CREATED", "ORIGIN", "FINGERPRINT");
        for (size_t i = 0; i < t->count; i++) {
                const struct signer_key *k = &t->keys[i];
                char created[11];

                printf("%-*s %-*s %-9s %4u %-9s %-10s %-9s %s\n", dw, k->domain, sw, k->selector,
                       hsm_alg_name(k->key->alg), k->key->bits, key_state_name(life[i].state),
                       k->key->created[0] ? date_show(k->key->created, created) : "-",
                       key_generated(k->key) ? "generated" : "imported", fps[i]);
        }
        list_life_notes(t, life);
}

/* The token's keys with their lifecycle, as list and refresh show them. */
struct key_listing {
        struct config *c;
        struct hsm *h;
        struct keytab *t;
        struct keyreg *reg;
        struct ctl_key_life *life;   /* one per key, from key_listing_lives */
};

/* Open the configuration and token, load the keys and their states.
 * 0, or the exit status after saying why (free l with key_listing_close
 * either way). */
static int key_listing_open(const struct options *o, struct key_listing *l)
{
        char why[1024];
        int r;

        *l = (struct key_listing) { 0 };
        if (open_all(o, &l->c, &l->h))
                return EXIT_FAIL;
        r = keytab_load(l->h, &l->t);
        if (r < 0)
                return die("listing keys: %s", dkimsign_strerror(r));
        if (ctl_lifecycle_attach(l->c, l->t, &l->reg, why, sizeof(why)) < 0)
                return die("%s", why);
        return 0;
}

/* Each key's lifecycle as of now, into l->life. */
static int key_listing_lives(struct key_listing *l)
{
        int64_t now = (int64_t) time(NULL);

        free(l->life);
        l->life = calloc(l->t->count ? l->t->count : 1, sizeof(*l->life));
        if (!l->life)
                return die("out of memory");
        for (size_t i = 0; i < l->t->count; i++)
                ctl_key_life(l->t, l->c, i, now, &l->life[i]);
        return 0;
}

static void key_listing_close(struct key_listing *l)
{
        free(l->life);
        keytab_free(l->t);
        keyreg_free(l->reg);
        hsm_close(l->h);
        config_free(l->c);
        *l = (struct key_listing) { 0 };
}

static int cmd_list(const struct options *o)
{
        char (*fps)[FINGERPRINT_SIZE] = NULL;
        struct key_listing l;
        int status = key_listing_open(o, &l);

        if (status == 0)
                status = key_listing_lives(&l);
        if (status)
                goto out;
        fps = calloc(l.t->count ? l.t->count : 1, sizeof(*fps));
        if (!fps) {
                status = die("out of memory");
                goto out;
        }
        for (size_t i = 0; i < l.t->count; i++)
                if (fingerprint(l.t->keys[i].key->pubkey, fps[i]) < 0) {
                        status = die("fingerprint of %s._domainkey.%s: cannot encode its public key",
                                     l.t->keys[i].selector, l.t->keys[i].domain);
                        goto out;
                }
        if (o->json)
                list_json(l.t, l.life, fps);
        else
                list_table(l.t, l.life, fps);
out:
        free(fps);
        key_listing_close(&l);
        return status;
}

/* ---- import ---- */

static int import_failed(int r, const char *label)
{
        if (r == DKIMSIGN_E_EXISTS)
                return die("a key named %s already exists on the token; choose another selector", label);
        return die("importing %s: %s (%s)", label, dkimsign_strerror(r), hsm_ckr_name(hsm_last_ckr()));
}

/* An imported key usually has its record published already (OpenDKIM
 * signed with it): when DNS shows it now, it is active at once, so a
 * migration never stops a domain's mail for publish_wait. */
static void import_lifecycle(const struct config *c, const char *label, EVP_PKEY *pub)
{
        char why[1024];
        int r = ctl_activate_if_published(c, label, pub, why, sizeof(why));

        if (r == 1)
                printf("DNS already shows the record of %s: the key is active at once (dkimsignd signs with it "
                       "from its next reload)\n", label);
        else if (r == 0)
                printf("%s is pending (%s): it signs once dkimsignd has seen its record for publish_wait\n", label,
                       why);
        else
                ctl_report(0, "warning: the state of %s was not recorded (%s); it starts pending",
                           label, why);
}

static int cmd_import(const struct options *o)
{
        char label[HSM_LABEL_MAX + 1], why[512];
        struct config *c = NULL;
        struct hsm *h = NULL;
        struct hsm_key *k = NULL;
        EVP_PKEY *pkey = NULL;
        int r, status;

        status = check_name_options(o, "import");
        if (status)
                return status;
        if (make_label(o->selector, o->domain, label, sizeof(label)))
                return EXIT_FAIL;
        /* The file first: a bad file never needs the token. */
        if (pem_private_key(o->args[0], &pkey, why, sizeof(why)) < 0)
                return die("%s", why);
        if (open_all(o, &c, &h)) {
                EVP_PKEY_free(pkey);
                return EXIT_FAIL;
        }
        r = hsm_import(h, label, pkey, &k);
        if (r < 0)
                status = import_failed(r, label);
        else {
                printf("imported %s %u-bit key %s into token '%s' (listed as imported: it was not made there)\n",
                       hsm_alg_name(k->alg), k->bits, label, c->token_label);
                printf("%s is no longer needed: remove it (shred -u)\n", o->args[0]);
                printf("its DNS record (unchanged if it is already published):\n");
                status = print_record(k, label);
                if (status == 0)
                        import_lifecycle(c, label, k->pubkey);
        }
        EVP_PKEY_free(pkey); /* clears the private parts */
        hsm_key_free(k);
        hsm_close(h);
        config_free(c);
        return status;
}

/* ---- import-opendkim ---- */

/* One KeyTable entry. */
struct okey {
        unsigned line;
        char *name;
        char domain[DKIM_DOMAIN_SIZE];
        char selector[DKIM_SELECTOR_MAX + 1];
        char *path;
        char label[HSM_LABEL_MAX + 1];
        EVP_PKEY *pkey;          /* owned; NULL when its file is unusable */
        struct hsm_key *done;    /* once imported */
};

/* One [domain] section made from SigningTable lines. */
struct osection {
        char domain[DKIM_DOMAIN_SIZE];
        const char *key_domain;  /* borrowed from a key; NULL: the section's own domain */
        bool subdomains;         /* a pattern covered the subdomains */
        bool exact;              /* a pattern covered the domain itself */
        size_t keys[SECTION_KEYS_MAX];
        size_t nkeys;
        char note[2048];         /* for the admin, printed as comment lines */
        char from[2048];         /* the SigningTable lines, as comment lines */
};

struct migration {
        const char *keytable;
        const char *signingtable;
        struct okey *keys;
        size_t nkeys;
        struct osection *sections;
        size_t nsections;
        unsigned problems;
};

static void problem(struct migration *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(struct migration *m, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        ctl_vreport(0, fmt, ap);
        va_end(ap);
        m->problems++;
}

static void migration_free(struct migration *m)
{
        for (size_t i = 0; i < m->nkeys; i++) {
                free(m->keys[i].name);
                free(m->keys[i].path);
                EVP_PKEY_free(m->keys[i].pkey);
                hsm_key_free(m->keys[i].done);
        }
        free(m->keys);
        free(m->sections);
}

/* OpenDKIM names a data set "file:PATH" or "refile:PATH" (or a database
 * of some kind); only flat files can be read here. */
static int table_path(const char *arg, const char **ret)
{
        static const char *const databases[] = { "db:", "dsn:", "ldap:", "ldaps:", "ldapi:", "lua:",
                                                 "memcache:", "mdb:", "erlang:", "csl:", "redis:" };

        if (strncmp(arg, "refile:", 7) == 0)
                arg += 7;
        else if (strncmp(arg, "file:", 5) == 0)
                arg += 5;
        for (size_t i = 0; i < sizeof(databases) / sizeof(databases[0]); i++)
                if (strncmp(arg, databases[i], strlen(databases[i])) == 0)
                        return usage_error("'%s': only flat-file tables (file: or refile:) can be read; "
                                           "export the table to a file first", databases[i]);
        *ret = arg;
        return 0;
}

/* Split a table line into its first field and the rest, after removing the
 * comment ('#' to the end) and surrounding blanks.  Returns false for a
 * blank line. */
static bool table_fields(char *line, char **ret_first, char **ret_rest)
{
        char *p, *end;

        p = strchr(line, '#');
        if (p)
                *p = '\0';
        p = line + strspn(line, " \t\r");
        end = p + strlen(p);
        while (end > p && strchr(" \t\r", end[-1]))
                *--end = '\0';
        if (!*p)
                return false;
        *ret_first = p;
        p += strcspn(p, " \t");
        if (*p)
                *p++ = '\0';
        *ret_rest = p + strspn(p, " \t");
        return true;
}

/* Call fn for every non-blank line of a table file. */
static int table_read(struct migration *m, const char *path,
                      void (*fn)(struct migration *m, unsigned line, char *first, char *rest))
{
        char *text = NULL, *line, *save = NULL, why[512];
        size_t len = 0;
        unsigned n = 0;

        if (readfile(path, TABLE_FILE_MAX, 0, &text, &len, why, sizeof(why)) < 0) {
                problem(m, "%s", why);
                return -1;
        }
        if (memchr(text, '\0', len)) {
                problem(m, "%s: not a text file", path);
                readfile_free(text, len);
                return -1;
        }
        /* strtok_r would merge empty lines and so shift the line numbers. */
        for (line = text; line; line = save) {
                char *first, *rest;

                save = strchr(line, '\n');
                if (save)
                        *save++ = '\0';
                n++;
                if (table_fields(line, &first, &rest))
                        fn(m, n, first, rest);
        }
        readfile_free(text, len);
        return 0;
}

static struct okey *key_by_name(struct migration *m, const char *name)
{
        for (size_t i = 0; i < m->nkeys; i++)
                if (strcmp(m->keys[i].name, name) == 0)
                        return &m->keys[i];
        return NULL;
}

/* "NAME DOMAIN:SELECTOR:KEYFILE" */
static void keytable_line(struct migration *m, unsigned line, char *name, char *value)
{
        char *domain = value, *selector, *path, why[512];
        struct okey *k, *all;

        selector = strchr(value, ':');
        path = selector ? strchr(selector + 1, ':') : NULL;
        if (!path || !*name) {
                problem(m, "%s:%u: expected 'NAME DOMAIN:SELECTOR:KEYFILE'", m->keytable, line);
                return;
        }
        *selector++ = '\0';
        *path++ = '\0';
        if (!dkim_domain_is_valid(domain, strlen(domain))) {
                problem(m, "%s:%u: '%s' is not a domain name%s", m->keytable, line, domain,
                        strcmp(domain, "%") == 0 ? " ('%' for any domain is not supported: name each domain)" : "");
                return;
        }
        if (!selector_is_valid(selector)) {
                problem(m, "%s:%u: '%s' is not a valid selector", m->keytable, line, selector);
                return;
        }
        if (!strchr(path, '/')) {
                problem(m, "%s:%u: key data in the table is not supported: put the key in a file and name "
                        "it by its path", m->keytable, line);
                return;
        }
        if (key_by_name(m, name)) {
                problem(m, "%s:%u: the key name '%s' is used twice", m->keytable, line, name);
                return;
        }
        all = realloc(m->keys, (m->nkeys + 1) * sizeof(*m->keys));
        if (!all) {
                problem(m, "out of memory");
                return;
        }
        m->keys = all;
        k = &m->keys[m->nkeys];
        *k = (struct okey) { .line = line };
        k->name = strdup(name);
        k->path = strdup(path);
        if (!k->name || !k->path) {
                free(k->name);
                free(k->path);
                problem(m, "out of memory");
                return;
        }
        m->nkeys++;
        snprintf(k->domain, sizeof(k->domain), "%s", domain);
        snprintf(k->selector, sizeof(k->selector), "%s", selector);
        lowercase(k->domain);
        lowercase(k->selector);
        if (hsm_key_label(k->selector, k->domain, k->label, sizeof(k->label)) < 0) {
                problem(m, "%s:%u: the key name %s._domainkey.%s is too long", m->keytable, line, k->selector,
                        k->domain);
                return;
        }
        for (size_t i = 0; i + 1 < m->nkeys; i++)
                if (strcmp(m->keys[i].label, k->label) == 0) {
                        problem(m, "%s:%u: %s is also line %u's key", m->keytable, line, k->label,
                                m->keys[i].line);
                        return;
                }
        if (pem_private_key(k->path, &k->pkey, why, sizeof(why)) < 0)
                problem(m, "%s:%u: %s", m->keytable, line, why);
}

/* The section domain a SigningTable pattern stands for: "*@D", "@D" or "D"
 * (the domain), "*@*.D", "*.D" or ".D" (its subdomains).  NULL when the
 * pattern selects something dkimsignd can't express. */
static const char *pattern_domain(const char *pattern, bool *ret_sub)
{
        const char *d = pattern;

        if (strncmp(d, "*@", 2) == 0)
                d += 2;
        else if (d[0] == '@')
                d++;
        *ret_sub = false;
        if (strncmp(d, "*.", 2) == 0) {
                d += 2;
                *ret_sub = true;
        } else if (d[0] == '.') {
                d++;
                *ret_sub = true;
        }
        return dkim_domain_is_valid(d, strlen(d)) ? d : NULL;
}

static struct osection *section_get(struct migration *m, const char *domain)
{
        struct osection *all, *s;

        for (size_t i = 0; i < m->nsections; i++)
                if (strcasecmp(m->sections[i].domain, domain) == 0)
                        return &m->sections[i];
        all = realloc(m->sections, (m->nsections + 1) * sizeof(*m->sections));
        if (!all)
                return NULL;
        m->sections = all;
        s = &m->sections[m->nsections++];
        *s = (struct osection) { 0 };
        snprintf(s->domain, sizeof(s->domain), "%s", domain);
        lowercase(s->domain);
        return s;
}

/* Append a whole comment line to buf, or nothing if it does not fit: half
 * a line would run into the section that follows it. */
static void append(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void append(char *buf, size_t size, const char *fmt, ...)
{
        size_t used = strlen(buf);
        char line[1024];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        if (n > 0 && (size_t) n < sizeof(line) && used + (size_t) n < size)
                memcpy(buf + used, line, (size_t) n + 1);
}

/* Add key k to section s, unless it is there already or s has a key of its
 * algorithm: OpenDKIM signs with the first match, dkimsignd with one key per
 * algorithm. */
static void section_add_key(struct migration *m, struct osection *s, struct okey *k, unsigned line)
{
        size_t ki = (size_t) (k - m->keys);

        for (size_t i = 0; i < s->nkeys; i++) {
                const struct okey *o = &m->keys[s->keys[i]];

                if (s->keys[i] == ki)
                        return;
                if (o->pkey && k->pkey && EVP_PKEY_get_id(o->pkey) == EVP_PKEY_get_id(k->pkey)) {
                        append(s->note, sizeof(s->note),
                               "# note: line %u's key %s (selector %s) is left out: the first match, %s, "
                               "has the same algorithm\n",
                               line, k->name, k->selector, o->selector);
                        return;
                }
        }
        if (s->nkeys == SECTION_KEYS_MAX)
                return; /* one per algorithm: the check above fills it first */
        s->keys[s->nkeys++] = ki;
}

/* "PATTERN KEYNAME" */
static void signingtable_line(struct migration *m, unsigned line, char *pattern, char *rest)
{
        const char *domain;
        struct osection *s;
        struct okey *k;
        bool sub;
        char *extra;

        extra = rest + strcspn(rest, " \t");
        if (!*rest || *extra) {
                problem(m, "%s:%u: expected 'PATTERN KEYNAME'", m->signingtable, line);
                return;
        }
        k = key_by_name(m, rest);
        if (!k) {
                problem(m, "%s:%u: no key named '%s' in %s", m->signingtable, line, rest, m->keytable);
                return;
        }
        domain = pattern_domain(pattern, &sub);
        if (!domain) {
                problem(m, "%s:%u: '%s': dkimsignd chooses keys by domain (*@DOMAIN, DOMAIN, *@*.DOMAIN), not "
                        "by sender or other patterns", m->signingtable, line, pattern);
                return;
        }
        s = section_get(m, domain);
        if (!s) {
                problem(m, "out of memory");
                return;
        }
        /* One section, one d= domain: its own, or one key_domain. */
        if (s->nkeys > 0 && strcmp(s->key_domain ? s->key_domain : s->domain, k->domain) != 0) {
                problem(m, "%s:%u: '%s' would sign %s's mail with keys of two domains", m->signingtable, line,
                        pattern, s->domain);
                return;
        }
        if (s->nkeys == 0 && strcmp(s->domain, k->domain) != 0)
                s->key_domain = k->domain;
        if (sub)
                s->subdomains = true;
        else
                s->exact = true;
        append(s->from, sizeof(s->from), "# %s line %u: %s %s\n", m->signingtable, line, pattern, k->name);
        section_add_key(m, s, k, line);
}

static void section_print(FILE *f, const struct migration *m, const struct osection *s)
{
        fputs(s->from, f);
        fputs(s->note, f);
        if (s->subdomains && !s->exact)
                fprintf(f, "# note: OpenDKIM signed only the subdomains of %s; this section signs %s too\n",
                        s->domain, s->domain);
        fprintf(f, "[domain %s]\nselectors = ", s->domain);
        for (size_t i = 0; i < s->nkeys; i++)
                fprintf(f, "%s%s", i ? ", " : "", m->keys[s->keys[i]].selector);
        fputc('\n', f);
        if (s->key_domain)
                fprintf(f, "key_domain = %s\n", s->key_domain);
        if (s->subdomains)
                fprintf(f, "subdomains = yes\n");
        fputc('\n', f);
}

/* Every label must be free on the token: no private key of that name at
 * all, even one hsm_find() would not use (an Ed25519 key without its
 * public half). */
static void check_token(struct migration *m, struct hsm *h, const char *token)
{
        struct hsm_key **all = NULL;
        size_t n = 0;
        int r = hsm_list(h, &all, &n);

        if (r < 0) {
                problem(m, "listing the keys on token '%s': %s", token, dkimsign_strerror(r));
                return;
        }
        for (size_t i = 0; i < m->nkeys; i++)
                for (size_t j = 0; j < n; j++)
                        if (strcasecmp(all[j]->label, m->keys[i].label) == 0) {
                                problem(m, "%s:%u: a key named %s already exists on token '%s'", m->keytable,
                                        m->keys[i].line, m->keys[i].label, token);
                                break;
                        }
        hsm_key_list_free(all, n);
}

/* Remove what this run imported: the token is left as it was found. */
static void rollback(struct migration *m, struct hsm *h)
{
        for (size_t i = m->nkeys; i-- > 0;) {
                if (!m->keys[i].done)
                        continue;
                if (hsm_destroy(h, m->keys[i].done) < 0)
                        die("could not remove %s again: remove it with dkimsignctl destroy", m->keys[i].label);
                m->keys[i].done = hsm_key_free(m->keys[i].done);
        }
}

static int write_sections(const struct migration *m, const char *path)
{
        FILE *f;
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);

        if (fd < 0)
                return die("cannot create %s: %s", path, strerror(errno));
        f = fdopen(fd, "w");
        if (!f) {
                close(fd);
                unlink(path);
                return die("cannot write %s: %s", path, strerror(errno));
        }
        fprintf(f, "# dkimsignd.conf sections made by dkimsignctl import-opendkim from %s\n\n", m->signingtable);
        for (size_t i = 0; i < m->nsections; i++)
                section_print(f, m, &m->sections[i]);
        if (fflush(f) != 0 || ferror(f) || fsync(fd) < 0) {
                fclose(f);
                unlink(path);
                return die("cannot write %s: %s", path, strerror(errno));
        }
        fclose(f);
        return 0;
}

static int migrate(struct migration *m, const struct options *o, const struct config *c, struct hsm *h)
{
        int r;

        if (o->config_out && write_sections(m, o->config_out))
                return EXIT_FAIL;
        for (size_t i = 0; i < m->nkeys; i++) {
                r = hsm_import(h, m->keys[i].label, m->keys[i].pkey, &m->keys[i].done);
                if (r < 0) {
                        import_failed(r, m->keys[i].label);
                        rollback(m, h);
                        if (o->config_out)
                                unlink(o->config_out);
                        return die("nothing was imported");
                }
        }
        for (size_t i = 0; i < m->nkeys; i++) {
                const struct okey *k = &m->keys[i];

                printf("imported %s: %s %u-bit key %s from %s\n", k->name, hsm_alg_name(k->done->alg), k->done->bits,
                       k->label, k->path);
        }
        for (size_t i = 0; i < m->nkeys; i++)
                import_lifecycle(c, m->keys[i].label, m->keys[i].done->pubkey);
        printf("%zu key%s imported into token '%s'; their DNS records stay as published (dkimsignctl "
               "dns-record prints them)\n",
               m->nkeys, m->nkeys == 1 ? "" : "s", c->token_label);
        if (!m->signingtable)
                return 0;
        if (o->config_out)
                printf("wrote %zu [domain] section%s to %s; add them to %s:\n\n", m->nsections,
                       m->nsections == 1 ? "" : "s", o->config_out, c->path);
        else
                printf("add these sections to %s:\n\n", c->path);
        for (size_t i = 0; i < m->nsections; i++)
                section_print(stdout, m, &m->sections[i]);
        return 0;
}

static int cmd_import_opendkim(const struct options *o)
{
        struct migration m = { 0 };
        struct config *c = NULL;
        struct hsm *h = NULL;
        int status;

        if (table_path(o->args[0], &m.keytable) ||
            (o->nargs > 1 && table_path(o->args[1], &m.signingtable)))
                return EXIT_USAGE;
        if (o->config_out && !m.signingtable)
                return usage_error("--config-out needs a SIGNINGTABLE to make the sections from");

        /* Check everything before changing anything. */
        if (table_read(&m, m.keytable, keytable_line) == 0 && m.nkeys == 0)
                problem(&m, "%s: no keys", m.keytable);
        if (m.signingtable)
                table_read(&m, m.signingtable, signingtable_line);
        if (o->config_out && access(o->config_out, F_OK) == 0)
                problem(&m, "%s exists; dkimsignctl does not overwrite it", o->config_out);
        status = open_all(o, &c, &h);
        if (status == 0) {
                check_token(&m, h, c->token_label);
                if (m.problems)
                        status = die("%u problem%s; nothing was imported", m.problems, m.problems == 1 ? "" : "s");
                else
                        status = migrate(&m, o, c, h);
        }
        migration_free(&m);
        hsm_close(h);
        config_free(c);
        return status;
}

/* ---- refresh ---- */

static int cmd_refresh(const struct options *o)
{
        char why[1024];
        struct key_listing l;
        int status = key_listing_open(o, &l);

        if (status)
                goto out;
        /* The watcher's own lines (what moved, what DNS showed) go to stderr. */
        log_init("dkimsignctl", LOG_INFO);
        if (ctl_refresh(l.c, l.reg, why, sizeof(why)) < 0) {
                status = die("%s", why);
                goto out;
        }
        status = key_listing_lives(&l);
        if (status)
                goto out;
        printf("checked %zu key(s) in DNS; states written to %s/%s\n", l.t->count, l.c->state_dir, KEYSTATE_FILE);
        list_life_notes(l.t, l.life);
out:
        key_listing_close(&l);
        return status;
}

/* ---- rotate ---- */

/* The selector of the domain's newest key of alg that is not retired, for
 * the message (NULL if none). */
static const char *current_selector(const struct keytab *t, const char *domain, enum hsm_alg alg)
{
        const char *sel = NULL;
        int64_t best = -1, now = (int64_t) time(NULL);

        for (size_t i = 0; i < t->count; i++) {
                int64_t since = 0;

                if (strcmp(t->keys[i].domain, domain) != 0 || t->keys[i].key->alg != alg ||
                    keytab_key_state(t, i, now, &since, NULL) == KEY_RETIRED)
                        continue;
                if (since >= best) {
                        best = since;
                        sel = t->keys[i].selector;
                }
        }
        return sel;
}

static int cmd_rotate(const struct options *o)
{
        char domain[DKIM_DOMAIN_SIZE], selector[DKIM_SELECTOR_MAX + 1], label[HSM_LABEL_MAX + 1], why[1024];
        char wait[24], grace[24];
        enum hsm_alg alg = HSM_ALG_RSA;
        const struct config_domain *d;
        const char *old;
        struct config *c = NULL;
        struct hsm *h = NULL;
        struct keytab *t = NULL;
        struct keyreg *reg = NULL;
        struct hsm_key *k = NULL;
        int r, status = 0;

        if (!o->domain || !dkim_domain_is_valid(o->domain, strlen(o->domain)))
                return usage_error("rotate needs --domain D, a valid domain name");
        if (o->selector && !selector_is_valid(o->selector))
                return usage_error("'%s' is not a valid selector (letters, digits, '-', dot-separated)", o->selector);
        if (o->algorithm && hsm_alg_from_string(o->algorithm, &alg) < 0)
                return usage_error("--algorithm takes rsa or ed25519");
        if (o->bits && (alg != HSM_ALG_RSA || o->bits < HSM_RSA_MIN_BITS || o->bits > HSM_RSA_MAX_BITS))
                return usage_error("--bits is for RSA keys, from %d to %d (RFC 8301)", HSM_RSA_MIN_BITS,
                                   HSM_RSA_MAX_BITS);
        snprintf(domain, sizeof(domain), "%s", o->domain);
        lowercase(domain);
        if (open_all(o, &c, &h))
                return EXIT_FAIL;
        r = keytab_load(h, &t);
        if (r < 0) {
                status = die("listing keys: %s", dkimsign_strerror(r));
                goto out;
        }
        if (ctl_lifecycle_attach(c, t, &reg, why, sizeof(why)) < 0) {
                status = die("%s", why);
                goto out;
        }
        if (o->selector) {
                snprintf(selector, sizeof(selector), "%s", o->selector);
                lowercase(selector);
        } else if (ctl_next_selector(t, domain, alg, selector, sizeof(selector)) < 0) {
                status = die("no free selector for today; name one with --selector");
                goto out;
        }
        if (make_label(selector, domain, label, sizeof(label))) {
                status = EXIT_FAIL;
                goto out;
        }
        old = current_selector(t, domain, alg);
        r = hsm_generate(h, label, alg, o->bits, &k);
        if (r == DKIMSIGN_E_EXISTS) {
                status = die("a key named %s already exists on the token; choose another selector", label);
                goto out;
        }
        if (r < 0) {
                status = die("generating %s key %s: %s (%s)", hsm_alg_name(alg), label, dkimsign_strerror(r),
                             hsm_ckr_name(hsm_last_ckr()));
                goto out;
        }
        printf("generated %s %u-bit key %s on token '%s': pending\n", hsm_alg_name(alg), k->bits, label,
               c->token_label);
        ctl_duration(config_publish_wait(c, domain), wait);
        ctl_duration(config_retire_grace(c, domain), grace);
        printf("publish this record; dkimsignd signs with the key once DNS has shown it for publish_wait (%s)", wait);
        if (old)
                printf(", and %s retires retire_grace (%s) after that", old, grace);
        printf(":\n");
        status = print_record(k, label);
        d = config_find_domain(c, domain);
        if (d && d->nselectors)
                printf("note: [domain %s] names its selectors: add %s to 'selectors' there, or dkimsignd will "
                       "not use it\n", domain, selector);
        printf("run dkimsignctl reload so that the running dkimsignd watches the new key\n");
out:
        hsm_key_free(k);
        keytab_free(t);
        keyreg_free(reg);
        hsm_close(h);
        config_free(c);
        return status;
}

/* ---- retire, destroy ---- */

/* How many active keys domain has left on the token (-1 if unknown). */
static int active_keys(struct hsm *h, const char *domain)
{
        struct keytab *t = NULL;
        int n = 0;

        if (keytab_load(h, &t) < 0)
                return -1;
        for (size_t i = 0; i < t->count; i++)
                if (strcmp(t->keys[i].domain, domain) == 0 && !t->keys[i].key->retired[0])
                        n++;
        keytab_free(t);
        return n;
}

static int cmd_retire(const struct options *o)
{
        char label[HSM_LABEL_MAX + 1], date[11], domain[DKIM_DOMAIN_SIZE];
        struct config *c = NULL;
        struct hsm *h = NULL;
        struct hsm_key *k = NULL, *after = NULL;
        int r, status;

        status = check_name_options(o, "retire");
        if (status)
                return status;
        if (make_label(o->selector, o->domain, label, sizeof(label)) || open_all(o, &c, &h))
                return EXIT_FAIL;
        snprintf(domain, sizeof(domain), "%s", o->domain);
        lowercase(domain);
        status = find_named(c, h, label, &k);
        if (status)
                goto out;
        r = hsm_retire(h, k);
        if (r == DKIMSIGN_E_EXISTS) {
                printf("key %s was retired on %s already; nothing changed\n", label, date_show(k->retired, date));
                goto out;
        }
        if (r == DKIMSIGN_E_FORMAT) {
                status = die("key %s has no public key object on the token to record its state on", label);
                goto out;
        }
        if (r < 0) {
                status = die("retiring %s: %s (%s)", label, dkimsign_strerror(r), hsm_ckr_name(hsm_last_ckr()));
                goto out;
        }
        r = hsm_find(h, label, &after);
        printf("retired key %s on %s: dkimsignd stops signing with it at its next reload or restart\n", label,
               r == 0 ? date_show(after->retired, date) : "today");
        printf("keep its DNS record published for a few days, until mail signed with it has been delivered\n");
        if (active_keys(h, domain) == 0)
                printf("note: %s has no active key left: dkimsignd will refuse to sign its mail\n", domain);
out:
        hsm_key_free(after);
        hsm_key_free(k);
        hsm_close(h);
        config_free(c);
        return status;
}

/* Ask on the terminal: 1 yes, 0 no, -1 not interactive. */
static int confirm_destroy(const char *label, const struct hsm_key *k)
{
        char answer[16] = { 0 };
        FILE *tty;
        size_t n;

        if (!isatty(STDIN_FILENO))
                return -1;
        tty = fopen("/dev/tty", "r+e");
        if (!tty)
                return -1;
        if (!k->retired[0])
                fprintf(tty, "key %s is active: dkimsignd signs with it\n", label);
        fprintf(tty, "destroy key %s? This cannot be undone [y/N] ", label);
        fflush(tty);
        if (!fgets(answer, sizeof(answer), tty))
                answer[0] = '\0';
        fclose(tty);
        n = strcspn(answer, "\r\n");
        answer[n] = '\0';
        return strcasecmp(answer, "y") == 0 || strcasecmp(answer, "yes") == 0;
}

static int cmd_destroy(const struct options *o)
{
        char label[HSM_LABEL_MAX + 1];
        struct config *c = NULL;
        struct hsm *h = NULL;
        struct hsm_key *k = NULL;
        int r, status;

        status = check_name_options(o, "destroy");
        if (status)
                return status;
        if (make_label(o->selector, o->domain, label, sizeof(label)) || open_all(o, &c, &h))
                return EXIT_FAIL;
        status = find_named(c, h, label, &k);
        if (status)
                goto out;
        if (!o->yes) {
                r = confirm_destroy(label, k);
                if (r < 0) {
                        status = die("destroy asks for confirmation on a terminal; to destroy %s without asking, "
                                     "pass --yes", label);
                        goto out;
                }
                if (r == 0) {
                        status = die("not destroyed: %s is still on the token", label);
                        goto out;
                }
        }
        r = hsm_destroy(h, k);
        if (r < 0) {
                status = die("destroying %s: %s (%s)", label, dkimsign_strerror(r), hsm_ckr_name(hsm_last_ckr()));
                goto out;
        }
        printf("destroyed key %s; its DNS record can be removed once dkimsignd has reloaded\n", label);
out:
        hsm_key_free(k);
        hsm_close(h);
        config_free(c);
        return status;
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

static int cmd_status(const struct options *o)
{
        return cmd_daemon(o, MSG_STATUS);
}

static int cmd_reload(const struct options *o)
{
        return cmd_daemon(o, MSG_RELOAD);
}

/* ---- DNS: check and records (ctl-check.c) ---- */

static int cmd_check(const struct options *o)
{
        struct config *c = NULL;
        struct hsm *h = NULL;
        int status;

        if (open_all(o, &c, &h))
                return EXIT_FAIL;
        status = ctl_check(c, h, o->args[0], o->resolver, o->json);
        hsm_close(h);
        config_free(c);
        return status;
}

static int cmd_records(const struct options *o)
{
        struct config *c = NULL;
        struct hsm *h = NULL;
        int status;

        if (open_all(o, &c, &h))
                return EXIT_FAIL;
        status = ctl_records(c, h, o->args[0], o->json);
        hsm_close(h);
        config_free(c);
        return status;
}

/* ---- main ---- */

static const struct command commands[] = {
        { "init-token", cmd_init_token, OPT_SO_PIN_FILE, 0, 0, "--so-pin-file FILE",
          "        initialize the configured token label on a free slot, with the user\n"
          "        PIN from [token] pin_file and the SO PIN from FILE\n" },
        { "keygen", cmd_keygen, OPT_DOMAIN | OPT_SELECTOR | OPT_ALGORITHM | OPT_BITS, 0, 0,
          "--domain D --selector S [--algorithm rsa|ed25519] [--bits N]",
          "        generate a key pair on the token, non-extractable (RSA 2048 bits by\n"
          "        default, 1024 to 4096) and print the DNS record to publish\n" },
        { "list", cmd_list, OPT_JSON, 0, 0, "[--json]",
          "        list the DKIM keys on the token: domain, selector, algorithm, bits,\n"
          "        state (pending, published, active, retired; and when DNS first showed\n"
          "        the record), created, origin (generated or imported), fingerprint\n" },
        { "dns-record", cmd_dns_record, OPT_DOMAIN | OPT_SELECTOR, 0, 0, "--domain D --selector S",
          "        print the TXT record to publish at S._domainkey.D\n" },
        { "import", cmd_import, OPT_DOMAIN | OPT_SELECTOR, 1, 1, "--domain D --selector S FILE",
          "        import an unencrypted PEM private key (PKCS#8 or PKCS#1; RSA or Ed25519)\n"
          "        into the token, for migration\n" },
        { "import-opendkim", cmd_import_opendkim, OPT_CONFIG_OUT, 1, 2,
          "KEYTABLE [SIGNINGTABLE] [--config-out FILE]",
          "        import every key of an OpenDKIM KeyTable, and print (or write to FILE)\n"
          "        the [domain] sections that do what the SigningTable did; all or nothing\n" },
        { "refresh", cmd_refresh, 0, 0, 0, "",
          "        look every key's record up in DNS now and write the key states, as\n"
          "        dkimsignd does every check_interval; for [dns] watch = timer, where a\n"
          "        timer runs it and dkimsignd stays off the network\n" },
        { "rotate", cmd_rotate, OPT_DOMAIN | OPT_SELECTOR | OPT_ALGORITHM | OPT_BITS, 0, 0,
          "--domain D [--algorithm rsa|ed25519] [--selector S] [--bits N]",
          "        generate the domain's next key (selector rYYYYMMDD or eYYYYMMDD by default)\n"
          "        as pending: it signs once DNS has shown its record for publish_wait, and\n"
          "        the older key of its algorithm retires retire_grace later\n" },
        { "retire", cmd_retire, OPT_DOMAIN | OPT_SELECTOR, 0, 0, "--domain D --selector S",
          "        mark the key retired (its end date, on the token): dkimsignd no longer\n"
          "        signs with it; it stays on the token\n" },
        { "destroy", cmd_destroy, OPT_DOMAIN | OPT_SELECTOR | OPT_YES, 0, 0, "--domain D --selector S [--yes]",
          "        destroy the key on the token, after asking on the terminal (or --yes)\n" },
        { "status", cmd_status, 0, 0, 0, "",
          "        the running dkimsignd's figures: keys, sessions, connections, queue depth,\n"
          "        requests signed, errors by kind, reloads (root or the daemon's user)\n" },
        { "reload", cmd_reload, 0, 0, 0, "",
          "        make the running dkimsignd re-read its configuration and keys, without\n"
          "        dropping connections (root or the daemon's user)\n" },
        { "check", cmd_check, OPT_JSON | OPT_RESOLVER, 1, 1, "DOMAIN [--json] [--resolver ADDR]",
          "        check the domain's SPF, the DNS record of each of its keys on the token\n"
          "        and DMARC, with a verdict and the fix for each finding; exit status 0 all\n"
          "        ok, 3 warnings, 4 errors, 5 a lookup failed for now (see docs/dns-check.md)\n" },
        { "records", cmd_records, OPT_JSON, 1, 1, "DOMAIN [--json]",
          "        print the SPF, DKIM and DMARC records to publish for the domain\n" },
};
static const size_t ncommands = sizeof(commands) / sizeof(commands[0]);

static void usage(FILE *f)
{
        fprintf(f,
                "Usage: dkimsignctl [--config FILE] COMMAND [OPTIONS] [ARGS]\n"
                "\n"
                "Manage the DKIM keys that dkimsignd signs with; keys live in the PKCS#11\n"
                "token named in the configuration and never leave it.\n"
                "\n"
                "Commands:\n");
        for (size_t i = 0; i < ncommands; i++)
                fprintf(f, "  %s %s\n%s", commands[i].name, commands[i].synopsis, commands[i].help);
        fprintf(f,
                "\n"
                "Options:\n"
                "  -c, --config FILE   configuration file (default %s)\n"
                "  -h, --help          show this help, or a command's (dkimsignctl COMMAND --help)\n"
                "  -V, --version       show the version\n"
                "\n"
                "The PIN is read from [token] pin_file, or from the systemd credential 'pin'\n"
                "($CREDENTIALS_DIRECTORY/pin); never from the command line.\n"
                "Exit status: 0 success, 1 failure, 2 usage error.  See dkimsignctl(8).\n",
                DKIMSIGN_DEFAULT_CONFIG);
}

static void command_usage(FILE *f, const struct command *c)
{
        fprintf(f, "Usage: dkimsignctl [--config FILE] %s %s\n\n%s", c->name, c->synopsis, c->help);
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "config", required_argument, NULL, 'c' },
                { "domain", required_argument, NULL, 'd' },
                { "selector", required_argument, NULL, 's' },
                { "algorithm", required_argument, NULL, 'a' },
                { "bits", required_argument, NULL, 'b' },
                { "so-pin-file", required_argument, NULL, 'S' },
                { "config-out", required_argument, NULL, 'o' },
                { "resolver", required_argument, NULL, 'R' },
                { "json", no_argument, NULL, 'j' },
                { "yes", no_argument, NULL, 'y' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { 0 },
        };
        struct options o = { .config = DKIMSIGN_DEFAULT_CONFIG };
        const struct command *cmd = NULL;
        bool help = false;
        char *end;
        int opt, status;

        opterr = 0; /* its messages would start with argv[0], not "dkimsignctl: " */
        while ((opt = getopt_long(argc, argv, ":c:d:s:a:b:S:o:R:jyhV", opts, NULL)) != -1) {
                switch (opt) {
                case 'c': o.config = optarg; break;
                case 'd': o.domain = optarg; o.given |= OPT_DOMAIN; break;
                case 's': o.selector = optarg; o.given |= OPT_SELECTOR; break;
                case 'a': o.algorithm = optarg; o.given |= OPT_ALGORITHM; break;
                case 'b':
                        errno = 0;
                        o.bits = (unsigned) strtoul(optarg, &end, 10);
                        if (errno || *end || !*optarg || optarg[0] == '-')
                                return usage_error("--bits takes a number");
                        o.given |= OPT_BITS;
                        break;
                case 'S': o.so_pin_file = optarg; o.given |= OPT_SO_PIN_FILE; break;
                case 'o': o.config_out = optarg; o.given |= OPT_CONFIG_OUT; break;
                case 'R': o.resolver = optarg; o.given |= OPT_RESOLVER; break;
                case 'j': o.json = true; o.given |= OPT_JSON; break;
                case 'y': o.yes = true; o.given |= OPT_YES; break;
                case 'h': help = true; break;
                case 'V': printf("dkimsignctl %s\n", DKIMSIGN_VERSION); return 0;
                case ':': return usage_error("%s needs a value (see dkimsignctl --help)", argv[optind - 1]);
                default:
                        if (optopt)
                                return usage_error("unknown option -%c (see dkimsignctl --help)", optopt);
                        /* Never echo a value: "--pin=1234" must not reach a log. */
                        end = argv[optind - 1];
                        if (strncmp(end, "--pin", 5) == 0 || strncmp(end, "--so-pin=", 9) == 0)
                                return usage_error("PINs are never taken from the command line: set [token] "
                                                   "pin_file, or pass a 'pin' credential");
                        return usage_error("unknown option %.*s (see dkimsignctl --help)", (int) strcspn(end, "="),
                                           end);
                }
        }
        if (optind < argc) {
                for (size_t i = 0; i < ncommands && !cmd; i++)
                        if (strcmp(argv[optind], commands[i].name) == 0)
                                cmd = &commands[i];
                if (!cmd)
                        return usage_error("unknown command '%s' (see dkimsignctl --help)", argv[optind]);
        }
        if (help) {
                if (cmd)
                        command_usage(stdout, cmd);
                else
                        usage(stdout);
                return 0;
        }
        if (!cmd)
                return usage_error("no command given (see dkimsignctl --help)");
        for (size_t i = 0; i < sizeof(opt_names) / sizeof(opt_names[0]); i++)
                if (o.given & ~cmd->opts & (1u << i))
                        return usage_error("%s does not take %s (see dkimsignctl %s --help)", cmd->name,
                                           opt_names[i], cmd->name);
        o.args = argv + optind + 1;
        o.nargs = (size_t) (argc - optind - 1);
        if (o.nargs < cmd->min_args || o.nargs > cmd->max_args) {
                fputs("dkimsignctl: wrong number of arguments; ", stderr);
                fprintf(stderr, "usage: dkimsignctl [--config FILE] %s %s\n", cmd->name, cmd->synopsis);
                return EXIT_USAGE;
        }
        status = cmd->run(&o);
        /* Output that did not reach its reader is a failure too (a full disk, a closed pipe). */
        if (fflush(stdout) != 0 || ferror(stdout)) {
                return die("writing the output: %s", strerror(errno));
        }
        return status;
}
