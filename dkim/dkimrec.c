/* SPDX-License-Identifier: MIT */
/*
 * DKIM key record parsing and key comparison.  See dkimrec.h.
 *
 * The tag-list syntax is taglist.c's; this file gives the tags of a key
 * record their meaning.  DNS TXT text has no folding, but publishers paste
 * records with line breaks, so whitespace in p= is skipped.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/x509.h>

#include "protocol/dkimsign-errors.h"
#include "dkim/dkimrec.h"
#include "dkim/taglist.h"

void dkim_keyrec_clear(struct dkim_keyrec *r)
{
        if (!r)
                return;
        free(r->k);
        free(r->h);
        free(r->s);
        free(r->n);
        free(r->t);
        free(r->p);
        memset(r, 0, sizeof(*r));
}

static int b64_value(char c)
{
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+')
                return 62;
        if (c == '/')
                return 63;
        return -1;
}

/* Base64 with whitespace anywhere (RFC 6376 allows FWS in p=) and the
 * padding RFC 4648 requires.  *ret is malloc'ed; *ret_len may be 0. */
static int base64_decode(const char *s, size_t len, unsigned char **ret, size_t *ret_len)
{
        unsigned char *out = malloc(len / 4 * 3 + 3);
        uint32_t acc = 0;
        size_t n = 0, quad = 0, pad = 0;

        if (!out)
                return DKIMSIGN_E_NOMEM;
        for (size_t i = 0; i < len; i++) {
                int v;

                if (taglist_is_wsp(s[i]))
                        continue;
                if (s[i] == '=') {
                        pad++;
                        quad++;
                        if (pad > 2)
                                goto bad;
                        continue;
                }
                v = b64_value(s[i]);
                if (v < 0 || pad > 0)
                        goto bad;         /* not base64, or data after padding */
                acc = (acc << 6) | (uint32_t) v;
                quad++;
                if (quad % 4 == 0) {
                        out[n++] = (unsigned char) (acc >> 16);
                        out[n++] = (unsigned char) (acc >> 8);
                        out[n++] = (unsigned char) acc;
                        acc = 0;
                }
        }
        if (quad % 4 != 0)
                goto bad;
        if (pad == 1) {
                /* acc holds 3 sextets: 18 bits, 2 octets and 2 zero bits */
                if (acc & 0x3)
                        goto bad;
                out[n++] = (unsigned char) (acc >> 10);
                out[n++] = (unsigned char) (acc >> 2);
        } else if (pad == 2) {
                if (acc & 0xf)
                        goto bad;
                out[n++] = (unsigned char) (acc >> 4);
        }
        *ret = out;
        *ret_len = n;
        return 0;
bad:
        free(out);
        return DKIMSIGN_E_FORMAT;
}

/* Does the colon-separated list (whitespace around items allowed) hold item? */
static bool list_has(const char *list, const char *item)
{
        size_t ilen = strlen(item);
        const char *p = list;

        while (*p) {
                const char *end = strchr(p, ':');
                size_t len;

                if (!end)
                        end = p + strlen(p);
                while (p < end && taglist_is_wsp(*p))
                        p++;
                len = (size_t) (end - p);
                while (len > 0 && taglist_is_wsp(p[len - 1]))
                        len--;
                if (len == ilen && strncmp(p, item, len) == 0)
                        return true;
                p = *end ? end + 1 : end;
        }
        return false;
}

/* A NUL-terminated copy of the len octets at v (never read past len). */
static int set_string(char **slot, const char *v, size_t len)
{
        char *copy = malloc(len + 1);

        if (!copy)
                return DKIMSIGN_E_NOMEM;
        memcpy(copy, v, len);
        copy[len] = '\0';
        *slot = copy;
        return 0;
}

/* Interpret one tag.  value is value_len octets, outer whitespace trimmed. */
static int apply_tag(struct dkim_keyrec *rec, const char *name, const char *value, size_t value_len,
                     bool first, char *why, size_t whylen)
{
        int r;

        if (strcmp(name, "v") == 0) {
                if (!first) {
                        dkim_reason(why, whylen, "v= must be the first tag of the record.");
                        return DKIMSIGN_E_FORMAT;
                }
                if (value_len != 5 || memcmp(value, "DKIM1", 5) != 0) {
                        dkim_reason(why, whylen, "v= must be \"DKIM1\", not \"%.*s\".",
                            (int) (value_len > 40 ? 40 : value_len), value);
                        return DKIMSIGN_E_FORMAT;
                }
                rec->has_version = true;
                return 0;
        }
        if (strcmp(name, "k") == 0) {
                free(rec->k);
                r = set_string(&rec->k, value, value_len);
                if (r < 0)
                        return r;
                if (strcasecmp(rec->k, "rsa") == 0)
                        rec->alg = DKIM_KEYREC_RSA;
                else if (strcasecmp(rec->k, "ed25519") == 0)
                        rec->alg = DKIM_KEYREC_ED25519;
                else
                        rec->alg = DKIM_KEYREC_OTHER;
                return 0;
        }
        if (strcmp(name, "h") == 0) {
                r = set_string(&rec->h, value, value_len);
                if (r == 0)
                        rec->h_allows_sha256 = list_has(rec->h, "sha256");
                return r;
        }
        if (strcmp(name, "s") == 0) {
                r = set_string(&rec->s, value, value_len);
                if (r == 0)
                        rec->s_allows_email = list_has(rec->s, "*") || list_has(rec->s, "email");
                return r;
        }
        if (strcmp(name, "n") == 0)
                return set_string(&rec->n, value, value_len);
        if (strcmp(name, "t") == 0) {
                r = set_string(&rec->t, value, value_len);
                if (r == 0) {
                        rec->testing = list_has(rec->t, "y");
                        rec->strict = list_has(rec->t, "s");
                }
                return r;
        }
        if (strcmp(name, "p") == 0) {
                if (value_len == 0) {
                        rec->revoked = true;
                        return 0;
                }
                r = base64_decode(value, value_len, &rec->p, &rec->p_len);
                if (r == DKIMSIGN_E_FORMAT)
                        dkim_reason(why, whylen, "p= is not valid base64.");
                else if (r == 0 && rec->p_len == 0) {
                        free(rec->p);
                        rec->p = NULL;
                        rec->revoked = true;
                }
                return r;
        }
        return 0;   /* unknown tags are ignored (RFC 6376 3.6.1) */
}

/* The tag names seen so far, to refuse duplicates. */
struct seen {
        char names[32][TAGLIST_NAME_MAX + 1];
        size_t count;
};

static int parse_tags(const char *text, size_t len, struct dkim_keyrec *rec, char *why, size_t whylen)
{
        struct seen seen = { .count = 0 };
        struct taglist_tag tag;
        size_t pos = 0;
        bool first = true;
        int r;

        while ((r = taglist_next(text, len, &pos, &tag, why, whylen)) == 1) {
                for (size_t i = 0; i < seen.count; i++) {
                        if (strcmp(seen.names[i], tag.name) == 0) {
                                dkim_reason(why, whylen, "the tag %s= appears more than once.", tag.name);
                                return DKIMSIGN_E_FORMAT;
                        }
                }
                if (seen.count == sizeof(seen.names) / sizeof(seen.names[0])) {
                        dkim_reason(why, whylen, "the record has more than %zu tags.", seen.count);
                        return DKIMSIGN_E_FORMAT;
                }
                memcpy(seen.names[seen.count++], tag.name, sizeof(tag.name));
                r = apply_tag(rec, tag.name, tag.value, tag.value_len, first, why, whylen);
                if (r < 0)
                        return r;
                first = false;
        }
        return r;
}

int dkim_keyrec_parse(const char *text, size_t len, struct dkim_keyrec *ret, char *why, size_t whylen)
{
        struct dkim_keyrec rec = {
                .alg = DKIM_KEYREC_RSA,
                .h_allows_sha256 = true,
                .s_allows_email = true,
        };
        bool has_p = false;
        int r;

        dkim_reason(why, whylen, "%s", "");
        if (len > DKIM_KEYREC_MAX) {
                dkim_reason(why, whylen, "the record is longer than %d octets.", DKIM_KEYREC_MAX);
                return DKIMSIGN_E_FORMAT;
        }
        if (memchr(text, '\0', len)) {
                dkim_reason(why, whylen, "the record holds a NUL octet.");
                return DKIMSIGN_E_FORMAT;
        }
        r = parse_tags(text, len, &rec, why, whylen);
        if (r == 0) {
                has_p = rec.p != NULL || rec.revoked;
                if (!has_p) {
                        dkim_reason(why, whylen, "the record has no p= tag (the public key).");
                        r = DKIMSIGN_E_FORMAT;
                }
        }
        if (r == 0 && !rec.k)
                r = set_string(&rec.k, "rsa", 3);
        if (r < 0) {
                dkim_keyrec_clear(&rec);
                return r;
        }
        *ret = rec;
        return 0;
}

int dkim_keyrec_pubkey(const struct dkim_keyrec *r, EVP_PKEY **ret)
{
        EVP_PKEY *pkey = NULL;
        const unsigned char *p;

        if (r->revoked || !r->p)
                return DKIMSIGN_E_NO_KEY;
        switch (r->alg) {
        case DKIM_KEYREC_RSA:
                if (r->p_len > DKIM_KEYREC_MAX)
                        return DKIMSIGN_E_FORMAT;
                p = r->p;
                pkey = d2i_PUBKEY(NULL, &p, (long) r->p_len);
                if (pkey && p != r->p + r->p_len) {
                        EVP_PKEY_free(pkey);
                        pkey = NULL;
                }
                if (!pkey) {
                        p = r->p;
                        pkey = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, (long) r->p_len);
                        if (pkey && p != r->p + r->p_len) {
                                EVP_PKEY_free(pkey);
                                pkey = NULL;
                        }
                }
                if (pkey && EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA) {
                        EVP_PKEY_free(pkey);
                        pkey = NULL;
                }
                break;
        case DKIM_KEYREC_ED25519:
                if (r->p_len == 32)
                        pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, r->p, r->p_len);
                break;
        default:
                return DKIMSIGN_E_ALG;
        }
        if (!pkey)
                return DKIMSIGN_E_FORMAT;
        *ret = pkey;
        return 0;
}

static bool bytes_equal(const unsigned char *a, size_t alen, const unsigned char *b, size_t blen)
{
        return alen == blen && memcmp(a, b, alen) == 0;
}

static int rsa_matches(const struct dkim_keyrec *r, EVP_PKEY *pub, char *why, size_t whylen)
{
        unsigned char *spki = NULL, *pkcs1 = NULL;
        int spki_len, pkcs1_len;
        bool same;

        if (r->alg != DKIM_KEYREC_RSA) {
                dkim_reason(why, whylen, "the record is k=%s but the key is RSA.", r->k ? r->k : "?");
                return DKIMSIGN_E_NO_KEY;
        }
        spki_len = i2d_PUBKEY(pub, &spki);
        pkcs1_len = i2d_PublicKey(pub, &pkcs1);
        if (spki_len <= 0 || pkcs1_len <= 0) {
                OPENSSL_free(spki);
                OPENSSL_free(pkcs1);
                return DKIMSIGN_E_INTERNAL;
        }
        /* DER is canonical: the same key has the same octets. */
        same = bytes_equal(r->p, r->p_len, spki, (size_t) spki_len) ||
               bytes_equal(r->p, r->p_len, pkcs1, (size_t) pkcs1_len);
        OPENSSL_free(spki);
        OPENSSL_free(pkcs1);
        if (!same) {
                dkim_reason(why, whylen, "the record's p= is a different RSA key than the token's.");
                return DKIMSIGN_E_NO_KEY;
        }
        return 0;
}

static int ed25519_matches(const struct dkim_keyrec *r, EVP_PKEY *pub, char *why, size_t whylen)
{
        unsigned char raw[32];
        size_t raw_len = sizeof(raw);

        if (r->alg != DKIM_KEYREC_ED25519) {
                dkim_reason(why, whylen, "the record is k=%s but the key is Ed25519 (k=ed25519).", r->k ? r->k : "rsa");
                return DKIMSIGN_E_NO_KEY;
        }
        if (!EVP_PKEY_get_raw_public_key(pub, raw, &raw_len) || raw_len != sizeof(raw))
                return DKIMSIGN_E_INTERNAL;
        if (!bytes_equal(r->p, r->p_len, raw, raw_len)) {
                dkim_reason(why, whylen, "the record's p= is a different Ed25519 key than the token's.");
                return DKIMSIGN_E_NO_KEY;
        }
        return 0;
}

int dkim_keyrec_matches(const struct dkim_keyrec *r, EVP_PKEY *pub, char *why, size_t whylen)
{
        dkim_reason(why, whylen, "%s", "");
        if (r->revoked || !r->p) {
                dkim_reason(why, whylen, "the record is revoked (its p= is empty).");
                return DKIMSIGN_E_NO_KEY;
        }
        switch (EVP_PKEY_get_base_id(pub)) {
        case EVP_PKEY_RSA:
                return rsa_matches(r, pub, why, whylen);
        case EVP_PKEY_ED25519:
                return ed25519_matches(r, pub, why, whylen);
        default:
                return DKIMSIGN_E_ALG;
        }
}
