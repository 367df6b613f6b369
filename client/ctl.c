/* SPDX-License-Identifier: MIT */
/*
 * dkimsignctl: the administrator's tool for the token and its DKIM keys.
 * It talks to the token directly (PKCS#11), with the PIN from the file the
 * configuration names, never from the command line.
 *
 * Exit status: 0 success; 1 failure (one line on stderr says why); 2 usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "dkimsign-build.h"
#include "dkimsign-errors.h"
#include "header.h"
#include "hsm.h"
#include "keys.h"
#include "record.h"
#include "sign.h"

#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define PIN_MAX 256

struct options {
        const char *config;
        const char *domain;
        const char *selector;
        const char *algorithm;
        const char *so_pin_file;
        unsigned bits;
        bool json;
};

static void usage(FILE *f)
{
        fprintf(f,
                "Usage: dkimsignctl [--config FILE] COMMAND [OPTIONS]\n"
                "\n"
                "Manage the DKIM keys that dkimsignd signs with; keys live in the PKCS#11\n"
                "token named in the configuration and never leave it.\n"
                "\n"
                "Commands:\n"
                "  init-token --so-pin-file FILE\n"
                "        initialize the configured token label on a free slot, with the\n"
                "        user PIN from [token] pin_file and the SO PIN from FILE\n"
                "  keygen --domain D --selector S [--algorithm rsa|ed25519] [--bits N]\n"
                "        generate a key pair on the token (RSA 2048 bits by default)\n"
                "  dns-record --domain D --selector S\n"
                "        print the TXT record to publish at S._domainkey.D\n"
                "  list [--json]\n"
                "        list the DKIM keys on the token\n"
                "\n"
                "Options:\n"
                "  -c, --config FILE   configuration file (default %s)\n"
                "  -h, --help          show this help\n"
                "  -V, --version       show the version\n"
                "\n"
                "Exit status: 0 success, 1 failure, 2 usage error.\n",
                DKIMSIGN_DEFAULT_CONFIG);
}

static int die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int die(const char *fmt, ...)
{
        va_list ap;

        fputs("dkimsignctl: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return EXIT_FAIL;
}

static int load_config(const struct options *o, struct config **ret)
{
        char err[1024];

        if (config_load(o->config, ret, err, sizeof(err)) < 0)
                return die("configuration: %s", err);
        return 0;
}

static int open_token(const struct config *c, struct hsm **ret)
{
        char pin_path[4096];
        int r = hsm_open(c->module, c->token_label, ret);

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
                return die("login to token '%s' with the PIN in %s: %s", c->token_label, pin_path,
                           dkimsign_strerror(r));
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

static int cmd_init_token(const struct options *o)
{
        char so_pin[PIN_MAX] = { 0 }, pin[PIN_MAX] = { 0 }, pin_path[4096];
        size_t so_len = 0, pin_len = 0;
        struct config *c = NULL;
        int r, status = 0;

        if (!o->so_pin_file) {
                fprintf(stderr, "dkimsignctl: init-token needs --so-pin-file FILE\n");
                return EXIT_USAGE;
        }
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

static int check_name_options(const struct options *o, const char *cmd)
{
        if (!o->domain || !o->selector) {
                fprintf(stderr, "dkimsignctl: %s needs --domain and --selector\n", cmd);
                return EXIT_USAGE;
        }
        if (!dkim_domain_is_valid(o->domain, strlen(o->domain))) {
                fprintf(stderr, "dkimsignctl: '%s' is not a valid domain name\n", o->domain);
                return EXIT_USAGE;
        }
        if (strlen(o->selector) > DKIM_SELECTOR_MAX || !dkim_domain_is_valid(o->selector, strlen(o->selector))) {
                fprintf(stderr, "dkimsignctl: '%s' is not a valid selector (letters, digits, '-', dot-separated)\n",
                        o->selector);
                return EXIT_USAGE;
        }
        return 0;
}

static void lowercase(char *s)
{
        for (; *s; s++)
                if (*s >= 'A' && *s <= 'Z')
                        *s = (char) (*s + 32);
}

static int make_label(const struct options *o, char *label, size_t size)
{
        if (hsm_key_label(o->selector, o->domain, label, size) < 0)
                return die("the key name %s._domainkey.%s is too long", o->selector, o->domain);
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
        if (o->algorithm && hsm_alg_from_string(o->algorithm, &alg) < 0) {
                fprintf(stderr, "dkimsignctl: --algorithm takes rsa or ed25519\n");
                return EXIT_USAGE;
        }
        if (o->bits && (alg != HSM_ALG_RSA || o->bits < HSM_RSA_MIN_BITS || o->bits > HSM_RSA_MAX_BITS)) {
                fprintf(stderr, "dkimsignctl: --bits is for RSA keys, from %d to %d (RFC 8301)\n",
                        HSM_RSA_MIN_BITS, HSM_RSA_MAX_BITS);
                return EXIT_USAGE;
        }
        if (make_label(o, label, sizeof(label)))
                return EXIT_FAIL;
        if (load_config(o, &c) || open_token(c, &h)) {
                config_free(c);
                return EXIT_FAIL;
        }
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

static int cmd_dns_record(const struct options *o)
{
        char label[HSM_LABEL_MAX + 1];
        struct config *c = NULL;
        struct hsm *h = NULL;
        struct hsm_key *k = NULL;
        int r, status;

        status = check_name_options(o, "dns-record");
        if (status)
                return status;
        if (make_label(o, label, sizeof(label)))
                return EXIT_FAIL;
        if (load_config(o, &c) || open_token(c, &h)) {
                config_free(c);
                return EXIT_FAIL;
        }
        r = hsm_find(h, label, &k);
        if (r == DKIMSIGN_E_NO_KEY)
                status = die("no key named %s on token '%s'", label, c->token_label);
        else if (r < 0)
                status = die("finding key %s: %s", label, dkimsign_strerror(r));
        else
                status = print_record(k, label);
        hsm_key_free(k);
        hsm_close(h);
        config_free(c);
        return status;
}

static int cmd_list(const struct options *o)
{
        struct config *c = NULL;
        struct hsm *h = NULL;
        struct keytab *t = NULL;
        int r, status = 0;

        if (load_config(o, &c) || open_token(c, &h)) {
                config_free(c);
                return EXIT_FAIL;
        }
        r = keytab_load(h, &t);
        if (r < 0) {
                status = die("listing keys: %s", dkimsign_strerror(r));
                goto out;
        }
        if (o->json)
                printf("[");
        else
                printf("%-24s %-24s %-8s %5s %s\n", "DOMAIN", "SELECTOR", "ALG", "BITS", "ORIGIN");
        for (size_t i = 0; i < t->count; i++) {
                const struct signer_key *k = &t->keys[i];
                const char *origin = k->key->local && k->key->never_extractable ? "generated" : "imported";

                if (o->json)
                        printf("%s\n  {\"domain\": \"%s\", \"selector\": \"%s\", \"algorithm\": \"%s\", "
                               "\"bits\": %u, \"origin\": \"%s\", \"local\": %s, \"always_sensitive\": %s, "
                               "\"never_extractable\": %s}",
                               i ? "," : "", k->domain, k->selector, hsm_alg_name(k->key->alg), k->key->bits,
                               origin, k->key->local ? "true" : "false",
                               k->key->always_sensitive ? "true" : "false",
                               k->key->never_extractable ? "true" : "false");
                else
                        printf("%-24s %-24s %-8s %5u %s\n", k->domain, k->selector, hsm_alg_name(k->key->alg),
                               k->key->bits, origin);
        }
        if (o->json)
                printf("%s]\n", t->count ? "\n" : "");
out:
        keytab_free(t);
        hsm_close(h);
        config_free(c);
        return status;
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
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { 0 },
        };
        struct options o = { .config = DKIMSIGN_DEFAULT_CONFIG };
        const char *cmd;
        char *end;
        int opt;

        while ((opt = getopt_long(argc, argv, "c:d:s:a:b:S:jhV", opts, NULL)) != -1) {
                switch (opt) {
                case 'c': o.config = optarg; break;
                case 'd': o.domain = optarg; break;
                case 's': o.selector = optarg; break;
                case 'a': o.algorithm = optarg; break;
                case 'b':
                        errno = 0;
                        o.bits = (unsigned) strtoul(optarg, &end, 10);
                        if (errno || *end || !*optarg) {
                                fprintf(stderr, "dkimsignctl: --bits takes a number\n");
                                return EXIT_USAGE;
                        }
                        break;
                case 'S': o.so_pin_file = optarg; break;
                case 'j': o.json = true; break;
                case 'h': usage(stdout); return 0;
                case 'V': printf("dkimsignctl %s\n", DKIMSIGN_VERSION); return 0;
                default: usage(stderr); return EXIT_USAGE;
                }
        }
        if (optind + 1 != argc) {
                usage(stderr);
                return EXIT_USAGE;
        }
        cmd = argv[optind];
        if (strcmp(cmd, "init-token") == 0)
                return cmd_init_token(&o);
        if (strcmp(cmd, "keygen") == 0)
                return cmd_keygen(&o);
        if (strcmp(cmd, "dns-record") == 0)
                return cmd_dns_record(&o);
        if (strcmp(cmd, "list") == 0)
                return cmd_list(&o);
        fprintf(stderr, "dkimsignctl: unknown command '%s' (see dkimsignctl --help)\n", cmd);
        return EXIT_USAGE;
}
