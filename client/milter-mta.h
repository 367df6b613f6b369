/* SPDX-License-Identifier: MIT */
/*
 * What the MTA behind dkimsign-milter changes in a message after the
 * milter signed it (issue 20), so the milter signs only what will arrive
 * as signed: a profile per MTA (mta = postfix | sendmail in
 * dkimsign-milter.conf) and the checks the milter runs on each message.
 *
 *   - line_limit: the MTA breaks header and body lines longer than this
 *     (Postfix smtp_line_length_limit 998, Sendmail's esmtp mailer L=990)
 *     when it sends them: such a message is not signed.
 *   - converts_8bit: the MTA re-encodes an 8-bit body for a next hop
 *     without 8BITMIME (Postfix unless disable_mime_output_conversion,
 *     Sendmail unless its mailer has F=8): an 8-bit body is not signed.
 *   - labels_8bit: when it converts, the MTA also labels an 8-bit message
 *     without MIME-Version (MIME-Version, Content-Type: ...; charset=
 *     unknown-8bit: Sendmail), so 8-bit header fields without
 *     MIME-Version are not signed either.
 *   - adds_date_message_id: the MTA adds Date and Message-ID after the
 *     milter when they are missing (Sendmail; Postfix adds them before its
 *     milters see the header): the milter adds them itself, and signs them.
 *   - qualifies_addresses: the MTA rewrites address fields with a name
 *     that has no domain ("To: bob", Sendmail): such a message is not
 *     signed.
 *
 * Pure functions, no I/O (tests/unit/test-milter-mta.c); the address
 * scanner reads header values from outside, bounded by their length
 * (tests/fuzz/fuzz-milter-address.c).
 */
#ifndef CLIENT_MILTER_MTA_H
#define CLIENT_MILTER_MTA_H

#include <stdbool.h>
#include <stddef.h>

struct milter_mta {
        const char *name;               /* "postfix", "sendmail", "other" */
        size_t line_limit;              /* octets before CRLF; 0: no limit */
        bool converts_8bit;
        bool labels_8bit;
        bool adds_date_message_id;
        bool qualifies_addresses;
};

/* The profile named name ("postfix", "sendmail" or "other": no change
 * after the milter).  0, or -1 for an unknown name. */
int milter_mta_profile(const char *name, struct milter_mta *ret);

/* Whether field name (any case) is an address field the MTA rewrites:
 * From, Sender, Reply-To, To, Cc, Bcc and their Resent- forms. */
bool milter_mta_address_field(const char *name);

/* Whether an address list (a field value, len octets) holds an address
 * without a domain: a mailbox with no '@' outside quotes and comments
 * ("bob", "Bob <bob>"); a backslash quotes the next octet anywhere, as
 * Sendmail reads it ("bob\@x" has no domain).  Groups' display names and empty list elements
 * are not addresses.  Bounded by len; never reads past it. */
bool milter_mta_unqualified(const char *value, size_t len);

/* Line lengths and 8-bit octets of a stream (a body, or a header field),
 * fed in pieces of any size. */
struct milter_scan {
        size_t line;            /* octets of the current line so far */
        size_t longest;         /* longest line seen, without its CRLF */
        bool cr;                /* the last octet was CR */
        bool eightbit;          /* an octet over 127 was seen */
};

void milter_scan_feed(struct milter_scan *s, const void *data, size_t len);
/* The longest line, the last one (without a line end) included. */
size_t milter_scan_longest(const struct milter_scan *s);

#endif
