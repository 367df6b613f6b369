/* SPDX-License-Identifier: MIT */
/*
 * dkimsign-milter: a libmilter filter that signs outbound mail through
 * dkimsignd.  Header fields and body chunks go to libdkimsign as the MTA
 * hands them over; the milter never holds a message whole (the library
 * keeps the bounded header block and a running body hash).
 *
 * What is signed (client/milter-decide.c decides): mail from an
 * SMTP-authenticated sender ({auth_authen}) whose login may sign the From
 * domain, mail that came in on a submission daemon or port the
 * configuration names, mail from internal_networks, and local submission
 * only with sign_local = yes.  Every request reaches dkimsignd as this
 * milter's uid, so the daemon's own lists can't tell senders apart: this
 * is where they are told apart.  Everything else, and every message
 * dkimsignd refuses for good (no key for the From domain, no From, two
 * From), passes unsigned with one info line giving the reason
 * (rate-limited per reason); a signed message is logged at debug with the
 * reason it was signed.  A temporary failure (dkimsignd down, token
 * failure, busy) tempfails the message, or accepts it unsigned (on_tempfail
 * = accept); an outage is logged when it starts and when it ends.  Message
 * content is never logged, only the queue id, the login and the From (or
 * envelope sender) domain.
 *
 * Header fields are signed as the MTA will send them: the milter asks for
 * SMFIP_HDR_LEADSPC, so a value comes with the whitespace after the colon.
 * An MTA that does not grant it drops that whitespace, which simple header
 * canonicalization would sign wrongly: header fields are then signed with
 * relaxed canonicalization, and that is logged once.
 *
 * What the MTA changes after the milter is what it would break: mta =
 * postfix | sendmail | other picks a profile (client/milter-mta.h).  A
 * line longer than the MTA sends unbroken, an 8-bit body the MTA may
 * convert, an address without a domain the MTA qualifies: the message
 * passes unsigned with one info line saying which.  A Date or Message-ID
 * the MTA would add after signing (Sendmail) the milter adds itself, and
 * signs.
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
#include "client/milter-decide.h"
#include "client/milter-mta.h"
#include "util/fileperm.h"
#include "util/log.h"

#define DEFAULT_CONFIG "/etc/dkimsign/dkimsign-milter.conf"
#define DEFAULT_MILTER_SOCKET "unix:/run/dkimsign-milter/milter.sock"
#define POOL_MAX 16
#define UNSIGNED_BURST 100      /* info lines a reason, per window */
#define UNSIGNED_WINDOW 60      /* seconds */
#define EXIT_USAGE 64
#define EXIT_CONFIG 78

struct milter_config {
        char *milter_socket;
        char *dkimsignd_socket; /* NULL: the library's default */
        char *login_map;        /* NULL: none */
        struct login_map *logins;       /* login_map's rules */
        struct milter_policy policy;
        bool tempfail_accept;
        enum dkimsign_canon header_canon, body_canon;
        int log_level;
        int timeout;            /* seconds, the MTA connection (libmilter) */
        struct milter_mta mta;  /* mta, then line_limit and converts_8bit */
        long line_limit;        /* -1: the profile's */
        int converts_8bit;      /* -1: the profile's */
        /* ARC sealing: the sealing domain (NULL: none), whose
         * Authentication-Results are recorded, which mail, DNS. */
        char *arc_domain;
        char *arc_authserv_id;
        char *arc_dns_server;   /* NULL: the system's resolver */
        struct milter_arc arc;
        char error[160];
};

static struct milter_config cfg = {
        .policy = { .sign_authenticated = true, .login_owns_domain = true },
        .header_canon = DKIMSIGN_CANON_RELAXED,
        .body_canon = DKIMSIGN_CANON_RELAXED,
        .log_level = LOG_INFO,
        .timeout = 300,
        .mta = { "postfix", 998, true, false, false, false },
        .line_limit = -1,
        .converts_8bit = -1,
};

/* ---- configuration ---- */

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

static int parse_bool(const char *s, bool *ret)
{
        if (strcmp(s, "yes") == 0 || strcmp(s, "true") == 0)
                *ret = true;
        else if (strcmp(s, "no") == 0 || strcmp(s, "false") == 0)
                *ret = false;
        else
                return -1;
        return 0;
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
                r = milter_parse_networks(&c->policy, value);
        } else if (strcmp(name, "sign_authenticated") == 0) {
                r = parse_bool(value, &c->policy.sign_authenticated);
        } else if (strcmp(name, "login_owns_domain") == 0) {
                r = parse_bool(value, &c->policy.login_owns_domain);
        } else if (strcmp(name, "login_map") == 0) {
                if (value[0] == '/')
                        r = set_string(&c->login_map, value);
                else if (value[0] == 0) {
                        free(c->login_map);
                        c->login_map = NULL;
                        r = 0;
                }
        } else if (strcmp(name, "submission_daemons") == 0) {
                r = milter_parse_daemons(&c->policy, value);
        } else if (strcmp(name, "submission_ports") == 0) {
                r = milter_parse_ports(&c->policy, value);
        } else if (strcmp(name, "sign_local") == 0) {
                r = parse_bool(value, &c->policy.sign_local);
        } else if (strcmp(name, "on_tempfail") == 0) {
                if (strcmp(value, "tempfail") == 0 || strcmp(value, "accept") == 0) {
                        c->tempfail_accept = strcmp(value, "accept") == 0;
                        r = 0;
                }
        } else if (strcmp(name, "canonicalization") == 0) {
                r = dkimsign_canon_parse(value, &c->header_canon, &c->body_canon);
        } else if (strcmp(name, "mta") == 0) {
                r = milter_mta_profile(value, &c->mta);
        } else if (strcmp(name, "line_limit") == 0) {
                char *end;

                errno = 0;
                c->line_limit = strtol(value, &end, 10);
                r = !errno && end != value && *end == 0 && c->line_limit >= 0 && c->line_limit <= 1000000 ? 0 : -1;
        } else if (strcmp(name, "converts_8bit") == 0) {
                bool b = false;

                r = parse_bool(value, &b);
                if (r == 0)
                        c->converts_8bit = b;
        } else if (strcmp(name, "arc_domain") == 0) {
                r = set_string(&c->arc_domain, value);
        } else if (strcmp(name, "arc_authserv_id") == 0) {
                if (!strpbrk(value, " \t;"))
                        r = set_string(&c->arc_authserv_id, value);
        } else if (strcmp(name, "arc_dns_server") == 0) {
                r = set_string(&c->arc_dns_server, value);
        } else if (strcmp(name, "arc_daemons") == 0) {
                r = milter_arc_parse_daemons(&c->arc, value);
        } else if (strcmp(name, "arc_recipient_domains") == 0) {
                r = milter_arc_parse_domains(&c->arc, value);
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

/* A file that steers what is signed: owned by root or this user and
 * writable by no one else (util/fileperm.h), else refused. */
static FILE *open_trusted(const char *path, bool must_exist, bool *ret_missing)
{
        FILE *f = fopen(path, "re");
        char why[256];

        *ret_missing = false;
        if (!f) {
                *ret_missing = errno == ENOENT && !must_exist;
                if (!*ret_missing)
                        fprintf(stderr, "dkimsign-milter: cannot open %s: %s\n", path, strerror(errno));
                return NULL;
        }
        if (fileperm_check_fd(fileno(f), path, FILEPERM_NO_UID, why, sizeof(why)) < 0) {
                fprintf(stderr, "dkimsign-milter: %s\n", why);
                fclose(f);
                return NULL;
        }
        return f;
}

/* The login map: the whole file (a regular file, LOGIN_MAP_MAX_SIZE octets
 * at most), then login_map_parse. */
static int login_map_load(const char *path, struct login_map **ret)
{
        struct stat st;
        char *data = NULL, why[300];
        size_t len = 0;
        bool missing;
        FILE *f = open_trusted(path, true, &missing);
        int r = -1;

        if (!f)
                return -1;
        if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > LOGIN_MAP_MAX_SIZE) {
                fprintf(stderr, "dkimsign-milter: %s: not a regular file of at most %d octets\n", path,
                        LOGIN_MAP_MAX_SIZE);
                goto out;
        }
        data = malloc((size_t) st.st_size + 1);
        if (!data)
                goto out;
        /* Read to the end, but never past the bound, whatever st_size said. */
        len = fread(data, 1, (size_t) st.st_size + 1, f);
        if (ferror(f) || len > (size_t) st.st_size) {
                fprintf(stderr, "dkimsign-milter: %s: %s\n", path,
                        ferror(f) ? "read error" : "the file grew while it was read");
                goto out;
        }
        data[len] = 0;
        r = login_map_parse(data, len, ret, why, sizeof(why));
        if (r < 0)
                fprintf(stderr, "dkimsign-milter: %s: %s\n", path, why);
out:
        free(data);
        fclose(f);
        return r;
}

static int milter_config_load(const char *path, bool must_exist)
{
        bool missing;
        FILE *f = open_trusted(path, must_exist, &missing);
        int r;

        if (!f && !missing)
                return -1;
        if (f) {
                r = ini_parse_file(f, config_handler, &cfg);
                fclose(f);
                if (r != 0) {
                        fprintf(stderr, "dkimsign-milter: %s:%d: %s\n", path, r,
                                cfg.error[0] ? cfg.error : "syntax error");
                        return -1;
                }
        }
        /* The overrides apply to whichever profile, wherever mta = stood. */
        if (cfg.line_limit >= 0)
                cfg.mta.line_limit = (size_t) cfg.line_limit;
        if (cfg.converts_8bit >= 0)
                cfg.mta.converts_8bit = cfg.converts_8bit;
        if (!cfg.milter_socket && set_string(&cfg.milter_socket, DEFAULT_MILTER_SOCKET) < 0)
                return -1;
        if (cfg.arc_domain && !cfg.arc_domain[0]) {
                free(cfg.arc_domain);
                cfg.arc_domain = NULL;
        }
        if (cfg.arc_domain && (!cfg.arc_authserv_id || !cfg.arc_authserv_id[0] ||
                               (!cfg.arc.n_daemons && !cfg.arc.n_domains))) {
                fprintf(stderr, "dkimsign-milter: %s: arc_domain needs arc_authserv_id and arc_daemons or "
                        "arc_recipient_domains\n", path);
                return -1;
        }
        if (!cfg.arc_domain && (cfg.arc.n_daemons || cfg.arc.n_domains)) {
                fprintf(stderr, "dkimsign-milter: %s: arc_daemons and arc_recipient_domains need arc_domain\n", path);
                return -1;
        }
        if (cfg.login_map) {
                if (login_map_load(cfg.login_map, &cfg.logins) < 0)
                        return -1;
                cfg.policy.logins = cfg.logins;
        }
        return 0;
}

static void milter_config_free(void)
{
        cfg.logins = login_map_free(cfg.logins);
        cfg.policy.logins = NULL;
        milter_policy_deinit(&cfg.policy);
        free(cfg.milter_socket);
        free(cfg.dkimsignd_socket);
        free(cfg.arc_domain);
        free(cfg.arc_authserv_id);
        free(cfg.arc_dns_server);
        milter_arc_deinit(&cfg.arc);
        free(cfg.login_map);
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

enum why_unsigned {
        WHY_EXTERNAL,           /* a network client not trusted to sign */
        WHY_LOCAL,              /* local submission, sign_local = no */
        WHY_LOGIN,              /* a login that may not sign the From domain */
        WHY_REFUSED,            /* dkimsignd refused for good (no key, no From...) */
        WHY_INPUT,              /* the header or body could not be taken */
        WHY_UNAVAILABLE,        /* dkimsignd down, on_tempfail = accept */
        WHY_MTA,                /* the MTA would change it after signing */
        WHY_MAX,
};

struct conn {
        enum milter_origin origin;
        bool leadspc;           /* the MTA passes values with leading whitespace */
        bool sign;              /* this message is being signed */
        bool seal;              /* ... sealed (ARC) */
        bool arc_maybe;         /* ... sealed if a recipient says so */
        bool check_login;       /* ... if login may sign its From domain (at end of header) */
        /* Not signed, and not logged yet: WHY_MAX when nothing is pending. */
        int pending;
        dkimsign_message *msg;
        /* For the log: the first From field's domain of a message being
         * signed, the envelope sender's of one that is not; or "". */
        char domain[254];
        char login[MILTER_LOGIN_MAX + 1];
        /* Why it is signed, or not: milter-decide.c's sentence. */
        char why[MILTER_LOGIN_MAX + MILTER_NAME_MAX + 96];
        /* What the MTA will change after signing (milter-mta.h): the
         * first such thing in the header, "" if none; the body's lines. */
        char mta_change[200];
        struct milter_scan body;
        bool has_date, has_message_id, has_mime_version;
        bool header_8bit;       /* an octet over 127 in a header field */
        /* "Date: ...CRLF" and "Message-ID: ...CRLF" the milter adds at the
         * end of the message, as signed; or "". */
        char added[256];
        bool added_done;        /* added to the message (add_fields) */
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
                if (c) {
                        c->pending = WHY_MAX;
                        smfi_setpriv(ctx, c);
                }
        }
        return c;
}

static void conn_reset(struct conn *c)
{
        dkimsign_message_free(c->msg);
        c->msg = NULL;
        c->sign = false;
        c->seal = false;
        c->arc_maybe = false;
        c->check_login = false;
        c->pending = WHY_MAX;
        c->domain[0] = 0;
        c->login[0] = 0;
        c->why[0] = 0;
        c->mta_change[0] = 0;
        c->body = (struct milter_scan) { 0 };
        c->has_date = c->has_message_id = c->has_mime_version = c->header_8bit = false;
        c->added[0] = 0;
        c->added_done = false;
}

static const char *queue_id(SMFICTX *ctx)
{
        const char *id = smfi_getsymval(ctx, (char *) "i");

        return id ? id : "-";
}

/* ---- unsigned mail: one line a message, at most UNSIGNED_BURST for each
 * reason in UNSIGNED_WINDOW seconds; how many more were left out is said
 * with the first line of that reason after the window ---- */

static const char *const why_names[WHY_MAX] = {
        [WHY_EXTERNAL] = "external", [WHY_LOCAL] = "local submission", [WHY_LOGIN] = "login may not sign",
        [WHY_REFUSED] = "refused by dkimsignd",
        [WHY_INPUT] = "unreadable message", [WHY_UNAVAILABLE] = "dkimsignd unavailable",
        [WHY_MTA] = "changed by the MTA after signing",
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
        /* Recipients are read only to choose mail to seal. */
        const unsigned long skip = SMFIP_NOHELO | SMFIP_NOUNKNOWN | (cfg.arc.n_domains ? 0 : SMFIP_NORCPT);
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
        /* The connect macros the decision reads, whatever the MTA sends
         * by default (Postfix sends {daemon_port} only when asked), and
         * the MTA's host name (j) for a Message-ID the milter adds. */
        if ((f0 & SMFIF_SETSYMLIST) &&
            smfi_setsymlist(ctx, SMFIM_CONNECT, (char *) "{daemon_name} {daemon_port} j") == MI_SUCCESS)
                *pf0 |= SMFIF_SETSYMLIST;
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
        c->origin = milter_origin(&cfg.policy, hostaddr);
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

static const char *symval(SMFICTX *ctx, const char *name)
{
        return smfi_getsymval(ctx, (char *) name);
}

static sfsistat on_envfrom(SMFICTX *ctx, char **argv)
{
        struct conn *c = conn_get(ctx);
        struct milter_facts f;
        enum milter_verdict v;
        bool sign;
        int r;

        if (!c)
                return SMFIS_ACCEPT;
        conn_reset(c);
        f = (struct milter_facts) {
                .origin = c->origin,
                .daemon_name = symval(ctx, "{daemon_name}"),
                .daemon_port = symval(ctx, "{daemon_port}"),
                .login = symval(ctx, "{auth_authen}"),
        };
        v = milter_decide(&cfg.policy, &f, c->why, sizeof(c->why));
        sign = v == MILTER_SIGN || v == MILTER_CHECK_LOGIN;
        c->seal = cfg.arc_domain && milter_arc_daemon(&cfg.arc, f.daemon_name);
        c->arc_maybe = c->seal || (cfg.arc_domain && cfg.arc.n_domains);
        if (!sign) {
                /* Logged at the next step, which has the queue id. */
                c->pending = v == MILTER_NOT_LOCAL ? WHY_LOCAL : v == MILTER_NOT_MALFORMED ? WHY_INPUT : WHY_EXTERNAL;
                if (argv && argv[0])
                        address_domain(argv[0], c->domain);
                if (!c->arc_maybe)
                        return SMFIS_CONTINUE;
        }
        r = dkimsign_message_new(&c->msg);
        /* Mail that may be sealed is hashed for ARC (relaxed/relaxed), and
         * signed so too. */
        if (r == 0)
                r = c->arc_maybe ? dkimsign_message_set_arc(c->msg)
                                 : dkimsign_message_set_canon(c->msg, header_canon(c), cfg.body_canon);
        if (r < 0) {
                log_msg(LOG_ERR, "on_envfrom: %s", dkimsign_strerror(r));
                conn_reset(c);
                return SMFIS_TEMPFAIL;
        }
        c->sign = sign;
        c->check_login = v == MILTER_CHECK_LOGIN;
        if (c->check_login)
                snprintf(c->login, sizeof(c->login), "%s", f.login);    /* milter_decide checked it */
        return SMFIS_CONTINUE;
}

/* A recipient in arc_recipient_domains: the message is sealed. */
static sfsistat on_rcpt(SMFICTX *ctx, char **argv)
{
        struct conn *c = conn_get(ctx);

        if (c && c->arc_maybe && !c->seal && argv && milter_arc_recipient(&cfg.arc, argv[0]))
                c->seal = true;
        return SMFIS_CONTINUE;
}

/* Signed or sealed: the message is read. */
static bool active(const struct conn *c)
{
        return c && (c->sign || c->seal);
}

/* A message that is not being signed.  Its line is logged at the first
 * step after MAIL FROM that comes (DATA from Postfix and Sendmail): the
 * queue id is known there (Postfix opens the queue file only after a valid
 * recipient), and a transaction that ends before it, every recipient
 * refused, leaves nothing unsigned. */
static sfsistat not_signing(SMFICTX *ctx, struct conn *c, sfsistat status)
{
        if (c && c->pending != WHY_MAX) {
                enum why_unsigned why = (enum why_unsigned) c->pending;

                c->pending = WHY_MAX;
                log_unsigned(ctx, why, why == WHY_INPUT ? LOG_WARNING : LOG_INFO, c->why,
                             "envelope sender domain", c->domain);
        }
        return status;
}

static sfsistat on_data(SMFICTX *ctx)
{
        struct conn *c = conn_get(ctx);

        if (c && !c->sign)
                not_signing(ctx, c, SMFIS_CONTINUE);    /* its line, sealed or not */
        return active(c) ? SMFIS_CONTINUE : SMFIS_ACCEPT;
}

/* What the MTA will change in this header field after signing, noted
 * (the first thing only) for on_eoh. */
static void header_mta_check(struct conn *c, const char *name, const char *value)
{
        struct milter_scan s = { 0 };

        c->has_date |= strcasecmp(name, "Date") == 0;
        c->has_message_id |= strcasecmp(name, "Message-ID") == 0;
        c->has_mime_version |= strcasecmp(name, "MIME-Version") == 0;
        milter_scan_feed(&s, name, strlen(name));
        milter_scan_feed(&s, ":", 1);
        milter_scan_feed(&s, value, strlen(value));
        c->header_8bit |= s.eightbit;
        if (c->mta_change[0])
                return;
        if (cfg.mta.line_limit && milter_scan_longest(&s) > cfg.mta.line_limit)
                snprintf(c->mta_change, sizeof(c->mta_change),
                         "a %.40s header line of %zu octets, longer than the %zu %s sends unbroken (line_limit)", name,
                         milter_scan_longest(&s), cfg.mta.line_limit, cfg.mta.name);
        else if (cfg.mta.qualifies_addresses && milter_mta_address_field(name) &&
                 milter_mta_unqualified(value, strlen(value)))
                snprintf(c->mta_change, sizeof(c->mta_change),
                         "an address without a domain in %.40s, which %s qualifies after signing", name, cfg.mta.name);
}

/* "Name: value" into c->added and the message being signed: a field the
 * MTA would add after signing, added here (at the end of the message, in
 * on_eom) so the signature covers it. */
static int add_field(struct conn *c, const char *name, const char *value)
{
        size_t len = strlen(c->added);
        int n = snprintf(c->added + len, sizeof(c->added) - len, "%s: %s\r\n", name, value);
        char raw[200];

        if (n < 0 || (size_t) n >= sizeof(c->added) - len)
                return DKIMSIGN_E_NOSPACE;
        snprintf(raw, sizeof(raw), " %s", value);
        return dkimsign_message_add_header_raw(c->msg, name, raw);
}

/* Date and Message-ID as Sendmail would write them (RFC 5322 3.3, 3.6.4):
 * the local time with its offset; a unique id at the MTA's host name ({j}). */
static int add_missing_fields(SMFICTX *ctx, struct conn *c)
{
        static atomic_uint counter;
        struct timespec ts;
        struct tm tm;
        char date[64], id[160];
        const char *host = smfi_getsymval(ctx, (char *) "j");
        int r = 0;

        clock_gettime(CLOCK_REALTIME, &ts);
        if (!c->has_date) {
                if (!localtime_r(&ts.tv_sec, &tm) || strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm) == 0)
                        return DKIMSIGN_E_INTERNAL;
                r = add_field(c, "Date", date);
        }
        if (r == 0 && !c->has_message_id) {
                snprintf(id, sizeof(id), "<%llx.%lx.%x.%x@%.100s>", (unsigned long long) ts.tv_sec,
                         (unsigned long) ts.tv_nsec, (unsigned) getpid(), atomic_fetch_add(&counter, 1),
                         host && host[0] && !strpbrk(host, " \t\r\n<>") ? host : "localhost");
                r = add_field(c, "Message-ID", id);
        }
        return r;
}

static sfsistat on_header(SMFICTX *ctx, char *name, char *value)
{
        struct conn *c = conn_get(ctx);
        int r;

        if (!active(c))
                return not_signing(ctx, c, SMFIS_ACCEPT);
        if (!c->domain[0] && strcasecmp(name, "From") == 0)
                address_domain(value, c->domain);
        header_mta_check(c, name, value);
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

/* A login's message is signed only if the login may sign the From domain
 * as dkimsignd will read it, and then with d= that domain and no other.
 * false: it passes unsigned (logged). */
static bool login_check(SMFICTX *ctx, struct conn *c)
{
        char why[sizeof(c->why)];
        int r;

        if (!c->check_login)
                return true;
        c->check_login = false;
        r = dkimsign_message_from_domain(c->msg, c->domain, sizeof(c->domain));
        if (r < 0) {
                snprintf(why, sizeof(why), "login %s: %s", c->login, dkimsign_strerror(r));
                c->domain[0] = 0;
                log_unsigned(ctx, WHY_LOGIN, LOG_INFO, why, "From domain", c->domain);
                return false;
        }
        if (!milter_login_may_sign(&cfg.policy, c->login, c->domain, why, sizeof(why))) {
                log_unsigned(ctx, WHY_LOGIN, LOG_INFO, why, "From domain", c->domain);
                return false;
        }
        snprintf(c->why, sizeof(c->why), "%s", why);
        r = dkimsign_message_set_domain(c->msg, c->domain);
        if (r < 0)
                log_unsigned(ctx, WHY_INPUT, LOG_WARNING, dkimsign_strerror(r), "From domain", c->domain);
        return r == 0;
}

/* The whole header is in: a login's message is checked here, before its
 * body is hashed for nothing. */
static sfsistat on_eoh(SMFICTX *ctx)
{
        struct conn *c = conn_get(ctx);

        if (!active(c))
                return not_signing(ctx, c, SMFIS_ACCEPT);
        if (!c->mta_change[0] && cfg.mta.converts_8bit && cfg.mta.labels_8bit && c->header_8bit &&
            !c->has_mime_version)
                snprintf(c->mta_change, sizeof(c->mta_change),
                         "8-bit header fields without MIME-Version, which %s labels (MIME-Version, Content-Type) "
                         "for a next hop without 8BITMIME (converts_8bit = yes)", cfg.mta.name);
        if (c->mta_change[0]) {
                log_unsigned(ctx, WHY_MTA, LOG_INFO, c->mta_change, "From domain", c->domain);
                return pass(c);
        }
        if (cfg.mta.adds_date_message_id && (!c->has_date || !c->has_message_id)) {
                int r = add_missing_fields(ctx, c);

                if (r < 0) {
                        log_unsigned(ctx, WHY_INPUT, LOG_WARNING, dkimsign_strerror(r), "From domain", c->domain);
                        return pass(c);
                }
        }
        if (!c->check_login) {
                /* For the log: the From domain as dkimsignd reads it. */
                char domain[sizeof(c->domain)];

                if (dkimsign_message_from_domain(c->msg, domain, sizeof(domain)) == 0)
                        memcpy(c->domain, domain, sizeof(domain));
                return SMFIS_CONTINUE;
        }
        if (login_check(ctx, c))
                return SMFIS_CONTINUE;
        c->sign = false;        /* logged; still sealed if it is to be */
        return c->seal ? SMFIS_CONTINUE : pass(c);
}

/* true (and logged): the body as read so far is one the MTA will change
 * after signing. */
static bool body_mta_change(SMFICTX *ctx, struct conn *c)
{
        char why[160];

        if (cfg.mta.line_limit && milter_scan_longest(&c->body) > cfg.mta.line_limit)
                snprintf(why, sizeof(why), "a body line longer than the %zu octets %s sends unbroken (line_limit)",
                         cfg.mta.line_limit, cfg.mta.name);
        else if (cfg.mta.converts_8bit && c->body.eightbit)
                snprintf(why, sizeof(why), "an 8-bit body, which %s may convert to 7-bit for a next hop without "
                                           "8BITMIME (converts_8bit = yes)", cfg.mta.name);
        else
                return false;
        log_unsigned(ctx, WHY_MTA, LOG_INFO, why, "From domain", c->domain);
        return true;
}

static sfsistat on_body(SMFICTX *ctx, unsigned char *data, size_t len)
{
        struct conn *c = conn_get(ctx);
        int r;

        if (!active(c))
                return not_signing(ctx, c, SMFIS_ACCEPT);
        milter_scan_feed(&c->body, data, len);
        if (body_mta_change(ctx, c))
                return pass(c);
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
static const char *field_value(const char *fields, bool leadspc, char **ret_name, char **ret)
{
        const char *p = fields, *end;
        char *v, *o;

        while (*p && *p != ':')
                p++;
        *ret_name = strndup(fields, (size_t) (p - fields));
        if (!*ret_name)
                return NULL;
        if (*p == ':')
                p++;
        if (*p == ' ' && !leadspc)
                p++;
        /* The field ends at a CRLF not followed by a fold. */
        for (end = p; *end; end++)
                if (end[0] == '\r' && end[1] == '\n' && end[2] != ' ' && end[2] != '\t')
                        break;
        v = malloc((size_t) (end - p) + 1);
        if (!v) {
                free(*ret_name);
                return NULL;
        }
        for (o = v; p < end; p++)
                if (*p != '\r')
                        *o++ = *p;
        *o = 0;
        *ret = v;
        return *end ? end + 2 : end;
}

static int insert_fields(SMFICTX *ctx, bool leadspc, const char *fields)
{
        char *names[8], *values[8];
        size_t n = 0;
        int r = 0;

        for (const char *p = fields; *p && n < 8;) {
                p = field_value(p, leadspc, &names[n], &values[n]);
                if (!p) {
                        r = -1;
                        break;
                }
                n++;
        }
        /* Index 0 each time, last first: the first field ends on top. */
        for (size_t i = n; i-- > 0;) {
                if (r == 0 && smfi_insheader(ctx, 0, names[i], values[i]) != MI_SUCCESS)
                        r = -1;
                free(names[i]);
                free(values[i]);
        }
        return r;
}

/* The fields the milter signed in place of the MTA (c->added), at the
 * end of the header as they were signed; once, before the first
 * signature or seal that covers them. */
static int add_fields(SMFICTX *ctx, struct conn *c)
{
        int r = 0;

        if (c->added_done)
                return 0;
        c->added_done = true;
        for (const char *p = c->added; *p && r == 0;) {
                char *name = NULL, *value = NULL;

                p = field_value(p, c->leadspc, &name, &value);
                if (!p)
                        return -1;
                if (smfi_addheader(ctx, name, value) != MI_SUCCESS)
                        r = -1;
                free(name);
                free(value);
        }
        return r;
}

/* After dkimsign_sign or dkimsign_arc_seal: a temporary failure tempfails
 * (or accepts, on_tempfail = accept), a refusal passes the message on as
 * it is, the fields are inserted.  what: "signed" or "sealed". */
static sfsistat finish(SMFICTX *ctx, struct conn *c, dkimsign_client *client, int r, const char *fields,
                       const char *what)
{
        const char *err = client ? dkimsign_client_error(client) : dkimsign_strerror(r);
        bool sealing = strcmp(what, "sealed") == 0;

        if (r < 0 && dkimsign_err_is_temporary(r)) {
                outage_update(r != DKIMSIGN_E_DNS_TEMPORARY, err);
                if (cfg.tempfail_accept)
                        log_unsigned(ctx, WHY_UNAVAILABLE, LOG_INFO, sealing ? "not sealed either, on_tempfail = accept"
                                     : "dkimsignd unavailable, on_tempfail = accept", "From domain", c->domain);
                else
                        log_msg(LOG_DEBUG, "%s: tempfailed", queue_id(ctx));
                return cfg.tempfail_accept ? SMFIS_CONTINUE : SMFIS_TEMPFAIL;
        }
        outage_update(false, NULL);
        if (r < 0 && sealing)
                log_msg(LOG_INFO, "%s: not sealed: %s", queue_id(ctx), err);
        else if (r < 0)
                log_unsigned(ctx, WHY_REFUSED, LOG_INFO, err, "From domain", c->domain);
        else if (add_fields(ctx, c) < 0 || insert_fields(ctx, c->leadspc, fields) < 0) {
                log_msg(LOG_ERR, "%s: smfi_insheader failed", queue_id(ctx));
                return SMFIS_TEMPFAIL;
        } else if (sealing)
                log_msg(LOG_INFO, "%s: sealed (%s)", queue_id(ctx), err);
        else
                log_msg(LOG_INFO, "%s: signed", queue_id(ctx));
        return SMFIS_CONTINUE;
}

static sfsistat on_eom(SMFICTX *ctx)
{
        struct conn *c = conn_get(ctx);
        struct dkimsign_arc_options arc = { .domain = cfg.arc_domain, .authserv_id = cfg.arc_authserv_id,
                                            .dns_server = cfg.arc_dns_server };
        dkimsign_client *client = NULL;
        char *fields = NULL;
        sfsistat status = SMFIS_CONTINUE;
        int r;

        if (!active(c))
                return not_signing(ctx, c, SMFIS_CONTINUE);
        /* The last line, which no line end closed. */
        if (body_mta_change(ctx, c)) {
                conn_reset(c);
                return SMFIS_CONTINUE;
        }
        /* An MTA that skipped the end of header. */
        if (c->sign && !login_check(ctx, c))
                c->sign = false;
        if (!active(c)) {
                conn_reset(c);
                return SMFIS_CONTINUE;
        }
        r = client_get(&client);
        if (c->sign) {
                log_msg(LOG_DEBUG, "%s: signing: %s (From domain %s)", queue_id(ctx), c->why,
                        c->domain[0] ? c->domain : "unknown");
                if (r == 0)
                        r = dkimsign_sign(client, c->msg, &fields);
                status = finish(ctx, c, client, r, fields, "signed");
                free(fields);
                fields = NULL;
        }
        /* Sealed after signing, so the seal is on top; not after a
         * temporary failure, which retries the whole message. */
        if (c->seal && status == SMFIS_CONTINUE && (r == 0 || !dkimsign_err_is_temporary(r) || !c->sign)) {
                if (client)
                        r = dkimsign_arc_seal(client, c->msg, &arc, &fields, NULL);
                status = finish(ctx, c, client, r, fields, "sealed");
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
        .xxfi_envrcpt = on_rcpt,
        .xxfi_data = on_data,
        .xxfi_header = on_header,
        .xxfi_eoh = on_eoh,
        .xxfi_body = on_body,
        .xxfi_eom = on_eom,
        .xxfi_abort = on_abort,
        .xxfi_close = on_close,
        .xxfi_negotiate = on_negotiate,
};

/* ---- main ---- */

static void join(char *out, size_t size, const char *const *names, const unsigned *ports, size_t n)
{
        size_t len = 0;

        out[0] = 0;
        for (size_t i = 0; i < n && len < size; i++) {
                int w = names ? snprintf(out + len, size - len, "%s%s", i ? ", " : "", names[i])
                              : snprintf(out + len, size - len, "%s%u", i ? ", " : "", ports[i]);

                if (w < 0)
                        break;
                len += (size_t) w;
        }
        if (n == 0)
                snprintf(out, size, "none");
}

/* What is signed, once at start. */
static void log_policy(void)
{
        const struct milter_policy *p = &cfg.policy;
        struct sockaddr_in lo = { .sin_family = AF_INET, .sin_port = htons(25),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        char daemons[512], ports[128];

        join(daemons, sizeof(daemons), (const char *const *) p->daemons, NULL, p->n_daemons);
        join(ports, sizeof(ports), NULL, p->ports, p->n_ports);
        log_msg(LOG_INFO, "what is signed: sign_authenticated = %s, login_owns_domain = %s, login_map = %s "
                          "(%zu rules), submission_daemons = %s, submission_ports = %s, internal_networks: %zu, "
                          "sign_local = %s",
                p->sign_authenticated ? "yes" : "no", p->login_owns_domain ? "yes" : "no",
                cfg.login_map ? cfg.login_map : "none", cfg.logins ? cfg.logins->n : 0, daemons, ports,
                p->n_networks, p->sign_local ? "yes" : "no");
        if (milter_origin(p, (const struct sockaddr *) &lo) == MILTER_ORIGIN_INTERNAL)
                log_msg(LOG_WARNING, "internal_networks includes 127.0.0.1: mail this host puts back into the "
                                     "queue over SMTP on loopback (a list manager, a forward, a content filter) "
                                     "is signed whatever its From");
}

/* OpenSSL sets itself up (reading its configuration) at its first use, in
 * whichever thread that is, and keeps error state of that thread: done
 * here in the main thread, through a message whose body is started, rather
 * than in a libmilter worker that may end without freeing it
 * (LeakSanitizer saw 904 bytes left by a worker's first body). */
static void crypto_warm_up(void)
{
        dkimsign_message *m = NULL;

        if (dkimsign_message_new(&m) == 0)
                (void) dkimsign_message_write(m, "\r\n", 2);
        dkimsign_message_free(m);
}

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
        log_msg(LOG_INFO, "mta = %s: line_limit = %zu, converts_8bit = %s, adds Date and Message-ID = %s, "
                          "qualifies addresses = %s", cfg.mta.name, cfg.mta.line_limit,
                cfg.mta.converts_8bit ? "yes" : "no", cfg.mta.adds_date_message_id ? "yes" : "no",
                cfg.mta.qualifies_addresses ? "yes" : "no");
        log_policy();
        crypto_warm_up();
        r = smfi_main();
        pool_clear();
        milter_config_free();
        log_msg(LOG_INFO, "stopped");
        return r == MI_SUCCESS ? 0 : 1;
}
