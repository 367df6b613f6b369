/* SPDX-License-Identifier: MIT */
/*
 * libdkimsign: DKIM signing through dkimsignd.
 *
 * The library streams a message through RFC 6376 body canonicalization and
 * SHA-256 as it is written, keeping only the header block (bounded), so a
 * message of any size signs in constant memory and the body never crosses
 * the socket.  dkimsign_sign() sends the header block and the body hash to
 * the daemon, which returns the DKIM-Signature field(s) to prepend.
 *
 *     dkimsign_client *c;  dkimsign_message *m;  char *sig;
 *     dkimsign_client_open(NULL, &c);
 *     dkimsign_message_new(&m);
 *     dkimsign_message_write(m, data, len);     (any number of times)
 *     dkimsign_sign(c, m, &sig);                (then prepend sig)
 *     free(sig); dkimsign_message_free(m); dkimsign_client_free(c);
 *
 * Every function returns 0 or a negative enum dkimsign_err; outputs are set
 * only on success.  dkimsign_err_is_temporary() tells a failure worth
 * retrying later (daemon down, token failure, busy) from a permanent one
 * (the message can't be signed).  The library never logs and never exits.
 * A client and a message are used by one thread at a time.
 *
 * Build against the installed library with
 *     cc prog.c $(pkg-config --cflags --libs dkimsign)
 * docs/libdkimsign.md describes the API with a complete example program
 * (docs/examples/sign-message.c).  Only the dkimsign_* functions below are
 * exported (version node DKIMSIGN_0, soname libdkimsign.so.0).
 */
#ifndef DKIMSIGN_H
#define DKIMSIGN_H

#include <stddef.h>

#include "dkimsign-errors.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DKIMSIGN_DEFAULT_SOCKET_PATH "/run/dkimsignd/dkimsignd.sock"

enum dkimsign_canon {
        DKIMSIGN_CANON_SIMPLE = 0,
        DKIMSIGN_CANON_RELAXED = 1,
};

/* Parse a canonicalization as given by a user: "relaxed/simple" (header
 * then body), or one word for both.  0, or DKIMSIGN_E_FORMAT. */
int dkimsign_canon_parse(const char *s, enum dkimsign_canon *ret_header, enum dkimsign_canon *ret_body);

typedef struct dkimsign_client dkimsign_client;
typedef struct dkimsign_message dkimsign_message;

/* Connect to dkimsignd at socket_path (NULL: the default path) and agree on
 * a protocol version.  On failure *ret is still set when the client could
 * be allocated, so dkimsign_client_error() can say why; free it either way.
 * Returns DKIMSIGN_E_UNAVAILABLE when nothing listens there. */
int dkimsign_client_open(const char *socket_path, dkimsign_client **ret);
/* Accepts NULL. */
void dkimsign_client_free(dkimsign_client *c);
/* One sentence on the last failure (the daemon's own words when it
 * refused); owned by the client, valid until its next call. */
const char *dkimsign_client_error(const dkimsign_client *c);

/* A message to sign, relaxed/relaxed by default. */
int dkimsign_message_new(dkimsign_message **ret);
/* Accepts NULL. */
void dkimsign_message_free(dkimsign_message *m);
/* Canonicalization for header and body; only before the first write. */
int dkimsign_message_set_canon(dkimsign_message *m, enum dkimsign_canon header, enum dkimsign_canon body);
/* Sign for this domain (d=) instead of the From address's domain; U-labels
 * ("bücher.example") are taken too, and signed for in A-label form. */
int dkimsign_message_set_domain(dkimsign_message *m, const char *domain);
/* Largest header block accepted (default 256 KiB): DKIMSIGN_E_TOO_LARGE past it. */
int dkimsign_message_set_max_header(dkimsign_message *m, size_t max);

/* The whole RFC 5322 message (header, empty line, body) in pieces of any
 * size, CRLF or bare LF line ends. */
int dkimsign_message_write(dkimsign_message *m, const void *data, size_t len);

/* The same message as an MTA hands it over (milter): header fields one by
 * one, in order, then the body.  Only on a message nothing was written to.
 *
 * dkimsign_message_add_header_raw() signs the field exactly as the MTA
 * will send it: "name:value".  name is the field name (printable US-ASCII,
 * no colon); value is everything after the colon as it stands: its leading
 * whitespace (none, a space, a tab, several) and its folds, with LF or CRLF
 * line ends (made CRLF), each followed by a space or tab.  A milter gets
 * values so when it negotiates SMFIP_HDR_LEADSPC with the MTA.
 *
 * dkimsign_message_add_header() takes the value without its leading
 * whitespace, as a milter gets it without SMFIP_HDR_LEADSPC, and signs
 * "name: value": one space after the colon, whatever the field had.  That
 * is the field as sent only when it had exactly one space there (Postfix
 * drops one space, Sendmail all leading whitespace), so with simple header
 * canonicalization a field written "Subject:x" fails verification; relaxed
 * header canonicalization ignores that whitespace and is unaffected.
 *
 * Both return DKIMSIGN_E_FORMAT for a name or value that is no field (a
 * colon, space or control character in the name, a line end in the value
 * that does not fold) and DKIMSIGN_E_TOO_LARGE past the header limit. */
int dkimsign_message_add_header_raw(dkimsign_message *m, const char *name, const char *value);
int dkimsign_message_add_header(dkimsign_message *m, const char *name, const char *value);
int dkimsign_message_write_body(dkimsign_message *m, const void *data, size_t len);

/* The domain of the From field's address, lowercased, as dkimsignd will
 * read it from the header fields given so far: call it once the header is
 * complete.  A caller that authorizes a sender checks this domain, the one
 * the daemon signs for.  An internationalized domain (RFC 6532 mail) comes
 * in A-label form ("xn--bcher-kva.example" for "bücher.example"), as d=
 * has it (RFC 8616).  Copied with its NUL into ret (size octets; 254 hold
 * any domain).  0; DKIMSIGN_E_NO_FROM (no From field),
 * DKIMSIGN_E_MULTI_FROM (two From fields, or two addresses in one),
 * DKIMSIGN_E_FORMAT (no valid address, or a header block dkimsignd would
 * refuse), DKIMSIGN_E_IDN (a domain IDNA2008 refuses),
 * DKIMSIGN_E_NOSPACE (size too small). */
int dkimsign_message_from_domain(const dkimsign_message *m, char *ret, size_t size);

/* domain (NUL-terminated: ASCII, or UTF-8 with U-labels) in lowercase
 * A-label form, the form dkimsign_message_from_domain gives and dkimsignd
 * compares and signs for (IDNA2008, UTS #46 non-transitional; RFC 8616):
 * for a caller's own list of domains.  Copied with its NUL into ret (size
 * octets; 254 hold any domain).  0; DKIMSIGN_E_FORMAT (no domain name),
 * DKIMSIGN_E_IDN (an internationalized name IDNA2008 refuses),
 * DKIMSIGN_E_NOSPACE (size too small). */
int dkimsign_domain_to_ascii(const char *domain, char *ret, size_t size);

/* Finish the message and ask the daemon for its signature(s).  *ret_fields
 * gets one or more complete "DKIM-Signature: ..." fields, each ending in
 * CRLF, NUL-terminated; free() it.  Reconnects once if the connection was
 * lost since the last call. */
int dkimsign_sign(dkimsign_client *c, dkimsign_message *m, char **ret_fields);

/* After dkimsign_sign(): 1 when the message ended inside its header (no
 * empty line, so no body), 0 otherwise.  A writer should then end the
 * header with an empty line: the signature covers the same octets either
 * way, and some verifiers (OpenDKIM 2.11, simple canonicalization) fail a
 * message without one. */
int dkimsign_message_ended_in_header(const dkimsign_message *m);

/*
 * ARC sealing (RFC 8617), for a forwarder or list that relays the message.
 *
 * dkimsign_message_set_arc() readies a message for it, before anything is
 * written: relaxed/relaxed (what the ARC-Message-Signature uses), and the
 * body hashed simple too, for the chain's own signatures.
 *
 * dkimsign_arc_seal() finishes the message and checks the ARC chain it
 * arrived with (structure and instances, the newest ARC-Message-Signature
 * and every ARC-Seal against its key in DNS), which decides cv= (none: no
 * chain; pass; fail); takes the results to record from the message's
 * Authentication-Results fields whose authserv-id is o->authserv_id (the
 * MTA's own verifier; other fields are ignored); and asks dkimsignd for
 * the next ARC set, sealed with o->domain's key.  *ret_fields gets
 * "ARC-Seal: ...", "ARC-Message-Signature: ...",
 * "ARC-Authentication-Results: ..." in that order, each ending in CRLF,
 * NUL-terminated: prepend them; free() it.  *ret_cv (may be NULL) gets
 * the cv= sealed.  dkimsign_client_error() then says what the check found.
 *
 * DKIMSIGN_E_HEADER, with nothing sealed: the chain ended with cv=fail
 * upstream (RFC 8617 5.1: no set follows one) or has 50 sets; pass the
 * message on as it is.  DKIMSIGN_E_DNS_TEMPORARY: a key of the chain could
 * not be looked up now (retry later).  DKIMSIGN_E_VERSION: the daemon
 * speaks protocol version 1.
 */
enum dkimsign_arc_cv {
        DKIMSIGN_ARC_NONE = 0,
        DKIMSIGN_ARC_PASS = 1,
        DKIMSIGN_ARC_FAIL = 2,
};

struct dkimsign_arc_options {
        const char *domain;        /* the sealing domain (d=) */
        const char *authserv_id;   /* whose Authentication-Results to record */
        const char *dns_server;    /* for the chain's keys: NULL, the system's resolver; "IP[:PORT]" */
};

int dkimsign_message_set_arc(dkimsign_message *m);
int dkimsign_arc_seal(dkimsign_client *c, dkimsign_message *m, const struct dkimsign_arc_options *o,
                      char **ret_fields, enum dkimsign_arc_cv *ret_cv);

#ifdef __cplusplus
}
#endif

#endif
