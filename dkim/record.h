/* SPDX-License-Identifier: MIT */
/*
 * DKIM key records (RFC 6376 3.6.1, RFC 8463 4): the TXT text to publish for
 * a public key, as one string and split into DNS character-strings.
 */
#ifndef DKIM_RECORD_H
#define DKIM_RECORD_H

#include <openssl/evp.h>

#include "protocol/buf.h"

/* "v=DKIM1; k=rsa; p=<base64 SubjectPublicKeyInfo>" or
 * "v=DKIM1; k=ed25519; p=<base64 of the 32-octet key>", appended to out. */
int dkim_record_text(EVP_PKEY *pub, struct buf *out);

/* The same text as a zone-file value: quoted character-strings of at most
 * 255 octets each, in parentheses when there are several. */
int dkim_record_zone_value(const char *text, size_t len, struct buf *out);

#endif
