/* SPDX-License-Identifier: MIT */
/*
 * opendkim-bench: the reference signer for scripts/bench.  libopendkim
 * signs the same message in-process, relaxed/relaxed, with the private key
 * handed over as PEM for every message, the way opendkim's milter does.
 */
#include <getopt.h>
#include <opendkim/dkim.h>

#include "bench-common.h"

struct arg {
        DKIM_LIB *lib;
        const unsigned char *pem;
        const char *selector, *domain;
        dkim_alg_t alg;
        const uint8_t *msg;
        size_t len;
};

static int sign_op(void *p)
{
        struct arg *a = p;
        DKIM_STAT st;
        DKIM *d = dkim_sign(a->lib, (const unsigned char *) "bench", NULL, (dkim_sigkey_t) a->pem,
                            (const unsigned char *) a->selector, (const unsigned char *) a->domain,
                            DKIM_CANON_RELAXED, DKIM_CANON_RELAXED, a->alg, -1, &st);
        unsigned char *hdr = NULL;
        size_t hlen = 0;
        int r = -1;

        if (!d)
                return -1;
        if (dkim_chunk(d, (unsigned char *) a->msg, a->len) == DKIM_STAT_OK &&
            dkim_chunk(d, NULL, 0) == DKIM_STAT_OK && dkim_eom(d, NULL) == DKIM_STAT_OK &&
            dkim_getsighdr_d(d, 16, &hdr, &hlen) == DKIM_STAT_OK)
                r = 0;
        dkim_free(d);
        return r;
}

int main(int argc, char **argv)
{
        static const struct option lo[] = {
                { "key", required_argument, NULL, 'k' }, { "selector", required_argument, NULL, 's' },
                { "domain", required_argument, NULL, 'd' }, { "alg", required_argument, NULL, 'a' },
                { "message", required_argument, NULL, 'f' }, { "seconds", required_argument, NULL, 'S' },
                { 0 },
        };
        struct arg a = { .selector = "bench", .domain = "bench.example", .alg = DKIM_SIGN_RSASHA256 };
        const char *key = NULL, *message = NULL;
        double seconds = 3;
        void *ptr = &a;
        size_t klen;
        int opt, r;

        while ((opt = getopt_long(argc, argv, "", lo, NULL)) != -1) {
                switch (opt) {
                case 'k': key = optarg; break;
                case 's': a.selector = optarg; break;
                case 'd': a.domain = optarg; break;
                case 'a': a.alg = strcmp(optarg, "ed25519") == 0 ? DKIM_SIGN_ED25519SHA256 : DKIM_SIGN_RSASHA256; break;
                case 'f': message = optarg; break;
                case 'S': seconds = atof(optarg); break;
                default: return 2;
                }
        }
        if (!key || !message) {
                fprintf(stderr, "usage: opendkim-bench --key PEM --message FILE [--alg rsa|ed25519] [--seconds N]\n");
                return 2;
        }
        a.pem = bench_read_file(key, &klen);
        a.msg = bench_read_file(message, &a.len);
        a.lib = dkim_init(NULL, NULL);
        if (!a.lib || sign_op(&a) < 0) {
                fprintf(stderr, "opendkim-bench: libopendkim cannot sign with %s\n", key);
                return 1;
        }
        r = bench_run("opendkim", sign_op, &ptr, 1, seconds);
        dkim_close(a.lib);
        return r;
}
