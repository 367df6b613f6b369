/* SPDX-License-Identifier: MIT */
/*
 * dkimsign-bench: the measurement kernels scripts/bench runs, each for a
 * given time, each printing one JSON line (ops/s, p50, p99):
 *
 *   token    C_Sign on the token through hsm/ (the token's own limit), with the
 *            token object or (--copy) a session copy of the key, as dkimsignd
 *   openssl  raw in-process OpenSSL signing of a SHA-256 digest
 *   sha256   raw OpenSSL SHA-256, MB/s on one core
 *   canon    libdkimsign's body canonicalization + SHA-256, MB/s
 *   client   whole messages signed through dkimsignd by N client threads
 *            (--message may be given several times: used in turn), or sealed
 *            (ARC) with --arc DOMAIN --authserv-id ID [--dns-server ADDR]
 *   populate N Ed25519 keys on the token, one per domain d<i>.<suffix>
 *            (i from --first on),
 *            for the many-domains scenario (not a measurement)
 *
 * Not a test: it measures, scripts/bench compares.
 */
#include <getopt.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "bench-common.h"
#include "dkim/canon.h"
#include "client/dkimsign.h"
#include "hsm/hsm.h"

#define MESSAGES_MAX 256

struct opts {
        const char *mode, *module, *label, *pin_file, *key, *alg, *socket, *message, *canon, *suffix;
        const char *messages[MESSAGES_MAX];
        int nmessages;
        struct dkimsign_arc_options arc;        /* client: seal (ARC) when arc.domain is set */
        int threads;
        bool copy;               /* token: sign with a session copy of the key, as dkimsignd does */
        long domains;
        long first;              /* populate: the first domain's number */
        double seconds;
};

/* ---- token ---- */

struct token_arg {
        struct hsm_session *session;
        struct hsm_key *key;
        uint8_t digest[32];
};

static int token_op(void *p)
{
        struct token_arg *a = p;
        uint8_t sig[HSM_SIG_MAX];
        size_t len;

        a->digest[0]++;
        return hsm_sign(a->session, a->key, a->digest, sig, &len);
}

/* The token and the key.  SoftHSM rewrites its token file on C_Login, so
 * a process that opens the token while another logs in (the two processes
 * of a "2 processes" cell start together) may not see it: a few tries. */
static int token_key_open(const struct opts *o, struct hsm **ret_h, struct hsm_key **ret_k)
{
        int r = 0;

        for (int attempt = 0; attempt < 10; attempt++) {
                if (attempt)
                        nanosleep(&(struct timespec) { .tv_nsec = 50 * 1000 * 1000 }, NULL);
                r = hsm_open(o->module, o->label, ret_h);
                if (r == 0)
                        r = hsm_key_copies(*ret_h, o->copy ? 1 : 0);
                if (r == 0)
                        r = hsm_login_pin_file(*ret_h, o->pin_file);
                if (r == 0)
                        r = hsm_find(*ret_h, o->key, ret_k);
                if (r == 0)
                        return 0;
                *ret_h = hsm_close(*ret_h);
        }
        fprintf(stderr, "bench: token %s, key %s: %s\n", o->label, o->key, dkimsign_strerror(r));
        return r;
}

static int run_token(const struct opts *o)
{
        struct hsm *h = NULL;
        struct hsm_key *k = NULL;
        struct token_arg *args = calloc((size_t) o->threads, sizeof(*args));
        void **ptrs = calloc((size_t) o->threads, sizeof(void *));
        int r;

        if (token_key_open(o, &h, &k) < 0)
                return 1;
        for (int i = 0; i < o->threads; i++) {
                if (hsm_session_open(h, &args[i].session) < 0)
                        return 1;
                args[i].key = k;
                RAND_bytes(args[i].digest, sizeof(args[i].digest));
                ptrs[i] = &args[i];
        }
        r = bench_run("token", token_op, ptrs, o->threads, o->seconds);
        for (int i = 0; i < o->threads; i++)
                hsm_session_close(args[i].session);
        hsm_key_free(k);
        hsm_close(h);
        free(args);
        free(ptrs);
        return r;
}

/* ---- raw OpenSSL ---- */

struct openssl_arg {
        EVP_PKEY *key;
        bool ed25519;
        uint8_t digest[32];
};

static int openssl_op(void *p)
{
        struct openssl_arg *a = p;
        uint8_t sig[512];
        size_t len = sizeof(sig);
        int ok;

        a->digest[0]++;
        if (a->ed25519) {
                EVP_MD_CTX *m = EVP_MD_CTX_new();

                ok = m && EVP_DigestSignInit(m, NULL, NULL, NULL, a->key) > 0 &&
                     EVP_DigestSign(m, sig, &len, a->digest, sizeof(a->digest)) > 0;
                EVP_MD_CTX_free(m);
        } else {
                EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(a->key, NULL);

                ok = c && EVP_PKEY_sign_init(c) > 0 && EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) > 0 &&
                     EVP_PKEY_CTX_set_signature_md(c, EVP_sha256()) > 0 &&
                     EVP_PKEY_sign(c, sig, &len, a->digest, sizeof(a->digest)) > 0;
                EVP_PKEY_CTX_free(c);
        }
        return ok ? 0 : -1;
}

static int run_openssl(const struct opts *o)
{
        bool ed = strcmp(o->alg, "ed25519") == 0;
        EVP_PKEY *key = ed ? EVP_PKEY_Q_keygen(NULL, NULL, "ED25519") : EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 2048);
        struct openssl_arg *args = calloc((size_t) o->threads, sizeof(*args));
        void **ptrs = calloc((size_t) o->threads, sizeof(void *));
        int r;

        if (!key)
                return 1;
        for (int i = 0; i < o->threads; i++) {
                args[i] = (struct openssl_arg) { .key = key, .ed25519 = ed };
                ptrs[i] = &args[i];
        }
        r = bench_run(ed ? "openssl-ed25519" : "openssl-rsa2048", openssl_op, ptrs, o->threads, o->seconds);
        EVP_PKEY_free(key);
        free(args);
        free(ptrs);
        return r;
}

/* ---- hashing ---- */

struct hash_arg {
        const uint8_t *data;
        size_t len;
        enum dkim_canon canon;
        bool raw;
};

static int hash_op(void *p)
{
        struct hash_arg *a = p;
        uint8_t d[DKIM_SHA256_LEN];
        struct dkim_body_hash *bh = NULL;
        int r;

        if (a->raw)
                return EVP_Digest(a->data, a->len, d, NULL, EVP_sha256(), NULL) ? 0 : -1;
        r = dkim_body_hash_new(a->canon, &bh);
        if (r == 0) {
                /* As an MTA hands it over: 64 KiB at a time. */
                for (size_t off = 0; off < a->len; off += 65536)
                        dkim_body_hash_update(bh, a->data + off, a->len - off < 65536 ? a->len - off : 65536);
                r = dkim_body_hash_final(bh, d);
        }
        dkim_body_hash_free(bh);
        return r;
}

static int run_hash(const struct opts *o, bool raw)
{
        struct hash_arg a = { .raw = raw };
        void *ptr = &a;
        int r;

        a.data = bench_read_file(o->message, &a.len);
        if (dkim_canon_from_string(o->canon ? o->canon : "relaxed", &a.canon) < 0)
                return 1;
        printf("{\"bytes_per_op\": %zu}\n", a.len);
        r = bench_run(raw ? "sha256" : "canon", hash_op, &ptr, 1, o->seconds);
        free((void *) a.data);
        return r;
}

/* ---- whole messages through the daemon ---- */

struct message {
        uint8_t *data;
        size_t len;
};

struct client_arg {
        dkimsign_client *client;
        const struct dkimsign_arc_options *arc;  /* NULL: sign */
        const struct message *msgs;
        size_t nmsgs, next;
};

static int client_op(void *p)
{
        struct client_arg *a = p;
        const struct message *msg = &a->msgs[a->next++ % a->nmsgs];
        dkimsign_message *m = NULL;
        char *fields = NULL;
        int r = dkimsign_message_new(&m);

        if (r == 0 && a->arc)
                r = dkimsign_message_set_arc(m);
        for (size_t off = 0; r == 0 && off < msg->len; off += 65536)
                r = dkimsign_message_write(m, msg->data + off, msg->len - off < 65536 ? msg->len - off : 65536);
        if (r == 0)
                r = a->arc ? dkimsign_arc_seal(a->client, m, a->arc, &fields, NULL) : dkimsign_sign(a->client, m, &fields);
        if (r < 0)
                fprintf(stderr, "bench: %s\n", dkimsign_client_error(a->client));
        free(fields);
        dkimsign_message_free(m);
        return r;
}

static int run_client(const struct opts *o)
{
        struct client_arg *args = calloc((size_t) o->threads, sizeof(*args));
        void **ptrs = calloc((size_t) o->threads, sizeof(void *));
        struct message msgs[MESSAGES_MAX];
        int r;

        for (int i = 0; i < o->nmessages; i++) {
                msgs[i].data = bench_read_file(o->messages[i], &msgs[i].len);
                if (!msgs[i].data)
                        return 1;
        }
        for (int i = 0; i < o->threads; i++) {
                if (dkimsign_client_open(o->socket, &args[i].client) < 0) {
                        fprintf(stderr, "bench: %s\n", dkimsign_client_error(args[i].client));
                        return 1;
                }
                args[i].msgs = msgs;
                args[i].arc = o->arc.domain ? &o->arc : NULL;
                args[i].nmsgs = (size_t) o->nmessages;
                args[i].next = (size_t) i;  /* spread the clients over the messages */
                ptrs[i] = &args[i];
        }
        r = bench_run("client", client_op, ptrs, o->threads, o->seconds);
        for (int i = 0; i < o->threads; i++)
                dkimsign_client_free(args[i].client);
        for (int i = 0; i < o->nmessages; i++)
                free(msgs[i].data);
        free(args);
        free(ptrs);
        return r;
}

/* ---- many domains ---- */

static int run_populate(const struct opts *o)
{
        struct hsm *h = NULL;
        struct timespec t0, t1;
        long made = 0;

        if (hsm_open(o->module, o->label, &h) < 0 || hsm_login_pin_file(h, o->pin_file) < 0) {
                fprintf(stderr, "bench: token %s: cannot open\n", o->label);
                hsm_close(h);
                return 1;
        }
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (long i = o->first; i < o->first + o->domains; i++) {
                char domain[256], label[HSM_LABEL_MAX + 1];
                struct hsm_key *k = NULL;
                int r;

                snprintf(domain, sizeof(domain), "d%ld.%s", i, o->suffix);
                if (hsm_key_label("s", domain, label, sizeof(label)) < 0)
                        break;
                r = hsm_generate(h, label, HSM_ALG_ED25519, 0, &k);
                hsm_key_free(k);
                if (r == DKIMSIGN_E_EXISTS)
                        continue;
                if (r < 0) {
                        fprintf(stderr, "bench: generating %s: %s\n", label, dkimsign_strerror(r));
                        hsm_close(h);
                        return 1;
                }
                made++;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        printf("{\"kernel\": \"populate\", \"keys\": %ld, \"seconds\": %.3f}\n", made,
               (double) (t1.tv_sec - t0.tv_sec) + (double) (t1.tv_nsec - t0.tv_nsec) / 1e9);
        hsm_close(h);
        return 0;
}

int main(int argc, char **argv)
{
        static const struct option lo[] = {
                { "module", required_argument, NULL, 'm' }, { "label", required_argument, NULL, 'l' },
                { "pin-file", required_argument, NULL, 'p' }, { "key", required_argument, NULL, 'k' },
                { "alg", required_argument, NULL, 'a' }, { "socket", required_argument, NULL, 's' },
                { "message", required_argument, NULL, 'f' }, { "threads", required_argument, NULL, 't' },
                { "seconds", required_argument, NULL, 'S' }, { "canon", required_argument, NULL, 'c' },
                { "domains", required_argument, NULL, 'n' }, { "suffix", required_argument, NULL, 'x' },
                { "copy", no_argument, NULL, 'C' }, { "first", required_argument, NULL, 'F' },
                { "arc", required_argument, NULL, 'A' }, { "authserv-id", required_argument, NULL, 'I' },
                { "dns-server", required_argument, NULL, 'D' }, { 0 },
        };
        struct opts o = { .threads = 1, .seconds = 3, .alg = "rsa" };
        int opt;

        while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
                switch (opt) {
                case 'm': o.module = optarg; break;
                case 'l': o.label = optarg; break;
                case 'p': o.pin_file = optarg; break;
                case 'k': o.key = optarg; break;
                case 'a': o.alg = optarg; break;
                case 's': o.socket = optarg; break;
                case 'f':
                        o.message = optarg;
                        if (o.nmessages < MESSAGES_MAX)
                                o.messages[o.nmessages++] = optarg;
                        break;
                case 'n': o.domains = atol(optarg); break;
                case 'x': o.suffix = optarg; break;
                case 't': o.threads = atoi(optarg); break;
                case 'S': o.seconds = atof(optarg); break;
                case 'c': o.canon = optarg; break;
                case 'C': o.copy = true; break;
                case 'F': o.first = atol(optarg); break;
                case 'A': o.arc.domain = optarg; break;
                case 'I': o.arc.authserv_id = optarg; break;
                case 'D': o.arc.dns_server = optarg; break;
                default: return 2;
                }
        }
        if (optind + 1 != argc || o.threads < 1 || o.threads > 1024) {
                fprintf(stderr, "usage: dkimsign-bench token|openssl|sha256|canon|client [options]\n");
                return 2;
        }
        o.mode = argv[optind];
        if (strcmp(o.mode, "token") == 0 && o.module && o.label && o.pin_file && o.key)
                return run_token(&o);
        if (strcmp(o.mode, "openssl") == 0)
                return run_openssl(&o);
        if ((strcmp(o.mode, "sha256") == 0 || strcmp(o.mode, "canon") == 0) && o.message)
                return run_hash(&o, o.mode[0] == 's');
        if (strcmp(o.mode, "client") == 0 && o.message)
                return run_client(&o);
        if (strcmp(o.mode, "populate") == 0 && o.module && o.label && o.pin_file && o.domains > 0 && o.suffix)
                return run_populate(&o);
        fprintf(stderr, "dkimsign-bench: missing options for %s\n", o.mode);
        return 2;
}
