/* SPDX-License-Identifier: MIT */
/*
 * Internationalized domain names: a domain as written by people (U-labels
 * in UTF-8, RFC 6532 mail) to the A-label form that DKIM's d=, DNS names
 * and the key table use (RFC 8616), and back for display.  IDNA2008 with
 * UTS #46 non-transitional processing, by libidn2.  Pure: no I/O, no
 * logging, no globals.
 */
#ifndef DKIM_IDN_H
#define DKIM_IDN_H

#include <stdbool.h>
#include <stddef.h>

#include "dkim/header.h"

/* The longest domain, in octets of UTF-8, that is converted.  A name whose
 * A-label form fits DKIM_DOMAIN_MAX has at most that many code points, each
 * at most 4 octets; longer input is refused as too long. */
#define DKIM_IDN_INPUT_MAX (4 * DKIM_DOMAIN_MAX)
/* Room for a domain's U-label form with its NUL. */
#define DKIM_IDN_UNICODE_SIZE (DKIM_IDN_INPUT_MAX + 1)

/*
 * The domain s (len octets: LDH ASCII, or UTF-8 with U-labels, A-labels
 * and ASCII labels mixed, without a trailing dot) in A-label form,
 * lowercased, NUL-terminated into ret.  Plain LDH ASCII without an "xn--"
 * label is only checked and lowercased, as dkim_domain_is_valid() says.
 * 0; DKIMSIGN_E_FORMAT: ASCII that is no domain name; DKIMSIGN_E_IDN: a
 * name with a U-label or an A-label that IDNA2008 refuses, or whose A-label
 * form is no host name or is too long; DKIMSIGN_E_NOMEM.  On a refusal,
 * *ret_why (when ret_why is not NULL) is a static sentence saying why,
 * starting in lowercase ("it contains ..."); ret is untouched.
 */
int dkim_domain_to_ascii(const char *s, size_t len, char ret[DKIM_DOMAIN_SIZE], const char **ret_why);

/*
 * For display: the U-label form of ascii (an A-label form as
 * dkim_domain_to_ascii returns), NUL-terminated into ret (size octets;
 * DKIM_IDN_UNICODE_SIZE hold any).  True only when ascii has an "xn--"
 * label that decodes to a valid U-label form that converts back to ascii;
 * false (ret untouched) otherwise, so a caller shows ascii alone.
 */
bool dkim_domain_to_unicode(const char *ascii, char *ret, size_t size);

#endif
