/* SPDX-License-Identifier: MIT */
/*
 * DNS lookups through libunbound.  See resolve.h.
 *
 * libunbound sends the queries (EDNS0, TCP fallback, retries, the choice
 * of server) and, given a trust anchor, validates the answers; it hands
 * back the whole answer message, which answer.c decodes with every length
 * checked.  A lookup runs on libunbound's own thread and this thread waits
 * for it with poll() up to the timeout, so a lookup is bounded whatever
 * the servers do.  The context (and with it the cache) is made at the
 * first lookup and dropped by dns_resolver_forget.  It never logs.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <unbound.h>

#include "protocol/dkimsign-errors.h"
#include "dns/resolve.h"

#define RCODE_NXDOMAIN 3

struct dns_resolver {
        char *forwarder;              /* "ADDR@PORT" for libunbound; NULL: see recursive */
        bool recursive;               /* full recursion; else resolv.conf when no forwarder */
        unsigned timeout_ms;
        char *trust_anchor;           /* NULL: no validation */
        struct ub_ctx *ctx;           /* made at the first lookup */
        struct dns_answer_note log[DNS_ANSWER_LOG_MAX];
        size_t nlog, dropped;
        enum dns_security last;
};

static const char *const security_names[] = {
        [DNS_SEC_UNCHECKED] = "unchecked", [DNS_SEC_INSECURE] = "insecure",
        [DNS_SEC_SECURE] = "secure", [DNS_SEC_BOGUS] = "bogus",
};

const char *dns_security_name(enum dns_security s)
{
        return (unsigned) s <= DNS_SEC_BOGUS ? security_names[s] : "unknown";
}

const char *dns_type_name(int type)
{
        static _Thread_local char other[16];

        switch (type) {
        case DNS_TYPE_A: return "A";
        case DNS_TYPE_AAAA: return "AAAA";
        case DNS_TYPE_MX: return "MX";
        case DNS_TYPE_TXT: return "TXT";
        default:
                snprintf(other, sizeof(other), "TYPE%d", type);
                return other;
        }
}

void dns_resolver_forget(struct dns_resolver *r)
{
        if (r && r->ctx) {
                ub_ctx_delete(r->ctx);   /* joins its thread; cancels nothing pending: none is */
                r->ctx = NULL;
        }
}

struct dns_resolver *dns_resolver_free(struct dns_resolver *r)
{
        if (!r)
                return NULL;
        dns_resolver_forget(r);
        free(r->forwarder);
        free(r->trust_anchor);
        free(r);
        return NULL;
}

static int parse_port(const char *s, unsigned *ret)
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
        *ret = (unsigned) v;
        return 0;
}

/* "IPv4", "IPv4:PORT", "[IPv6]", "[IPv6]:PORT" or a bare IPv6 address, as
 * libunbound writes a forwarder: "ADDR@PORT". */
static int parse_server(const char *server, char **ret)
{
        char host[INET6_ADDRSTRLEN + 1], out[INET6_ADDRSTRLEN + 8];
        unsigned char buf[16];
        const char *port = NULL, *colon;
        unsigned portnum = 53;
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
        if ((bracketed || inet_pton(AF_INET, host, buf) != 1) && inet_pton(AF_INET6, host, buf) != 1)
                return DKIMSIGN_E_CONFIG;
        snprintf(out, sizeof(out), "%s@%u", host, portnum);
        *ret = strdup(out);
        return *ret ? 0 : DKIMSIGN_E_NOMEM;
}

int dns_resolver_new(const struct dns_resolver_options *o, struct dns_resolver **ret, char *why, size_t whylen)
{
        struct dns_resolver *r = calloc(1, sizeof(*r));
        const char *server = o->server;
        const char *ta = o->trust_anchor ? o->trust_anchor : DNS_TRUST_ANCHOR_DEFAULT;
        int rc = 0;

        if (!r)
                return DKIMSIGN_E_NOMEM;
        r->timeout_ms = o->timeout_ms ? o->timeout_ms : DNS_TIMEOUT_DEFAULT_MS;
        if (server && strcasecmp(server, DNS_RESOLVER_RECURSIVE) == 0) {
                r->recursive = true;
        } else if (server && *server && strcasecmp(server, "system") != 0) {
                rc = parse_server(server, &r->forwarder);
                if (rc == DKIMSIGN_E_CONFIG)
                        snprintf(why, whylen, "'%s' is not a resolver address (system, recursive, IPv4, "
                                 "IPv4:PORT or [IPv6]:PORT)", server);
        }
        /* auto validates only where the system has a trust anchor; yes
         * insists on one.  libunbound reads it when the context is made. */
        if (rc == 0 && o->dnssec != DNS_DNSSEC_NO) {
                if (access(ta, R_OK) == 0) {
                        rc = (r->trust_anchor = strdup(ta)) ? 0 : DKIMSIGN_E_NOMEM;
                } else if (o->dnssec == DNS_DNSSEC_YES) {
                        snprintf(why, whylen, "dnssec = yes, but the trust anchor %s can't be read: %s", ta,
                                 strerror(errno));
                        rc = DKIMSIGN_E_CONFIG;
                }
        }
        if (rc == DKIMSIGN_E_NOMEM)
                snprintf(why, whylen, "out of memory");
        if (rc < 0) {
                dns_resolver_free(r);
                return rc;
        }
        *ret = r;
        return 0;
}

bool dns_resolver_validates(const struct dns_resolver *r)
{
        return r->trust_anchor != NULL;
}

/* The context for the settings of r: libunbound's thread (so a lookup can
 * be waited for with a bound), the servers, the trust anchor. */
static int make_ctx(struct dns_resolver *r)
{
        struct ub_ctx *ctx = ub_ctx_create();
        int e = 0;

        if (!ctx)
                return DKIMSIGN_E_NOMEM;
        e = ub_ctx_async(ctx, 1);
        /* Quiet: dns/ never logs, what went wrong comes back as a result. */
        if (e == 0)
                e = ub_ctx_debuglevel(ctx, 0);
        if (e == 0 && r->forwarder) {
                e = ub_ctx_set_fwd(ctx, r->forwarder);
                /* A forwarder on loopback is a local resolver, the usual
                 * setup: libunbound refuses to ask 127.0.0.0/8 otherwise. */
                if (e == 0)
                        e = ub_ctx_set_option(ctx, "do-not-query-localhost:", "no");
        } else if (e == 0 && !r->recursive) {
                e = ub_ctx_resolvconf(ctx, NULL);
                if (e == 0)
                        e = ub_ctx_set_option(ctx, "do-not-query-localhost:", "no");
        }
        if (e == 0 && r->trust_anchor)
                e = ub_ctx_add_ta_file(ctx, r->trust_anchor);
        /* libunbound answers the special-use name test. (RFC 6761) itself,
         * NXDOMAIN; a forwarder or the zone's servers say what is there,
         * as for any other name (test networks and the tests use it).
         * Last: it completes the settings. */
        if (e == 0)
                e = ub_ctx_zone_remove(ctx, "test.");
        if (e != 0) {
                ub_ctx_delete(ctx);
                errno = e == UB_READFILE ? ENOENT : EINVAL;
                return e == UB_NOMEM ? DKIMSIGN_E_NOMEM : DKIMSIGN_E_SYSTEM;
        }
        r->ctx = ctx;
        return 0;
}

/* A name we are willing to put in a query: printable, no escapes
 * (libunbound would interpret a backslash), labels of 1 to 63 octets, 253
 * in all. */
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

struct pending {
        bool done;
        int err;
        struct ub_result *result;
};

static void on_result(void *userdata, int err, struct ub_result *result)
{
        struct pending *p = userdata;

        p->done = true;
        p->err = err;
        p->result = result;
}

static int64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Ask and wait up to the timeout.  0 with *ret (free with ub_resolve_free),
 * or DKIMSIGN_E_DNS_TEMPORARY when no answer came in time. */
static int ask(struct dns_resolver *r, const char *name, int type, struct ub_result **ret)
{
        struct pending p = { 0 };
        int64_t deadline = now_ms() + r->timeout_ms;
        int id, rc;

        if (!r->ctx && (rc = make_ctx(r)) < 0)
                return rc;
        if (ub_resolve_async(r->ctx, name, type, 1 /* IN */, &p, on_result, &id) != 0)
                return DKIMSIGN_E_DNS_TEMPORARY;
        while (!p.done) {
                int64_t left = deadline - now_ms();
                struct pollfd pfd = { .fd = ub_fd(r->ctx), .events = POLLIN };

                if (left <= 0) {
                        ub_cancel(r->ctx, id);
                        return DKIMSIGN_E_DNS_TEMPORARY;
                }
                if (poll(&pfd, 1, (int) left) < 0 && errno != EINTR)
                        return DKIMSIGN_E_SYSTEM;
                if (pfd.revents && ub_process(r->ctx) != 0)
                        return DKIMSIGN_E_DNS_TEMPORARY;
        }
        if (p.err != 0) {
                ub_resolve_free(p.result);
                return p.err == UB_NOMEM ? DKIMSIGN_E_NOMEM : DKIMSIGN_E_DNS_TEMPORARY;
        }
        *ret = p.result;
        return 0;
}

static enum dns_security security_of(const struct dns_resolver *r, const struct ub_result *res)
{
        if (!r->trust_anchor)
                return DNS_SEC_UNCHECKED;
        return res->bogus ? DNS_SEC_BOGUS : res->secure ? DNS_SEC_SECURE : DNS_SEC_INSECURE;
}

static void note(struct dns_resolver *r, const char *name, int type, enum dns_security sec, int result)
{
        struct dns_answer_note *n;

        r->last = sec;
        if (r->nlog == DNS_ANSWER_LOG_MAX) {
                r->dropped++;
                return;
        }
        n = &r->log[r->nlog++];
        snprintf(n->name, sizeof(n->name), "%s", name);
        n->type = type;
        n->security = sec;
        n->result = result;
}

const struct dns_answer_note *dns_resolver_answers(const struct dns_resolver *r, size_t *ret_count,
                                                   size_t *ret_dropped)
{
        *ret_count = r->nlog;
        if (ret_dropped)
                *ret_dropped = r->dropped;
        return r->log;
}

enum dns_security dns_resolver_last_security(const struct dns_resolver *r)
{
        return r->last;
}

typedef int (*decode_fn)(const uint8_t *answer, size_t len, const char *name, int family, void *ret);

/*
 * One lookup: ask, map the outcome to our codes, and decode the answer
 * message with decode.  A bogus answer is never decoded: whatever it says
 * is not to be believed.
 */
static int lookup(struct dns_resolver *r, const char *name, int type, decode_fn decode, int family, void *ret)
{
        struct ub_result *res = NULL;
        enum dns_security sec = DNS_SEC_UNCHECKED;
        int rc;

        if (!name_is_queryable(name))
                return DKIMSIGN_E_FORMAT;
        rc = ask(r, name, type, &res);
        if (rc == 0) {
                sec = security_of(r, res);
                if (sec == DNS_SEC_BOGUS)
                        rc = DKIMSIGN_E_DNS_BOGUS;
                else if (res->rcode == RCODE_NXDOMAIN)
                        rc = DKIMSIGN_E_DNS_NOT_FOUND;
                else if (res->rcode != 0 || !res->answer_packet)
                        rc = DKIMSIGN_E_DNS_TEMPORARY;   /* SERVFAIL, REFUSED, ... */
                else
                        rc = decode(res->answer_packet, (size_t) res->answer_len, name, family, ret);
        }
        ub_resolve_free(res);
        note(r, name, type, sec, rc);
        return rc;
}

static int decode_txt(const uint8_t *answer, size_t len, const char *name, int family, void *ret)
{
        (void) family;
        return dns_txt_from_answer(answer, len, name, ret);
}

static int decode_mx(const uint8_t *answer, size_t len, const char *name, int family, void *ret)
{
        (void) family;
        return dns_mx_from_answer(answer, len, name, ret);
}

static int decode_addr(const uint8_t *answer, size_t len, const char *name, int family, void *ret)
{
        return dns_addr_from_answer(answer, len, name, family, ret);
}

int dns_txt_lookup(struct dns_resolver *r, const char *name, struct dns_txt *ret)
{
        return lookup(r, name, DNS_TYPE_TXT, decode_txt, 0, ret);
}

int dns_mx_lookup(struct dns_resolver *r, const char *name, struct dns_mx *ret)
{
        return lookup(r, name, DNS_TYPE_MX, decode_mx, 0, ret);
}

int dns_addr_lookup(struct dns_resolver *r, const char *name, int family, struct dns_addrs *ret)
{
        if (family != AF_INET && family != AF_INET6)
                return DKIMSIGN_E_INTERNAL;
        return lookup(r, name, family == AF_INET ? DNS_TYPE_A : DNS_TYPE_AAAA, decode_addr, family, ret);
}
