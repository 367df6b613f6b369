/* SPDX-License-Identifier: MIT */
/*
 * OpenSMTPD's filter protocol (smtpd-filters(7)), the lines smtpd writes to
 * a proc-exec filter: one line parsed in place into its fields, and the
 * checks of a data line that dkimsign-smtpd-filter needs.  Pure: no I/O, no
 * allocation, nothing kept between calls, so the fuzz target
 * (tests/fuzz/fuzz-smtpd-line.c) calls it as the filter does.
 *
 * Protocol versions 0.6 (OpenSMTPD 6.7 and 6.8, Debian 12's 6.8.0p2) and
 * 0.7 (7.x) write the same lines for what the filter uses:
 *
 *     config|KEY[|VALUE]
 *     report|VERSION|TIME|SUBSYSTEM|EVENT|SESSION[|PARAMS]
 *     filter|VERSION|TIME|SUBSYSTEM|PHASE|SESSION|TOKEN[|PARAMS]
 *
 * SESSION and TOKEN are 64-bit hexadecimal; PARAMS, the last field, may
 * hold '|' (a data line is the raw, dot-escaped line of the message).
 */
#ifndef CLIENT_SMTPD_PROTO_H
#define CLIENT_SMTPD_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest line accepted from smtpd, its line end excluded: smtpd
 * refuses SMTP input lines over 64 KiB, and the prefix of a data line is
 * under 128 octets. */
#define SMTPD_LINE_MAX (64 * 1024 + 512)

/* The longest line smtpd 6.8 reads back whole from a filter (LINE_MAX,
 * 2048 octets with its NUL): it cuts a longer "filter-dataline|..." line
 * short.  The prefix with two 16-digit identifiers takes 50 octets. */
#define SMTPD_REPLY_MAX 2047

enum smtpd_kind {
        SMTPD_CONFIG,
        SMTPD_REPORT,
        SMTPD_FILTER,
};

struct smtpd_line {
        enum smtpd_kind kind;
        /* config: the key; report: the event; filter: the phase. */
        const char *name;
        /* config: the value (NULL for a key without one, config|ready);
         * report and filter: the parameters, "" when there are none. */
        const char *params;
        size_t params_len;
        const char *version;    /* "0.6": report and filter only */
        const char *subsystem;  /* "smtp-in" or "smtp-out" */
        uint64_t session;
        uint64_t token;         /* filter only */
};

/* Parse line (len octets, no line end, NUL at line[len]) in place: '|'
 * separators become NULs and ret's strings point into line.  0;
 * DKIMSIGN_E_TOO_LARGE (over SMTPD_LINE_MAX), DKIMSIGN_E_FORMAT (a NUL
 * or LF inside, an unknown stream, a field missing or malformed: a
 * version not "DIGITS.DIGITS", a time not "DIGITS.DIGITS", a name not
 * lowercase letters, digits and '-', an identifier not 1 to 16
 * hexadecimal digits).  A CR is data in the parameters (a message line
 * with a bare CR) and a config value, out of shape anywhere else.  On failure ret is zeroed
 * and line may have been cut at its separators. */
int smtpd_line_parse(char *line, size_t len, struct smtpd_line *ret);

/* Whether this filter speaks the line's protocol version: 0.6 or 0.7. */
int smtpd_version_supported(const char *version);

/* A data line as smtpd passes it (dot-escaped) into the message line it
 * stands for: a leading '.' removed.  Sets *ret_len; returns the start. */
const char *smtpd_data_unescape(const char *line, size_t len, size_t *ret_len);

/* Whether line is the end of the message (a lone "."). */
int smtpd_data_is_end(const char *line, size_t len);

/* Whether smtpd 6.8 will rewrite a From, To or Cc field after the filter:
 * it appends "@" and its host name to every address of the field that has
 * no domain ("To: bob, Frank <frank>" becomes "To: bob@host, Frank
 * <frank@host>"), which breaks a signature over the field.  The field's
 * value (after the colon) is fed line by line; the check errs towards
 * "rewritten" (an '@' counts only outside quotes and comments, and inside
 * the angle brackets when there are some; a group "name: ...;" is left
 * alone, as smtpd leaves it). */
struct smtpd_addr_scan {
        unsigned comment;       /* depth of nested comments */
        bool quote, escape;
        bool bracket, has_bracket, at_in_bracket;
        bool has_at, has_group, has_text;
        bool rewritten;         /* an address of the field will change */
};

void smtpd_addr_scan_init(struct smtpd_addr_scan *s);
void smtpd_addr_scan_feed(struct smtpd_addr_scan *s, const char *text, size_t len);
/* The field is complete: true when smtpd will change it. */
bool smtpd_addr_scan_end(struct smtpd_addr_scan *s);

#endif
