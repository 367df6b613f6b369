/* SPDX-License-Identifier: MIT */
/*
 * DKIM-Signature assembly (RFC 6376 section 3.5, 5.4, 3.7): the h= list a
 * header policy selects, the signature field with its tags and folding, the
 * SHA-256 digest the key signs, and the b= value put in last.
 *
 * Never signs with l= (a body length tag lets anyone append content under a
 * valid signature) and never offers rsa-sha1 (RFC 8301).  Pure code: no I/O.
 */
#ifndef DKIM_SIGN_H
#define DKIM_SIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>

#include "protocol/buf.h"
#include "dkim/canon.h"
#include "dkim/header.h"

#define DKIM_HNAMES_MAX 128    /* entries of an h= list */
/* Characters of the h= list (names and colons): OpenDKIM copies h= into
 * 4096 octets and fails a signature whose list is longer. */
#define DKIM_HLIST_MAX 4095
#define DKIM_SELECTOR_MAX 63

/* How a policy's field is over-signed: listed in h= once more than it
 * occurs, so no instance can be added above the signed ones. */
enum dkim_oversign {
        DKIM_OVERSIGN_NO = 0,
        DKIM_OVERSIGN_ALWAYS,          /* N+1 times, even when absent (N = 0) */
        DKIM_OVERSIGN_IF_PRESENT,      /* N+1 times when present, absent from h= when not
                                        * (rspamd's "(x)"): h= names no absent field */
};

/* One header name of a signing policy. */
struct dkim_hpolicy {
        const char *name;
        enum dkim_oversign oversign;
};

/* RFC 6376 5.4.1's recommended set, with oversigning on for the fields a
 * forger would most like to add: From, To, Cc, Subject, Date, Reply-To,
 * Message-ID, MIME-Version, Content-Type. */
extern const struct dkim_hpolicy dkim_default_hpolicy[];
extern const size_t dkim_default_hpolicy_len;

struct dkim_sig_spec {
        const char *head;              /* what comes before "; a=": NULL for "DKIM-Signature: v=1",
                                          "ARC-Message-Signature: i=N" for ARC (arc.h) */
        const char *alg;               /* "rsa-sha256" / "ed25519-sha256" */
        enum dkim_canon header_canon;
        enum dkim_canon body_canon;
        const char *domain;            /* d= */
        const char *selector;          /* s= */
        const char *identity;          /* i=, NULL for none; checked by dkim_identity_make */
        uint64_t timestamp;            /* t= */
        uint64_t expire;               /* x=, 0 for none */
        const uint8_t *body_hash;      /* DKIM_SHA256_LEN octets: bh= */
        const char *const *hnames;     /* the h= list, as chosen by dkim_select_headers */
        size_t hcount;
};

/*
 * The h= list for these headers under a policy: each policy name once per
 * occurrence in the header block, plus once more when over-signed
 * (DKIM_OVERSIGN_ALWAYS: even an absent field is covered;
 * DKIM_OVERSIGN_IF_PRESENT: only a present one).  Names point into the policy (borrowed).
 * DKIMSIGN_E_TOO_LARGE if more than max entries are needed, or more than
 * DKIM_HLIST_MAX characters once joined by colons.  A policy must
 * contain "from".
 */
int dkim_select_headers(const struct dkim_headers *h, const struct dkim_hpolicy *policy,
                        size_t policy_len, const char **ret_names, size_t max, size_t *ret_count);

/* Append "DKIM-Signature: v=1; a=...; ...; b=" (folded, no CRLF) to out. */
int dkim_sig_field_begin(const struct dkim_sig_spec *spec, struct buf *out);

/*
 * The digest to sign: SHA-256 over the canonicalized header fields named by
 * spec->hnames (each name takes the last unused instance, bottom-up), then
 * the canonicalized signature field with an empty b= and no final CRLF.
 */
int dkim_sig_digest(const struct dkim_headers *h, const struct dkim_sig_spec *spec,
                    const uint8_t *field, size_t field_len, uint8_t ret_digest[DKIM_SHA256_LEN]);

/* Append the base64 signature after "b=", folded. */
int dkim_sig_field_finish(struct buf *out, const uint8_t *sig, size_t sig_len);

/* A dkim_sink_fn that feeds a SHA-256 context; failed is set when an
 * update fails.  arc.c hashes its seal with it too. */
struct dkim_hash_sink {
        EVP_MD_CTX *md;
        int failed;
};
void dkim_hash_sink(void *userdata, const uint8_t *data, size_t len);

/* Base64 of data appended to out (no line breaks). */
int dkim_base64_put(struct buf *out, const uint8_t *data, size_t len);

#endif
