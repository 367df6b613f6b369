/* SPDX-License-Identifier: MIT */
/*
 * Header block parser: splits an RFC 5322 header block into fields, and
 * finds the From field and its domain.
 *
 * The daemon runs this on bytes from the socket, so it is strictly bounded:
 * every limit comes from struct dkim_header_limits, and malformed input is
 * refused, never guessed at.  Pure code: no I/O, no logging, no globals.
 */
#ifndef DKIM_HEADER_H
#define DKIM_HEADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest domain name (RFC 1035), plus room for the NUL. */
#define DKIM_DOMAIN_MAX 253
#define DKIM_DOMAIN_SIZE (DKIM_DOMAIN_MAX + 1)

struct dkim_header_limits {
        size_t max_fields;  /* most fields in a block */
        size_t max_line;    /* longest physical line, without its CRLF */
};

/* One field: octets block[off .. off+len) are the whole field, continuation
 * lines included, without the final CRLF.  The name is block[off ..
 * off+name_len), with any whitespace before the colon excluded. */
struct dkim_field {
        uint32_t off;
        uint32_t len;
        uint32_t name_len;
};

struct dkim_headers {
        const uint8_t *block;      /* borrowed: the caller keeps it alive */
        size_t block_len;
        struct dkim_field *fields; /* owned */
        size_t count;
};

/*
 * Parse a header block: one or more fields, every line ending in CRLF, no
 * empty line (the header/body separator is not part of the block).
 * Refuses with DKIMSIGN_E_FORMAT: an empty block, a bare CR or LF, a NUL
 * byte, a missing final CRLF, a continuation line before any field, a line
 * that is neither a field nor a continuation (no colon), an empty or
 * non-printable field name.  DKIMSIGN_E_TOO_LARGE: over a limit.
 * On success ret is filled and must be released with dkim_headers_deinit();
 * on failure it is zeroed.
 */
int dkim_headers_parse(const uint8_t *block, size_t len, const struct dkim_header_limits *limits,
                       struct dkim_headers *ret);
void dkim_headers_deinit(struct dkim_headers *h);

/* True when field i's name equals name, ignoring ASCII case. */
bool dkim_field_name_is(const struct dkim_headers *h, size_t i, const char *name);

/* How many fields carry this name (ASCII case ignored). */
size_t dkim_headers_count(const struct dkim_headers *h, const char *name);

/*
 * The domain of the one author address in the one From field, lowercased
 * and in A-label form (a U-label domain of RFC 6532 mail converted, see
 * dkim/idn.h), NUL-terminated into ret_domain (DKIM_DOMAIN_SIZE bytes).
 * DKIMSIGN_E_NO_FROM: no From field.  DKIMSIGN_E_MULTI_FROM: two From fields
 * (in any letter case, "From :" included) or several addresses in it.
 * DKIMSIGN_E_FORMAT: no parseable address or an invalid ASCII domain.
 * DKIMSIGN_E_IDN: an internationalized domain IDNA2008 refuses; then
 * *ret_why (when ret_why is not NULL) is the static sentence of
 * dkim_domain_to_ascii() saying why.
 */
int dkim_headers_from_domain(const struct dkim_headers *h, char ret_domain[DKIM_DOMAIN_SIZE], const char **ret_why);

/* True when s (len bytes) is a syntactically valid domain name: LDH labels of
 * 1..63 octets separated by dots, 253 octets at most, no trailing dot. */
bool dkim_domain_is_valid(const char *s, size_t len);

#endif
