/* SPDX-License-Identifier: MIT */
/*
 * dkimsignctl import-opendkim: every key of an OpenDKIM KeyTable, and the
 * [domain] sections its SigningTable means; all or nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "ctl/ctl.h"
#include "protocol/dkimsign-errors.h"
#include "util/readfile.h"

/* ---- import-opendkim ---- */

/* One KeyTable entry. */
struct okey {
        unsigned line;
        char *name;
        char domain[DKIM_DOMAIN_SIZE];
        char selector[DKIM_SELECTOR_MAX + 1];
        char *path;
        char label[HSM_LABEL_MAX + 1];
        EVP_PKEY *pkey;          /* owned; NULL when its file is unusable */
        struct hsm_key *done;    /* once imported */
};

/* One [domain] section made from SigningTable lines. */
struct osection {
        char domain[DKIM_DOMAIN_SIZE];
        const char *key_domain;  /* borrowed from a key; NULL: the section's own domain */
        bool subdomains;         /* a pattern covered the subdomains */
        bool exact;              /* a pattern covered the domain itself */
        size_t keys[SECTION_KEYS_MAX];
        size_t nkeys;
        char note[2048];         /* for the admin, printed as comment lines */
        char from[2048];         /* the SigningTable lines, as comment lines */
};

struct migration {
        const char *keytable;
        const char *signingtable;
        struct okey *keys;
        size_t nkeys;
        struct osection *sections;
        size_t nsections;
        unsigned problems;
};

static void problem(struct migration *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(struct migration *m, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        ctl_vreport(0, fmt, ap);
        va_end(ap);
        m->problems++;
}

static void migration_free(struct migration *m)
{
        for (size_t i = 0; i < m->nkeys; i++) {
                free(m->keys[i].name);
                free(m->keys[i].path);
                EVP_PKEY_free(m->keys[i].pkey);
                hsm_key_free(m->keys[i].done);
        }
        free(m->keys);
        free(m->sections);
}

/* OpenDKIM names a data set "file:PATH" or "refile:PATH" (or a database
 * of some kind); only flat files can be read here. */
static int table_path(const char *arg, const char **ret)
{
        static const char *const databases[] = { "db:", "dsn:", "ldap:", "ldaps:", "ldapi:", "lua:",
                                                 "memcache:", "mdb:", "erlang:", "csl:", "redis:" };

        if (strncmp(arg, "refile:", 7) == 0)
                arg += 7;
        else if (strncmp(arg, "file:", 5) == 0)
                arg += 5;
        for (size_t i = 0; i < sizeof(databases) / sizeof(databases[0]); i++)
                if (strncmp(arg, databases[i], strlen(databases[i])) == 0)
                        return usage_error("'%s': only flat-file tables (file: or refile:) can be read; "
                                           "export the table to a file first", databases[i]);
        *ret = arg;
        return 0;
}

/* Split a table line into its first field and the rest, after removing the
 * comment ('#' to the end) and surrounding blanks.  Returns false for a
 * blank line. */
static bool table_fields(char *line, char **ret_first, char **ret_rest)
{
        char *p, *end;

        p = strchr(line, '#');
        if (p)
                *p = '\0';
        p = line + strspn(line, " \t\r");
        end = p + strlen(p);
        while (end > p && strchr(" \t\r", end[-1]))
                *--end = '\0';
        if (!*p)
                return false;
        *ret_first = p;
        p += strcspn(p, " \t");
        if (*p)
                *p++ = '\0';
        *ret_rest = p + strspn(p, " \t");
        return true;
}

/* Call fn for every non-blank line of a table file. */
static int table_read(struct migration *m, const char *path,
                      void (*fn)(struct migration *m, unsigned line, char *first, char *rest))
{
        char *text = NULL, *line, *save = NULL, why[512];
        size_t len = 0;
        unsigned n = 0;

        if (readfile(path, TABLE_FILE_MAX, 0, &text, &len, why, sizeof(why)) < 0) {
                problem(m, "%s", why);
                return -1;
        }
        if (memchr(text, '\0', len)) {
                problem(m, "%s: not a text file", path);
                readfile_free(text, len);
                return -1;
        }
        /* strtok_r would merge empty lines and so shift the line numbers. */
        for (line = text; line; line = save) {
                char *first, *rest;

                save = strchr(line, '\n');
                if (save)
                        *save++ = '\0';
                n++;
                if (table_fields(line, &first, &rest))
                        fn(m, n, first, rest);
        }
        readfile_free(text, len);
        return 0;
}

static struct okey *key_by_name(struct migration *m, const char *name)
{
        for (size_t i = 0; i < m->nkeys; i++)
                if (strcmp(m->keys[i].name, name) == 0)
                        return &m->keys[i];
        return NULL;
}

/* "NAME DOMAIN:SELECTOR:KEYFILE" */
static void keytable_line(struct migration *m, unsigned line, char *name, char *value)
{
        char *domain = value, *selector, *path, why[512], ascii[DKIM_DOMAIN_SIZE];
        const char *idn_why = "";
        struct okey *k, *all;
        int r;

        selector = strchr(value, ':');
        path = selector ? strchr(selector + 1, ':') : NULL;
        if (!path || !*name) {
                problem(m, "%s:%u: expected 'NAME DOMAIN:SELECTOR:KEYFILE'", m->keytable, line);
                return;
        }
        *selector++ = '\0';
        *path++ = '\0';
        if (strcmp(domain, "%") == 0) {
                problem(m, "%s:%u: '%%' for any domain is not supported: name each domain", m->keytable, line);
                return;
        }
        /* A U-label domain names its key by the A-label form, as
         * dkimsignctl keygen does: the form of d= and of the DNS name. */
        r = dkim_domain_to_ascii(domain, strlen(domain), ascii, &idn_why);
        if (r == DKIMSIGN_E_NOMEM) {
                problem(m, "out of memory");
                return;
        }
        if (r < 0) {
                problem(m, "%s:%u: '%s' is not a valid domain name: %s", m->keytable, line, domain, idn_why);
                return;
        }
        if (!selector_is_valid(selector)) {
                problem(m, "%s:%u: '%s' is not a valid selector", m->keytable, line, selector);
                return;
        }
        if (!strchr(path, '/')) {
                problem(m, "%s:%u: key data in the table is not supported: put the key in a file and name "
                        "it by its path", m->keytable, line);
                return;
        }
        if (key_by_name(m, name)) {
                problem(m, "%s:%u: the key name '%s' is used twice", m->keytable, line, name);
                return;
        }
        all = realloc(m->keys, (m->nkeys + 1) * sizeof(*m->keys));
        if (!all) {
                problem(m, "out of memory");
                return;
        }
        m->keys = all;
        k = &m->keys[m->nkeys];
        *k = (struct okey) { .line = line };
        k->name = strdup(name);
        k->path = strdup(path);
        if (!k->name || !k->path) {
                free(k->name);
                free(k->path);
                problem(m, "out of memory");
                return;
        }
        m->nkeys++;
        snprintf(k->domain, sizeof(k->domain), "%s", ascii);
        snprintf(k->selector, sizeof(k->selector), "%s", selector);
        lowercase(k->selector);
        if (hsm_key_label(k->selector, k->domain, k->label, sizeof(k->label)) < 0) {
                problem(m, "%s:%u: the key name %s._domainkey.%s is too long", m->keytable, line, k->selector,
                        k->domain);
                return;
        }
        for (size_t i = 0; i + 1 < m->nkeys; i++)
                if (strcmp(m->keys[i].label, k->label) == 0) {
                        problem(m, "%s:%u: %s is also line %u's key", m->keytable, line, k->label,
                                m->keys[i].line);
                        return;
                }
        if (pem_private_key(k->path, &k->pkey, why, sizeof(why)) < 0)
                problem(m, "%s:%u: %s", m->keytable, line, why);
}

/* The section domain a SigningTable pattern stands for, in A-label form
 * into ret: "*@D", "@D" or "D" (the domain), "*@*.D", "*.D" or ".D" (its
 * subdomains).  DKIMSIGN_E_FORMAT when the pattern selects something
 * dkimsignd can't express; DKIMSIGN_E_IDN (the reason in *ret_why) when D
 * is an internationalized name IDNA2008 refuses. */
static int pattern_domain(const char *pattern, bool *ret_sub, char ret[DKIM_DOMAIN_SIZE], const char **ret_why)
{
        const char *d = pattern;
        int r;

        if (strncmp(d, "*@", 2) == 0)
                d += 2;
        else if (d[0] == '@')
                d++;
        *ret_sub = false;
        if (strncmp(d, "*.", 2) == 0) {
                d += 2;
                *ret_sub = true;
        } else if (d[0] == '.') {
                d++;
                *ret_sub = true;
        }
        /* A sender or a wildcard left in D is a pattern, not a bad name. */
        if (strpbrk(d, "@*"))
                return DKIMSIGN_E_FORMAT;
        r = dkim_domain_to_ascii(d, strlen(d), ret, ret_why);
        return r == DKIMSIGN_E_NOMEM || r == DKIMSIGN_E_IDN ? r : r < 0 ? DKIMSIGN_E_FORMAT : 0;
}

static struct osection *section_get(struct migration *m, const char *domain)
{
        struct osection *all, *s;

        for (size_t i = 0; i < m->nsections; i++)
                if (strcasecmp(m->sections[i].domain, domain) == 0)
                        return &m->sections[i];
        all = realloc(m->sections, (m->nsections + 1) * sizeof(*m->sections));
        if (!all)
                return NULL;
        m->sections = all;
        s = &m->sections[m->nsections++];
        *s = (struct osection) { 0 };
        snprintf(s->domain, sizeof(s->domain), "%s", domain);
        lowercase(s->domain);
        return s;
}

/* Append a whole comment line to buf, or nothing if it does not fit: half
 * a line would run into the section that follows it. */
static void append(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void append(char *buf, size_t size, const char *fmt, ...)
{
        size_t used = strlen(buf);
        char line[1024];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        if (n > 0 && (size_t) n < sizeof(line) && used + (size_t) n < size)
                memcpy(buf + used, line, (size_t) n + 1);
}

/* Add key k to section s, unless it is there already or s has a key of its
 * algorithm: OpenDKIM signs with the first match, dkimsignd with one key per
 * algorithm. */
static void section_add_key(struct migration *m, struct osection *s, struct okey *k, unsigned line)
{
        size_t ki = (size_t) (k - m->keys);

        for (size_t i = 0; i < s->nkeys; i++) {
                const struct okey *o = &m->keys[s->keys[i]];

                if (s->keys[i] == ki)
                        return;
                if (o->pkey && k->pkey && EVP_PKEY_get_id(o->pkey) == EVP_PKEY_get_id(k->pkey)) {
                        append(s->note, sizeof(s->note),
                               "# note: line %u's key %s (selector %s) is left out: the first match, %s, "
                               "has the same algorithm\n",
                               line, k->name, k->selector, o->selector);
                        return;
                }
        }
        if (s->nkeys == SECTION_KEYS_MAX)
                return; /* one per algorithm: the check above fills it first */
        s->keys[s->nkeys++] = ki;
}

/* "PATTERN KEYNAME" */
static void signingtable_line(struct migration *m, unsigned line, char *pattern, char *rest)
{
        char domain[DKIM_DOMAIN_SIZE];
        const char *why = "";
        struct osection *s;
        struct okey *k;
        bool sub;
        char *extra;
        int r;

        extra = rest + strcspn(rest, " \t");
        if (!*rest || *extra) {
                problem(m, "%s:%u: expected 'PATTERN KEYNAME'", m->signingtable, line);
                return;
        }
        k = key_by_name(m, rest);
        if (!k) {
                problem(m, "%s:%u: no key named '%s' in %s", m->signingtable, line, rest, m->keytable);
                return;
        }
        r = pattern_domain(pattern, &sub, domain, &why);
        if (r == DKIMSIGN_E_NOMEM) {
                problem(m, "out of memory");
                return;
        }
        if (r == DKIMSIGN_E_IDN) {
                problem(m, "%s:%u: '%s': not a valid domain name: %s", m->signingtable, line, pattern, why);
                return;
        }
        if (r < 0) {
                problem(m, "%s:%u: '%s': dkimsignd chooses keys by domain (*@DOMAIN, DOMAIN, *@*.DOMAIN), not "
                        "by sender or other patterns", m->signingtable, line, pattern);
                return;
        }
        s = section_get(m, domain);
        if (!s) {
                problem(m, "out of memory");
                return;
        }
        /* One section, one d= domain: its own, or one key_domain. */
        if (s->nkeys > 0 && strcmp(s->key_domain ? s->key_domain : s->domain, k->domain) != 0) {
                problem(m, "%s:%u: '%s' would sign %s's mail with keys of two domains", m->signingtable, line,
                        pattern, s->domain);
                return;
        }
        if (s->nkeys == 0 && strcmp(s->domain, k->domain) != 0)
                s->key_domain = k->domain;
        if (sub)
                s->subdomains = true;
        else
                s->exact = true;
        append(s->from, sizeof(s->from), "# %s line %u: %s %s\n", m->signingtable, line, pattern, k->name);
        section_add_key(m, s, k, line);
}

static void section_print(FILE *f, const struct migration *m, const struct osection *s)
{
        fputs(s->from, f);
        fputs(s->note, f);
        if (s->subdomains && !s->exact)
                fprintf(f, "# note: OpenDKIM signed only the subdomains of %s; this section signs %s too\n",
                        s->domain, s->domain);
        fprintf(f, "[domain %s]\nselectors = ", s->domain);
        for (size_t i = 0; i < s->nkeys; i++)
                fprintf(f, "%s%s", i ? ", " : "", m->keys[s->keys[i]].selector);
        fputc('\n', f);
        if (s->key_domain)
                fprintf(f, "key_domain = %s\n", s->key_domain);
        if (s->subdomains)
                fprintf(f, "subdomains = yes\n");
        fputc('\n', f);
}

/* Every label must be free on the token: no private key of that name at
 * all, even one hsm_find() would not use (an Ed25519 key without its
 * public half). */
static void check_token(struct migration *m, struct hsm *h)
{
        struct hsm_key **all = NULL;
        char token[TOKEN_NAME_SIZE];
        size_t n = 0;
        int r = hsm_list(h, &all, &n);

        token_name(h, token);
        if (r < 0) {
                problem(m, "listing the keys on token %s: %s", token, dkimsign_strerror(r));
                return;
        }
        for (size_t i = 0; i < m->nkeys; i++)
                for (size_t j = 0; j < n; j++)
                        if (strcasecmp(all[j]->label, m->keys[i].label) == 0) {
                                problem(m, "%s:%u: a key named %s already exists on token %s", m->keytable,
                                        m->keys[i].line, m->keys[i].label, token);
                                break;
                        }
        hsm_key_list_free(all, n);
}

/* Remove what this run imported: the token is left as it was found. */
static void rollback(struct migration *m, struct hsm *h)
{
        for (size_t i = m->nkeys; i-- > 0;) {
                if (!m->keys[i].done)
                        continue;
                if (hsm_destroy(h, m->keys[i].done) < 0)
                        die("could not remove %s again: remove it with dkimsignctl destroy", m->keys[i].label);
                m->keys[i].done = hsm_key_free(m->keys[i].done);
        }
}

static int write_sections(const struct migration *m, const char *path)
{
        FILE *f;
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);

        if (fd < 0)
                return die("cannot create %s: %s", path, strerror(errno));
        f = fdopen(fd, "w");
        if (!f) {
                close(fd);
                unlink(path);
                return die("cannot write %s: %s", path, strerror(errno));
        }
        fprintf(f, "# dkimsignd.conf sections made by dkimsignctl import-opendkim from %s\n\n", m->signingtable);
        for (size_t i = 0; i < m->nsections; i++)
                section_print(f, m, &m->sections[i]);
        if (fflush(f) != 0 || ferror(f) || fsync(fd) < 0) {
                fclose(f);
                unlink(path);
                return die("cannot write %s: %s", path, strerror(errno));
        }
        fclose(f);
        return 0;
}

static int migrate(struct migration *m, const struct options *o, const struct config *c, struct hsm *h)
{
        char name[TOKEN_NAME_SIZE];
        int r;

        if (o->config_out && write_sections(m, o->config_out))
                return EXIT_FAIL;
        for (size_t i = 0; i < m->nkeys; i++) {
                r = hsm_import(h, m->keys[i].label, m->keys[i].pkey, &m->keys[i].done);
                if (r < 0) {
                        import_failed(r, m->keys[i].label);
                        rollback(m, h);
                        if (o->config_out)
                                unlink(o->config_out);
                        return die("nothing was imported");
                }
        }
        for (size_t i = 0; i < m->nkeys; i++) {
                const struct okey *k = &m->keys[i];

                printf("imported %s: %s %u-bit key %s from %s\n", k->name, hsm_alg_name(k->done->alg), k->done->bits,
                       k->label, k->path);
        }
        for (size_t i = 0; i < m->nkeys; i++)
                import_lifecycle(c, m->keys[i].label, m->keys[i].done->pubkey);
        printf("%zu key%s imported into token %s; their DNS records stay as published (dkimsignctl "
               "dns-record prints them)\n",
               m->nkeys, m->nkeys == 1 ? "" : "s", token_name(h, name));
        if (!m->signingtable)
                return 0;
        if (o->config_out)
                printf("wrote %zu [domain] section%s to %s; add them to %s:\n\n", m->nsections,
                       m->nsections == 1 ? "" : "s", o->config_out, c->path);
        else
                printf("add these sections to %s:\n\n", c->path);
        for (size_t i = 0; i < m->nsections; i++)
                section_print(stdout, m, &m->sections[i]);
        return 0;
}

int cmd_import_opendkim(const struct options *o)
{
        struct migration m = { 0 };
        struct config *c = NULL;
        struct hsm *h = NULL;
        int status;

        if (table_path(o->args[0], &m.keytable) ||
            (o->nargs > 1 && table_path(o->args[1], &m.signingtable)))
                return EXIT_USAGE;
        if (o->config_out && !m.signingtable)
                return usage_error("--config-out needs a SIGNINGTABLE to make the sections from");

        /* Check everything before changing anything. */
        if (table_read(&m, m.keytable, keytable_line) == 0 && m.nkeys == 0)
                problem(&m, "%s: no keys", m.keytable);
        if (m.signingtable)
                table_read(&m, m.signingtable, signingtable_line);
        if (o->config_out && access(o->config_out, F_OK) == 0)
                problem(&m, "%s exists; dkimsignctl does not overwrite it", o->config_out);
        status = open_all(o, &c, &h);
        if (status == 0) {
                check_token(&m, h);
                if (m.problems)
                        status = die("%u problem%s; nothing was imported", m.problems, m.problems == 1 ? "" : "s");
                else
                        status = migrate(&m, o, c, h);
        }
        migration_free(&m);
        hsm_close(h);
        config_free(c);
        return status;
}
