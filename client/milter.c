/* SPDX-License-Identifier: MIT */
/*
 * dkimsign-milter: a libmilter filter that signs outbound mail through
 * dkimsignd.  Header fields and body chunks go to libdkimsign as the MTA
 * hands them over; the milter never holds a message whole (the library
 * keeps the bounded header block and a running body hash).
 *
 * What is signed: mail from an SMTP-authenticated sender ({auth_authen}) or
 * from a client in internal_networks (or with no address: local
 * submission).  Everything else, and every message dkimsignd refuses for
 * good (no key for the From domain, no From, two From), passes unsigned
 * with one info line giving the reason (rate-limited per reason).  A
 * temporary failure (dkimsignd down, token failure, busy) tempfails the
 * message, or accepts it unsigned (on_tempfail = accept); an outage is
 * logged when it starts and when it ends.  Message content is never
 * logged, only the queue id and the From (or envelope sender) domain.
 *
 * Header fields are signed as the MTA will send them: the milter asks for
 * SMFIP_HDR_LEADSPC, so a value comes with the whitespace after the colon.
 * An MTA that does not grant it drops that whitespace, which simple header
 * canonicalization would sign wrongly: header fields are then signed with
 * relaxed canonicalization, and that is logged once.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <libmilter/mfapi.h>

#include "dkimsign-build.h"
#include "client/dkimsign.h"
#include "util/log.h"

#define DEFAULT_CONFIG "/etc/dkimsign/dkimsign-milter.conf"
#define DEFAULT_MILTER_SOCKET "unix:/run/dkimsign-milter/milter.sock"
#define MAX_NETWORKS 64
#define POOL_MAX 16
#define UNSIGNED_BURST 100      /* info lines a reason, per window */
#define UNSIGNED_WINDOW 60      /* seconds */
#define EXIT_USAGE 64
#define EXIT_CONFIG 78

struct network {
        int family;             /* AF_INET or AF_INET6 */
        uint8_t addr[16];
        unsigned prefix;
};

struct milter_config {
        char *milter_socket;
        char *dkimsignd_socket; /* NULL: the library's default */
        struct network networks[MAX_NETWORKS];
        size_t n_networks;
        bool networks_set;
        bool tempfail_accept;
        enum dkimsign_canon header_canon, body_canon;
        int log_level;
        int timeout;            /* seconds, the MTA connection (libmilter) */
        int line;               /* the first bad line (inih) */
        char error[160];
};

static struct milter_config cfg = {
        .header_canon = DKIMSIGN_CANON_RELAXED,
        .body_canon = DKIMSIGN_CANON_RELAXED,
        .log_level = LOG_INFO,
        .timeout = 300,
};

/* ---- configuration ---- */

static int parse_network(const char *s, size_t len, struct network *ret)
{
        char text[INET6_ADDRSTRLEN + 8], *slash, *end;
        struct network n = { 0 };
        unsigned long prefix;

        if (len == 0 || len >= sizeof(text))
                return -1;
        memcpy(text, s, len);
        text[len] = 0;
        slash = strchr(text, '/');
        if (slash)
                *slash = 0;
        if (inet_pton(AF_INET, text, n.addr) == 1)
                n.family = AF_INET;
        else if (inet_pton(AF_INET6, text, n.addr) == 1)
                n.family = AF_INET6;
        else
                return -1;
        n.prefix = n.family == AF_INET ? 32 : 128;
        if (slash) {
                errno = 0;
                prefix = strtoul(slash + 1, &end, 10);
                if (errno || end == slash + 1 || *end || prefix > n.prefix)
                        return -1;
                n.prefix = (unsigned) prefix;
        }
        *ret = n;
        return 0;
}

static int parse_networks(struct milter_config *c, const char *value)
{
        const char *p = value;

        c->n_networks = 0;
        c->networks_set = true;
        while (*p) {
                size_t len;

                p += strspn(p, " \t,");
                len = strcspn(p, " \t,");
                if (len == 0)
                        break;
                if (c->n_networks == MAX_NETWORKS || parse_network(p, len, &c->networks[c->n_networks]) < 0)
                        return -1;
                c->n_networks++;
                p += len;
        }
        return 0;
}

static int parse_level(const char *s, int *ret)
{
        static const struct { const char *name; int level; } levels[] = {
                { "error", LOG_ERR }, { "warning", LOG_WARNING }, { "notice", LOG_NOTICE },
                { "info", LOG_INFO }, { "debug", LOG_DEBUG },
        };

        for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
                if (strcmp(s, levels[i].name) == 0) {
                        *ret = levels[i].level;
                        return 0;
                }
        return -1;
}

/* Only unix:/local: sockets and inet/inet6 on loopback: a milter that
 * signs whatever it is handed must not be reachable from the network. */
static int check_milter_socket(const char *s)
{
        const char *at;
        struct in6_addr a6;
        struct in_addr a4;

        if (strncmp(s, "unix:", 5) == 0 || strncmp(s, "local:", 6) == 0)
                return strchr(s, ':')[1] == '/' ? 0 : -1;
        at = strchr(s, '@');
        if (!at)
                return -1;      /* inet:PORT alone listens on every address */
        at++;
        if (strncmp(s, "inet:", 5) == 0)
                return strcmp(at, "localhost") == 0 ||
                       (inet_pton(AF_INET, at, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127) ? 0 : -1;
        if (strncmp(s, "inet6:", 6) == 0)
                return inet_pton(AF_INET6, at, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6) ? 0 : -1;
        return -1;
}

static int set_string(char **dst, const char *value)
{
        char *s = strdup(value);

        if (!s)
                return -1;
        free(*dst);
        *dst = s;
        return 0;
}

static int config_handler(void *user, const char *section, const char *name, const char *value)
{
        struct milter_config *c = user;
        int r = -1;

        if (strcmp(section, "milter") != 0) {
                snprintf(c->error, sizeof(c->error), "unknown section [%s]", section);
                return 0;
        }
        if (strcmp(name, "socket") == 0) {
                if (check_milter_socket(value) == 0)
                        r = set_string(&c->milter_socket, value);
        } else if (strcmp(name, "dkimsignd_socket") == 0) {
                if (value[0] == '/')
                        r = set_string(&c->dkimsignd_socket, value);
        } else if (strcmp(name, "internal_networks") == 0) {
                r = parse_networks(c, value);
        } else if (strcmp(name, "on_tempfail") == 0) {
                if (strcmp(value, "tempfail") == 0 || strcmp(value, "accept") == 0) {
                        c->tempfail_accept = strcmp(value, "accept") == 0;
                        r = 0;
                }
        } else if (strcmp(name, "canonicalization") == 0) {
                r = dkimsign_canon_parse(value, &c->header_canon, &c->body_canon);
        } else if (strcmp(name, "log_level") == 0) {
                r = parse_level(value, &c->log_level);
        } else if (strcmp(name, "timeout") == 0) {
                char *end;
                long t;

                errno = 0;
                t = strtol(value, &end, 10);
                if (!errno && end != value && *end == 0 && t > 0 && t <= 3600) {
                        c->timeout = (int) t;
                        r = 0;
                }
        } else {
                snprintf(c->error, sizeof(c->error), "unknown key %s", name);
                return 0;
        }
        if (r < 0)
                snprintf(c->error, sizeof(c->error), "invalid value for %s: %s", name, value);
        return r == 0;
}

static int milter_config_load(const char *path, bool must_exist)
{
        FILE *f = fopen(path, "re");
        int r;

        if (!f) {
                if (errno == ENOENT && !must_exist)
                        goto defaults;
                fprintf(stderr, "dkimsign-milter: cannot open %s: %s\n", path, strerror(errno));
                return -1;
        }
        r = ini_parse_file(f, config_handler, &cfg);
        fclose(f);
        if (r != 0) {
                fprintf(stderr, "dkimsign-milter: %s:%d: %s\n", path, r,
                        cfg.error[0] ? cfg.error : "syntax error");
                return -1;
        }
defaults:
        if (!cfg.milter_socket && set_string(&cfg.milter_socket, DEFAULT_MILTER_SOCKET) < 0)
                return -1;
        if (!cfg.networks_set && parse_networks(&cfg, "127.0.0.0/8, ::1/128") < 0)
                return -1;
        return 0;
}

/* ---- signing policy ---- */

static bool in_network(const struct network *n, int family, const uint8_t *addr)
{
        unsigned full = n->prefix / 8, rest = n->prefix % 8;

        if (n->family != family)
                return false;
        if (memcmp(n->addr, addr, full) != 0)
                return false;
        return rest == 0 || ((n->addr[full] ^ addr[full]) & (0xff00 >> rest) & 0xff) == 0;
}

static bool is_internal(const struct sockaddr *sa)
{
        const uint8_t *addr;
        uint8_t v4[4];
        int family;

        if (!sa)
                return true;    /* no address: local submission (sendmail(1), pickup) */
        if (sa->sa_family == AF_INET) {
                family = AF_INET;
                addr = (const uint8_t *) &((const struct sockaddr_in *) (const void *) sa)->sin_addr;
        } else if (sa->sa_family == AF_INET6) {
                const struct in6_addr *a6 = &((const struct sockaddr_in6 *) (const void *) sa)->sin6_addr;

                family = AF_INET6;
                addr = a6->s6_addr;
                if (IN6_IS_ADDR_V4MAPPED(a6)) {
                        memcpy(v4, a6->s6_addr + 12, 4);
                        family = AF_INET;
                        addr = v4;
                }
        } else {
                return sa->sa_family == AF_UNIX;
        }
        for (size_t i = 0; i < cfg.n_networks; i++)
                if (in_network(&cfg.networks[i], family, addr))
                        return true;
        return false;
}

/* ---- dkimsignd connections: a small pool, and the outage state ---- */

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static dkimsign_client *pool[POOL_MAX];
static size_t pool_len;
static bool daemon_down;

static int client_get(dkimsign_client **ret)
{
        dkimsign_client *c = NULL;
        int r;

        pthread_mutex_lock(&pool_lock);
        if (pool_len)
                c = pool[--pool_len];
        pthread_mutex_unlock(&pool_lock);
        if (c) {
                *ret = c;
                return 0;
        }
        r = dkimsign_client_open(cfg.dkimsignd_socket, &c);
        if (r < 0) {
                log_msg(LOG_DEBUG, "dkimsign_client_open: %s", c ? dkimsign_client_error(c) : dkimsign_strerror(r));
                dkimsign_client_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

/* A client whose last call failed temporarily is dropped, not pooled. */
static void client_put(dkimsign_client *c, int r)
{
        pthread_mutex_lock(&pool_lock);
        if (c && (r == 0 || !dkimsign_err_is_temporary(r)) && pool_len < POOL_MAX) {
                pool[pool_len++] = c;
                c = NULL;
        }
        pthread_mutex_unlock(&pool_lock);
        dkimsign_client_free(c);
}

/* Log the first failure of an outage and its end, not every message. */
static void outage_update(bool failing, const char *why)
{
        bool changed;

        pthread_mutex_lock(&pool_lock);
        changed = daemon_down != failing;
        daemon_down = failing;
        pthread_mutex_unlock(&pool_lock);
        if (changed && failing)
                log_msg(LOG_ERR, "dkimsignd unreachable or failing (%s): %s mail until it is back", why,
                        cfg.tempfail_accept ? "accepting unsigned" : "tempfailing");
        else if (changed)
                log_msg(LOG_NOTICE, "dkimsignd reachable again");
}

static void pool_clear(void)
{
        pthread_mutex_lock(&pool_lock);
        while (pool_len)
                dkimsign_client_free(pool[--pool_len]);
        pthread_mutex_unlock(&pool_lock);
}

/* ---- milter callbacks ---- */

struct conn {
        bool internal;
        bool leadspc;           /* the MTA passes values with leading whitespace */
        bool sign;              /* this message is being signed */
        bool external;          /* this message is not, and that is not logged yet */
        dkimsign_message *msg;
        /* For the log: the first From field's domain of a message being
         * signed, the envelope sender's of an external one; or "". */
        char domain[254];
};

static struct conn *conn_get(SMFICTX *ctx)
{
        return smfi_getpriv(ctx);
}

/* The connection's context, made by whichever callback comes first
 * (negotiate, or connect when the MTA does not negotiate). */
static struct conn *conn_attach(SMFICTX *ctx)
{
        struct conn *c = smfi_getpriv(ctx);

        if (!c) {
                c = calloc(1, sizeof(*c));
                if (c)
                        smfi_setpriv(ctx, c);
        }
        return c;
}

static void conn_reset(struct conn *c)
{
        dkimsign_message_free(c->msg);
        c->msg = NULL;
        c->sign = false;
        c->external = false;
        c->domain[0] = 0;
}

static const char *queue_id(SMFICTX *ctx)
{
        const char *id = smfi_getsymval(ctx, (char *) "i");

        return id ? id : "-";
}

/* ---- unsigned mail: one line a message, at most UNSIGNED_BURST for each
 * reason in UNSIGNED_WINDOW seconds; how many more were left out is said
 * with the first line of that reason after the window ---- */

enum why_unsigned {
        WHY_EXTERNAL,           /* neither internal nor authenticated */
        WHY_REFUSED,            /* dkimsignd refused for good (no key, no From...) */
        WHY_INPUT,              /* the header or body could not be taken */
        WHY_UNAVAILABLE,        /* dkimsignd down, on_tempfail = accept */
        WHY_MAX,
};

static const char *const why_names[WHY_MAX] = {
        [WHY_EXTERNAL] = "external", [WHY_REFUSED] = "refused by dkimsignd",
        [WHY_INPUT] = "unreadable message", [WHY_UNAVAILABLE] = "dkimsignd unavailable",
};

static struct {
        time_t start;
        unsigned logged, dropped;
} why_limit[WHY_MAX];
static pthread_mutex_t why_lock = PTHREAD_MUTEX_INITIALIZER;

/* "QUEUEID: not signed: REASON (DOMAIN_LABEL DOMAIN)": no content, the
 * domain only when known. */
static void log_unsigned(SMFICTX *ctx, enum why_unsigned why, int priority, const char *reason,
                         const char *domain_label, const char *domain)
{
        struct timespec now;
        unsigned dropped = 0;
        bool log;

        clock_gettime(CLOCK_MONOTONIC, &now);
        pthread_mutex_lock(&why_lock);
        if (why_limit[why].logged == 0 || now.tv_sec - why_limit[why].start >= UNSIGNED_WINDOW) {
                dropped = why_limit[why].dropped;
                why_limit[why].start = now.tv_sec;
                why_limit[why].logged = 0;
                why_limit[why].dropped = 0;
        }
        log = why_limit[why].logged < UNSIGNED_BURST;
        if (log)
                why_limit[why].logged++;
        else
                why_limit[why].dropped++;
        pthread_mutex_unlock(&why_lock);
        if (dropped)
                log_msg(priority, "%u more messages not signed (%s) were not logged", dropped, why_names[why]);
        if (log && domain[0])
                log_msg(priority, "%s: not signed: %s (%s %s)", queue_id(ctx), reason, domain_label, domain);
        else if (log)
                log_msg(priority, "%s: not signed: %s", queue_id(ctx), reason);
}

/* The domain of the address in s (the one in angle brackets if any, else
 * after the last '@'), lowercased, into ret (253 octets and a NUL); "" if
 * there is none.  For the log only: it is not what dkimsignd signs for. */
static void address_domain(const char *s, char ret[static 254])
{
        const char *lt = strrchr(s, '<');
        const char *at = lt ? strchr(lt, '@') : strrchr(s, '@');
        size_t n = 0;

        if (at)
                for (at++; n < 253 && (isalnum((unsigned char) at[n]) || at[n] == '.' || at[n] == '-'); n++)
                        ret[n] = (char) tolower((unsigned char) at[n]);
        ret[n] = 0;
}

/* Ask the MTA for header values with their leading whitespace
 * (SMFIP_HDR_LEADSPC) and to skip the steps without a callback here. */
static sfsistat on_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
                             unsigned long f3, unsigned long *pf0, unsigned long *pf1, unsigned long *pf2,
                             unsigned long *pf3)
{
        const unsigned long skip = SMFIP_NOHELO | SMFIP_NORCPT | SMFIP_NOEOH | SMFIP_NOUNKNOWN;
        struct conn *c;

        (void) f2;
        (void) f3;
        if (!(f0 & SMFIF_ADDHDRS)) {
                log_msg(LOG_ERR, "on_negotiate: the MTA does not let milters add header fields");
                return SMFIS_REJECT;
        }
        c = conn_attach(ctx);
        /* Without a context to remember it in, LEADSPC is not asked for. */
        if (c)
                c->leadspc = (f1 & SMFIP_HDR_LEADSPC) != 0;
        *pf0 = SMFIF_ADDHDRS;
        *pf1 = f1 & (skip | (c ? SMFIP_HDR_LEADSPC : 0));
        *pf2 = 0;
        *pf3 = 0;
        return SMFIS_CONTINUE;
}

static sfsistat on_connect(SMFICTX *ctx, char *hostname, struct sockaddr *hostaddr)
{
        struct conn *c = conn_attach(ctx);

        (void) hostname;
        if (!c) {
                log_msg(LOG_ERR, "on_connect: %s", dkimsign_strerror(DKIMSIGN_E_NOMEM));
                return SMFIS_TEMPFAIL;
        }
        c->internal = is_internal(hostaddr);
        return SMFIS_CONTINUE;
}

/* Leave this message alone (accept it unsigned). */
static sfsistat pass(struct conn *c)
{
        conn_reset(c);
        return SMFIS_ACCEPT;
}

/* Without SMFIP_HDR_LEADSPC the MTA drops the whitespace after a field's
 * colon, and simple header canonicalization would sign the field with one
 * space put back, which is wrong whenever it had none, a tab or more: the
 * header fields are signed relaxed instead, which that whitespace does not
 * change. */
static enum dkimsign_canon header_canon(const struct conn *c)
{
        static atomic_bool warned;

        if (cfg.header_canon == DKIMSIGN_CANON_RELAXED || c->leadspc)
                return cfg.header_canon;
        if (!atomic_exchange(&warned, true))
                log_msg(LOG_WARNING, "the MTA does not pass header fields with the whitespace after the colon "
                                     "(SMFIP_HDR_LEADSPC): signing header fields with relaxed canonicalization, "
                                     "not simple");
        return DKIMSIGN_CANON_RELAXED;
}

static sfsistat on_envfrom(SMFICTX *ctx, char **argv)
{
        struct conn *c = conn_get(ctx);
        const char *auth = smfi_getsymval(ctx, (char *) "{auth_authen}");
        int r;

        if (!c)
                return SMFIS_ACCEPT;
        conn_reset(c);
        if (!c->internal && !(auth && *auth)) {
                /* Logged at the next step, which has the queue id. */
                c->external = true;
                if (argv && argv[0])
                        address_domain(argv[0], c->domain);
                return SMFIS_CONTINUE;
        }
        r = dkimsign_message_new(&c->msg);
        if (r == 0)
                r = dkimsign_message_set_canon(c->msg, header_canon(c), cfg.body_canon);
        if (r < 0) {
                log_msg(LOG_ERR, "on_envfrom: %s", dkimsign_strerror(r));
                conn_reset(c);
                return SMFIS_TEMPFAIL;
        }
        c->sign = true;
        return SMFIS_CONTINUE;
}

/* A message that is not being signed.  An external one is logged at the
 * first step after MAIL FROM that comes (DATA from Postfix and Sendmail):
 * the queue id is known there (Postfix opens the queue file only after a
 * valid recipient), and a transaction that ends before it, every
 * recipient refused, leaves nothing unsigned. */
static sfsistat not_signing(SMFICTX *ctx, struct conn *c, sfsistat status)
{
        if (c && c->external) {
                c->external = false;
                log_unsigned(ctx, WHY_EXTERNAL, LOG_INFO, "external client, not authenticated",
                             "envelope sender domain", c->domain);
        }
        return status;
}

static sfsistat on_data(SMFICTX *ctx)
{
        struct conn *c = conn_get(ctx);

        return !c || !c->sign ? not_signing(ctx, c, SMFIS_ACCEPT) : SMFIS_CONTINUE;
}

static sfsistat on_header(SMFICTX *ctx, char *name, char *value)
{
        struct conn *c = conn_get(ctx);
        int r;

        if (!c || !c->sign)
                return not_signing(ctx, c, SMFIS_ACCEPT);
        if (!c->domain[0] && strcasecmp(name, "From") == 0)
                address_domain(value, c->domain);
        r = c->leadspc ? dkimsign_message_add_header_raw(c->msg, name, value)
                       : dkimsign_message_add_header(c->msg, name, value);
        if (r < 0) {
                log_unsigned(ctx, WHY_INPUT, LOG_WARNING,
                             r == DKIMSIGN_E_TOO_LARGE ? "header block over its limit"
                             : r == DKIMSIGN_E_FORMAT ? "malformed header field" : dkimsign_strerror(r),
                             "From domain", c->domain);
                return pass(c);
        }
        return SMFIS_CONTINUE;
}

static sfsistat on_body(SMFICTX *ctx, unsigned char *data, size_t len)
{
        struct conn *c = conn_get(ctx);
        int r;

        if (!c || !c->sign)
                return not_signing(ctx, c, SMFIS_ACCEPT);
        r = dkimsign_message_write_body(c->msg, data, len);
        if (r < 0) {
                log_unsigned(ctx, WHY_INPUT, LOG_WARNING, dkimsign_strerror(r), "From domain", c->domain);
                return pass(c);
        }
        return SMFIS_CONTINUE;
}

/* One "DKIM-Signature: ...CRLF" field from fields into a milter header
 * value: no name, CRLF folds as LF, and the space after the colon only
 * with leadspc (otherwise the MTA puts one there).  Returns the start of
 * the next field. */
static const char *field_value(const char *fields, bool leadspc, char **ret)
{
        const char *p = fields, *end;
        char *v, *o;

        while (*p && *p != ':')
                p++;
        if (*p == ':')
                p++;
        if (*p == ' ' && !leadspc)
                p++;
        /* The field ends at a CRLF not followed by a fold. */
        for (end = p; *end; end++)
                if (end[0] == '\r' && end[1] == '\n' && end[2] != ' ' && end[2] != '\t')
                        break;
        v = malloc((size_t) (end - p) + 1);
        if (!v)
                return NULL;
        for (o = v; p < end; p++)
                if (*p != '\r')
                        *o++ = *p;
        *o = 0;
        *ret = v;
        return *end ? end + 2 : end;
}

static int insert_fields(SMFICTX *ctx, bool leadspc, const char *fields)
{
        char *values[8];
        size_t n = 0;
        int r = 0;

        for (const char *p = fields; *p && n < 8;) {
                p = field_value(p, leadspc, &values[n]);
                if (!p) {
                        r = -1;
                        break;
                }
                n++;
        }
        /* Index 0 each time, last first: the first field ends on top. */
        for (size_t i = n; i-- > 0;) {
                if (r == 0 && smfi_insheader(ctx, 0, (char *) "DKIM-Signature", values[i]) != MI_SUCCESS)
                        r = -1;
                free(values[i]);
        }
        return r;
}

static sfsistat on_eom(SMFICTX *ctx)
{
        struct conn *c = conn_get(ctx);
        dkimsign_client *client = NULL;
        char *fields = NULL;
        sfsistat status = SMFIS_CONTINUE;
        int r;

        if (!c || !c->sign)
                return not_signing(ctx, c, SMFIS_CONTINUE);
        r = client_get(&client);
        if (r == 0)
                r = dkimsign_sign(client, c->msg, &fields);
        if (r < 0 && dkimsign_err_is_temporary(r)) {
                outage_update(true, client ? dkimsign_client_error(client) : dkimsign_strerror(r));
                status = cfg.tempfail_accept ? SMFIS_CONTINUE : SMFIS_TEMPFAIL;
                if (cfg.tempfail_accept)
                        log_unsigned(ctx, WHY_UNAVAILABLE, LOG_INFO, "dkimsignd unavailable, on_tempfail = accept",
                                     "From domain", c->domain);
                else
                        log_msg(LOG_DEBUG, "%s: tempfailed", queue_id(ctx));
        } else if (r < 0) {
                outage_update(false, NULL);
                log_unsigned(ctx, WHY_REFUSED, LOG_INFO,
                             client ? dkimsign_client_error(client) : dkimsign_strerror(r), "From domain", c->domain);
        } else {
                outage_update(false, NULL);
                if (insert_fields(ctx, c->leadspc, fields) < 0) {
                        log_msg(LOG_ERR, "%s: smfi_insheader failed", queue_id(ctx));
                        status = SMFIS_TEMPFAIL;
                } else {
                        log_msg(LOG_INFO, "%s: signed", queue_id(ctx));
                }
        }
        client_put(client, r);
        free(fields);
        conn_reset(c);
        return status;
}

static sfsistat on_abort(SMFICTX *ctx)
{
        struct conn *c = conn_get(ctx);

        if (c)
                conn_reset(c);
        return SMFIS_CONTINUE;
}

static sfsistat on_close(SMFICTX *ctx)
{
        struct conn *c = conn_get(ctx);

        if (c) {
                conn_reset(c);
                free(c);
                smfi_setpriv(ctx, NULL);
        }
        return SMFIS_CONTINUE;
}

static struct smfiDesc filter = {
        .xxfi_name = (char *) "dkimsign-milter",
        .xxfi_version = SMFI_VERSION,
        .xxfi_flags = SMFIF_ADDHDRS,
        .xxfi_connect = on_connect,
        .xxfi_envfrom = on_envfrom,
        .xxfi_data = on_data,
        .xxfi_header = on_header,
        .xxfi_body = on_body,
        .xxfi_eom = on_eom,
        .xxfi_abort = on_abort,
        .xxfi_close = on_close,
        .xxfi_negotiate = on_negotiate,
};

/* ---- main ---- */

static void usage(FILE *f)
{
        fprintf(f,
                "Usage: dkimsign-milter [--config FILE] [--check]\n"
                "\n"
                "A milter that signs outbound mail through dkimsignd.\n"
                "\n"
                "  -c, --config FILE   configuration file (default %s)\n"
                "  -t, --check         check the configuration and exit\n"
                "  -h, --help          show this help\n"
                "  -V, --version       show the version\n",
                DEFAULT_CONFIG);
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "config", required_argument, NULL, 'c' },
                { "check", no_argument, NULL, 't' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { 0 },
        };
        const char *config_path = DEFAULT_CONFIG;
        bool config_given = false, check = false;
        int opt, r;

        while ((opt = getopt_long(argc, argv, "c:thV", opts, NULL)) != -1) {
                switch (opt) {
                case 'c': config_path = optarg; config_given = true; break;
                case 't': check = true; break;
                case 'h': usage(stdout); return 0;
                case 'V': printf("dkimsign-milter %s\n", DKIMSIGN_VERSION); return 0;
                default: usage(stderr); return EXIT_USAGE;
                }
        }
        if (optind < argc) {
                usage(stderr);
                return EXIT_USAGE;
        }
        log_init("dkimsign-milter", LOG_INFO);
        if (milter_config_load(config_path, config_given) < 0)
                return EXIT_CONFIG;
        log_init("dkimsign-milter", cfg.log_level);
        if (check)
                return 0;

        /* The MTA's group connects to a unix socket; nobody else. */
        umask(0007);
        if (smfi_setconn(cfg.milter_socket) != MI_SUCCESS || smfi_settimeout(cfg.timeout) != MI_SUCCESS ||
            smfi_register(filter) != MI_SUCCESS) {
                log_msg(LOG_ERR, "main: cannot set up libmilter for %s", cfg.milter_socket);
                return 1;
        }
        if (smfi_opensocket(true) != MI_SUCCESS) {
                log_msg(LOG_ERR, "main: cannot listen on %s", cfg.milter_socket);
                return 1;
        }
        log_msg(LOG_INFO, "listening on %s, dkimsignd at %s, on_tempfail = %s", cfg.milter_socket,
                cfg.dkimsignd_socket ? cfg.dkimsignd_socket : DKIMSIGN_DEFAULT_SOCKET_PATH,
                cfg.tempfail_accept ? "accept" : "tempfail");
        r = smfi_main();
        pool_clear();
        free(cfg.milter_socket);
        free(cfg.dkimsignd_socket);
        log_msg(LOG_INFO, "stopped");
        return r == MI_SUCCESS ? 0 : 1;
}
