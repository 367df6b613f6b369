/* SPDX-License-Identifier: MIT */
/*
 * dkimsignctl init-token, keygen, dns-record and list.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/ctl.h"
#include "protocol/dkimsign-errors.h"
#include "keys/keys.h"

/* ---- init-token, keygen, dns-record ---- */

int cmd_init_token(const struct options *o)
{
        char so_pin[PIN_MAX] = { 0 }, pin[PIN_MAX] = { 0 }, pin_path[4096];
        size_t so_len = 0, pin_len = 0;
        const char *pin_which, *want;
        struct hsm_token_id made = { 0 };
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
                /* By URI: token= is the label, the first free token that
                 * matches the rest is initialized (hsm_init_token_uri). */
                want = token_wanted(c);
                r = c->token_uri ? hsm_init_token_uri(c->token_uri, c->module, so_pin, so_len, pin, pin_len, &made)
                                 : hsm_init_token(c->module, c->token_label, so_pin, so_len, pin, pin_len);
                if (r < 0 && (pin_which = strstr(hsm_last_why(), "; the user PIN has ")))
                        status = die("initializing token '%s' in %s: %.*s; the user PIN in %s has %s; nothing was "
                                     "changed", want, c->module, (int) (pin_which - hsm_last_why()),
                                     hsm_last_why(), pin_path, pin_which + strlen("; the user PIN has "));
                else if (r < 0 && (pin_which = strstr(hsm_last_why(), "; the SO PIN has ")))
                        status = die("initializing token '%s' in %s: %.*s; the SO PIN in %s has %s; nothing was "
                                     "changed", want, c->module, (int) (pin_which - hsm_last_why()),
                                     hsm_last_why(), o->so_pin_file, pin_which + strlen("; the SO PIN has "));
                else if (r < 0 && hsm_last_why()[0])
                        status = die("initializing token '%s' in %s: %s", want, c->module, hsm_last_why());
                else if (r == DKIMSIGN_E_EXISTS)
                        status = die("initializing token '%s' in %s: %s (a token with this label is initialized "
                                     "already)", want, c->module, dkimsign_strerror(r));
                else if (r < 0)
                        status = die("initializing token '%s' in %s: %s (%s)", want, c->module,
                                     dkimsign_strerror(r), hsm_ckr_name(hsm_last_ckr()));
                else if (c->token_uri)
                        printf("initialized token '%s' (serial %s)\n", made.label,
                               made.serial[0] ? made.serial : "none");
                else
                        printf("initialized token '%s'\n", c->token_label);
        }
        OPENSSL_cleanse(so_pin, sizeof(so_pin));
        OPENSSL_cleanse(pin, sizeof(pin));
        config_free(c);
        return status;
}

int cmd_keygen(const struct options *o)
{
        char label[HSM_LABEL_MAX + 1], name[TOKEN_NAME_SIZE];
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
        else if (r < 0 && hsm_last_why()[0])
                /* What the token can't make, said before anything changed. */
                status = die("generating %s key %s: %s", hsm_alg_name(alg), label, hsm_last_why());
        else if (r < 0)
                status = die("generating %s key %s: %s (%s)", hsm_alg_name(alg), label, dkimsign_strerror(r),
                             hsm_ckr_name(hsm_last_ckr()));
        else {
                printf("generated %s %u-bit key %s on token %s\n", hsm_alg_name(alg), k->bits, label,
                       token_name(h, name));
                printf("publish this record, then sign:\n");
                status = print_record(k, label);
        }
        hsm_key_free(k);
        hsm_close(h);
        config_free(c);
        return status;
}

/* The key S._domainkey.D named by --domain and --selector, on an open token. */
int find_named(const struct config *c, struct hsm *h, const char *label, struct hsm_key **ret)
{
        char name[TOKEN_NAME_SIZE];
        int r = hsm_find(h, label, ret);

        if (r == DKIMSIGN_E_NO_KEY)
                return die("no key named %s on token %s", label, token_name(h, name));
        if (r == DKIMSIGN_E_EXISTS)
                return die("several keys are named %s on token %s; dkimsignctl will not guess", label,
                           token_name(h, name));
        if (r < 0)
                return die("finding key %s: %s", label, dkimsign_strerror(r));
        return 0;
}

int cmd_dns_record(const struct options *o)
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
static json_t *json_time(int64_t t)
{
        char buf[24];

        if (!t)
                return json_null();
        keystate_utc(t, buf);
        return ctl_json_text(buf);
}

/* A CK_DATE as "YYYY-MM-DD", or null when unset. */
static json_t *json_date(const char *d)
{
        char buf[11];

        return d[0] ? ctl_json_text(date_show(d, buf)) : json_null();
}

/* What the token lets the private key do, by name. */
static json_t *json_uses(unsigned uses)
{
        json_t *a = json_array();

        for (unsigned b = 0; a && b < HSM_USES_COUNT; b++)
                if (uses & (1u << b))
                        ctl_json_push(&a, ctl_json_text(hsm_use_name(1u << b)));
        return a;
}

/* One key as `list --json` shows it; NULL when out of memory. */
static json_t *list_key_json(const struct signer_key *k, const struct ctl_key_life *l, const char *fp)
{
        const struct hsm_key *key = k->key;

        return json_pack("{s:o, s:o, s:o, s:s, s:I, s:s, s:b, s:o, s:o, s:o, s:o, s:o, s:o, s:s, s:o, s:b, s:b, s:b,"
                         " s:o, s:o, s:b, s:s}",
                         "domain", ctl_json_text(k->domain),
                         "domain_unicode", json_domain_unicode(k->domain),
                         "selector", ctl_json_text(k->selector),
                         "algorithm", hsm_alg_name(key->alg),
                         "bits", (json_int_t) key->bits,
                         "state", key_state_name(l->state),
                         "unpublished_signing", l->unpublished,
                         "first_seen", json_time(l->seen),
                         "active_since", json_time(l->active),
                         "signs_from", json_time(l->signs_from),
                         "retires", json_time(l->retires),
                         "created", json_date(key->created),
                         "retired", json_date(key->retired),
                         "origin", key_generated(key) ? "generated" : "imported",
                         "fingerprint", ctl_json_text(fp),
                         "local", key->local,
                         "always_sensitive", key->always_sensitive,
                         "never_extractable", key->never_extractable,
                         "refused", ctl_json_text(key->refused),
                         "uses", json_uses(key->uses),
                         "always_authenticate", key->always_authenticate,
                         "dnssec", dns_security_name(l->dnssec));
}

static int list_json(const struct keytab *t, const struct ctl_key_life *life, char (*fps)[FINGERPRINT_SIZE])
{
        json_t *keys = json_array();

        for (size_t i = 0; keys && i < t->count; i++)
                ctl_json_push(&keys, list_key_json(&t->keys[i], &life[i], fps[i]));
        return ctl_json_out(keys);
}

/* One line under the table for each key that is not retired: what the
 * lifecycle says about it, and when it was first seen in DNS. */
void list_life_notes(const struct keytab *t, const struct ctl_key_life *life)
{
        bool header = false;

        for (size_t i = 0; i < t->count; i++) {
                const struct ctl_key_life *l = &life[i];
                char seen[24] = "not yet", a[24], b[24];

                if (l->state == KEY_RETIRED && !t->keys[i].key->refused)
                        continue;
                if (!header) {
                        printf("\nDNS lifecycle (first seen = when dkimsignd first saw the record in DNS):\n");
                        header = true;
                }
                if (l->seen)
                        keystate_utc(l->seen, seen);
                printf("  %s._domainkey.%s: ", t->keys[i].selector, t->keys[i].domain);
                if (t->keys[i].key->refused) {
                        printf("never signs: %s\n", t->keys[i].key->refused);
                } else if (l->unpublished) {
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
                } else if (l->dnssec == DNS_SEC_BOGUS) {
                        printf("pending: the answer for its record failed DNSSEC validation (bogus): not "
                               "believed\n");
                } else {
                        printf("pending: its record has not been seen in DNS yet (dkimsignctl dns-record)\n");
                }
        }
}

/* What the token lets each key's private half do, one line a key. */
static void list_uses(const struct keytab *t)
{
        if (t->count)
                printf("\nAllowed uses (what the token lets each private key do):\n");
        for (size_t i = 0; i < t->count; i++) {
                const struct hsm_key *k = t->keys[i].key;
                char uses[96];

                printf("  %s._domainkey.%s: %s%s\n", t->keys[i].selector, t->keys[i].domain,
                       hsm_uses_format(k->uses, ", ", uses, sizeof(uses)),
                       k->always_authenticate ? " (PIN again for each use: CKA_ALWAYS_AUTHENTICATE)" : "");
        }
}

/* Characters, not octets, for lining up columns: a U-label is UTF-8. */
static int width(const char *s)
{
        int n = 0;

        for (; *s; s++)
                n += ((unsigned char) *s & 0xc0) != 0x80;
        return n;
}

static void list_table(const struct keytab *t, const struct ctl_key_life *life, char (*fps)[FINGERPRINT_SIZE])
{
        int dw = (int) strlen("DOMAIN"), sw = (int) strlen("SELECTOR");
        char show[DOMAIN_SHOW_SIZE];

        for (size_t i = 0; i < t->count; i++) {
                if (width(domain_show(t->keys[i].domain, show)) > dw)
                        dw = width(show);
                if ((int) strlen(t->keys[i].selector) > sw)
                        sw = (int) strlen(t->keys[i].selector);
        }
        printf("%-*s %-*s %-9s %4s %-9s %-10s %-9s %s\n", dw, "DOMAIN", sw, "SELECTOR", "ALG", "BITS", "STATE",
               "CREATED", "ORIGIN", "FINGERPRINT");
        for (size_t i = 0; i < t->count; i++) {
                const struct signer_key *k = &t->keys[i];
                char created[11];

                domain_show(k->domain, show);
                printf("%s%*s %-*s %-9s %4u %-9s %-10s %-9s %s\n", show, dw - width(show), "", sw, k->selector,
                       hsm_alg_name(k->key->alg), k->key->bits,
                       k->key->refused ? "refused" : key_state_name(life[i].state),
                       k->key->created[0] ? date_show(k->key->created, created) : "-",
                       key_generated(k->key) ? "generated" : "imported", fps[i]);
        }
        list_life_notes(t, life);
        list_uses(t);
}

int cmd_list(const struct options *o)
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
                status = list_json(l.t, l.life, fps);
        else
                list_table(l.t, l.life, fps);
out:
        free(fps);
        key_listing_close(&l);
        return status;
}
