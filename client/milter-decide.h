/* SPDX-License-Identifier: MIT */
/*
 * dkimsign-milter's signing decision: whether a message is signed, as a
 * pure function of what the MTA says about it (the client's address, the
 * {daemon_name} and {daemon_port} it came in on, the {auth_authen} login)
 * and of the configuration; and the login map, which says which From
 * domains a login may sign.  Every message dkimsignd signs through the
 * milter is signed with the milter's uid, so this is the only place that
 * tells one sender from another.
 *
 * The MTA's macros are input from outside: each is bounded and refused
 * with a control character before it is compared or logged.
 *
 * No I/O, no logging, no globals (tests/unit/test-milter-decide.c drives it
 * with tables).  Strings in the results are the caller's or static.
 */
#ifndef CLIENT_MILTER_DECIDE_H
#define CLIENT_MILTER_DECIDE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define MILTER_MAX_NETWORKS 64
#define MILTER_MAX_NAMES 16             /* submission_daemons, submission_ports */
#define MILTER_NAME_MAX 255             /* longest {daemon_name} compared */
#define MILTER_LOGIN_MAX 320            /* longest {auth_authen} taken (64@255) */
#define MILTER_DOMAIN_MAX 253
#define LOGIN_MAP_MAX_SIZE (4 * 1024 * 1024)
#define LOGIN_MAP_MAX_LINE 4096
#define LOGIN_MAP_MAX_RULES 100000

struct milter_network {
        int family;             /* AF_INET or AF_INET6 */
        uint8_t addr[16];
        unsigned prefix;
};

/* One "login domain" pair of the login map.  login is a login
 * ("alice@a.example", "webapp") or "@domain" (every login ending in it);
 * domain is a domain, or "*.domain" (every subdomain of it, not itself);
 * both lowercase. */
struct login_rule {
        char *login;
        char *domain;
        unsigned line;
};

/* The rules sorted by login, then line. */
struct login_map {
        struct login_rule *rules;
        size_t n;
};

struct milter_policy {
        bool sign_authenticated;        /* sign_authenticated */
        bool login_owns_domain;         /* login_owns_domain */
        bool sign_local;                /* sign_local */
        struct milter_network networks[MILTER_MAX_NETWORKS];    /* internal_networks */
        size_t n_networks;
        char *daemons[MILTER_MAX_NAMES];        /* submission_daemons */
        size_t n_daemons;
        unsigned ports[MILTER_MAX_NAMES];       /* submission_ports */
        size_t n_ports;
        const struct login_map *logins; /* login_map; NULL: none */
};

/* Which mail the milter seals (ARC, RFC 8617): mail that came in on one of
 * these {daemon_name}s (a list manager's re-injection, say), or with an
 * envelope recipient in one of these domains (a forwarder's).  Names as
 * given, domains lowercase. */
struct milter_arc {
        char *daemons[MILTER_MAX_NAMES];        /* arc_daemons */
        size_t n_daemons;
        char *domains[MILTER_MAX_NAMES];        /* arc_recipient_domains */
        size_t n_domains;
};

/* Where a connection comes from. */
enum milter_origin {
        /* Submitted on this host, not over the network: no client address
         * (sendmail's local delivery, an MTA on a unix socket), AF_UNIX, or
         * a loopback address with port 0, which is how Postfix presents
         * mail its cleanup(8) takes from pickup(8) (sendmail(1), postdrop)
         * to non_smtpd_milters: no TCP client has port 0. */
        MILTER_ORIGIN_LOCAL,
        MILTER_ORIGIN_INTERNAL,         /* a client in internal_networks */
        MILTER_ORIGIN_EXTERNAL,         /* any other client */
};

/* What the MTA said about one message.  NULL: the MTA did not send it. */
struct milter_facts {
        enum milter_origin origin;
        const char *daemon_name;        /* {daemon_name} */
        const char *daemon_port;        /* {daemon_port} */
        const char *login;              /* {auth_authen}; "" is no login */
};

enum milter_verdict {
        MILTER_SIGN,            /* sign, for whatever From dkimsignd has keys for */
        MILTER_CHECK_LOGIN,     /* sign if the login may sign the From domain (milter_login_may_sign) */
        MILTER_NOT_EXTERNAL,    /* not signed: a network client not trusted to sign */
        MILTER_NOT_LOCAL,       /* not signed: local submission, sign_local = no */
        MILTER_NOT_MALFORMED,   /* not signed: a macro that is no login */
};

/* The network part of a connection's address: its origin. */
enum milter_origin milter_origin(const struct milter_policy *p, const struct sockaddr *sa);

/*
 * The decision for one message, before its header is read, and the reason
 * in why (whylen octets; the login and daemon name are quoted from f, which
 * this checked first): "authenticated as alice@a.example", "submission
 * daemon ORIGINATING", "local submission, sign_local = no", ...
 */
enum milter_verdict milter_decide(const struct milter_policy *p, const struct milter_facts *f, char *why,
                                  size_t whylen);

/*
 * Whether login may sign From domain (lowercase, as dkimsign_message_from_domain
 * gives it): its own domain (login@domain, with login_owns_domain), or a
 * rule of the login map for the login or its "@domain".  why says which
 * rule allowed it, or that none did.
 */
bool milter_login_may_sign(const struct milter_policy *p, const char *login, const char *domain, char *why,
                           size_t whylen);

/* A macro value that may be compared and logged: at most max octets, no
 * control character. */
bool milter_macro_ok(const char *s, size_t max);

/* "127.0.0.0/8, ::1" (commas and/or spaces; "" for none) into p's
 * networks.  0, or -1 for an address that is none or too many. */
int milter_parse_networks(struct milter_policy *p, const char *value);
/* "ORIGINATING, MSA": names of printable characters. */
int milter_parse_daemons(struct milter_policy *p, const char *value);
/* "587, 465": ports 1 to 65535. */
int milter_parse_ports(struct milter_policy *p, const char *value);
/* Free the daemon names.  The policy itself is the caller's. */
void milter_policy_deinit(struct milter_policy *p);

/* arc_daemons and arc_recipient_domains, as submission_daemons: 0 or -1. */
int milter_arc_parse_daemons(struct milter_arc *a, const char *value);
int milter_arc_parse_domains(struct milter_arc *a, const char *value);
void milter_arc_deinit(struct milter_arc *a);
/* Whether mail that came in on daemon_name ({daemon_name}; NULL: not
 * sent), or for the envelope recipient rcpt ("<bob@example.org>"), is
 * sealed.  Both checked with milter_macro_ok first. */
bool milter_arc_daemon(const struct milter_arc *a, const char *daemon_name);
bool milter_arc_recipient(const struct milter_arc *a, const char *rcpt);

/*
 * Parse a login map: one rule a line,
 *
 *     LOGIN-or-@DOMAIN   DOMAIN[, DOMAIN...]     # comment
 *
 * a DOMAIN being a domain or "*.domain"; blank lines and lines starting
 * with '#' are skipped.  data is len octets (NULs refused).  0 and a map in
 * *ret (login_map_free), or -1 with "line N: ..." in why.
 */
int login_map_parse(const char *data, size_t len, struct login_map **ret, char *why, size_t whylen);
/* Accepts NULL; returns NULL. */
struct login_map *login_map_free(struct login_map *m);

#endif
