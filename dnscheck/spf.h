/* SPDX-License-Identifier: MIT */
/*
 * SPF records (RFC 7208): a bounded parser of the record's terms, the
 * syntax of every term (macros included) checked.  The check of a domain's
 * published SPF through DNS is spfcheck.h's.
 *
 * The text is untrusted (it came from DNS).  Pure code: no I/O, no logging.
 */
#ifndef DNSCHECK_SPF_H
#define DNSCHECK_SPF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SPF_RECORD_MAX 4096         /* octets of one record we parse */
#define SPF_TERMS_MAX 128

enum spf_kind {
        SPF_ALL,
        SPF_INCLUDE,
        SPF_A,
        SPF_MX,
        SPF_PTR,
        SPF_IP4,
        SPF_IP6,
        SPF_EXISTS,
        SPF_REDIRECT,        /* modifier */
        SPF_EXP,             /* modifier */
        SPF_UNKNOWN_MODIFIER,
};

struct spf_term {
        enum spf_kind kind;
        char qualifier;      /* '+', '-', '~', '?' (mechanisms; '+' when not written) */
        char *text;          /* owned: the term as written */
        char *domain;        /* owned: the domain-spec, NULL when absent (or for ip4/ip6/all) */
        bool has_macro;      /* the domain-spec holds a macro-expand */
        int cidr4, cidr6;    /* prefix lengths, -1 when absent */
        uint8_t addr[16];    /* ip4 (4 octets) / ip6 network */
};

struct spf_record {
        struct spf_term *terms;   /* owned */
        size_t count;
        int all_index;            /* index of the first all mechanism, -1 when none */
        int redirect_index;       /* index of redirect=, -1 when none */
};

/* Is this TXT text an SPF record: "v=spf1" (any case) then a space or the end. */
bool spf_is_record(const char *text, size_t len);

/*
 * Parse an SPF record's text.  0 with *ret filled (free with
 * spf_record_clear); DKIMSIGN_E_FORMAT with one sentence in why (naming
 * the bad term) for any syntax error RFC 7208 makes a permerror;
 * DKIMSIGN_E_TOO_LARGE over SPF_RECORD_MAX octets or SPF_TERMS_MAX terms.
 */
int spf_parse(const char *text, size_t len, struct spf_record *ret, char *why, size_t whylen);
void spf_record_clear(struct spf_record *r);

#endif
