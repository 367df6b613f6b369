/* SPDX-License-Identifier: MIT */
/*
 * The i= tag (RFC 6376 3.5): the Agent or User Identifier a signature
 * speaks for, "[local-part]@domain" where domain is d= or a subdomain of it.
 *
 * An identity is configured as a template: its domain part is a domain
 * name, or ends in "%d", which stands for the signature's d= ("@%d",
 * "bounces@%d", "@news.%d"), so one [signing] value fits every d=.
 * dkim_identity_make() checks a template against a d= and writes the i=
 * value.  Never guesses: what it does not accept is refused with a
 * sentence.  Pure code: no I/O.
 *
 * The local part is bounded to what every verifier reads alike and what
 * needs no dkim-quoted-printable encoding (RFC 6376 2.11), so it is written
 * into i= as it is: a dot-atom of atext but '=' (RFC 5322 3.2.3), or a
 * quoted string of printable characters but space, '"', '\', ';', '=' and
 * '@' (no quoted pairs); at most 64 octets (RFC 5321 4.5.3.1.1).
 */
#ifndef DKIM_IDENTITY_H
#define DKIM_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>

#include "dkim/header.h"

#define DKIM_LOCAL_PART_MAX 64
/* The whole i=: RFC 5321 4.5.3.1.3's longest address (a path of 256 with
 * its angle brackets).  Not 64 + 1 + 253: OpenDKIM reads at most 256
 * octets of i= and fails a signature with a longer one. */
#define DKIM_IDENTITY_MAX 254
#define DKIM_IDENTITY_SIZE (DKIM_IDENTITY_MAX + 1)

/* True when the template's domain part ends in "%d" (it follows d=). */
bool dkim_identity_is_relative(const char *tmpl);

/*
 * The i= value of template tmpl for a signature with d=d (lowercase), into
 * ret (DKIM_IDENTITY_SIZE bytes; its domain part lowercased).
 * DKIMSIGN_E_FORMAT, with the sentence in why: no '@' or more than one, a
 * local part or domain outside the rules above, or a domain that is
 * neither d nor a subdomain of it.  DKIMSIGN_E_TOO_LARGE: its domain
 * longer than DKIM_DOMAIN_MAX, or the whole longer than DKIM_IDENTITY_MAX,
 * once "%d" is replaced.  ret is set only on success.
 */
int dkim_identity_make(const char *tmpl, const char *d, char ret[DKIM_IDENTITY_SIZE], char *why, size_t whylen);

#endif
