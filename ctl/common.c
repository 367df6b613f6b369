/* SPDX-License-Identifier: MIT */
/*
 * dkimsignctl's shared steps: configuration and token opening, the PIN,
 * key names, DNS records, fingerprints, and the key listing that list and
 * refresh share.  See ctl.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <openssl/x509.h>

#include "ctl/ctl.h"
#include "protocol/dkimsign-errors.h"
#include "dkim/idn.h"
#include "dkim/record.h"
#include "util/fileperm.h"

int die(const char *fmt, ...)
{
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = ctl_vreport(EXIT_FAIL, fmt, ap);
        va_end(ap);
        return r;
}

int usage_error(const char *fmt, ...)
{
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = ctl_vreport(EXIT_USAGE, fmt, ap);
        va_end(ap);
        return r;
}

/* ---- shared helpers ---- */

int load_config(const struct options *o, struct config **ret)
{
        char err[1024];

        if (config_load(o->config, ret, err, sizeof(err)) < 0)
                return die("configuration: %s", err);
        /* Before the module is loaded (init-token and every open_token). */
        if (config_apply_module_env(*ret, err, sizeof(err)) < 0) {
                *ret = config_free(*ret);
                return die("[token] module_env: %s", err);
        }
        return 0;
}

const char *token_name(const struct hsm *h, char ret[TOKEN_NAME_SIZE])
{
        struct hsm_token_id id;

        hsm_token_id(h, &id);
        snprintf(ret, TOKEN_NAME_SIZE, "'%s' (serial %s)", id.label, id.serial[0] ? id.serial : "none");
        return ret;
}

const char *token_wanted(const struct config *c)
{
        return c->token_uri ? c->token_uri : c->token_label;
}

int open_token(const struct config *c, struct hsm **ret)
{
        char pin_path[4096], name[TOKEN_NAME_SIZE];
        int r = c->token_uri ? hsm_open_uri(c->token_uri, c->module, ret) : hsm_open(c->module, c->token_label, ret);

        if (r == DKIMSIGN_E_SYSTEM)
                return die("cannot load the PKCS#11 module %s: %s", c->module, strerror(errno));
        if (r == DKIMSIGN_E_CONFIG)
                return die("refusing to load the PKCS#11 module: %s", hsm_last_why());
        /* hsm_open_uri's sentence names the URI, the module, and for
         * several tokens their serials. */
        if (r < 0 && c->token_uri && hsm_last_why()[0])
                return die("%s", hsm_last_why());
        if (r < 0)
                return die("token '%s' in %s: %s", token_wanted(c), c->module, dkimsign_strerror(r));
        token_name(*ret, name);
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
                if (r == DKIMSIGN_E_CONFIG)
                        return die("refusing the PIN file: %s", hsm_last_why());
                return die("login to token %s with the PIN in %s: %s", name, pin_path,
                           dkimsign_strerror(r));
        }
        /* keygen and rotate may make a key that also decrypts only when
         * the configuration says so (hsm.h, hsm_generate). */
        hsm_allow_decrypt_keys(*ret, c->allow_decrypt_keys);
        hsm_lock_keys(*ret, c->lock_keys);
        return 0;
}

/* Configuration and a logged-in token, or a message and EXIT_FAIL. */
int open_all(const struct options *o, struct config **ret_c, struct hsm **ret_h)
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

/* Read a PIN file's first line into pin (PIN_MAX bytes).  A file that
 * anyone but root or this user could have written is refused, saying why. */
int read_pin(const char *path, char *pin, size_t *ret_len)
{
        char why[1024];
        ssize_t n;
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                return -1;
        if (fileperm_check_fd(fd, path, FILEPERM_NO_UID, why, sizeof(why)) < 0) {
                close(fd);
                die("refusing the PIN file: %s", why);
                return -1;
        }
        n = read(fd, pin, PIN_MAX - 1);
        close(fd);
        if (n <= 0)
                return -1;
        pin[n] = 0;
        pin[strcspn(pin, "\r\n")] = 0;
        *ret_len = strlen(pin);
        return *ret_len ? 0 : -1;
}

bool selector_is_valid(const char *s)
{
        return strlen(s) <= DKIM_SELECTOR_MAX && dkim_domain_is_valid(s, strlen(s));
}

void lowercase(char *s)
{
        for (; *s; s++)
                if (*s >= 'A' && *s <= 'Z')
                        *s = (char) (*s + 32);
}

int check_name_options(const struct options *o, const char *cmd)
{
        if (!o->domain || !o->selector)
                return usage_error("%s needs --domain and --selector", cmd);
        if (!selector_is_valid(o->selector))
                return usage_error("'%s' is not a valid selector (letters, digits, '-', dot-separated)",
                                   o->selector);
        return 0;
}

int domain_arg(const char *arg, char ret[DKIM_DOMAIN_SIZE])
{
        size_t len = strlen(arg);
        const char *why = "";
        int r;

        if (len > 1 && arg[len - 1] == '.')
                len--;   /* "example.com." is the same name */
        r = dkim_domain_to_ascii(arg, len, ret, &why);
        if (r == DKIMSIGN_E_NOMEM)
                return die("out of memory");
        if (r < 0)
                return usage_error("'%s' is not a valid domain name: %s", arg, why);
        return 0;
}

const char *domain_show(const char *domain, char ret[DOMAIN_SHOW_SIZE])
{
        char u[DKIM_IDN_UNICODE_SIZE];

        if (dkim_domain_to_unicode(domain, u, sizeof(u)))
                snprintf(ret, DOMAIN_SHOW_SIZE, "%s (%s)", domain, u);
        else
                snprintf(ret, DOMAIN_SHOW_SIZE, "%s", domain);
        return ret;
}

json_t *json_domain_unicode(const char *domain)
{
        char u[DKIM_IDN_UNICODE_SIZE];

        return ctl_json_text(dkim_domain_to_unicode(domain, u, sizeof(u)) ? u : domain);
}

int make_label(const char *selector, const char *domain, char *label, size_t size)
{
        if (hsm_key_label(selector, domain, label, size) < 0)
                return die("the key name %s._domainkey.%s is too long", selector, domain);
        lowercase(label);
        return 0;
}

int print_record(const struct hsm_key *k, const char *label)
{
        struct buf text, zone;
        int r;

        buf_init(&text, 8192);
        buf_init(&zone, 16384);
        r = dkim_record_text(k->pubkey, &text);
        if (r == 0)
                r = dkim_record_zone_value((const char *) text.data, text.len, &zone);
        if (r == 0) {
                const char *domain = strstr(label, "._domainkey.");
                char show[DOMAIN_SHOW_SIZE];

                /* An internationalized domain's record is named by its
                 * A-labels: say which domain that is. */
                if (domain && strchr(domain_show(domain + strlen("._domainkey."), show), ' '))
                        printf("; for %s\n", show);
                printf("%s. IN TXT %.*s\n", label, (int) zone.len, (const char *) zone.data);
                printf("; as one string:\n; %.*s\n", (int) text.len, (const char *) text.data);
        }
        buf_deinit(&text);
        buf_deinit(&zone);
        return r < 0 ? die("building the DNS record: %s", dkimsign_strerror(r)) : 0;
}

/* "YYYYMMDD" as "YYYY-MM-DD" into ret (11 bytes); "" stays "". */
const char *date_show(const char *d, char ret[11])
{
        if (!d[0])
                ret[0] = '\0';
        else
                snprintf(ret, 11, "%.4s-%.2s-%.2s", d, d + 4, d + 6);
        return ret;
}

/* "SHA256:" and the unpadded base64 of SHA-256 over the DER
 * SubjectPublicKeyInfo, as ssh-keygen -l prints it. */
int fingerprint(EVP_PKEY *pub, char ret[FINGERPRINT_SIZE])
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

bool key_generated(const struct hsm_key *k)
{
        return k->local && k->never_extractable && k->always_sensitive;
}



/* Open the configuration and token, load the keys and their states.
 * 0, or the exit status after saying why (free l with key_listing_close
 * either way). */
int key_listing_open(const struct options *o, struct key_listing *l)
{
        char why[1024];
        int r;

        *l = (struct key_listing) { 0 };
        if (open_all(o, &l->c, &l->h))
                return EXIT_FAIL;
        r = keytab_load(l->h, l->c, &l->t);
        if (r < 0)
                return die("listing keys: %s", dkimsign_strerror(r));
        if (ctl_lifecycle_attach(l->c, l->t, &l->reg, why, sizeof(why)) < 0)
                return die("%s", why);
        return 0;
}

/* Each key's lifecycle as of now, into l->life. */
int key_listing_lives(struct key_listing *l)
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

void key_listing_close(struct key_listing *l)
{
        free(l->life);
        keytab_free(l->t);
        keyreg_free(l->reg);
        hsm_close(l->h);
        config_free(l->c);
        *l = (struct key_listing) { 0 };
}
