/* SPDX-License-Identifier: MIT */
/*
 * DNS lookups through libunbound: TXT, A/AAAA and MX records, with a
 * bounded parse of every answer (answer.c) and what DNSSEC validation said
 * of it.
 *
 * libunbound sends the queries (EDNS0, TCP when an answer is truncated),
 * either to one configured resolver as a forwarder, to the servers of
 * /etc/resolv.conf, or by full recursion from the root; with DNSSEC on it
 * validates against a trust anchor (the system's: dns-root-data).  The
 * answers come from the network and are untrusted: every length is
 * checked, CNAME chains are followed only as the answer section gives them
 * (never by a second query) and at most DNS_CNAME_MAX hops deep.  No
 * logging, no globals: one resolver is used by one thread at a time.
 */
#ifndef DNS_RESOLVE_H
#define DNS_RESOLVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DNS_NAME_MAX 253        /* presentation form, without the final dot */
#define DNS_CNAME_MAX 8         /* CNAME hops followed inside one answer */
#define DNS_TIMEOUT_DEFAULT_MS 5000

#define DNS_TRUST_ANCHOR_DEFAULT "/usr/share/dns/root.key"   /* dns-root-data */
#define DNS_RESOLVER_RECURSIVE "recursive"
#define DNS_ANSWER_LOG_MAX 64   /* answers a resolver remembers (dns_resolver_answers) */

/* DNS record types the lookups ask for. */
enum {
        DNS_TYPE_A = 1,
        DNS_TYPE_MX = 15,
        DNS_TYPE_TXT = 16,
        DNS_TYPE_AAAA = 28,
};

/* [dns] dnssec: whether answers are validated. */
enum dns_dnssec {
        DNS_DNSSEC_NO = 0,     /* never: every answer is unchecked */
        DNS_DNSSEC_AUTO,       /* when the trust anchor can be read; else as no */
        DNS_DNSSEC_YES,        /* always: a trust anchor that can't be read is an error */
};

/* What validation said of one answer. */
enum dns_security {
        DNS_SEC_UNCHECKED = 0, /* not validated (dnssec = no, or auto without a trust anchor) */
        DNS_SEC_INSECURE,      /* validated: the zone is provably unsigned */
        DNS_SEC_SECURE,        /* validated: the signatures chain up to the trust anchor */
        DNS_SEC_BOGUS,         /* validation failed: the answer must not be believed */
};

/* "unchecked", "insecure", "secure", "bogus". */
const char *dns_security_name(enum dns_security s);

struct dns_resolver;

struct dns_resolver_options {
        /* NULL, "" or "system": the servers of /etc/resolv.conf, as
         * forwarders; "recursive": full recursion from the root; else one
         * forwarder: "IPv4", "IPv4:PORT", "[IPv6]", "[IPv6]:PORT" or a bare
         * IPv6 address (port 53). */
        const char *server;
        unsigned timeout_ms;          /* one lookup in total; 0: DNS_TIMEOUT_DEFAULT_MS */
        enum dns_dnssec dnssec;
        const char *trust_anchor;     /* a zone file of DS or DNSKEY records; NULL: the default */
};

/*
 * DKIMSIGN_E_CONFIG for a bad server string ("... is not a resolver
 * address ..." in why), or (dnssec yes) a trust anchor that can't be read;
 * DKIMSIGN_E_NOMEM.  The servers and the trust anchor's content are read at
 * the first lookup.  Free with dns_resolver_free.
 */
int dns_resolver_new(const struct dns_resolver_options *o, struct dns_resolver **ret, char *why, size_t whylen);
/* Accepts NULL, returns NULL. */
struct dns_resolver *dns_resolver_free(struct dns_resolver *r);

/* Whether answers are validated (dnssec yes, or auto with a trust anchor). */
bool dns_resolver_validates(const struct dns_resolver *r);

/* Forget every cached answer, so the next lookups ask again: the DNS
 * watcher calls it before each check, to see what DNS shows now. */
void dns_resolver_forget(struct dns_resolver *r);

/* One answer a resolver got, for showing what validation said of each. */
struct dns_answer_note {
        char name[DNS_NAME_MAX + 1];
        int type;                     /* DNS_TYPE_* */
        enum dns_security security;
        int result;                   /* the lookup's: 0 or a DKIMSIGN_E_* */
};

/* The answers of the lookups so far (at most DNS_ANSWER_LOG_MAX, oldest
 * first; borrowed, valid until the next lookup), and how many more were
 * not kept. */
const struct dns_answer_note *dns_resolver_answers(const struct dns_resolver *r, size_t *ret_count,
                                                   size_t *ret_dropped);

/* What validation said of the last lookup's answer. */
enum dns_security dns_resolver_last_security(const struct dns_resolver *r);

/* "TXT", "A", "AAAA", "MX", or "TYPE<n>" into a static buffer for others. */
const char *dns_type_name(int type);

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
 * timeout/SERVFAIL/REFUSED/network; DKIMSIGN_E_DNS_BOGUS for an answer that
 * failed DNSSEC validation (never believed, whatever it held);
 * DKIMSIGN_E_FORMAT for a malformed answer or a name that cannot be a DNS
 * name.  *ret is set only on success; free it with dns_txt_clear.
 * dns_resolver_last_security says what validation said of the answer.
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
 * Decode a DNS answer message (a whole message, header first) for name the
 * way the lookups above do after their query (CNAME chain, record bounds);
 * answer.c.  Results as for dns_txt_lookup / dns_mx_lookup, minus the
 * network and DNSSEC.
 */
int dns_txt_from_answer(const uint8_t *answer, size_t len, const char *name, struct dns_txt *ret);
int dns_mx_from_answer(const uint8_t *answer, size_t len, const char *name, struct dns_mx *ret);
int dns_addr_from_answer(const uint8_t *answer, size_t len, const char *name, int family, struct dns_addrs *ret);

#endif
