/* SPDX-License-Identifier: MIT */
/*
 * dkimsign-milter's signing decision and login map.  See milter-decide.h.
 * No I/O, no logging: the milter logs what these return.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include "client/dkimsign.h"
#include "client/milter-decide.h"

#define SEPARATORS ", \t"

/* The next item of a list (separated by commas and blanks) at *s: its
 * start and length, *s moved past it; false at the end of the list. */
static bool list_next(const char **s, const char **ret_item, size_t *ret_len)
{
        *s += strspn(*s, SEPARATORS);
        *ret_len = strcspn(*s, SEPARATORS);
        *ret_item = *s;
        *s += *ret_len;
        return *ret_len > 0;
}

static void say(char *why, size_t whylen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *why, size_t whylen, const char *fmt, ...)
{
        va_list ap;

        if (!why || whylen == 0)
                return;
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
}

static char ascii_lower(char c)
{
        return c >= 'A' && c <= 'Z' ? (char) (c - 'A' + 'a') : c;
}

bool milter_macro_ok(const char *s, size_t max)
{
        size_t n = 0;

        if (!s)
                return false;
        for (; s[n]; n++)
                if (n == max || (unsigned char) s[n] < 0x20 || s[n] == 0x7f)
                        return false;
        return true;
}

/* A domain of the map, ASCII or U-labels, into ret (MILTER_DOMAIN_MAX + 1
 * octets) in lowercase A-label form: the form dkimsign_message_from_domain
 * gives the From domain in, so an EAI domain written either way matches.
 * False when it is no domain name. */
static bool map_domain(const char *s, size_t len, char *ret)
{
        char in[4 * MILTER_DOMAIN_MAX + 1];   /* a U-label form's octets */

        if (len == 0 || len >= sizeof(in))
                return false;
        memcpy(in, s, len);
        in[len] = '\0';
        return dkimsign_domain_to_ascii(in, ret, MILTER_DOMAIN_MAX + 1) == 0;
}

/* ---- networks ---- */

static int parse_network(const char *s, size_t len, struct milter_network *ret)
{
        char text[INET6_ADDRSTRLEN + 8], *slash, *end;
        struct milter_network n = { 0 };
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
                if (errno || end == slash + 1 || *end || slash[1] == '-' || slash[1] == '+' || prefix > n.prefix)
                        return -1;
                n.prefix = (unsigned) prefix;
        }
        *ret = n;
        return 0;
}

int milter_parse_networks(struct milter_policy *p, const char *value)
{
        struct milter_network nets[MILTER_MAX_NETWORKS];
        size_t n = 0;

        const char *s = value, *item;
        size_t len;

        while (list_next(&s, &item, &len)) {
                if (n == MILTER_MAX_NETWORKS || parse_network(item, len, &nets[n]) < 0)
                        return -1;
                n++;
        }
        memcpy(p->networks, nets, n * sizeof(nets[0]));
        p->n_networks = n;
        return 0;
}

static bool in_network(const struct milter_network *n, int family, const uint8_t *addr)
{
        unsigned full = n->prefix / 8, rest = n->prefix % 8;

        if (n->family != family)
                return false;
        if (memcmp(n->addr, addr, full) != 0)
                return false;
        return rest == 0 || ((n->addr[full] ^ addr[full]) & (0xff00 >> rest) & 0xff) == 0;
}

enum milter_origin milter_origin(const struct milter_policy *p, const struct sockaddr *sa)
{
        const uint8_t *addr;
        bool loopback;
        unsigned port;
        int family;

        if (!sa || sa->sa_family == AF_UNIX)
                return MILTER_ORIGIN_LOCAL;
        if (sa->sa_family == AF_INET) {
                const struct sockaddr_in *in = (const struct sockaddr_in *) (const void *) sa;

                family = AF_INET;
                addr = (const uint8_t *) &in->sin_addr;
                port = ntohs(in->sin_port);
                loopback = addr[0] == 127;
        } else if (sa->sa_family == AF_INET6) {
                const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) (const void *) sa;

                family = AF_INET6;
                addr = in6->sin6_addr.s6_addr;
                port = ntohs(in6->sin6_port);
                loopback = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
                if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
                        family = AF_INET;
                        addr += 12;
                        loopback = addr[0] == 127;
                }
        } else {
                return MILTER_ORIGIN_EXTERNAL;
        }
        if (port == 0 && loopback)
                return MILTER_ORIGIN_LOCAL;
        for (size_t i = 0; i < p->n_networks; i++)
                if (in_network(&p->networks[i], family, addr))
                        return MILTER_ORIGIN_INTERNAL;
        return MILTER_ORIGIN_EXTERNAL;
}

/* ---- submission daemons and ports ---- */

void milter_policy_deinit(struct milter_policy *p)
{
        for (size_t i = 0; i < p->n_daemons; i++)
                free(p->daemons[i]);
        p->n_daemons = 0;
}

/* Printable names (no blank) of a list into names, strdup'ed; lower:
 * lowercased.  The count, or -1 (nothing left allocated). */
static int parse_names(const char *value, char *names[MILTER_MAX_NAMES])
{
        size_t n = 0;
        const char *s = value, *item;
        size_t len;

        while (list_next(&s, &item, &len)) {
                bool ok = n < MILTER_MAX_NAMES && len <= MILTER_NAME_MAX;

                for (size_t i = 0; ok && i < len; i++)
                        ok = item[i] > 0x20 && item[i] < 0x7f;
                if (ok)
                        names[n] = strndup(item, len);
                if (!ok || !names[n]) {
                        while (n)
                                free(names[--n]);
                        return -1;
                }
                n++;
        }
        return (int) n;
}

int milter_parse_daemons(struct milter_policy *p, const char *value)
{
        char *names[MILTER_MAX_NAMES];
        int n = parse_names(value, names);

        if (n < 0)
                return -1;
        milter_policy_deinit(p);
        memcpy(p->daemons, names, (size_t) n * sizeof(names[0]));
        p->n_daemons = (size_t) n;
        return 0;
}

static void free_names(char **names, size_t *n)
{
        while (*n)
                free(names[--*n]);
}

/* Replace the list dst (*n names) by value's names. */
static int set_names(char **dst, size_t *n, const char *value)
{
        char *names[MILTER_MAX_NAMES];
        int k = parse_names(value, names);

        if (k < 0)
                return -1;
        free_names(dst, n);
        memcpy(dst, names, (size_t) k * sizeof(names[0]));
        *n = (size_t) k;
        return 0;
}

int milter_arc_parse_daemons(struct milter_arc *a, const char *value)
{
        return set_names(a->daemons, &a->n_daemons, value);
}

/* Each in lowercase A-label form (map_domain), as a recipient's domain is
 * compared: an EAI recipient's U-labels match either form written here. */
int milter_arc_parse_domains(struct milter_arc *a, const char *value)
{
        char *names[MILTER_MAX_NAMES], ascii[MILTER_DOMAIN_MAX + 1];
        const char *s = value, *item;
        size_t n = 0, len;

        while (list_next(&s, &item, &len)) {
                if (n == MILTER_MAX_NAMES || !map_domain(item, len, ascii) || !(names[n] = strdup(ascii))) {
                        free_names(names, &n);
                        return -1;
                }
                n++;
        }
        free_names(a->domains, &a->n_domains);
        memcpy(a->domains, names, n * sizeof(names[0]));
        a->n_domains = n;
        return 0;
}

void milter_arc_deinit(struct milter_arc *a)
{
        free_names(a->daemons, &a->n_daemons);
        free_names(a->domains, &a->n_domains);
}

bool milter_arc_daemon(const struct milter_arc *a, const char *daemon_name)
{
        if (!daemon_name || !milter_macro_ok(daemon_name, MILTER_NAME_MAX))
                return false;
        for (size_t i = 0; i < a->n_daemons; i++)
                if (strcmp(a->daemons[i], daemon_name) == 0)
                        return true;
        return false;
}

bool milter_arc_recipient(const struct milter_arc *a, const char *rcpt)
{
        const char *at, *end;
        char domain[MILTER_DOMAIN_MAX + 1];

        if (!rcpt || !milter_macro_ok(rcpt, MILTER_LOGIN_MAX + 2))
                return false;
        at = strrchr(rcpt, '@');
        if (!at)
                return false;
        at++;
        end = strchr(at, '>');
        if (!map_domain(at, end ? (size_t) (end - at) : strlen(at), domain))
                return false;
        for (size_t i = 0; i < a->n_domains; i++)
                if (strcmp(a->domains[i], domain) == 0)
                        return true;
        return false;
}

/* A port: 1 to 65535 in decimal, no leading zero.  0 for none. */
static unsigned port_number(const char *s, size_t len)
{
        unsigned v = 0;

        if (len == 0 || len > 5 || s[0] == '0')
                return 0;
        for (size_t i = 0; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return 0;
                v = v * 10 + (unsigned) (s[i] - '0');
        }
        return v <= 65535 ? v : 0;
}

int milter_parse_ports(struct milter_policy *p, const char *value)
{
        unsigned ports[MILTER_MAX_NAMES];
        size_t n = 0;

        const char *s = value, *item;
        size_t len;

        while (list_next(&s, &item, &len)) {
                if (n == MILTER_MAX_NAMES || (ports[n] = port_number(item, len)) == 0)
                        return -1;
                n++;
        }
        memcpy(p->ports, ports, n * sizeof(ports[0]));
        p->n_ports = n;
        return 0;
}

/* The submission daemon or port f came in on, said in why; false if none. */
static bool submission(const struct milter_policy *p, const struct milter_facts *f, char *why, size_t whylen)
{
        if (f->daemon_name && milter_macro_ok(f->daemon_name, MILTER_NAME_MAX))
                for (size_t i = 0; i < p->n_daemons; i++)
                        if (strcmp(f->daemon_name, p->daemons[i]) == 0) {
                                say(why, whylen, "submission daemon %s", f->daemon_name);
                                return true;
                        }
        if (f->daemon_port) {
                unsigned port = port_number(f->daemon_port, strlen(f->daemon_port));

                for (size_t i = 0; port && i < p->n_ports; i++)
                        if (port == p->ports[i]) {
                                say(why, whylen, "submission port %u", port);
                                return true;
                        }
        }
        return false;
}

/* ---- the decision ---- */

enum milter_verdict milter_decide(const struct milter_policy *p, const struct milter_facts *f, char *why,
                                  size_t whylen)
{
        const char *login = f->login && *f->login ? f->login : NULL;
        char where[MILTER_NAME_MAX + 32];
        bool sub;

        if (login && !milter_macro_ok(login, MILTER_LOGIN_MAX)) {
                say(why, whylen, "a malformed {auth_authen} macro");
                return MILTER_NOT_MALFORMED;
        }
        sub = submission(p, f, where, sizeof(where));
        /* A login is the most precise thing known about a sender: where
         * one is checked, it decides, on a submission daemon too. */
        if (login && (p->sign_authenticated || sub)) {
                say(why, whylen, "authenticated as %s", login);
                return MILTER_CHECK_LOGIN;
        }
        /* Local mail is signed only with sign_local, whatever daemon name
         * the MTA gives it (Postfix's cleanup gives main.cf's). */
        if (f->origin == MILTER_ORIGIN_LOCAL) {
                say(why, whylen, "local submission, sign_local = %s", p->sign_local ? "yes" : "no");
                return p->sign_local ? MILTER_SIGN : MILTER_NOT_LOCAL;
        }
        if (sub) {
                say(why, whylen, "%s", where);
                return MILTER_SIGN;
        }
        if (f->origin == MILTER_ORIGIN_INTERNAL) {
                say(why, whylen, "client in internal_networks");
                return MILTER_SIGN;
        }
        if (login)
                say(why, whylen, "authenticated as %s, sign_authenticated = no", login);
        else
                say(why, whylen, "external client, not authenticated");
        return MILTER_NOT_EXTERNAL;
}

/* ---- logins ---- */

static bool domain_matches(const char *pattern, const char *domain)
{
        size_t pl = strlen(pattern), dl = strlen(domain);

        if (pattern[0] == '*')  /* "*.b.example": a strict subdomain */
                return dl > pl - 1 && strcmp(domain + dl - (pl - 1), pattern + 1) == 0;
        return strcmp(pattern, domain) == 0;
}

/* The first rule for key (lowercase), or the map's end. */
static size_t first_rule(const struct login_map *m, const char *key)
{
        size_t lo = 0, hi = m->n;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (strcmp(m->rules[mid].login, key) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

static const struct login_rule *find_rule(const struct login_map *m, const char *key, const char *domain)
{
        if (!m)
                return NULL;
        for (size_t i = first_rule(m, key); i < m->n && strcmp(m->rules[i].login, key) == 0; i++)
                if (domain_matches(m->rules[i].domain, domain))
                        return &m->rules[i];
        return NULL;
}

bool milter_login_may_sign(const struct milter_policy *p, const char *login, const char *domain, char *why,
                           size_t whylen)
{
        char key[MILTER_LOGIN_MAX + 1], at_domain[MILTER_DOMAIN_MAX + 2];
        const struct login_rule *r;
        const char *at;
        size_t n = strlen(login);

        if (n > MILTER_LOGIN_MAX) {
                say(why, whylen, "login too long");
                return false;
        }
        for (size_t i = 0; i <= n; i++)
                key[i] = ascii_lower(login[i]);
        at = strrchr(key, '@');
        /* The login's domain in the map's form: "jörg@bücher.example"
         * owns xn--bcher-kva.example. */
        if (at && at != key && map_domain(at + 1, strlen(at + 1), at_domain + 1)) {
                at_domain[0] = '@';
                at = at_domain;
        }
        if (p->login_owns_domain && at && at != key && strcmp(at + 1, domain) == 0) {
                say(why, whylen, "login %s owns the From domain", login);
                return true;
        }
        /* A login that starts with '@' is not one of the map's @domain
         * rules. */
        r = key[0] != '@' ? find_rule(p->logins, key, domain) : NULL;
        if (!r && at && at != key)
                r = find_rule(p->logins, at, domain);
        if (r) {
                say(why, whylen, "login_map line %u (%s %s) allows login %s", r->line, r->login, r->domain, login);
                return true;
        }
        say(why, whylen, "login %s may not sign for this domain", login);
        return false;
}

/* ---- the login map ---- */

struct login_map *login_map_free(struct login_map *m)
{
        if (m) {
                for (size_t i = 0; i < m->n; i++) {
                        free(m->rules[i].login);
                        free(m->rules[i].domain);
                }
                free(m->rules);
                free(m);
        }
        return NULL;
}

static int rule_cmp(const void *a, const void *b)
{
        const struct login_rule *x = a, *y = b;
        int r = strcmp(x->login, y->login);

        return r ? r : (x->line > y->line) - (x->line < y->line);
}

/* len octets of s (not a string: the map's buffer goes on) in lowercase. */
static char *lower_dup(const char *s, size_t len)
{
        char *d = malloc(len + 1);

        if (!d)
                return NULL;
        for (size_t i = 0; i < len; i++)
                d[i] = ascii_lower(s[i]);
        d[len] = 0;
        return d;
}

static int add_rule(struct login_map *m, size_t *cap, const char *login, size_t login_len, const char *domain,
                    size_t domain_len, unsigned line)
{
        struct login_rule r = { .line = line };

        if (m->n == LOGIN_MAP_MAX_RULES)
                return -1;
        if (m->n == *cap) {
                size_t c = *cap ? *cap * 2 : 64;
                struct login_rule *rules = realloc(m->rules, c * sizeof(*rules));

                if (!rules)
                        return -1;
                m->rules = rules;
                *cap = c;
        }
        r.login = lower_dup(login, login_len);
        r.domain = lower_dup(domain, domain_len);
        if (!r.login || !r.domain) {
                free(r.login);
                free(r.domain);
                return -1;
        }
        m->rules[m->n++] = r;
        return 0;
}

/* One line (no line end, no NUL, no control but tab). */
static int parse_line(struct login_map *m, size_t *cap, const char *s, size_t len, unsigned line, char *why,
                      size_t whylen)
{
        const char *end = s + len, *login;
        char at_domain[MILTER_DOMAIN_MAX + 2];
        size_t login_len, n = 0;

        while (s < end && (*s == ' ' || *s == '\t'))
                s++;
        if (s == end || *s == '#')
                return 0;
        login = s;
        while (s < end && *s != ' ' && *s != '\t')
                s++;
        login_len = (size_t) (s - login);
        if (login_len > MILTER_LOGIN_MAX) {
                say(why, whylen, "line %u: a login longer than %d octets", line, MILTER_LOGIN_MAX);
                return -1;
        }
        if (login[0] == '@') {
                if (!map_domain(login + 1, login_len - 1, at_domain + 1)) {
                        say(why, whylen, "line %u: \"%.*s\" is no @domain", line, (int) login_len, login);
                        return -1;
                }
                at_domain[0] = '@';
                login = at_domain;
                login_len = strlen(at_domain);
        }
        for (;;) {
                char domain[MILTER_DOMAIN_MAX + 3];
                const char *d;
                size_t dl, wild;

                while (s < end && strchr(SEPARATORS, *s))
                        s++;
                if (s == end || *s == '#')
                        break;
                d = s;
                while (s < end && !strchr(SEPARATORS, *s))
                        s++;
                dl = (size_t) (s - d);
                wild = dl > 2 && d[0] == '*' && d[1] == '.' ? 2 : 0;
                if (!map_domain(d + wild, dl - wild, domain + wild)) {
                        say(why, whylen, "line %u: \"%.*s\" is no domain (DOMAIN or *.DOMAIN)", line,
                            (int) (dl > 300 ? 300 : dl), d);
                        return -1;
                }
                memcpy(domain, "*.", wild);
                if (add_rule(m, cap, login, login_len, domain, strlen(domain), line) < 0) {
                        say(why, whylen, "line %u: %s", line,
                            m->n == LOGIN_MAP_MAX_RULES ? "more rules than the map may hold" : "out of memory");
                        return -1;
                }
                n++;
        }
        if (n == 0) {
                say(why, whylen, "line %u: no domain after the login", line);
                return -1;
        }
        return 0;
}

int login_map_parse(const char *data, size_t len, struct login_map **ret, char *why, size_t whylen)
{
        struct login_map *m = calloc(1, sizeof(*m));
        size_t cap = 0, pos = 0;
        unsigned line = 0;

        if (!m) {
                say(why, whylen, "out of memory");
                return -1;
        }
        if (len > LOGIN_MAP_MAX_SIZE) {
                say(why, whylen, "larger than %d octets", LOGIN_MAP_MAX_SIZE);
                login_map_free(m);
                return -1;
        }
        while (pos < len) {
                const char *s = data + pos, *nl = memchr(s, '\n', len - pos);
                size_t n = nl ? (size_t) (nl - s) : len - pos;

                pos += n + (nl ? 1 : 0);
                line++;
                if (n > LOGIN_MAP_MAX_LINE) {
                        say(why, whylen, "line %u: longer than %d octets", line, LOGIN_MAP_MAX_LINE);
                        login_map_free(m);
                        return -1;
                }
                if (n && s[n - 1] == '\r')
                        n--;
                for (size_t i = 0; i < n; i++)
                        if (((unsigned char) s[i] < 0x20 && s[i] != '\t') || s[i] == 0x7f) {
                                say(why, whylen, "line %u: a control character or NUL", line);
                                login_map_free(m);
                                return -1;
                        }
                if (parse_line(m, &cap, s, n, line, why, whylen) < 0) {
                        login_map_free(m);
                        return -1;
                }
        }
        if (m->n)
                qsort(m->rules, m->n, sizeof(m->rules[0]), rule_cmp);
        *ret = m;
        return 0;
}
