/* SPDX-License-Identifier: MIT */
/*
 * OpenSMTPD's filter protocol: one line from smtpd parsed in place, and
 * the check of an address field smtpd rewrites after its filters.  Pure
 * functions over the caller's bytes: no I/O, no allocation; every field is
 * checked against its shape before it is used, and nothing is read past
 * the line.
 */
#include <string.h>

#include "client/dkimsign.h"
#include "client/smtpd-proto.h"

/* Cut the next '|'-separated field off *p: NUL-terminates it and moves *p
 * past the separator (NULL when it was the last field). */
static char *next_field(char **p)
{
        char *f = *p, *bar;

        if (!f)
                return NULL;
        bar = strchr(f, '|');
        if (bar) {
                *bar = 0;
                *p = bar + 1;
        } else {
                *p = NULL;
        }
        return f;
}

static int is_digits(const char *s, size_t max)
{
        size_t n = 0;

        while (s[n] >= '0' && s[n] <= '9')
                n++;
        return n > 0 && n <= max ? (int) n : 0;
}

/* "DIGITS.DIGITS": a version (0.6) or a time (1576146008.006099). */
static int is_decimal(const char *s, size_t max_int, size_t max_frac)
{
        int n = is_digits(s, max_int);

        return n && s[n] == '.' && is_digits(s + n + 1, max_frac) &&
               s[n + 1 + is_digits(s + n + 1, max_frac)] == 0;
}

/* An event, phase or config key: lowercase letters, digits and '-'. */
static int is_name(const char *s)
{
        size_t n;

        for (n = 0; s[n]; n++)
                if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') || s[n] == '-') || n >= 64)
                        return 0;
        return n > 0;
}

static int parse_id(const char *s, uint64_t *ret)
{
        uint64_t v = 0;
        size_t n;

        for (n = 0; s[n]; n++) {
                int d;

                if (s[n] >= '0' && s[n] <= '9')
                        d = s[n] - '0';
                else if (s[n] >= 'a' && s[n] <= 'f')
                        d = s[n] - 'a' + 10;
                else if (s[n] >= 'A' && s[n] <= 'F')
                        d = s[n] - 'A' + 10;
                else
                        return -1;
                if (n >= 16)
                        return -1;
                v = v << 4 | (uint64_t) d;
        }
        if (n == 0)
                return -1;
        *ret = v;
        return 0;
}

static int parse_config(char *rest, struct smtpd_line *l)
{
        char *key = next_field(&rest);

        if (!key || !is_name(key))
                return DKIMSIGN_E_FORMAT;
        l->kind = SMTPD_CONFIG;
        l->name = key;
        l->params = rest;
        l->params_len = rest ? strlen(rest) : 0;
        return 0;
}

/* report|VERSION|TIME|SUBSYSTEM|EVENT|SESSION[|PARAMS] and
 * filter|...|SESSION|TOKEN[|PARAMS], after the stream's name. */
static int parse_event(char *rest, enum smtpd_kind kind, struct smtpd_line *l)
{
        char *version = next_field(&rest), *time = next_field(&rest), *subsystem = next_field(&rest);
        char *name = next_field(&rest), *session = next_field(&rest);
        char *token = kind == SMTPD_FILTER ? next_field(&rest) : NULL;

        if (!session || (kind == SMTPD_FILTER && !token))
                return DKIMSIGN_E_FORMAT;
        if (!is_decimal(version, 3, 3) || !is_decimal(time, 20, 9) || !is_name(name))
                return DKIMSIGN_E_FORMAT;
        if (strcmp(subsystem, "smtp-in") != 0 && strcmp(subsystem, "smtp-out") != 0)
                return DKIMSIGN_E_FORMAT;
        if (parse_id(session, &l->session) < 0 || (token && parse_id(token, &l->token) < 0))
                return DKIMSIGN_E_FORMAT;
        l->kind = kind;
        l->version = version;
        l->subsystem = subsystem;
        l->name = name;
        l->params = rest ? rest : "";
        l->params_len = strlen(l->params);
        return 0;
}

int smtpd_line_parse(char *line, size_t len, struct smtpd_line *ret)
{
        struct smtpd_line l = { 0 };
        char *rest = line, *stream;
        int r;

        memset(ret, 0, sizeof(*ret));
        if (len > SMTPD_LINE_MAX)
                return DKIMSIGN_E_TOO_LARGE;
        /* The fields are C strings from here on: nothing may hide after a
         * NUL, and a LF inside is a framing error.  A CR is not: smtpd
         * strips only the CR of a line end, so a remote sender's bare CR
         * reaches the filter inside a data line (and every other field is
         * checked against a shape without CR below). */
        if (strlen(line) != len || memchr(line, '\n', len))
                return DKIMSIGN_E_FORMAT;
        stream = next_field(&rest);
        if (strcmp(stream, "config") == 0)
                r = parse_config(rest, &l);
        else if (strcmp(stream, "report") == 0)
                r = parse_event(rest, SMTPD_REPORT, &l);
        else if (strcmp(stream, "filter") == 0)
                r = parse_event(rest, SMTPD_FILTER, &l);
        else
                r = DKIMSIGN_E_FORMAT;
        if (r == 0)
                *ret = l;
        return r;
}

int smtpd_version_supported(const char *version)
{
        return version && (strcmp(version, "0.6") == 0 || strcmp(version, "0.7") == 0);
}

const char *smtpd_data_unescape(const char *line, size_t len, size_t *ret_len)
{
        if (len > 0 && line[0] == '.') {
                *ret_len = len - 1;
                return line + 1;
        }
        *ret_len = len;
        return line;
}

int smtpd_data_is_end(const char *line, size_t len)
{
        return len == 1 && line[0] == '.';
}

/* ---- address fields ---- */

static void component_reset(struct smtpd_addr_scan *s)
{
        s->bracket = s->has_bracket = s->at_in_bracket = false;
        s->has_at = s->has_group = s->has_text = false;
}

void smtpd_addr_scan_init(struct smtpd_addr_scan *s)
{
        memset(s, 0, sizeof(*s));
}

/* One address (a comma-separated component) is complete. */
static void component_end(struct smtpd_addr_scan *s)
{
        bool domain = s->has_bracket ? s->at_in_bracket : s->has_at;

        if (s->has_text && !s->has_group && !domain)
                s->rewritten = true;
        component_reset(s);
}

void smtpd_addr_scan_feed(struct smtpd_addr_scan *s, const char *text, size_t len)
{
        for (size_t i = 0; i < len; i++) {
                char c = text[i];
                /* smtpd's own reading, octet for octet: a backslash escapes
                 * only outside quotes and comments, and only keeps the next
                 * octet from being a '(', '"', ')' or backslash (it is still
                 * a ',', '<', '>', '@' or ':' to smtpd).  Reading quoted
                 * pairs as RFC 5322 does would see "\"" bob@x " as bob@x
                 * where smtpd sees quoted text it qualifies. */
                bool escaped = s->escape, plain;

                s->escape = false;
                if (!escaped && c == '(' && !s->quote)
                        s->comment++;
                else if (!escaped && c == '"' && s->comment == 0)
                        s->quote = !s->quote;
                else if (!escaped && c == ')' && !s->quote && s->comment > 0)
                        s->comment--;
                else if (!escaped && c == '\\' && !s->quote && s->comment == 0)
                        s->escape = true;
                plain = !s->quote && s->comment == 0;
                if (plain && c == ',') {
                        component_end(s);
                        continue;
                }
                if (c != ' ' && c != '\t')
                        s->has_text = true;
                if (!plain)
                        continue;
                if (c == '<') {
                        s->bracket = s->has_bracket = true;
                } else if (c == '>') {
                        s->bracket = false;
                } else if (c == '@') {
                        s->has_at = true;
                        s->at_in_bracket = s->at_in_bracket || s->bracket;
                } else if (c == ':') {
                        s->has_group = true;
                }
        }
}

bool smtpd_addr_scan_end(struct smtpd_addr_scan *s)
{
        component_end(s);
        return s->rewritten;
}
