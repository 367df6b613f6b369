/* SPDX-License-Identifier: MIT */
/*
 * DNS lookups through glibc's libresolv on a private resolver state: TXT,
 * A/AAAA and MX records, with a bounded parse of every answer.
 *
 * The answers come from the network and are untrusted: every length is
 * checked, CNAME chains are followed only as the answer section gives them
 * (never by a second query) and at most DNS_CNAME_MAX hops deep.  No
 * logging, no globals: one resolver is used by one thread at a time.
 */
#ifndef DNS_RESOLVE_H
#define DNS_RESOLVE_H

#include <stddef.h>
#include <stdint.h>

#define DNS_NAME_MAX 253        /* presentation form, without the final dot */
#define DNS_CNAME_MAX 8         /* CNAME hops followed inside one answer */
#define DNS_TIMEOUT_DEFAULT_MS 5000

struct dns_resolver;

/*
 * server: NULL or "" = the system resolver (/etc/resolv.conf); else "IPv4",
 * "IPv4:PORT", "[IPv6]", "[IPv6]:PORT" or a bare IPv6 address (port 53).
 * timeout_ms bounds one lookup in total (all tries); libresolv counts in
 * whole seconds, so the bound is rounded down to them, and is at least 1 s.
 * DKIMSIGN_E_CONFIG for a bad server string, DKIMSIGN_E_NOMEM, or
 * DKIMSIGN_E_SYSTEM when the resolver cannot be initialized.
 * Free with dns_resolver_free.
 */
int dns_resolver_new(const char *server, unsigned timeout_ms, struct dns_resolver **ret);
/* Accepts NULL, returns NULL. */
struct dns_resolver *dns_resolver_free(struct dns_resolver *r);

struct dns_txt_record {
        char *text;      /* owned; the record's character-strings concatenated, NUL-terminated */
        size_t len;      /* octets in text (a string may hold a NUL octet: use len) */
        size_t strings;  /* how many character-strings it was split into */
};

struct dns_txt {
        struct dns_txt_record *records;   /* owned */
        size_t count;
};

/*
 * TXT records at name.  0 with count >= 1; DKIMSIGN_E_DNS_NOT_FOUND for
 * NXDOMAIN or no TXT (NODATA); DKIMSIGN_E_DNS_TEMPORARY for
 * timeout/SERVFAIL/REFUSED/network; DKIMSIGN_E_FORMAT for a malformed answer
 * or a name that cannot be a DNS name.  *ret is set only on success; free it
 * with dns_txt_clear.
 */
int dns_txt_lookup(struct dns_resolver *r, const char *name, struct dns_txt *ret);
/* Free the records and zero t; accepts a zeroed struct. */
void dns_txt_clear(struct dns_txt *t);

struct dns_addr {
        int family;               /* AF_INET or AF_INET6 */
        uint8_t addr[16];         /* 4 or 16 octets, network order */
};

struct dns_addrs {
        struct dns_addr *addrs;   /* owned */
        size_t count;
};

/* A (family AF_INET) or AAAA (AF_INET6) records at name.  Results as for
 * dns_txt_lookup; free with dns_addrs_clear. */
int dns_addr_lookup(struct dns_resolver *r, const char *name, int family, struct dns_addrs *ret);
void dns_addrs_clear(struct dns_addrs *a);

struct dns_mx_record {
        uint16_t preference;
        char *host;               /* owned, without the final dot; "" for the null MX "." */
};

struct dns_mx {
        struct dns_mx_record *records;   /* owned */
        size_t count;
};

/* MX records at name.  Results as for dns_txt_lookup; free with dns_mx_clear. */
int dns_mx_lookup(struct dns_resolver *r, const char *name, struct dns_mx *ret);
void dns_mx_clear(struct dns_mx *m);

/*
 * Decode a DNS answer message for name the way the lookups above do after
 * their query (CNAME chain, record bounds): for tests and fuzzing.  Results
 * as for dns_txt_lookup / dns_mx_lookup, minus the network.
 */
int dns_txt_from_answer(const uint8_t *answer, size_t len, const char *name, struct dns_txt *ret);
int dns_mx_from_answer(const uint8_t *answer, size_t len, const char *name, struct dns_mx *ret);

#endif
