/* SPDX-License-Identifier: MIT */
/*
 * dkimsignd.conf parser.  See config.h.  Every value is checked here, once,
 * so the rest of the daemon can trust the struct.  Unknown sections and keys
 * are errors: a typo must not silently fall back to a default.
 */
#include <ctype.h>
#include <grp.h>
#include <pwd.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "keys/config.h"
#include "dkimsign-build.h"
#include "protocol/dkimsign-errors.h"
#include "protocol/frame.h"
#include "dkim/header.h"
#include "dkim/identity.h"
#include "dkim/idn.h"
#include "hsm/hsm.h"
#include "util/fileperm.h"
#include "util/readfile.h"


/* inih reads a line into INI_MAX_LINE (200) octets with its newline and
 * NUL: a longer one would be split, and the lines after it miscounted. */
#define INI_LINE_MAX 198

/* A list of header field names as one key gave it (lowercased, in order). */
struct hlist {
        struct dkim_hpolicy *p;         /* .oversign unused */
        size_t len;
        size_t line;                    /* where the key is; 0: not set */
};

/* A section's headers and over-sign lists, resolved once the whole file is
 * read (resolve_policy), so their order in the file does not matter; and
 * the lines of the signing options checked then (check_signing_options). */
struct section_lists {
        struct hlist headers, oversign, if_present;
        size_t identity_line, also_sign_line;
};

/* The keys a section has set, each with its line: none may be set twice. */
struct seen_keys {
        struct {
                char name[24];          /* longer names are unknown keys */
                size_t line;
        } key[24];
        size_t n;
};

enum { SEEN_DAEMON, SEEN_TOKEN, SEEN_LIMITS, SEEN_SIGNING, SEEN_DNS, SEEN_METRICS, SEEN_DOMAIN, SEEN_COUNT };

struct parse_state {
        struct config *c;
        struct config_domain *domain;   /* the [domain X] section being read */
        char *domain_section;           /* its section name as written (the name may be U-labels) */
        char *err;
        size_t errlen;
        const char *text;               /* what the reader has not given inih yet */
        size_t left;
        size_t line;                    /* the line inih is on */
        bool continued;                 /* it continues the key above it */
        bool after_key;                 /* a key was set since the last [section] line */
        size_t fail_line;               /* the first refusal's line; 0: none */
        size_t uri_line;                /* [token] uri's first line; 0: not set */
        struct seen_keys seen[SEEN_COUNT];      /* SEEN_DOMAIN: the current [domain] */
        struct section_lists signing;
        struct section_lists *domain_lists;     /* one per c->domains entry, in file order */
        char section[INI_LINE_MAX + 1];         /* the last section line's name, whole (read_line) */
};

static int fail(struct parse_state *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct parse_state *s, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(s->err, s->errlen, fmt, ap);
        va_end(ap);
        s->fail_line = s->line;
        return 0;  /* inih: stop, report this line */
}

/* A domain the file names (a section's, key_domain) in lowercase A-label
 * form, the one form dkimsignd compares: U-labels ("bücher.example") are
 * taken and converted (IDNA2008, dkim/idn.h).  NULL after fail(). */
static char *domain_dup(struct parse_state *s, const char *what, const char *v)
{
        char a[DKIM_DOMAIN_SIZE];
        const char *why = "";
        char *p = NULL;
        int r = dkim_domain_to_ascii(v, strlen(v), a, &why);

        if (r == DKIMSIGN_E_NOMEM || (r == 0 && !(p = strdup(a))))
                fail(s, "out of memory");
        else if (r < 0)
                fail(s, "%s'%s' is not a valid domain name: %s", what, v, why);
        return p;
}

static char *lowercase_dup(const char *v)
{
        char *p = strdup(v);

        for (char *q = p; q && *q; q++)
                *q = (char) tolower((unsigned char) *q);
        return p;
}

/* A key is set once (handle_key), so field is still NULL here. */
static int set_string(struct parse_state *s, char **field, const char *name, const char *value)
{
        if (!*value)
                return fail(s, "'%s' is empty", name);
        *field = strdup(value);
        return *field ? 1 : fail(s, "out of memory");
}

static int parse_u64(const char *v, uint64_t min, uint64_t max, uint64_t *ret)
{
        char *end;
        unsigned long long n;

        if (!isdigit((unsigned char) *v))
                return -1;
        errno = 0;
        n = strtoull(v, &end, 10);
        if (errno || *end || n < min || n > max)
                return -1;
        *ret = n;
        return 0;
}

/* "48h", "30m", "10s", "2d" or plain seconds. */
static int parse_duration(const char *v, uint64_t *ret)
{
        char num[32];
        size_t len = strlen(v);
        uint64_t mult = 1, n;

        if (len == 0 || len >= sizeof(num))
                return -1;
        memcpy(num, v, len + 1);
        switch (num[len - 1]) {
        case 's': mult = 1; num[len - 1] = 0; break;
        case 'm': mult = 60; num[len - 1] = 0; break;
        case 'h': mult = 3600; num[len - 1] = 0; break;
        case 'd': mult = 86400; num[len - 1] = 0; break;
        default: break;
        }
        if (parse_u64(num, 0, UINT32_MAX, &n) < 0)
                return -1;
        *ret = n * mult;
        return 0;
}

static int parse_size(struct parse_state *s, const char *name, const char *v, uint64_t min,
                      uint64_t max, size_t *ret)
{
        uint64_t n;

        if (parse_u64(v, min, max, &n) < 0)
                return fail(s, "'%s' must be a whole number from %llu to %llu", name,
                            (unsigned long long) min, (unsigned long long) max);
        *ret = (size_t) n;
        return 1;
}

/* yes/true or no/false, in any letter case. */
static int parse_yes_no(struct parse_state *s, const char *name, const char *value, bool *ret)
{
        if (strcasecmp(value, "yes") == 0 || strcasecmp(value, "true") == 0)
                *ret = true;
        else if (strcasecmp(value, "no") == 0 || strcasecmp(value, "false") == 0)
                *ret = false;
        else
                return fail(s, "'%s' must be yes or no", name);
        return 1;
}

/* A field name (RFC 5322 3.6.8: ftext, printable US-ASCII but ':') that
 * can also stand in the DKIM-Signature's h= tag: no ';', which ends a tag
 * (RFC 6376 3.2), and no '=', which separates a tag's name from its value
 * and which tag-list parsers that split on every '=' misread. */
static bool valid_header_name(const char *n)
{
        if (!*n || strlen(n) > 64)
                return false;
        for (const unsigned char *p = (const unsigned char *) n; *p; p++)
                if (*p <= ' ' || *p >= 0x7f || *p == ':' || *p == ';' || *p == '=')
                        return false;
        return true;
}

/* Append a comma-, colon- or space-separated list of header names. */
static int add_header_list(struct parse_state *s, struct hlist *l, const char *value)
{
        char *copy = strdup(value), *save = NULL;
        int ok = 1;

        if (!copy)
                return fail(s, "out of memory");
        for (char *tok = strtok_r(copy, ",: \t", &save); tok && ok; tok = strtok_r(NULL, ",: \t", &save)) {
                struct dkim_hpolicy *p;
                size_t i;

                if (!valid_header_name(tok)) {
                        ok = fail(s, "'%s' is not a valid header field name (printable ASCII but ':', ';' "
                                  "and '=', at most 64 characters)", tok);
                        break;
                }
                for (i = 0; i < l->len; i++)
                        if (strcasecmp(l->p[i].name, tok) == 0)
                                break;
                if (i < l->len) {
                        ok = fail(s, "header field '%s' is listed twice", tok);
                        break;
                }
                if (l->len >= DKIM_HNAMES_MAX / 2) {
                        ok = fail(s, "too many header fields (at most %d)", DKIM_HNAMES_MAX / 2);
                        break;
                }
                p = realloc(l->p, (l->len + 1) * sizeof(*p));
                if (!p) {
                        ok = fail(s, "out of memory");
                        break;
                }
                l->p = p;
                p[l->len] = (struct dkim_hpolicy) { .name = lowercase_dup(tok) };
                if (!p[l->len].name) {
                        ok = fail(s, "out of memory");
                        break;
                }
                l->len++;
        }
        free(copy);
        if (ok && !l->line)
                l->line = s->line;
        return ok;
}

static void free_policy(struct dkim_hpolicy *p, size_t len)
{
        for (size_t i = 0; i < len; i++)
                free((char *) p[i].name);
        free(p);
}

static void section_lists_clear(struct section_lists *l)
{
        free_policy(l->headers.p, l->headers.len);
        free_policy(l->oversign.p, l->oversign.len);
        free_policy(l->if_present.p, l->if_present.len);
}

static bool hlist_has(const struct hlist *l, const char *name)
{
        for (size_t i = 0; i < l->len; i++)
                if (strcmp(l->p[i].name, name) == 0)
                        return true;
        return false;
}

/* The built-in lists (RFC 6376 5.4.1's set, and the fields of it that the
 * default over-signs), as a section that set both would have them. */
static int default_lists(struct section_lists *ret)
{
        struct section_lists d = { 0 };
        int r = 0;

        d.headers.p = calloc(dkim_default_hpolicy_len, sizeof(*d.headers.p));
        d.oversign.p = calloc(dkim_default_hpolicy_len, sizeof(*d.oversign.p));
        if (!d.headers.p || !d.oversign.p)
                r = DKIMSIGN_E_NOMEM;
        for (size_t i = 0; i < dkim_default_hpolicy_len && r == 0; i++) {
                const char *name = dkim_default_hpolicy[i].name;

                if (!(d.headers.p[d.headers.len].name = strdup(name)))
                        r = DKIMSIGN_E_NOMEM;
                else
                        d.headers.len++;
                if (r == 0 && dkim_default_hpolicy[i].oversign) {
                        if (!(d.oversign.p[d.oversign.len].name = strdup(name)))
                                r = DKIMSIGN_E_NOMEM;
                        else
                                d.oversign.len++;
                }
        }
        *ret = d;  /* even half-built: the caller clears it */
        return r;
}

/* A field in the section's own over-sign list that it does not sign is an
 * error (the line would do nothing). */
static int check_oversign_signed(const struct hlist *list, const char *key, const struct hlist *sign,
                                 const char *section, char *err, size_t errlen)
{
        for (size_t i = 0; i < list->len; i++)
                if (!hlist_has(sign, list->p[i].name)) {
                        snprintf(err, errlen, "line %zu: [%s] %s names '%s', which is not signed: add it to "
                                 "headers, or take it out of %s", list->line, section, key, list->p[i].name, key);
                        return DKIMSIGN_E_CONFIG;
                }
        return 0;
}

/* How field name is over-signed: oversign and oversign_if_present are each
 * the section's own list, else base's.  A field in both takes the
 * section's own list's mode; in both of base's, if-present (only a section
 * that set it explicitly can have put it there, over the default list). */
static enum dkim_oversign oversign_mode(const struct section_lists *own, const struct hlist *over,
                                        const struct hlist *if_present, const char *name)
{
        bool always = hlist_has(over, name), present = hlist_has(if_present, name);

        if (always && present)
                return own->oversign.line && !own->if_present.line ? DKIM_OVERSIGN_ALWAYS : DKIM_OVERSIGN_IF_PRESENT;
        return always ? DKIM_OVERSIGN_ALWAYS : present ? DKIM_OVERSIGN_IF_PRESENT : DKIM_OVERSIGN_NO;
}

/* A section's policy: its signed fields (its own headers, else base's),
 * each over-signed as oversign_mode says.  A field of base's lists that
 * the section does not sign is simply not signed here. */
static int resolve_policy(const struct section_lists *own, const struct section_lists *base, const char *section,
                          struct dkim_hpolicy **ret, size_t *ret_len, char *err, size_t errlen)
{
        const struct hlist *sign = own->headers.line ? &own->headers : &base->headers;
        const struct hlist *over = own->oversign.line ? &own->oversign : &base->oversign;
        const struct hlist *if_present = own->if_present.line ? &own->if_present : &base->if_present;
        struct dkim_hpolicy *p;
        int r;

        if (!hlist_has(sign, "from")) {
                snprintf(err, errlen, "line %zu: [%s] headers must include From (RFC 6376 5.4)", own->headers.line,
                         section);
                return DKIMSIGN_E_CONFIG;
        }
        r = check_oversign_signed(&own->oversign, "oversign", sign, section, err, errlen);
        if (r == 0)
                r = check_oversign_signed(&own->if_present, "oversign_if_present", sign, section, err, errlen);
        if (r < 0)
                return r;
        for (size_t i = 0; i < own->if_present.len; i++)
                if (hlist_has(&own->oversign, own->if_present.p[i].name)) {
                        snprintf(err, errlen, "line %zu: [%s] '%s' is in oversign (line %zu) and in "
                                 "oversign_if_present: keep it in one", own->if_present.line, section,
                                 own->if_present.p[i].name, own->oversign.line);
                        return DKIMSIGN_E_CONFIG;
                }
        p = calloc(sign->len, sizeof(*p));
        if (!p)
                return DKIMSIGN_E_NOMEM;
        for (size_t i = 0; i < sign->len; i++) {
                p[i] = (struct dkim_hpolicy) { .name = strdup(sign->p[i].name),
                                               .oversign = oversign_mode(own, over, if_present, sign->p[i].name) };
                if (!p[i].name) {
                        free_policy(p, i);
                        return DKIMSIGN_E_NOMEM;
                }
        }
        *ret = p;
        *ret_len = sign->len;
        return 0;
}

static bool acl_add_id(struct config_acl *acl, bool is_user, unsigned long id);

static int acl_add(struct parse_state *s, struct config_acl *acl, const char *entry)
{
        struct config_acl_name *p;
        const char *name;
        bool is_user;

        if (strcmp(entry, "*") == 0) {
                acl->any = true;
                return 1;
        }
        if (strncmp(entry, "user:", 5) == 0)
                is_user = true;
        else if (strncmp(entry, "group:", 6) == 0)
                is_user = false;
        else
                return fail(s, "'%s': allow takes *, user:NAME or group:NAME", entry);
        name = entry + (is_user ? 5 : 6);
        if (!*name)
                return fail(s, "'%s': no name", entry);
        /* Kept in order, as written: config_resolve makes them ids (a
         * number as it is, a name through NSS), once, never per request;
         * the parser itself stays pure. */
        p = realloc(acl->names, (acl->nnames + 1) * sizeof(*p));
        if (!p)
                return fail(s, "out of memory");
        acl->names = p;
        p[acl->nnames] = (struct config_acl_name) { .is_user = is_user, .line = s->line, .name = strdup(name) };
        if (!p[acl->nnames].name)
                return fail(s, "out of memory");
        acl->nnames++;
        return 1;
}

/* Add a resolved uid or gid; false when out of memory. */
static bool acl_add_id(struct config_acl *acl, bool is_user, unsigned long id)
{
        if (is_user) {
                uid_t *p = realloc(acl->uids, (acl->nuids + 1) * sizeof(*p));

                if (!p)
                        return false;
                acl->uids = p;
                p[acl->nuids++] = (uid_t) id;
        } else {
                gid_t *p = realloc(acl->gids, (acl->ngids + 1) * sizeof(*p));

                if (!p)
                        return false;
                acl->gids = p;
                p[acl->ngids++] = (gid_t) id;
        }
        return true;
}

static int parse_acl(struct parse_state *s, struct config_acl *acl, const char *value)
{
        char *copy = strdup(value), *save = NULL;
        int ok = 1;

        if (!copy)
                return fail(s, "out of memory");
        if (!acl->set)
                acl->any = false;  /* an explicit list replaces the default */
        acl->set = true;
        for (char *t = strtok_r(copy, ", \t", &save); t && ok; t = strtok_r(NULL, ", \t", &save))
                ok = acl_add(s, acl, t);
        free(copy);
        return ok;
}

static void acl_free(struct config_acl *acl)
{
        free(acl->uids);
        free(acl->gids);
        for (size_t i = 0; i < acl->nnames; i++)
                free(acl->names[i].name);
        free(acl->names);
}

static int handle_daemon(struct parse_state *s, const char *name, const char *value)
{
        struct config *c = s->c;
        uint64_t n;

        if (strcmp(name, "socket") == 0) {
                if (value[0] != '/')
                        return fail(s, "'socket' must be an absolute path");
                if (strlen(value) >= 108)
                        return fail(s, "'socket' is longer than a Unix socket path may be (107)");
                free(c->socket_path);
                c->socket_path = strdup(value);
                return c->socket_path ? 1 : fail(s, "out of memory");
        }
        if (strcmp(name, "socket_mode") == 0) {
                char *end;
                unsigned long m = strtoul(value, &end, 8);

                if (!*value || *end || m > 0777)
                        return fail(s, "'socket_mode' must be an octal mode such as 0660");
                c->socket_mode = (mode_t) m;
                return 1;
        }
        if (strcmp(name, "socket_group") == 0)
                return set_string(s, &c->socket_group, name, value);
        if (strcmp(name, "socket_user") == 0)
                return set_string(s, &c->socket_user, name, value);
        if (strcmp(name, "user") == 0) {
                c->user_line = s->line;
                return set_string(s, &c->user, name, value);
        }
        if (strcmp(name, "allow") == 0)
                return parse_acl(s, &c->allow, value);
        if (strcmp(name, "log") == 0) {
                /* The order of util/log.h's enum log_target. */
                static const char *const targets[] = { "auto", "journal", "syslog", "stderr" };

                for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++)
                        if (strcasecmp(value, targets[i]) == 0) {
                                c->log_target = (int) i;
                                return 1;
                        }
                return fail(s, "'log' must be auto, journal, syslog or stderr");
        }
        if (strcmp(name, "syslog_socket") == 0) {
                if (value[0] != '/' || strlen(value) >= 108)
                        return fail(s, "'syslog_socket' must be an absolute path of at most 107 octets");
                return set_string(s, &c->syslog_socket, name, value);
        }
        if (strcmp(name, "log_level") == 0) {
                static const char *const levels[] = { "err", "warning", "notice", "info", "debug" };
                static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG };

                for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
                        if (strcasecmp(value, levels[i]) == 0) {
                                c->log_level = prio[i];
                                return 1;
                        }
                return fail(s, "'log_level' must be err, warning, notice, info or debug");
        }
        if (strcmp(name, "state_dir") == 0) {
                if (value[0] != '/')
                        return fail(s, "'state_dir' must be an absolute path");
                if (strlen(value) > 1024)
                        return fail(s, "'state_dir' is longer than 1024 characters");
                free(c->state_dir);
                c->state_dir = strdup(value);
                return c->state_dir ? 1 : fail(s, "out of memory");
        }
        (void) n;
        return fail(s, "unknown key '%s' in [daemon]", name);
}

/* Names module_env refuses: they change how dkimsignd or dkimsignctl
 * itself runs, not how the module finds its token.  The dynamic loader's
 * and the C library's (glibc's list of variables unsafe for setuid
 * programs, unsecvars.h), OpenSSL's (they load other code into the
 * process), PATH (which programs run), and those that systemd passes and
 * dkimsignd reads (socket activation, readiness, the PIN credential). */
static bool env_name_refused(const char *name)
{
        static const char *const refused[] = {
                "LD_*", "GLIBC_TUNABLES", "MALLOC_*", "GCONV_PATH", "GETCONF_DIR", "HOSTALIASES", "LOCALDOMAIN",
                "LOCPATH", "NIS_PATH", "NLSPATH", "RESOLV_HOST_CONF", "RES_OPTIONS", "TMPDIR", "TZDIR",
                "OPENSSL_*", "PATH",
                "LISTEN_*", "NOTIFY_SOCKET", "WATCHDOG_*", "CREDENTIALS_DIRECTORY", "JOURNAL_STREAM",
        };

        for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
                size_t len = strlen(refused[i]);

                if (refused[i][len - 1] == '*' ? strncmp(name, refused[i], len - 1) == 0
                                               : strcmp(name, refused[i]) == 0)
                        return true;
        }
        return false;
}

/* One module_env entry, NAME=VALUE; the line's limit bounds its length. */
static int add_module_env(struct parse_state *s, const char *value)
{
        struct config *c = s->c;
        const char *eq = strchr(value, '=');
        size_t nlen = eq ? (size_t) (eq - value) : 0;
        char name[CONFIG_ENV_NAME_MAX + 1];

        if (!eq)
                return fail(s, "'module_env' takes NAME=VALUE (one a line, more on indented lines)");
        if (nlen == 0 || nlen > CONFIG_ENV_NAME_MAX || isdigit((unsigned char) value[0]) ||
            strspn(value, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") != nlen)
                return fail(s, "module_env: '%.*s' is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*, "
                            "at most %d characters)", (int) (nlen > 80 ? 80 : nlen), value, CONFIG_ENV_NAME_MAX);
        memcpy(name, value, nlen);
        name[nlen] = 0;
        if (env_name_refused(name))
                return fail(s, "module_env: %s would change how dkimsignd itself runs; it is refused", name);
        for (const unsigned char *p = (const unsigned char *) eq + 1; *p; p++)
                if (*p < ' ' || *p == 0x7f)
                        return fail(s, "module_env: %s's value has a control character", name);
        for (size_t i = 0; i < c->nmodule_env; i++)
                if (strncmp(c->module_env[i], value, nlen + 1) == 0)
                        return fail(s, "module_env: %s is set twice", name);
        if (c->nmodule_env >= CONFIG_MODULE_ENV_MAX)
                return fail(s, "module_env: at most %d variables", CONFIG_MODULE_ENV_MAX);
        c->module_env[c->nmodule_env] = strdup(value);
        if (!c->module_env[c->nmodule_env])
                return fail(s, "out of memory");
        c->nmodule_env++;
        return 1;
}

/* [token] uri, or an indented line continuing it: RFC 3986 (appendix C)
 * lets a long URI break across lines, joined again without the breaks.
 * Checked whole, once the file is read (check_token). */
static int add_uri(struct parse_state *s, const char *value)
{
        struct config *c = s->c;
        size_t have = c->token_uri ? strlen(c->token_uri) : 0, add = strlen(value);
        char *p;

        if (have + add > HSM_URI_MAX)
                return fail(s, "'uri' is longer than %d characters", HSM_URI_MAX);
        if (!s->continued) {
                s->uri_line = s->line;
                return set_string(s, &c->token_uri, "uri", value);
        }
        p = realloc(c->token_uri, have + add + 1);
        if (!p)
                return fail(s, "out of memory");
        memcpy(p + have, value, add + 1);
        c->token_uri = p;
        return 1;
}

static int handle_token(struct parse_state *s, const char *name, const char *value)
{
        struct config *c = s->c;

        if (strcmp(name, "module") == 0)
                return set_string(s, &c->module, name, value);
        if (strcmp(name, "label") == 0) {
                if (strlen(value) > 32)
                        return fail(s, "'label' is longer than a PKCS#11 token label may be (32)");
                return set_string(s, &c->token_label, name, value);
        }
        if (strcmp(name, "uri") == 0)
                return add_uri(s, value);
        if (strcmp(name, "pin_file") == 0)
                return set_string(s, &c->pin_file, name, value);
        if (strcmp(name, "module_env") == 0)
                return add_module_env(s, value);
        if (strcmp(name, "sessions") == 0)
                return parse_size(s, name, value, 1, 1024, &c->sessions);
        if (strcmp(name, "processes") == 0)
                return parse_size(s, name, value, 1, 64, &c->processes);
        if (strcmp(name, "key_copies") == 0)
                return parse_size(s, name, value, 0, CONFIG_KEY_COPIES_MAX, &c->key_copies);
        if (strcmp(name, "lock_keys") == 0)
                return parse_yes_no(s, name, value, &c->lock_keys);
        if (strcmp(name, "reinitialize") == 0) {
                if (strcasecmp(value, "auto") == 0)
                        c->reinitialize = CONFIG_REINIT_AUTO;
                else if (strcasecmp(value, "always") == 0)
                        c->reinitialize = CONFIG_REINIT_ALWAYS;
                else if (strcasecmp(value, "never") == 0)
                        c->reinitialize = CONFIG_REINIT_NEVER;
                else
                        return fail(s, "'reinitialize' must be auto, always or never");
                return 1;
        }
        if (strcmp(name, "allow_decrypt_keys") == 0)
                return parse_yes_no(s, name, value, &c->allow_decrypt_keys);
        if (strcmp(name, "sign_timeout") == 0) {
                uint64_t sec;

                if (parse_duration(value, &sec) < 0 || sec == 0 || sec > 3600)
                        return fail(s, "'sign_timeout' must be a duration from 1s to 1h, such as 10s");
                c->sign_timeout_ms = (unsigned) (sec * 1000);
                return 1;
        }
        return fail(s, "unknown key '%s' in [token]", name);
}

/* A quota: messages in its window, 0 for none. */
static int parse_quota(struct parse_state *s, const char *name, const char *value, uint64_t *ret)
{
        if (parse_u64(value, 0, 1000000000, ret) < 0)
                return fail(s, "'%s' must be a whole number of messages from 0 (no limit) to 1000000000", name);
        return 1;
}

static int handle_limits(struct parse_state *s, const char *name, const char *value)
{
        struct config_limits *l = &s->c->limits;
        uint64_t ms;

        if (strcmp(name, "max_frame") == 0)
                return parse_size(s, name, value, FRAME_MIN_MAX, 64 * 1024 * 1024, &l->max_frame);
        if (strcmp(name, "max_header_block") == 0)
                return parse_size(s, name, value, 256, 64 * 1024 * 1024, &l->max_header_block);
        if (strcmp(name, "max_headers") == 0)
                return parse_size(s, name, value, 1, 1000000, &l->max_headers);
        if (strcmp(name, "max_line") == 0)
                return parse_size(s, name, value, 78, 1024 * 1024, &l->max_line);
        if (strcmp(name, "max_connections") == 0)
                return parse_size(s, name, value, 1, 1000000, &l->max_connections);
        if (strcmp(name, "max_inflight") == 0)
                return parse_size(s, name, value, 1, 4096, &l->max_inflight);
        if (strcmp(name, "max_queue") == 0)
                return parse_size(s, name, value, 1, 1000000, &l->max_queue);
        if (strcmp(name, "max_connections_per_uid") == 0)
                return parse_size(s, name, value, 1, 1000000, &l->max_connections_per_uid);
        if (strcmp(name, "max_inflight_per_uid") == 0)
                return parse_size(s, name, value, 1, 1000000, &l->max_inflight_per_uid);
        if (strcmp(name, "max_buffered_per_uid") == 0)
                return parse_size(s, name, value, 65536, (uint64_t) 64 << 30, &l->max_buffered_per_uid);
        if (strcmp(name, "max_buffered") == 0)
                return parse_size(s, name, value, 65536, (uint64_t) 64 << 30, &l->max_buffered);
        if (strcmp(name, "uid_quota_per_minute") == 0)
                return parse_quota(s, name, value, &l->uid_quota.per_minute);
        if (strcmp(name, "uid_quota_per_day") == 0)
                return parse_quota(s, name, value, &l->uid_quota.per_day);
        if (strcmp(name, "domain_quota_per_minute") == 0)
                return parse_quota(s, name, value, &l->domain_quota.per_minute);
        if (strcmp(name, "domain_quota_per_day") == 0)
                return parse_quota(s, name, value, &l->domain_quota.per_day);
        if (strcmp(name, "read_timeout") == 0 || strcmp(name, "idle_timeout") == 0 ||
            strcmp(name, "write_timeout") == 0) {
                if (parse_duration(value, &ms) < 0 || ms == 0 || ms > 86400)
                        return fail(s, "'%s' must be a duration from 1s to 1d, such as 10s", name);
                if (name[0] == 'r')
                        l->read_timeout_ms = (unsigned) (ms * 1000);
                else if (name[0] == 'w')
                        l->write_timeout_ms = (unsigned) (ms * 1000);
                else
                        l->idle_timeout_ms = (unsigned) (ms * 1000);
                return 1;
        }
        return fail(s, "unknown key '%s' in [limits]", name);
}

static int parse_unpublished(struct parse_state *s, const char *value, enum config_unpublished *ret)
{
        if (strcasecmp(value, "refuse") == 0)
                *ret = CONFIG_UNPUBLISHED_REFUSE;
        else if (strcasecmp(value, "sign") == 0)
                *ret = CONFIG_UNPUBLISHED_SIGN;
        else
                return fail(s, "'unpublished' must be refuse or sign");
        return 1;
}

/* A lifecycle duration: "0" is allowed (no wait, no grace). */
static int parse_lifecycle_duration(struct parse_state *s, const char *name, const char *value, uint64_t *ret)
{
        uint64_t n;

        if (parse_duration(value, &n) < 0 || n > 365 * 86400)
                return fail(s, "'%s' must be a duration from 0 to 365d, such as 48h", name);
        *ret = n;
        return 1;
}

static int handle_dns(struct parse_state *s, const char *name, const char *value)
{
        struct config *c = s->c;
        uint64_t n;

        if (strcmp(name, "resolver") == 0) {
                if (strcasecmp(value, "system") == 0) {
                        free(c->dns_resolver);
                        c->dns_resolver = NULL;
                        return 1;
                }
                /* The address itself is checked when the resolver is made. */
                if (strlen(value) > 64 || strpbrk(value, " \t,;"))
                        return fail(s, "'resolver' must be system, recursive, or one address: IP, IP:PORT or "
                                    "[IPv6]:PORT");
                free(c->dns_resolver);
                c->dns_resolver = strdup(value);
                return c->dns_resolver ? 1 : fail(s, "out of memory");
        }
        if (strcmp(name, "dnssec") == 0) {
                if (strcasecmp(value, "no") == 0)
                        c->dns_dnssec = DNS_DNSSEC_NO;
                else if (strcasecmp(value, "auto") == 0)
                        c->dns_dnssec = DNS_DNSSEC_AUTO;
                else if (strcasecmp(value, "yes") == 0)
                        c->dns_dnssec = DNS_DNSSEC_YES;
                else
                        return fail(s, "'dnssec' must be yes, auto or no");
                return 1;
        }
        if (strcmp(name, "trust_anchor") == 0) {
                /* Read when the resolver is made: a file of DS or DNSKEY records. */
                if (value[0] != '/' || strlen(value) > 4096)
                        return fail(s, "'trust_anchor' must be an absolute path");
                free(c->dns_trust_anchor);
                c->dns_trust_anchor = strdup(value);
                return c->dns_trust_anchor ? 1 : fail(s, "out of memory");
        }
        if (strcmp(name, "watch") == 0) {
                if (strcasecmp(value, "daemon") == 0)
                        c->dns_watch = CONFIG_WATCH_DAEMON;
                else if (strcasecmp(value, "timer") == 0)
                        c->dns_watch = CONFIG_WATCH_TIMER;
                else
                        return fail(s, "'watch' must be daemon or timer");
                return 1;
        }
        if (strcmp(name, "timeout") == 0) {
                if (parse_duration(value, &n) < 0 || n == 0 || n > 60)
                        return fail(s, "'timeout' must be a duration from 1s to 60s");
                c->dns_timeout_ms = (unsigned) (n * 1000);
                return 1;
        }
        if (strcmp(name, "check_interval") == 0) {
                if (parse_duration(value, &n) < 0 || n == 0 || n > 86400)
                        return fail(s, "'check_interval' must be a duration from 1s to 1d, such as 10m");
                c->check_interval = n;
                return 1;
        }
        if (strcmp(name, "publish_wait") == 0)
                return parse_lifecycle_duration(s, name, value, &c->publish_wait);
        if (strcmp(name, "retire_grace") == 0)
                return parse_lifecycle_duration(s, name, value, &c->retire_grace);
        return fail(s, "unknown key '%s' in [dns]", name);
}

/* x= is t= plus this, and RFC 6376 3.5 gives x= at most 12 digits: a
 * duration unbounded but for parse_duration's 2^32-1 days made x= of 15.
 * A year is far beyond any message's transit, as for the lifecycle's. */
static int parse_expire(struct parse_state *s, const char *value, uint64_t *ret)
{
        uint64_t n;

        if (parse_duration(value, &n) < 0 || n > 365 * 86400)
                return fail(s, "'expire' must be a duration from 0 to 365d, such as 7d, or 0 for none");
        *ret = n;
        return 1;
}

/* True when domain (len octets) has a U-label or an A-label: the labels
 * dkim_domain_to_ascii converts or checks against IDNA2008.  Plain ASCII is
 * left as written, for dkim_identity_make to judge and name. */
static bool is_idn(const char *domain, size_t len)
{
        for (size_t i = 0; i < len; i++)
                if ((unsigned char) domain[i] >= 0x80 ||
                    ((i == 0 || domain[i - 1] == '.') && len - i >= 4 && strncasecmp(domain + i, "xn--", 4) == 0))
                        return true;
        return false;
}

/* The syntax now; whether it fits d= once the whole file is read
 * (check_signing_options), as key_domain may come after it.  A written-out
 * domain part with U-labels ("@bücher.example", "@nëws.%d") is taken in
 * A-label form, as [domain] names are, since i= is compared with d=. */
static int parse_identity(struct parse_state *s, char **ret, struct section_lists *lists, const char *value)
{
        const char *at = strchr(value, '@'), *dom, *tail = "";
        char a[DKIM_DOMAIN_SIZE];
        const char *why = "";
        size_t dlen;
        int r;

        if (strlen(value) > DKIM_LOCAL_PART_MAX + 1 + DKIM_IDN_INPUT_MAX)
                return fail(s, "'identity' is longer than %d characters", DKIM_IDENTITY_MAX);
        lists->identity_line = s->line;
        /* One '@' or none: dkim_identity_make refuses the rest, by name. */
        if (!at || strchr(at + 1, '@'))
                return set_string(s, ret, "identity", value);
        dom = at + 1;
        dlen = strlen(dom);
        if (dkim_identity_is_relative(value)) {
                /* "@sub.%d": only "sub" is written out. */
                dlen -= 2;
                if (dlen == 0 || dom[dlen - 1] != '.')
                        return set_string(s, ret, "identity", value);
                dlen--;
                tail = dom + dlen;
        }
        if (!is_idn(dom, dlen))
                r = set_string(s, ret, "identity", value);
        else if ((r = dkim_domain_to_ascii(dom, dlen, a, &why)) == DKIMSIGN_E_NOMEM)
                r = fail(s, "out of memory");
        else if (r < 0)
                r = fail(s, "identity '%s': '%.*s' is not a valid domain name: %s", value, (int) dlen, dom, why);
        else if (asprintf(ret, "%.*s%s%s", (int) (dom - value), value, a, tail) < 0)
                r = fail(s, "out of memory");
        else
                r = 1;
        if (r == 1 && strlen(*ret) > DKIM_IDENTITY_MAX)
                return fail(s, "'identity' is longer than %d characters", DKIM_IDENTITY_MAX);
        return r;
}

/* A domain, or "none" (*ret stays NULL: no second signature); U-labels in
 * A-label form, as d= is. */
static int parse_also_sign(struct parse_state *s, char **ret, bool *ret_given, struct section_lists *lists,
                           const char *value)
{
        *ret_given = true;
        lists->also_sign_line = s->line;
        if (strcasecmp(value, "none") == 0)
                return 1;
        *ret = domain_dup(s, "'also_sign' takes a domain name, or none: ", value);
        return *ret != NULL;
}

static int handle_signing(struct parse_state *s, const char *name, const char *value)
{
        struct config *c = s->c;

        if (strcmp(name, "unpublished") == 0)
                return parse_unpublished(s, value, &c->unpublished);

        if (strcmp(name, "expire") == 0)
                return parse_expire(s, value, &c->expire);
        if (strcmp(name, "headers") == 0)
                return add_header_list(s, &s->signing.headers, value);
        if (strcmp(name, "oversign") == 0)
                return add_header_list(s, &s->signing.oversign, value);
        if (strcmp(name, "oversign_if_present") == 0)
                return add_header_list(s, &s->signing.if_present, value);
        if (strcmp(name, "identity") == 0)
                return parse_identity(s, &c->identity, &s->signing, value);
        if (strcmp(name, "also_sign") == 0) {
                bool given;

                return parse_also_sign(s, &c->also_sign, &given, &s->signing, value);
        }
        return fail(s, "unknown key '%s' in [signing]", name);
}

static int handle_domain(struct parse_state *s, const char *name, const char *value)
{
        struct config_domain *d = s->domain;
        struct section_lists *lists = &s->domain_lists[d - s->c->domains];

        if (strcmp(name, "selector") == 0 || strcmp(name, "selectors") == 0) {
                char *copy = strdup(value), *save = NULL;
                int ok = 1;

                if (!copy)
                        return fail(s, "out of memory");
                for (char *t = strtok_r(copy, ", \t", &save); t && ok; t = strtok_r(NULL, ", \t", &save)) {
                        if (!dkim_domain_is_valid(t, strlen(t)) || strlen(t) > DKIM_SELECTOR_MAX)
                                ok = fail(s, "'%s' is not a valid selector", t);
                        else if (d->nselectors >= CONFIG_SELECTORS_MAX)
                                ok = fail(s, "at most %d selectors per domain", CONFIG_SELECTORS_MAX);
                        else if (!(d->selectors[d->nselectors++] = lowercase_dup(t)))
                                ok = fail(s, "out of memory");
                }
                free(copy);
                return ok;
        }
        if (strcmp(name, "key_domain") == 0) {
                d->key_domain = domain_dup(s, "", value);
                return d->key_domain != NULL;
        }
        if (strcmp(name, "headers") == 0)
                return add_header_list(s, &lists->headers, value);
        if (strcmp(name, "oversign") == 0)
                return add_header_list(s, &lists->oversign, value);
        if (strcmp(name, "oversign_if_present") == 0)
                return add_header_list(s, &lists->if_present, value);
        if (strcmp(name, "identity") == 0)
                return parse_identity(s, &d->identity, lists, value);
        if (strcmp(name, "also_sign") == 0)
                return parse_also_sign(s, &d->also_sign, &d->has_also_sign, lists, value);
        if (strcmp(name, "expire") == 0) {
                d->has_expire = true;
                return parse_expire(s, value, &d->expire);
        }
        if (strcmp(name, "allow") == 0)
                return parse_acl(s, &d->allow, value);
        if (strcmp(name, "subdomains") == 0)
                return parse_yes_no(s, name, value, &d->subdomains);
        if (strcmp(name, "unpublished") == 0)
                return parse_unpublished(s, value, &d->unpublished);
        if (strcmp(name, "publish_wait") == 0) {
                d->has_publish_wait = true;
                return parse_lifecycle_duration(s, name, value, &d->publish_wait);
        }
        if (strcmp(name, "retire_grace") == 0) {
                d->has_retire_grace = true;
                return parse_lifecycle_duration(s, name, value, &d->retire_grace);
        }
        if (strcmp(name, "quota_per_minute") == 0) {
                d->has_quota_minute = true;
                return parse_quota(s, name, value, &d->quota.per_minute);
        }
        if (strcmp(name, "quota_per_day") == 0) {
                d->has_quota_day = true;
                return parse_quota(s, name, value, &d->quota.per_day);
        }
        return fail(s, "unknown key '%s' in a [domain] section", name);
}

static int open_domain(struct parse_state *s, const char *section)
{
        const char *dn = section + strlen("domain ");
        struct config *c = s->c;
        struct config_domain *p;
        struct section_lists *l;

        char prefix[INI_LINE_MAX + 8];
        char *name;

        while (*dn == ' ')
                dn++;
        snprintf(prefix, sizeof(prefix), "[%s]: ", section);
        name = domain_dup(s, prefix, dn);
        if (!name)
                return 0;
        for (size_t i = 0; i < c->ndomains; i++)
                if (strcmp(c->domains[i].name, name) == 0) {
                        /* "bücher.example" and "xn--bcher-kva.example" too */
                        fail(s, "[domain %s] appears twice", dn);
                        free(name);
                        return 0;
                }
        free(s->domain_section);
        s->domain_section = strdup(section);
        if (!s->domain_section) {
                free(name);
                return fail(s, "out of memory");
        }
        if (c->ndomains >= CONFIG_DOMAINS_MAX) {
                free(name);
                return fail(s, "too many [domain] sections (at most %d)", CONFIG_DOMAINS_MAX);
        }
        l = realloc(s->domain_lists, (c->ndomains + 1) * sizeof(*l));
        if (l)
                s->domain_lists = l;
        p = l ? realloc(c->domains, (c->ndomains + 1) * sizeof(*p)) : NULL;
        if (!p) {
                free(name);
                return fail(s, "out of memory");
        }
        l[c->ndomains] = (struct section_lists) { 0 };
        c->domains = p;
        p[c->ndomains] = (struct config_domain) { .name = name };   /* transferred */
        s->domain = &p[c->ndomains++];
        s->seen[SEEN_DOMAIN].n = 0;
        return 1;
}

static int handle_metrics(struct parse_state *s, const char *name, const char *value)
{
        struct config *c = s->c;

        if (strcmp(name, "per_domain") == 0)
                return parse_yes_no(s, name, value, &c->metrics_per_domain);
        if (strcmp(name, "max_domains") == 0)
                return parse_size(s, name, value, 1, CONFIG_METRICS_DOMAINS_MAX, &c->metrics_max_domains);
        if (strcmp(name, "max_keys") == 0)
                return parse_size(s, name, value, 0, CONFIG_METRICS_KEYS_MAX, &c->metrics_max_keys);
        if (strcmp(name, "allow") == 0)
                return parse_acl(s, &c->metrics_allow, value);
        return fail(s, "unknown key '%s' in [metrics]", name);
}

/* The keys whose value is a list, and a URI (add_uri): only they continue
 * on indented lines. */
static bool is_list_key(const char *name)
{
        static const char *const lists[] = { "allow", "headers", "oversign", "oversign_if_present", "selectors",
                                             "module_env", "uri" };

        for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++)
                if (strcmp(name, lists[i]) == 0)
                        return true;
        return false;
}

/* inih keeps a section's name in 50 octets: "[domain X]" of a longer X
 * would reach the handler cut short, a prefix of X that may well be a
 * valid domain name too, and the section (its allow above all) would
 * govern that name instead, silently.  So the reader keeps the name whole
 * as inih reads it (up to the first ']'), and section_name() hands it on. */
static void keep_section_name(struct parse_state *s, const char *name)
{
        size_t n = strcspn(name, "]\r\n");

        if (name[n] != ']' || n >= sizeof(s->section))
                n = 0;  /* not a section line: inih refuses it (or a line longer than it reads) */
        memcpy(s->section, name, n);
        s->section[n] = 0;
}

/* The current section's name: inih's, or the whole one when inih's is
 * what it kept of it. */
static const char *section_name(const struct parse_state *s, const char *inih_section)
{
        size_t n = strlen(inih_section);

        return n < strlen(s->section) && strncmp(s->section, inih_section, n) == 0 ? s->section : inih_section;
}

/* One key's line, or an indented line continuing it.  A key set again in
 * its section, or a value that is not a list continued, would replace or
 * extend the first silently: both are refused. */
static int handle_key(struct parse_state *s, const char *section, struct seen_keys *seen,
                      int (*handle)(struct parse_state *, const char *, const char *),
                      const char *name, const char *value)
{
        const char *key = strcmp(name, "selector") == 0 ? "selectors" : name;
        size_t i;

        for (i = 0; i < seen->n; i++)
                if (strcmp(seen->key[i].name, key) == 0)
                        break;
        if (s->continued && !is_list_key(key))
                return fail(s, "'%s' takes one value: only a list continues on an indented line", name);
        /* An indented "[domain x]" would silently join the list above, and
         * the keys under it the section above. */
        if (s->continued && value[0] == '[')
                return fail(s, "a section header must start its line: indented, it continues '%s' above", name);
        if (!s->continued && i < seen->n)
                return fail(s, "'%s' is set twice in [%s] (first on line %zu)", name, section, seen->key[i].line);
        if (!handle(s, name, value))
                return 0;
        /* Only known keys get here, and each section has fewer than fit. */
        if (i == seen->n && seen->n < sizeof(seen->key) / sizeof(seen->key[0]) &&
            strlen(key) < sizeof(seen->key[0].name)) {
                strcpy(seen->key[seen->n].name, key);
                seen->key[seen->n++].line = s->line;
        }
        return 1;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
        struct parse_state *s = user;

        /* inih reads on after a refusal: the first is the one reported. */
        if (s->fail_line)
                return 0;
        if (!name)  /* a new section starts (INI_CALL_HANDLER_ON_NEW_SECTION) */
                return 1;
        section = section_name(s, section);
        if (strcmp(section, "daemon") == 0)
                return handle_key(s, section, &s->seen[SEEN_DAEMON], handle_daemon, name, value);
        if (strcmp(section, "token") == 0)
                return handle_key(s, section, &s->seen[SEEN_TOKEN], handle_token, name, value);
        if (strcmp(section, "limits") == 0)
                return handle_key(s, section, &s->seen[SEEN_LIMITS], handle_limits, name, value);
        if (strcmp(section, "signing") == 0)
                return handle_key(s, section, &s->seen[SEEN_SIGNING], handle_signing, name, value);
        if (strcmp(section, "dns") == 0)
                return handle_key(s, section, &s->seen[SEEN_DNS], handle_dns, name, value);
        if (strcmp(section, "metrics") == 0)
                return handle_key(s, section, &s->seen[SEEN_METRICS], handle_metrics, name, value);
        if (strncmp(section, "domain ", 7) == 0) {
                /* inih calls us per key; a section is new when its name
                 * changes (as written: the name kept is its A-label form). */
                if (!s->domain || strcmp(s->domain_section, section) != 0)
                        if (!open_domain(s, section))
                                return 0;
                return handle_key(s, section, &s->seen[SEEN_DOMAIN], handle_domain, name, value);
        }
        if (!*section)
                return fail(s, "'%s' is outside any section", name);
        return fail(s, "unknown section [%s]", section);
}

/* inih's reader (an fgets over the text).  It counts the lines, and tells
 * whether the line continues the key above it, by inih's own rule
 * (INI_ALLOW_MULTILINE): indented, neither blank nor a comment, after a
 * key of the same [section] line. */
static char *read_line(char *str, int num, void *stream)
{
        struct parse_state *s = stream;
        const char *p = str;
        size_t n = 0;

        if (!s->left || num < 2)
                return NULL;
        while (n < (size_t) num - 1 && n < s->left)
                if (s->text[n++] == '\n')
                        break;
        memcpy(str, s->text, n);
        str[n] = 0;
        s->text += n;
        s->left -= n;
        if (++s->line == 1 && strncmp(p, "\xEF\xBB\xBF", 3) == 0)
                p += 3;  /* inih skips a UTF-8 byte order mark */
        while (*p && isspace((unsigned char) *p))
                p++;
        s->continued = false;
        if (!*p || *p == ';' || *p == '#')
                return str;
        if (s->after_key && p > str) {
                s->continued = true;
        } else {
                s->after_key = *p != '[';
                if (*p == '[')
                        keep_section_name(s, p + 1);
        }
        return str;
}

struct section_line {
        char *name;
        size_t line;
};

static int section_line_cmp(const void *a, const void *b)
{
        const struct section_line *x = a, *y = b;
        int c = strcasecmp(x->name, y->name);

        return c ? c : (x->line > y->line) - (x->line < y->line);
}

/* inih calls the handler per key, so a section repeated right after itself
 * looks like one section to it: find repeated [domain X] headers here. */
static int check_repeated_sections(const char *text, size_t len, char *err, size_t errlen)
{
        struct section_line *secs = NULL;
        size_t n = 0, cap = 0, line = 1;
        int r = 0;

        for (size_t i = 0; i < len && r == 0; line++) {
                const char *start = text + i, *nl = memchr(start, '\n', len - i);
                size_t ll = nl ? (size_t) (nl - start) : len - i;
                const char *name, *close;

                i += ll + 1;
                while (ll && (*start == ' ' || *start == '\t'))
                        start++, ll--;
                if (ll < 8 || strncmp(start, "[domain ", 8) != 0 || !(close = memchr(start, ']', ll)))
                        continue;
                name = start + 8;
                while (*name == ' ')
                        name++;
                if (n == cap) {
                        struct section_line *p = realloc(secs, (cap = cap ? cap * 2 : 64) * sizeof(*p));

                        if (!p) {
                                r = DKIMSIGN_E_NOMEM;
                                break;
                        }
                        secs = p;
                }
                secs[n].line = line;
                secs[n].name = malloc((size_t) (close - name) + 1);
                if (!secs[n].name) {
                        r = DKIMSIGN_E_NOMEM;
                        break;
                }
                memcpy(secs[n].name, name, (size_t) (close - name));
                secs[n++].name[close - name] = 0;
        }
        if (r == 0 && n > 1) {
                qsort(secs, n, sizeof(*secs), section_line_cmp);
                for (size_t k = 1; k < n; k++)
                        if (strcasecmp(secs[k - 1].name, secs[k].name) == 0) {
                                snprintf(err, errlen, "line %zu: [domain %s] appears twice (first on line %zu)",
                                         secs[k].line, secs[k].name, secs[k - 1].line);
                                r = DKIMSIGN_E_CONFIG;
                                break;
                        }
        }
        for (size_t k = 0; k < n; k++)
                free(secs[k].name);
        free(secs);
        return r;
}

static int domain_cmp(const void *a, const void *b)
{
        return strcmp(((const struct config_domain *) a)->name, ((const struct config_domain *) b)->name);
}

static struct config *config_new(void)
{
        struct config *c = calloc(1, sizeof(*c));

        if (!c)
                return NULL;
        c->socket_path = strdup(DKIMSIGN_DEFAULT_SOCKET);
        c->socket_mode = 0660;
        c->sessions = 4;
        c->processes = 1;
        c->key_copies = CONFIG_KEY_COPIES_DEFAULT;
        c->sign_timeout_ms = 10000;
        c->lock_keys = true;
        c->allow.any = true;  /* the socket's mode and group are the first gate */
        c->log_level = LOG_INFO;
        c->metrics_per_domain = true;
        c->metrics_max_domains = 1000;
        c->metrics_max_keys = 1000;
        c->state_dir = strdup(DKIMSIGN_DEFAULT_STATEDIR);
        c->unpublished = CONFIG_UNPUBLISHED_REFUSE;
        c->dns_timeout_ms = CONFIG_DNS_TIMEOUT_DEFAULT_MS;
        c->check_interval = CONFIG_CHECK_INTERVAL_DEFAULT;
        c->publish_wait = CONFIG_PUBLISH_WAIT_DEFAULT;
        c->retire_grace = CONFIG_RETIRE_GRACE_DEFAULT;
        c->limits = (struct config_limits) {
                .max_frame = FRAME_DEFAULT_MAX,
                .max_header_block = 256 * 1024,
                .max_headers = 1000,
                .max_line = 16 * 1024,
                .max_connections = 4096,
                .max_inflight = 64,
                .max_queue = 4096,
                .max_connections_per_uid = 256,
                .max_inflight_per_uid = 256,
                .max_buffered_per_uid = 32 * 1024 * 1024,
                .max_buffered = 128 * 1024 * 1024,
                .read_timeout_ms = 10 * 1000,
                .idle_timeout_ms = 300 * 1000,
                .write_timeout_ms = 30 * 1000,
        };
        if (!c->socket_path || !c->state_dir)
                return config_free(c);
        return c;
}

/* The line of a key of [token], 0 if unset. */
static size_t token_key_line(const struct parse_state *s, const char *name)
{
        const struct seen_keys *seen = &s->seen[SEEN_TOKEN];

        for (size_t i = 0; i < seen->n; i++)
                if (strcmp(seen->key[i].name, name) == 0)
                        return seen->key[i].line;
        return 0;
}

/* [token] uri, whole: one way to choose the token, a URI dkimsign can
 * honour (hsm_uri_check), and one module (its module-path, else
 * 'module'). */
static int check_token(struct parse_state *s)
{
        struct config *c = s->c;
        char module[HSM_URI_MAX + 1], why[512];
        int r;

        if (!c->token_uri)
                return 0;
        if (c->token_label) {
                snprintf(s->err, s->errlen, "line %zu: [token] 'uri' and 'label' (line %zu) both choose the token: "
                         "keep one", s->uri_line, token_key_line(s, "label"));
                return DKIMSIGN_E_CONFIG;
        }
        r = hsm_uri_check(c->token_uri, module, sizeof(module), why, sizeof(why));
        if (r == DKIMSIGN_E_NOMEM) {
                snprintf(s->err, s->errlen, "out of memory");
                return r;
        }
        if (r < 0) {
                snprintf(s->err, s->errlen, "line %zu: 'uri': %s", s->uri_line, why);
                return DKIMSIGN_E_CONFIG;
        }
        if (!module[0] && !c->module) {
                snprintf(s->err, s->errlen, "line %zu: 'uri' has no module-path=: set 'module' too", s->uri_line);
                return DKIMSIGN_E_CONFIG;
        }
        if (module[0] && c->module && strcmp(module, c->module) != 0) {
                snprintf(s->err, s->errlen, "line %zu: 'uri' has module-path=%s, but 'module' (line %zu) is %s: keep "
                         "one, or make them the same", s->uri_line, module, token_key_line(s, "module"), c->module);
                return DKIMSIGN_E_CONFIG;
        }
        if (!c->module && !(c->module = strdup(module))) {
                snprintf(s->err, s->errlen, "out of memory");
                return DKIMSIGN_E_NOMEM;
        }
        return 0;
}

static int check_complete(struct config *c, char *err, size_t errlen)
{
        if (!c->module || !(c->token_label || c->token_uri)) {
                snprintf(err, errlen, "[token] needs 'module' and 'label', or 'uri'");
                return DKIMSIGN_E_CONFIG;
        }
        if (c->limits.max_header_block + 4096 > c->limits.max_frame) {
                snprintf(err, errlen, "[limits] max_frame must exceed max_header_block by 4096 at least");
                return DKIMSIGN_E_CONFIG;
        }
        /* A peer must be able to hold one whole frame and its copy in the
         * queue, or its largest request could never be read. */
        if (c->limits.max_buffered_per_uid < 2 * c->limits.max_frame + 65536 ||
            c->limits.max_buffered < c->limits.max_buffered_per_uid) {
                snprintf(err, errlen, "[limits] max_buffered_per_uid must be at least twice max_frame plus 65536 "
                         "(%zu), and max_buffered at least max_buffered_per_uid",
                         2 * c->limits.max_frame + 65536);
                return DKIMSIGN_E_CONFIG;
        }
        return 0;
}

/* [signing] identity applies to every d=: it must follow d= ("%d").  Its
 * syntax is checked against a stand-in d=; the length it makes with a
 * real one is checked per signature. */
static int check_global_identity(struct parse_state *s)
{
        const char *tmpl = s->c->identity;
        char ident[DKIM_IDENTITY_SIZE], why[512];
        size_t line = s->signing.identity_line;

        if (!tmpl)
                return 0;
        if (!dkim_identity_is_relative(tmpl)) {
                snprintf(s->err, s->errlen, "line %zu: [signing] identity '%s' names one domain, but it applies to "
                         "every d=: end it in %%d (@%%d, @mail.%%d, bounces@%%d), or set it in a [domain] section",
                         line, tmpl);
                return DKIMSIGN_E_CONFIG;
        }
        if (dkim_identity_make(tmpl, "d.example", ident, why, sizeof(why)) < 0) {
                snprintf(s->err, s->errlen, "line %zu: [signing] %s", line, why);
                return DKIMSIGN_E_CONFIG;
        }
        return 0;
}

/* A [domain]'s identity against its d= (key_domain, else its name), and
 * its also_sign, which must name another domain. */
static int check_domain_options(struct parse_state *s, const struct config_domain *d,
                                const struct section_lists *lists)
{
        const char *kd = d->key_domain ? d->key_domain : d->name;
        char ident[DKIM_IDENTITY_SIZE], why[512];

        if (d->identity && dkim_identity_make(d->identity, kd, ident, why, sizeof(why)) < 0) {
                snprintf(s->err, s->errlen, "line %zu: [domain %s] %s", lists->identity_line, d->name, why);
                return DKIMSIGN_E_CONFIG;
        }
        if (d->also_sign && (strcmp(d->also_sign, d->name) == 0 || strcmp(d->also_sign, kd) == 0)) {
                snprintf(s->err, s->errlen, "line %zu: [domain %s] also_sign names d=%s, which signs already",
                         lists->also_sign_line, d->name, d->also_sign);
                return DKIMSIGN_E_CONFIG;
        }
        return 0;
}

static int check_signing_options(struct parse_state *s)
{
        int r = check_global_identity(s);

        for (size_t i = 0; r == 0 && i < s->c->ndomains; i++)
                r = check_domain_options(s, &s->c->domains[i], &s->domain_lists[i]);
        return r;
}

/* Every section's header policy, from its lists and [signing]'s, now that
 * the whole file is read. */
static int resolve_policies(struct parse_state *s)
{
        struct config *c = s->c;
        struct section_lists defaults, global;
        int r = default_lists(&defaults);

        if (r < 0)
                goto out;
        r = resolve_policy(&s->signing, &defaults, "signing", &c->hpolicy, &c->hpolicy_len, s->err, s->errlen);
        /* What a [domain] inherits: [signing]'s lists, each else the default. */
        global.headers = s->signing.headers.line ? s->signing.headers : defaults.headers;
        global.oversign = s->signing.oversign.line ? s->signing.oversign : defaults.oversign;
        global.if_present = s->signing.if_present;  /* the default: none */
        for (size_t i = 0; i < c->ndomains && r == 0; i++) {
                struct config_domain *d = &c->domains[i];
                const struct section_lists *own = &s->domain_lists[i];
                char section[DKIM_DOMAIN_SIZE + 8];

                if (!own->headers.line && !own->oversign.line && !own->if_present.line)
                        continue;  /* hpolicy NULL: the global policy */
                snprintf(section, sizeof(section), "domain %s", d->name);
                r = resolve_policy(own, &global, section, &d->hpolicy, &d->hpolicy_len, s->err, s->errlen);
        }
out:
        section_lists_clear(&defaults);
        return r;
}

int config_parse(const char *text, size_t len, struct config **ret, char *err, size_t errlen)
{
        struct parse_state s = { .err = err, .errlen = errlen, .text = text, .left = len };
        struct config *c = NULL;
        size_t line = 1, col = 0, ndomains = 0;
        int r = 0, k;

        if (errlen)
                err[0] = 0;
        if (len > CONFIG_FILE_MAX) {
                snprintf(err, errlen, "larger than %d octets", CONFIG_FILE_MAX);
                return DKIMSIGN_E_TOO_LARGE;
        }
        for (size_t i = 0; i < len; i++) {
                if (text[i] == 0) {
                        snprintf(err, errlen, "line %zu: NUL byte", line);
                        return DKIMSIGN_E_CONFIG;
                }
                if (text[i] == '\n') {
                        line++;
                        col = 0;
                } else if (++col > INI_LINE_MAX) {
                        snprintf(err, errlen, "line %zu: longer than %d characters (continue a list on an indented line)",
                                 line, INI_LINE_MAX);
                        return DKIMSIGN_E_CONFIG;
                }
        }
        r = check_repeated_sections(text, len, err, errlen);
        if (r < 0)
                return r;
        c = config_new();
        if (!c) {
                r = DKIMSIGN_E_NOMEM;
                goto out;
        }
        s.c = c;
        k = ini_parse_stream(read_line, &s, handler, &s);
        ndomains = c->ndomains;
        if (k != 0) {
                char why[256];

                /* A line inih could not read (no '=', no ']') has no message. */
                snprintf(why, sizeof(why), "%s", s.fail_line == (size_t) k ? err : "syntax error");
                snprintf(err, errlen, "line %d: %s", k, why);
                r = DKIMSIGN_E_CONFIG;
                goto out;
        }
        r = check_token(&s);
        if (r == 0)
                r = check_complete(c, err, errlen);
        if (r == 0)
                r = resolve_policies(&s);
        if (r == 0)
                r = check_signing_options(&s);
        if (r < 0)
                goto out;
        if (c->ndomains > 1)
                qsort(c->domains, c->ndomains, sizeof(*c->domains), domain_cmp);
        *ret = c;
        c = NULL;
out:
        section_lists_clear(&s.signing);
        for (size_t i = 0; i < ndomains; i++)
                section_lists_clear(&s.domain_lists[i]);
        free(s.domain_lists);
        free(s.domain_section);
        config_free(c);
        return r;
}

/* The names of one allow list as ids; the first unknown name fails. */
static int acl_resolve(struct config_acl *acl, char *err, size_t errlen)
{
        for (size_t i = 0; i < acl->nnames; i++) {
                const struct config_acl_name *n = &acl->names[i];
                unsigned long id;
                char *end;

                errno = 0;
                id = strtoul(n->name, &end, 10);
                if (!*end && !errno && id <= UINT32_MAX - 1) {
                        /* A number is an id as it is. */
                } else if (n->is_user) {
                        struct passwd *pw = getpwnam(n->name);

                        if (!pw) {
                                snprintf(err, errlen, "line %u: allow: no such user '%s'", n->line, n->name);
                                return DKIMSIGN_E_CONFIG;
                        }
                        id = pw->pw_uid;
                } else {
                        struct group *gr = getgrnam(n->name);

                        if (!gr) {
                                snprintf(err, errlen, "line %u: allow: no such group '%s'", n->line, n->name);
                                return DKIMSIGN_E_CONFIG;
                        }
                        id = gr->gr_gid;
                }
                if (!acl_add_id(acl, n->is_user, id))
                        return DKIMSIGN_E_NOMEM;
        }
        for (size_t i = 0; i < acl->nnames; i++)
                free(acl->names[i].name);
        free(acl->names);
        acl->names = NULL;
        acl->nnames = 0;
        return 0;
}

int config_resolve(struct config *c, char *err, size_t errlen)
{
        int r;

        if (c->user && !getpwnam(c->user)) {
                snprintf(err, errlen, "line %u: 'user': no such user '%s'", c->user_line, c->user);
                return DKIMSIGN_E_CONFIG;
        }
        r = acl_resolve(&c->allow, err, errlen);
        if (r == 0)
                r = acl_resolve(&c->metrics_allow, err, errlen);
        /* Unset: the packaged exporter's group, when the system has it
         * (sysusers.d/dkimsignd.conf); else no one but root and the daemon. */
        if (r == 0 && !c->metrics_allow.set) {
                struct group *gr = getgrnam(CONFIG_METRICS_GROUP);

                if (gr && !acl_add_id(&c->metrics_allow, false, gr->gr_gid))
                        r = DKIMSIGN_E_NOMEM;
        }
        for (size_t i = 0; r == 0 && i < c->ndomains; i++)
                r = acl_resolve(&c->domains[i].allow, err, errlen);
        if (r == DKIMSIGN_E_NOMEM)
                snprintf(err, errlen, "out of memory");
        return r;
}

int config_load(const char *path, struct config **ret, char *err, size_t errlen)
{
        struct config *c = NULL;
        char *text = NULL;
        size_t len = 0;
        int r;

        /* It names the module dkimsignd and dkimsignctl load, often as
         * root: only root or this user may be able to change it. */
        r = readfile(path, CONFIG_FILE_MAX, READFILE_TRUSTED, &text, &len, err, errlen);
        if (r < 0)
                return r == DKIMSIGN_E_NOMEM ? r : DKIMSIGN_E_CONFIG;
        r = config_parse(text, len, &c, err, errlen);
        readfile_free(text, len);
        if (r == 0) {
                r = config_resolve(c, err, errlen);
                if (r < 0)
                        c = config_free(c);
        }
        if (r == 0) {
                c->path = strdup(path);
                *ret = c;
        } else {
                char why[512];

                snprintf(why, sizeof(why), "%s", err);
                snprintf(err, errlen, "%s: %s", path, why);
        }
        return r;
}

struct config *config_free(struct config *c)
{
        if (!c)
                return NULL;
        free(c->path);
        free(c->syslog_socket);
        free(c->socket_path);
        free(c->socket_group);
        free(c->socket_user);
        free(c->user);
        free(c->state_dir);
        free(c->dns_resolver);
        free(c->dns_trust_anchor);
        acl_free(&c->allow);
        acl_free(&c->metrics_allow);
        free(c->module);
        free(c->token_label);
        free(c->token_uri);
        free(c->pin_file);
        for (size_t i = 0; i < c->nmodule_env; i++)
                free(c->module_env[i]);
        free_policy(c->hpolicy, c->hpolicy_len);
        free(c->identity);
        free(c->also_sign);
        for (size_t i = 0; i < c->ndomains; i++) {
                struct config_domain *d = &c->domains[i];

                free(d->name);
                free(d->key_domain);
                for (size_t k = 0; k < d->nselectors; k++)
                        free(d->selectors[k]);
                free_policy(d->hpolicy, d->hpolicy_len);
                acl_free(&d->allow);
                free(d->identity);
                free(d->also_sign);
        }
        free(c->domains);
        free(c);
        return NULL;
}

const struct config_domain *config_find_domain(const struct config *c, const char *name)
{
        struct config_domain key = { .name = (char *) name };

        if (!c->ndomains)
                return NULL;
        return bsearch(&key, c->domains, c->ndomains, sizeof(*c->domains), domain_cmp);
}

const struct config_domain *config_domain_for(const struct config *c, const char *domain)
{
        const struct config_domain *d = config_find_domain(c, domain);

        for (const char *p = strchr(domain, '.'); !d && p; p = strchr(p + 1, '.')) {
                const struct config_domain *parent = config_find_domain(c, p + 1);

                if (parent && parent->subdomains)
                        return parent;
        }
        return d;
}

uint64_t config_publish_wait(const struct config *c, const char *key_domain)
{
        const struct config_domain *d = config_domain_for(c, key_domain);

        return d && d->has_publish_wait ? d->publish_wait : c->publish_wait;
}

uint64_t config_retire_grace(const struct config *c, const char *key_domain)
{
        const struct config_domain *d = config_domain_for(c, key_domain);

        return d && d->has_retire_grace ? d->retire_grace : c->retire_grace;
}

struct config_quota config_domain_quota(const struct config *c, const char *domain)
{
        const struct config_domain *d = config_domain_for(c, domain);
        struct config_quota q = c->limits.domain_quota;

        if (d && d->has_quota_minute)
                q.per_minute = d->quota.per_minute;
        if (d && d->has_quota_day)
                q.per_day = d->quota.per_day;
        return q;
}

enum config_unpublished config_unpublished(const struct config *c, const char *key_domain)
{
        const struct config_domain *d = config_domain_for(c, key_domain);

        return d && d->unpublished != CONFIG_UNPUBLISHED_UNSET ? d->unpublished : c->unpublished;
}

const char *config_identity(const struct config *c, const struct config_domain *d)
{
        return d && d->identity ? d->identity : c->identity;
}

uint64_t config_expire(const struct config *c, const struct config_domain *d)
{
        return d && d->has_expire ? d->expire : c->expire;
}

const char *config_also_sign(const struct config *c, const struct config_domain *d)
{
        return d && d->has_also_sign ? d->also_sign : c->also_sign;
}

/* A value that names a file (it starts with '/'): the module reads it as
 * root, so it must be as trusted as the module itself: owned by root, by
 * who runs this, or by the [daemon] user, who is trusted with its token's
 * data (its signers write tpm2-pkcs11's store, TPM2_PKCS11_STORE, so an
 * operator gives it that store), and writable by its owner only.  What
 * does not exist yet is judged by its directory. */
static int module_env_path_check(const struct config *c, const char *name, const char *value, char *why,
                                 size_t whylen)
{
        char dir[PATH_MAX], inner[768];
        const char *path = value;
        uid_t daemon_uid = FILEPERM_NO_UID;
        struct stat st;
        int r;

        if (value[0] != '/')
                return 0;
        if (c->user) {
                /* config_resolve() made sure the user exists. */
                const struct passwd *pw = getpwnam(c->user);

                if (pw)
                        daemon_uid = pw->pw_uid;
        }
        if (stat(path, &st) < 0) {
                const char *slash = strrchr(value, '/');

                if (errno != ENOENT || (size_t) (slash - value) >= sizeof(dir))
                        return 0;
                memcpy(dir, value, (size_t) (slash - value));
                dir[slash - value] = 0;
                path = dir[0] ? dir : "/";
                if (stat(path, &st) < 0)
                        return 0;
        }
        r = fileperm_check_stat(&st, path, daemon_uid, inner, sizeof(inner));
        if (r < 0)
                snprintf(why, whylen, "%s names a file the PKCS#11 module reads as this user: %s", name, inner);
        return r;
}

int config_apply_module_env(const struct config *c, char *why, size_t whylen)
{
        for (size_t i = 0; i < c->nmodule_env; i++) {
                const char *entry = c->module_env[i], *eq = strchr(entry, '=');
                char name[CONFIG_ENV_NAME_MAX + 1];
                int r;

                /* Parsed: a name of at most CONFIG_ENV_NAME_MAX, then '='. */
                memcpy(name, entry, (size_t) (eq - entry));
                name[eq - entry] = 0;
                r = module_env_path_check(c, name, eq + 1, why, whylen);
                if (r < 0)
                        return r;
                if (setenv(name, eq + 1, 1) < 0) {
                        snprintf(why, whylen, "%s: %s", name, strerror(errno));
                        return DKIMSIGN_E_SYSTEM;
                }
        }
        return 0;
}

int config_pin_path(const struct config *c, char *ret, size_t size)
{
        const char *creds = getenv("CREDENTIALS_DIRECTORY");
        int n;

        if (c->pin_file)
                n = snprintf(ret, size, "%s", c->pin_file);
        else if (creds && *creds)
                n = snprintf(ret, size, "%s/pin", creds);
        else
                return DKIMSIGN_E_CONFIG;
        return n < 0 || (size_t) n >= size ? DKIMSIGN_E_TOO_LARGE : 0;
}

void config_dns_options(const struct config *c, const char *server, struct dns_resolver_options *ret)
{
        *ret = (struct dns_resolver_options) {
                .server = server && *server ? server : c->dns_resolver,
                .timeout_ms = c->dns_timeout_ms,
                .dnssec = c->dns_dnssec,
                .trust_anchor = c->dns_trust_anchor,
        };
}
