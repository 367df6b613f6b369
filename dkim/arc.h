/* SPDX-License-Identifier: MIT */
/*
 * ARC (RFC 8617) field assembly and chain structure, shared by the daemon
 * (which builds and seals a set) and libdkimsign (which checks the chain a
 * message arrives with): the sets a header block holds, by instance; the
 * ARC-Authentication-Results and ARC-Seal fields; the digest an ARC-Seal
 * signs.  The ARC-Message-Signature is a DKIM-Signature with another head
 * (sign.h, dkim_sig_spec.head).
 *
 * Header fields here are untrusted (a message's): every tag is bounded,
 * and a chain that breaks the structure rules is refused with a sentence,
 * never guessed at.  Pure code: no I/O, no logging.
 */
#ifndef DKIM_ARC_H
#define DKIM_ARC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/buf.h"
#include "dkim/canon.h"
#include "dkim/header.h"

#define ARC_INSTANCE_MAX 50    /* RFC 8617 4.2.1 */

enum arc_kind { ARC_AAR = 0, ARC_AMS = 1, ARC_AS = 2 };

enum arc_cv { ARC_CV_NONE = 0, ARC_CV_PASS = 1, ARC_CV_FAIL = 2 };

/* The ARC sets of a header block: instances 1 to count, each with exactly
 * one field of each kind, by index into the parsed headers. */
struct arc_chain {
        size_t count;
        size_t idx[ARC_INSTANCE_MAX][3];    /* [instance - 1][enum arc_kind] */
        enum arc_cv cv[ARC_INSTANCE_MAX];   /* each ARC-Seal's cv= */
};

/* The field name of a kind: "ARC-Seal" and so on. */
const char *arc_kind_name(enum arc_kind k);
const char *arc_cv_name(enum arc_cv cv);

/*
 * Find the value of tag name in an ARC-Message-Signature or ARC-Seal field
 * (the whole field, name and colon included).  0 with *ret pointing into
 * the field; DKIMSIGN_E_NO_KEY when the tag is absent; DKIMSIGN_E_FORMAT
 * for a field that is no tag-list.
 */
int arc_field_tag(const uint8_t *field, size_t len, const char *name, const char **ret, size_t *ret_len);

/*
 * The structure of the chain (RFC 8617 5.2, steps 1 and 2, 4.2.1): every
 * ARC field has an i= from 1 to ARC_INSTANCE_MAX; each instance from 1 to
 * the highest has exactly one field of each kind; each ARC-Seal has a
 * cv= of none, pass or fail.  0 with *ret filled (count 0: no chain);
 * DKIMSIGN_E_FORMAT with a sentence in why otherwise.
 */
int arc_chain_parse(const struct dkim_headers *h, struct arc_chain *ret, char *why, size_t whylen);

/* The highest valid i= of any ARC field in h (0: none), for the instance
 * that follows a chain too broken to parse, sealed cv=fail (RFC 8617
 * 5.1.2: that seal covers its own set alone). */
size_t arc_highest_instance(const struct dkim_headers *h);

/* Append "ARC-Authentication-Results: i=N; authserv-id; results" (results
 * empty: "none"), folded at spaces, no final CRLF. */
int arc_aar_build(unsigned instance, const char *authserv_id, size_t authserv_len, const char *results,
                  size_t results_len, struct buf *out);

struct arc_seal_spec {
        const char *alg;        /* "rsa-sha256" / "ed25519-sha256" */
        unsigned instance;
        enum arc_cv cv;
        const char *domain;
        const char *selector;
        uint64_t timestamp;
};

/* Append "ARC-Seal: i=N; a=...; t=...; cv=...; d=...; s=...; b=" (no CRLF);
 * finish it with dkim_sig_field_finish. */
int arc_seal_begin(const struct arc_seal_spec *spec, struct buf *out);

/*
 * The digest an ARC-Seal signs (RFC 8617 5.1.1): the sets 1 to before of
 * the chain in h, each as AAR, AMS, AS, then the set being sealed (aar,
 * ams, and as with an empty b= and no final CRLF), all in relaxed header
 * canonicalization.  A cv=fail seal covers its own set alone: before 0.
 */
int arc_seal_digest(const struct dkim_headers *h, const struct arc_chain *chain, size_t before,
                    const uint8_t *aar, size_t aar_len, const uint8_t *ams, size_t ams_len,
                    const uint8_t *as, size_t as_len, uint8_t ret_digest[DKIM_SHA256_LEN]);

/* Append field to out with its b= tag's value removed (RFC 6376 3.7), as a
 * verifier hashes it.  DKIMSIGN_E_FORMAT when it has no b=. */
int arc_strip_b(const uint8_t *field, size_t len, struct buf *out);

#endif
