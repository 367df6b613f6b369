/* SPDX-License-Identifier: MIT */
/*
 * DKIM key records as published in DNS (RFC 6376 3.6.1, RFC 8463 4): parse
 * the tag-list of a selector's TXT record and compare its key with ours.
 * Building the record to publish is record.h's.
 *
 * The text is untrusted (it came from DNS): every tag is bounded, duplicate
 * tags are an error (RFC 6376 3.2), unknown tags are ignored.  Pure code: no
 * I/O, no logging.
 */
#ifndef DKIM_DKIMREC_H
#define DKIM_DKIMREC_H

#include <stdbool.h>
#include <stddef.h>
#include <openssl/evp.h>

#define DKIM_KEYREC_MAX 8192   /* octets of record text we accept */

enum dkim_keyrec_alg {
        DKIM_KEYREC_RSA = 0,       /* k=rsa, also when k= is absent */
        DKIM_KEYREC_ED25519,       /* k=ed25519 */
        DKIM_KEYREC_OTHER,         /* a k= we do not know: unusable, not malformed */
};

struct dkim_keyrec {
        bool has_version;          /* v= was present (it must then be "DKIM1" and first) */
        enum dkim_keyrec_alg alg;
        char *k;                   /* owned: the k= value as written, "rsa" when absent */
        char *h;                   /* owned: the h= list as written, NULL when absent */
        bool h_allows_sha256;      /* true when h= is absent or lists sha256 */
        char *s;                   /* owned: the s= list as written, NULL when absent */
        bool s_allows_email;       /* true when s= is absent or lists * or email */
        char *n;                   /* owned: the n= notes, NULL when absent */
        char *t;                   /* owned: the t= flags as written, NULL when absent */
        bool testing;              /* t=y */
        bool strict;               /* t=s */
        bool revoked;              /* p= present and empty */
        unsigned char *p;          /* owned: the decoded p= octets, NULL when revoked */
        size_t p_len;
};

/*
 * Parse a key record's text (len octets; NUL octets are refused).  0 on
 * success with *ret filled (free with dkim_keyrec_clear); DKIMSIGN_E_FORMAT
 * with one sentence in why otherwise (why may be NULL).  *ret is set only on
 * success.
 */
int dkim_keyrec_parse(const char *text, size_t len, struct dkim_keyrec *ret, char *why, size_t whylen);

/* Free what r owns and zero it; accepts a zeroed struct. */
void dkim_keyrec_clear(struct dkim_keyrec *r);

/*
 * 0 when the record's key is pub: RSA compared as SubjectPublicKeyInfo DER
 * (a bare PKCS#1 RSAPublicKey, as some publishers write, is accepted too);
 * Ed25519 as the raw 32 octets.  DKIMSIGN_E_NO_KEY when it differs, the
 * record is revoked or its k= does not match the key type, with one sentence
 * in why.  pub is borrowed.
 */
int dkim_keyrec_matches(const struct dkim_keyrec *r, EVP_PKEY *pub, char *why, size_t whylen);

/*
 * The public key the record holds, as an EVP_PKEY the caller frees (for the
 * key size, say).  DKIMSIGN_E_NO_KEY for a revoked record, DKIMSIGN_E_FORMAT
 * when p= is not a key of the record's type, DKIMSIGN_E_ALG for an unknown k=.
 */
int dkim_keyrec_pubkey(const struct dkim_keyrec *r, EVP_PKEY **ret);

#endif
