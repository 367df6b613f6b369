/* SPDX-License-Identifier: MIT */
/*
 * The tag-list syntax DKIM key records (RFC 6376 3.2) and DMARC records
 * (RFC 7489 6.4) share: tag-spec *(";" tag-spec) [";"], a tag-spec being
 * [FWS] name [FWS] "=" [FWS] value [FWS], a name ALPHA *(ALPHA / DIGIT /
 * "_"), a value printable ASCII without ";" and with inner whitespace.
 * CR and LF count as whitespace, as in folded text.  Pure code: no I/O,
 * no logging.  The DKIM key record parser (dkimrec.h) and the DMARC parser
 * (dnscheck/) are built on it.
 */
#ifndef DKIM_TAGLIST_H
#define DKIM_TAGLIST_H

#include <stdbool.h>
#include <stddef.h>

#define TAGLIST_NAME_MAX 32

struct taglist_tag {
        char name[TAGLIST_NAME_MAX + 1];   /* NUL-terminated, as written */
        const char *value;                 /* borrowed from the text, outer whitespace trimmed */
        size_t value_len;
};

/*
 * The next tag of text (len octets) from *pos.  1 with *ret filled and *pos
 * advanced; 0 at the end (a trailing ";" included); DKIMSIGN_E_FORMAT with
 * one sentence in why (a bad name, no "=", a non-printable character, an
 * empty tag between two ";").
 */
int taglist_next(const char *text, size_t len, size_t *pos, struct taglist_tag *ret, char *why, size_t whylen);

bool taglist_is_wsp(char c);

/* Write one reason sentence into a caller's buffer (why may be NULL or
 * whylen 0: then nothing is written).  The record parsers (dkim/'s
 * tag-lists, dnscheck/'s SPF and DMARC) use it to say why they refused a
 * record. */
void dkim_reason(char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
