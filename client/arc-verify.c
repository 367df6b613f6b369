/* SPDX-License-Identifier: MIT */
/*
 * The ARC chain check of a message about to be sealed (RFC 8617 5.2):
 * structure and instances (dkim/arc.c), each ARC-Seal's cv=, the newest
 * ARC-Message-Signature, and every ARC-Seal, each against its key in DNS.
 * The result is the cv= of the set the sealer adds: none (no chain), pass
 * or fail.  The daemon keeps no network, so this side asks DNS.
 *
 * Only the newest AMS must verify (5.2 step 4); older ones may have been
 * broken by later hops, which the chain itself records.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "client/arc-private.h"
#include "client/client-private.h"
#include "dkim/arc.h"
#include "dkim/dkimrec.h"
#include "dkim/header.h"
#include "dkim/sign.h"
#include "dkim/taglist.h"
#include "dns/resolve.h"
#include "protocol/dkimsign-errors.h"

#define SIG_MAX 1024            /* a decoded b=: RSA up to 8192 bits */
#define HLIST_MAX 4096          /* an h= list's text */

struct checker {
        const struct dkim_headers *h;
        const struct arc_chain *chain;
        struct dns_resolver *dns;
        const dkimsign_message *m;
        char *why;
        size_t whylen;
};

/* Base64 of a tag value, whitespace (folding) skipped. */
static int b64_decode(const char *v, size_t len, uint8_t *out, size_t max, size_t *ret_len)
{
        char clean[SIG_MAX * 2];
        size_t n = 0, pad = 0;
        int got;

        for (size_t i = 0; i < len; i++) {
                if (v[i] == ' ' || v[i] == '\t' || v[i] == '\r' || v[i] == '\n')
                        continue;
                if (n == sizeof(clean) - 1)
                        return DKIMSIGN_E_FORMAT;
                clean[n++] = v[i];
        }
        if (n == 0 || n % 4 || n / 4 * 3 > max)
                return DKIMSIGN_E_FORMAT;
        pad = (clean[n - 1] == '=') + (clean[n - 2] == '=');
        got = EVP_DecodeBlock(out, (const unsigned char *) clean, (int) n);
        if (got < 0 || (size_t) got < pad)
                return DKIMSIGN_E_FORMAT;
        *ret_len = (size_t) got - pad;
        return 0;
}

/* A tag value as a NUL-terminated string in out. */
static int tag_str(const uint8_t *f, size_t len, const char *name, char *out, size_t size)
{
        const char *v;
        size_t n;
        int r = arc_field_tag(f, len, name, &v, &n);

        if (r < 0)
                return DKIMSIGN_E_FORMAT;
        if (n >= size)
                return DKIMSIGN_E_FORMAT;
        memcpy(out, v, n);
        out[n] = 0;
        return 0;
}

/* The public key at s._domainkey.d. */
static int fetch_key(struct checker *k, const char *d, const char *s, EVP_PKEY **ret)
{
        char name[DNS_NAME_MAX + 2];
        struct dns_txt txt = { 0 };
        struct dkim_keyrec rec;
        int r;

        if ((size_t) snprintf(name, sizeof(name), "%s._domainkey.%s", s, d) >= sizeof(name))
                return DKIMSIGN_E_FORMAT;
        r = dns_txt_lookup(k->dns, name, &txt);
        if (r == DKIMSIGN_E_DNS_TEMPORARY)
                return r;
        if (r < 0 || txt.count != 1) {
                dns_txt_clear(&txt);
                dkim_reason(k->why, k->whylen, "no single key record at %s", name);
                return DKIMSIGN_E_NO_KEY;
        }
        r = dkim_keyrec_parse(txt.records[0].text, txt.records[0].len, &rec, NULL, 0);
        dns_txt_clear(&txt);
        if (r < 0) {
                dkim_reason(k->why, k->whylen, "the key record at %s is malformed", name);
                return DKIMSIGN_E_NO_KEY;
        }
        r = dkim_keyrec_pubkey(&rec, ret);
        dkim_keyrec_clear(&rec);
        if (r < 0)
                dkim_reason(k->why, k->whylen, "the key record at %s has no usable key", name);
        return r < 0 ? DKIMSIGN_E_NO_KEY : 0;
}

/* Check field's signature (tags a, d, s, b) over digest. */
static int check_sig(struct checker *k, const uint8_t *f, size_t len, const uint8_t digest[DKIM_SHA256_LEN])
{
        char a[32], d[DKIM_DOMAIN_SIZE], s[64];
        uint8_t sig[SIG_MAX];
        size_t sig_len = 0;
        const char *bv;
        size_t bl;
        EVP_PKEY *pkey = NULL;
        EVP_PKEY_CTX *pctx = NULL;
        EVP_MD_CTX *mctx = NULL;
        bool rsa, ok = false;
        int r;

        if (tag_str(f, len, "a", a, sizeof(a)) < 0 || tag_str(f, len, "d", d, sizeof(d)) < 0 ||
            tag_str(f, len, "s", s, sizeof(s)) < 0 || arc_field_tag(f, len, "b", &bv, &bl) < 0 ||
            b64_decode(bv, bl, sig, sizeof(sig), &sig_len) < 0)
                return DKIMSIGN_E_FORMAT;
        if (strcasecmp(a, "rsa-sha256") != 0 && strcasecmp(a, "ed25519-sha256") != 0)
                return DKIMSIGN_E_ALG;
        rsa = strcasecmp(a, "rsa-sha256") == 0;
        r = fetch_key(k, d, s, &pkey);
        if (r < 0)
                return r;
        if (rsa && EVP_PKEY_base_id(pkey) == EVP_PKEY_RSA) {
                pctx = EVP_PKEY_CTX_new(pkey, NULL);
                ok = pctx && EVP_PKEY_verify_init(pctx) > 0 &&
                     EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) > 0 &&
                     EVP_PKEY_CTX_set_signature_md(pctx, EVP_sha256()) > 0 &&
                     EVP_PKEY_verify(pctx, sig, sig_len, digest, DKIM_SHA256_LEN) == 1;
        } else if (!rsa && EVP_PKEY_base_id(pkey) == EVP_PKEY_ED25519) {
                /* RFC 8463: PureEdDSA over the SHA-256 digest. */
                mctx = EVP_MD_CTX_new();
                ok = mctx && EVP_DigestVerifyInit(mctx, NULL, NULL, NULL, pkey) > 0 &&
                     EVP_DigestVerify(mctx, sig, sig_len, digest, DKIM_SHA256_LEN) == 1;
        }
        EVP_PKEY_CTX_free(pctx);
        EVP_MD_CTX_free(mctx);
        EVP_PKEY_free(pkey);
        return ok ? 0 : DKIMSIGN_E_VERIFY;
}

/* The h= list as names: split at ':', whitespace dropped. */
static size_t split_hlist(char *text, const char **names, size_t max)
{
        size_t n = 0;
        char *save = NULL;

        for (char *t = strtok_r(text, ":", &save); t && n < max; t = strtok_r(NULL, ":", &save)) {
                char *e;

                while (*t == ' ' || *t == '\t' || *t == '\r' || *t == '\n')
                        t++;
                e = t + strlen(t);
                while (e > t && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
                        *--e = 0;
                if (*t)
                        names[n++] = t;
        }
        return n;
}

/* The newest ARC-Message-Signature: body hash and signature. */
static int check_ams(struct checker *k, size_t inst)
{
        const struct dkim_field *fd = &k->h->fields[k->chain->idx[inst - 1][ARC_AMS]];
        const uint8_t *f = k->h->block + fd->off;
        char c[32], hl[HLIST_MAX];
        const char *names[DKIM_HNAMES_MAX], *bhv, *dummy;
        uint8_t bh[64], digest[DKIM_SHA256_LEN];
        size_t bhl, bh_len = 0, dl;
        enum dkim_canon hc = DKIM_CANON_SIMPLE, bc = DKIM_CANON_SIMPLE;
        struct buf stripped;
        int r;

        if (tag_str(f, fd->len, "c", c, sizeof(c)) == 0) {
                char *slash = strchr(c, '/');

                if (slash)
                        *slash = 0;
                if (dkim_canon_from_string(c, &hc) < 0 || (slash && dkim_canon_from_string(slash + 1, &bc) < 0))
                        return DKIMSIGN_E_FORMAT;
        }
        /* l= would sign part of the body, which this side hashes whole. */
        if (arc_field_tag(f, fd->len, "l", &dummy, &dl) == 0)
                return DKIMSIGN_E_FORMAT;
        if (tag_str(f, fd->len, "h", hl, sizeof(hl)) < 0 || arc_field_tag(f, fd->len, "bh", &bhv, &bhl) < 0 ||
            b64_decode(bhv, bhl, bh, sizeof(bh), &bh_len) < 0)
                return DKIMSIGN_E_FORMAT;
        if (bh_len != DKIM_SHA256_LEN ||
            memcmp(bh, bc == DKIM_CANON_RELAXED ? k->m->body_hash : k->m->body_hash_simple, DKIM_SHA256_LEN) != 0) {
                dkim_reason(k->why, k->whylen, "the body hash of the ARC-Message-Signature i=%zu differs", inst);
                return DKIMSIGN_E_VERIFY;
        }
        {
                struct dkim_sig_spec spec = { .header_canon = hc, .hnames = names };

                spec.hcount = split_hlist(hl, names, DKIM_HNAMES_MAX);
                buf_init(&stripped, fd->len + 1);
                r = arc_strip_b(f, fd->len, &stripped);
                if (r == 0)
                        r = dkim_sig_digest(k->h, &spec, stripped.data, stripped.len, digest);
                buf_deinit(&stripped);
        }
        if (r == 0)
                r = check_sig(k, f, fd->len, digest);
        if (r == DKIMSIGN_E_VERIFY)
                dkim_reason(k->why, k->whylen, "the ARC-Message-Signature i=%zu does not verify", inst);
        return r;
}

static int check_seal(struct checker *k, size_t inst)
{
        const struct dkim_headers *h = k->h;
        const size_t *idx = k->chain->idx[inst - 1];
        const struct dkim_field *as = &h->fields[idx[ARC_AS]], *aar = &h->fields[idx[ARC_AAR]],
                                *ams = &h->fields[idx[ARC_AMS]];
        uint8_t digest[DKIM_SHA256_LEN];
        struct buf stripped;
        int r;

        buf_init(&stripped, as->len + 1);
        r = arc_strip_b(h->block + as->off, as->len, &stripped);
        if (r == 0)
                r = arc_seal_digest(h, k->chain, inst - 1, h->block + aar->off, aar->len, h->block + ams->off,
                                    ams->len, stripped.data, stripped.len, digest);
        buf_deinit(&stripped);
        if (r == 0)
                r = check_sig(k, h->block + as->off, as->len, digest);
        if (r == DKIMSIGN_E_VERIFY)
                dkim_reason(k->why, k->whylen, "the ARC-Seal i=%zu does not verify", inst);
        return r;
}

int arc_check_chain(const dkimsign_message *m, const struct dkim_headers *h, const char *dns_server,
                    struct arc_chain *ret_chain, enum arc_cv *ret_cv, char *why, size_t whylen)
{
        struct arc_chain chain;
        struct checker k = { .h = h, .chain = &chain, .m = m, .why = why, .whylen = whylen };
        int r;

        dkim_reason(why, whylen, "no ARC chain");
        r = arc_chain_parse(h, &chain, why, whylen);
        if (r < 0) {
                /* A broken structure is a failed chain, sealed as such
                 * after its highest instance. */
                *ret_chain = (struct arc_chain) { .count = arc_highest_instance(h) };
                *ret_cv = ARC_CV_FAIL;
                return 0;
        }
        *ret_chain = chain;
        if (chain.count == 0) {
                *ret_cv = ARC_CV_NONE;
                return 0;
        }
        if (chain.cv[chain.count - 1] == ARC_CV_FAIL) {
                dkim_reason(why, whylen, "the ARC chain ended with cv=fail at i=%zu", chain.count);
                *ret_cv = ARC_CV_FAIL;
                return DKIMSIGN_E_HEADER;
        }
        for (size_t i = 0; i < chain.count; i++)
                if (chain.cv[i] != (i == 0 ? ARC_CV_NONE : ARC_CV_PASS)) {
                        dkim_reason(why, whylen, "the ARC-Seal i=%zu has cv=%s", i + 1, arc_cv_name(chain.cv[i]));
                        *ret_cv = ARC_CV_FAIL;
                        return 0;
                }
        /* Unvalidated, as DKIM verifiers look keys up: the library has no
         * trust anchor setting, and a forwarder of private zones (as the
         * tests' and some sites' are) would make every answer bogus. */
        r = dns_resolver_new(&(struct dns_resolver_options) { .server = dns_server, .dnssec = DNS_DNSSEC_NO },
                             &k.dns, why, whylen);
        if (r < 0)
                return r;
        r = check_ams(&k, chain.count);
        for (size_t i = chain.count; r == 0 && i > 0; i--)
                r = check_seal(&k, i);
        dns_resolver_free(k.dns);
        if (r == DKIMSIGN_E_DNS_TEMPORARY || r == DKIMSIGN_E_NOMEM) {
                dkim_reason(why, whylen, "a key of the ARC chain could not be looked up now");
                return r;
        }
        if (r == 0)
                dkim_reason(why, whylen, "the ARC chain of %zu set(s) verifies", chain.count);
        else if (r != DKIMSIGN_E_VERIFY && r != DKIMSIGN_E_NO_KEY)
                dkim_reason(why, whylen, "the ARC chain has a malformed or unsupported signature");
        *ret_cv = r == 0 ? ARC_CV_PASS : ARC_CV_FAIL;
        return 0;
}
