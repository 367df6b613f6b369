/* SPDX-License-Identifier: MIT */
/*
 * DNS lookups on a private libresolv state.  See resolve.h.
 *
 * libresolv sends the query, matches the reply to it (id and question),
 * retries and falls back to TCP when a UDP answer is truncated.  This file
 * then walks the answer section with ns_parserr, which checks each record's
 * bounds against the message, and decodes the record data itself with
 * every length checked.  It never logs and never sends a second query to
 * follow a CNAME: a resolver that does not give the chain is not trusted to.
 */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <resolv.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "protocol/dkimsign-errors.h"
#include "dns/resolve.h"

/* The largest DNS message (TCP length is 16 bits). */
#define ANSWER_MAX 65536

struct dns_resolver {
        struct __res_state res;
        bool res_open;
        uint8_t *answer;   /* ANSWER_MAX octets, reused by every lookup */
};

struct dns_resolver *dns_resolver_free(struct dns_resolver *r)
{
        if (!r)
                return NULL;
        if (r->res_open)
                res_nclose(&r->res);   /* also frees an IPv6 server address we set */
        free(r->answer);
        free(r);
        return NULL;
}

static int parse_port(const char *s, uint16_t *ret)
{
        unsigned long v = 0;

        if (*s == '\0' || strlen(s) > 5)
                return DKIMSIGN_E_CONFIG;
        for (; *s; s++) {
                if (*s < '0' || *s > '9')
                        return DKIMSIGN_E_CONFIG;
                v = v * 10 + (unsigned long) (*s - '0');
        }
        if (v == 0 || v > 65535)
                return DKIMSIGN_E_CONFIG;
        *ret = (uint16_t) v;
        return 0;
}

/* "IPv4", "IPv4:PORT", "[IPv6]", "[IPv6]:PORT" or a bare IPv6 address. */
static int parse_server(const char *server, struct sockaddr_in *ret4, struct sockaddr_in6 *ret6,
                        bool *ret_is6)
{
        char host[INET6_ADDRSTRLEN + 1];
        const char *port = NULL;
        const char *colon;
        uint16_t portnum = 53;
        bool bracketed = server[0] == '[';
        size_t hlen;

        if (bracketed) {
                const char *close = strchr(server, ']');

                if (!close)
                        return DKIMSIGN_E_CONFIG;
                hlen = (size_t) (close - server - 1);
                if (close[1] == ':')
                        port = close + 2;
                else if (close[1] != '\0')
                        return DKIMSIGN_E_CONFIG;
                server++;
        } else {
                colon = strchr(server, ':');
                if (colon && strchr(colon + 1, ':')) {
                        hlen = strlen(server);          /* a bare IPv6 address */
                } else if (colon) {
                        hlen = (size_t) (colon - server);
                        port = colon + 1;
                } else {
                        hlen = strlen(server);
                }
        }
        if (hlen == 0 || hlen >= sizeof(host))
                return DKIMSIGN_E_CONFIG;
        memcpy(host, server, hlen);
        host[hlen] = '\0';
        if (port && parse_port(port, &portnum) < 0)
                return DKIMSIGN_E_CONFIG;

        memset(ret4, 0, sizeof(*ret4));
        memset(ret6, 0, sizeof(*ret6));
        if (!bracketed && inet_pton(AF_INET, host, &ret4->sin_addr) == 1) {
                ret4->sin_family = AF_INET;
                ret4->sin_port = htons(portnum);
                *ret_is6 = false;
                return 0;
        }
        if (inet_pton(AF_INET6, host, &ret6->sin6_addr) == 1) {
                ret6->sin6_family = AF_INET6;
                ret6->sin6_port = htons(portnum);
                *ret_is6 = true;
                return 0;
        }
        return DKIMSIGN_E_CONFIG;
}

/* Replace the servers res_ninit read from resolv.conf by one server.  The
 * IPv6 form is how res_ninit itself stores an IPv6 server: a malloc'ed
 * address in _u._ext.nsaddrs that res_nclose frees. */
static int use_server(struct __res_state *res, const struct sockaddr_in *sa4,
                      const struct sockaddr_in6 *sa6, bool is6)
{
        for (int i = 0; i < MAXNS; i++) {
                free(res->_u._ext.nsaddrs[i]);
                res->_u._ext.nsaddrs[i] = NULL;
                memset(&res->nsaddr_list[i], 0, sizeof(res->nsaddr_list[i]));
        }
        res->_u._ext.nscount = 0;
        if (is6) {
                struct sockaddr_in6 *copy = malloc(sizeof(*copy));

                if (!copy)
                        return DKIMSIGN_E_NOMEM;
                *copy = *sa6;
                res->nsaddr_list[0].sin_family = 0;
                res->_u._ext.nsaddrs[0] = copy;
        } else {
                res->nsaddr_list[0] = *sa4;
        }
        res->nscount = 1;
        return 0;
}

/* libresolv waits retrans seconds per server and try (more or less: later
 * servers get a share of a doubled wait), retry times: keep
 * tries x servers x retrans within the budget. */
static void set_timeout(struct __res_state *res, unsigned timeout_ms)
{
        int servers = res->nscount > 0 ? res->nscount : 1;
        int total = (int) (timeout_ms / 1000);

        if (total < 1)
                total = 1;
        res->retry = total >= 2 * servers ? 2 : 1;
        res->retrans = total / (res->retry * servers);
        if (res->retrans < 1)
                res->retrans = 1;
}

int dns_resolver_new(const char *server, unsigned timeout_ms, struct dns_resolver **ret)
{
        struct dns_resolver *r;
        struct sockaddr_in sa4;
        struct sockaddr_in6 sa6;
        bool is6 = false;
        bool custom = server && server[0] != '\0';
        int rc;

        if (custom && parse_server(server, &sa4, &sa6, &is6) < 0)
                return DKIMSIGN_E_CONFIG;
        r = calloc(1, sizeof(*r));
        if (!r)
                return DKIMSIGN_E_NOMEM;
        r->answer = malloc(ANSWER_MAX);
        if (!r->answer) {
                dns_resolver_free(r);
                return DKIMSIGN_E_NOMEM;
        }
        if (res_ninit(&r->res) < 0) {
                dns_resolver_free(r);
                return DKIMSIGN_E_SYSTEM;
        }
        r->res_open = true;
        /* Names are always absolute here: no search list, no local domain. */
        r->res.options &= ~(unsigned long) (RES_DNSRCH | RES_DEFNAMES);
        if (custom) {
                rc = use_server(&r->res, &sa4, &sa6, is6);
                if (rc < 0) {
                        dns_resolver_free(r);
                        return rc;
                }
        }
        set_timeout(&r->res, timeout_ms ? timeout_ms : DNS_TIMEOUT_DEFAULT_MS);
        *ret = r;
        return 0;
}

/* A name we are willing to put in a query: printable, no escapes (res_mkquery
 * would interpret a backslash), labels of 1 to 63 octets, 253 in all. */
static bool name_is_queryable(const char *name)
{
        size_t len = strlen(name);
        size_t label = 0;

        if (len > 0 && name[len - 1] == '.')
                len--;
        if (len == 0 || len > DNS_NAME_MAX)
                return false;
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char) name[i];

                if (c == '.') {
                        if (label == 0)
                                return false;
                        label = 0;
                        continue;
                }
                if (c <= 0x20 || c >= 0x7f || c == '\\' || c == '"' || c == ';' || c == '(' || c == ')')
                        return false;
                if (++label > 63)
                        return false;
        }
        return true;
}

/* Owner-name comparison: case-insensitive, a final dot ignored on either side. */
static bool name_equal(const char *a, const char *b)
{
        size_t la = strlen(a), lb = strlen(b);

        if (la > 0 && a[la - 1] == '.')
                la--;
        if (lb > 0 && b[lb - 1] == '.')
                lb--;
        return la == lb && strncasecmp(a, b, la) == 0;
}

typedef int (*rdata_fn)(void *userdata, const ns_msg *msg, const ns_rr *rr);

static int mx_add(void *userdata, const ns_msg *msg, const ns_rr *rr);

/* Send the query and map libresolv's outcome to our codes; *ret_len is the
 * answer's length in r->answer. */
static int query(struct dns_resolver *r, const char *name, int type, int *ret_len)
{
        int n;

        if (!name_is_queryable(name))
                return DKIMSIGN_E_FORMAT;
        r->res.res_h_errno = 0;
        n = res_nquery(&r->res, name, ns_c_in, type, r->answer, ANSWER_MAX);
        if (n < 0) {
                switch (r->res.res_h_errno) {
                case HOST_NOT_FOUND:    /* NXDOMAIN */
                case NO_DATA:           /* NOERROR with an empty answer */
                        return DKIMSIGN_E_DNS_NOT_FOUND;
                default:                /* TRY_AGAIN, NO_RECOVERY (REFUSED), network */
                        return DKIMSIGN_E_DNS_TEMPORARY;
                }
        }
        if (n < NS_HFIXEDSZ || n > ANSWER_MAX)
                return DKIMSIGN_E_FORMAT;
        *ret_len = n;
        return 0;
}

/* The target of a CNAME record, in presentation form. */
static int rr_name_target(const ns_msg *msg, const ns_rr *rr, size_t offset, char *out, size_t outlen)
{
        const uint8_t *start = ns_rr_rdata(*rr) + offset;
        int used;

        if (ns_rr_rdlen(*rr) <= offset)
                return DKIMSIGN_E_FORMAT;
        used = ns_name_uncompress(ns_msg_base(*msg), ns_msg_end(*msg), start, out, outlen);
        if (used < 0 || (size_t) used != ns_rr_rdlen(*rr) - offset)
                return DKIMSIGN_E_FORMAT;
        return 0;
}

/*
 * Walk the answer to r->answer for name: follow the CNAME chain the answer
 * section holds, then hand every record of type at the final owner name to
 * fn.  DKIMSIGN_E_DNS_NOT_FOUND when there is none (NODATA).
 */
static int walk_answer(const uint8_t *answer, int len, const char *name, int type,
                       rdata_fn fn, void *userdata)
{
        char owner[NS_MAXDNAME];
        char target[NS_MAXDNAME];
        ns_msg msg;
        ns_rr rr;
        int count, found = 0, rc;
        int hops;

        if (ns_initparse(answer, len, &msg) < 0)
                return DKIMSIGN_E_FORMAT;
        count = ns_msg_count(msg, ns_s_an);
        if (strlen(name) >= sizeof(owner))
                return DKIMSIGN_E_FORMAT;
        strcpy(owner, name);

        for (hops = 0; hops <= DNS_CNAME_MAX; hops++) {
                bool moved = false;

                for (int i = 0; i < count && !moved; i++) {
                        if (ns_parserr(&msg, ns_s_an, i, &rr) < 0)
                                return DKIMSIGN_E_FORMAT;
                        if (ns_rr_class(rr) != ns_c_in || ns_rr_type(rr) != ns_t_cname ||
                            !name_equal(ns_rr_name(rr), owner))
                                continue;
                        rc = rr_name_target(&msg, &rr, 0, target, sizeof(target));
                        if (rc < 0)
                                return rc;
                        strcpy(owner, target);
                        moved = true;
                }
                if (!moved)
                        break;
        }
        if (hops > DNS_CNAME_MAX)
                return DKIMSIGN_E_FORMAT;   /* a CNAME loop, or a chain too long */

        for (int i = 0; i < count; i++) {
                if (ns_parserr(&msg, ns_s_an, i, &rr) < 0)
                        return DKIMSIGN_E_FORMAT;
                if (ns_rr_class(rr) != ns_c_in || (int) ns_rr_type(rr) != type ||
                    !name_equal(ns_rr_name(rr), owner))
                        continue;
                rc = fn(userdata, &msg, &rr);
                if (rc < 0)
                        return rc;
                found++;
        }
        return found > 0 ? 0 : DKIMSIGN_E_DNS_NOT_FOUND;
}

void dns_txt_clear(struct dns_txt *t)
{
        if (!t)
                return;
        for (size_t i = 0; i < t->count; i++)
                free(t->records[i].text);
        free(t->records);
        t->records = NULL;
        t->count = 0;
}

static int txt_add(void *userdata, const ns_msg *msg, const ns_rr *rr)
{
        struct dns_txt *t = userdata;
        const uint8_t *rd = ns_rr_rdata(*rr);
        size_t rdlen = ns_rr_rdlen(*rr);
        struct dns_txt_record rec = { 0 };
        struct dns_txt_record *grown;
        size_t pos = 0;

        if (rdlen == 0)
                return DKIMSIGN_E_FORMAT;   /* TXT holds one or more strings */
        /* The text is shorter than the rdata by one length octet per string. */
        rec.text = malloc(rdlen + 1);
        if (!rec.text)
                return DKIMSIGN_E_NOMEM;
        while (pos < rdlen) {
                size_t slen = rd[pos++];

                if (slen > rdlen - pos) {
                        free(rec.text);
                        return DKIMSIGN_E_FORMAT;
                }
                memcpy(rec.text + rec.len, rd + pos, slen);
                rec.len += slen;
                pos += slen;
                rec.strings++;
        }
        rec.text[rec.len] = '\0';
        grown = reallocarray(t->records, t->count + 1, sizeof(*grown));
        if (!grown) {
                free(rec.text);
                return DKIMSIGN_E_NOMEM;
        }
        t->records = grown;
        t->records[t->count++] = rec;
        return 0;
}

int dns_txt_lookup(struct dns_resolver *r, const char *name, struct dns_txt *ret)
{
        struct dns_txt t = { 0 };
        int len = 0;
        int rc;

        rc = query(r, name, ns_t_txt, &len);
        if (rc == 0)
                rc = walk_answer(r->answer, len, name, ns_t_txt, txt_add, &t);
        if (rc < 0) {
                dns_txt_clear(&t);
                return rc;
        }
        *ret = t;
        return 0;
}

int dns_txt_from_answer(const uint8_t *answer, size_t len, const char *name, struct dns_txt *ret)
{
        struct dns_txt t = { 0 };
        int rc;

        if (len < NS_HFIXEDSZ || len >= ANSWER_MAX)
                return DKIMSIGN_E_FORMAT;
        rc = walk_answer(answer, (int) len, name, ns_t_txt, txt_add, &t);
        if (rc < 0) {
                dns_txt_clear(&t);
                return rc;
        }
        *ret = t;
        return 0;
}

int dns_mx_from_answer(const uint8_t *answer, size_t len, const char *name, struct dns_mx *ret)
{
        struct dns_mx m = { 0 };
        int rc;

        if (len < NS_HFIXEDSZ || len >= ANSWER_MAX)
                return DKIMSIGN_E_FORMAT;
        rc = walk_answer(answer, (int) len, name, ns_t_mx, mx_add, &m);
        if (rc < 0) {
                dns_mx_clear(&m);
                return rc;
        }
        *ret = m;
        return 0;
}

void dns_addrs_clear(struct dns_addrs *a)
{
        if (!a)
                return;
        free(a->addrs);
        a->addrs = NULL;
        a->count = 0;
}

struct addr_walk {
        struct dns_addrs *out;
        int family;
};

static int addr_add(void *userdata, const ns_msg *msg, const ns_rr *rr)
{
        struct addr_walk *w = userdata;
        size_t want = w->family == AF_INET ? 4 : 16;
        struct dns_addr *grown;

        if (ns_rr_rdlen(*rr) != want)
                return DKIMSIGN_E_FORMAT;
        grown = reallocarray(w->out->addrs, w->out->count + 1, sizeof(*grown));
        if (!grown)
                return DKIMSIGN_E_NOMEM;
        w->out->addrs = grown;
        memset(&grown[w->out->count], 0, sizeof(*grown));
        grown[w->out->count].family = w->family;
        memcpy(grown[w->out->count].addr, ns_rr_rdata(*rr), want);
        w->out->count++;
        return 0;
}

int dns_addr_lookup(struct dns_resolver *r, const char *name, int family, struct dns_addrs *ret)
{
        struct dns_addrs a = { 0 };
        struct addr_walk w = { .out = &a, .family = family };
        int type = family == AF_INET ? ns_t_a : ns_t_aaaa;
        int len = 0;
        int rc;

        if (family != AF_INET && family != AF_INET6)
                return DKIMSIGN_E_INTERNAL;
        rc = query(r, name, type, &len);
        if (rc == 0)
                rc = walk_answer(r->answer, len, name, type, addr_add, &w);
        if (rc < 0) {
                dns_addrs_clear(&a);
                return rc;
        }
        *ret = a;
        return 0;
}

void dns_mx_clear(struct dns_mx *m)
{
        if (!m)
                return;
        for (size_t i = 0; i < m->count; i++)
                free(m->records[i].host);
        free(m->records);
        m->records = NULL;
        m->count = 0;
}

static int mx_add(void *userdata, const ns_msg *msg, const ns_rr *rr)
{
        struct dns_mx *m = userdata;
        char host[NS_MAXDNAME];
        struct dns_mx_record *grown;
        const uint8_t *rd = ns_rr_rdata(*rr);
        size_t hlen;
        int rc;

        if (ns_rr_rdlen(*rr) < 3)
                return DKIMSIGN_E_FORMAT;
        rc = rr_name_target(msg, rr, 2, host, sizeof(host));
        if (rc < 0)
                return rc;
        hlen = strlen(host);
        if (hlen > 0 && host[hlen - 1] == '.')
                host[--hlen] = '\0';   /* the null MX "." becomes "" */
        grown = reallocarray(m->records, m->count + 1, sizeof(*grown));
        if (!grown)
                return DKIMSIGN_E_NOMEM;
        m->records = grown;
        grown[m->count].preference = (uint16_t) ((rd[0] << 8) | rd[1]);
        grown[m->count].host = strdup(host);
        if (!grown[m->count].host)
                return DKIMSIGN_E_NOMEM;
        m->count++;
        return 0;
}

int dns_mx_lookup(struct dns_resolver *r, const char *name, struct dns_mx *ret)
{
        struct dns_mx m = { 0 };
        int len = 0;
        int rc;

        rc = query(r, name, ns_t_mx, &len);
        if (rc == 0)
                rc = walk_answer(r->answer, len, name, ns_t_mx, mx_add, &m);
        if (rc < 0) {
                dns_mx_clear(&m);
                return rc;
        }
        *ret = m;
        return 0;
}
