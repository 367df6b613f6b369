/* SPDX-License-Identifier: MIT */
/*
 * The Authentication-Results an ARC set records (RFC 8601, RFC 8617
 * 4.1.1): only fields of the configured authserv-id, the MTA's own
 * verifier; a field from anyone else may be forged upstream (RFC 8601 5).
 * The fields come from the message: read within bounds, quoted strings
 * and comments kept whole, never split inside.
 */
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "client/arc-private.h"

#define FIELD_MAX 16384

/* Skip whitespace and (nested) comments from p; returns the new offset. */
static size_t skip_cfws(const char *s, size_t len, size_t p)
{
        for (;;) {
                while (p < len && (s[p] == ' ' || s[p] == '\t'))
                        p++;
                if (p >= len || s[p] != '(')
                        return p;
                for (int depth = 0; p < len; p++) {
                        if (s[p] == '\\' && p + 1 < len)
                                p++;
                        else if (s[p] == '(')
                                depth++;
                        else if (s[p] == ')' && --depth == 0) {
                                p++;
                                break;
                        }
                }
        }
}

/* The end of a token or quoted string starting at p. */
static size_t value_end(const char *s, size_t len, size_t p)
{
        if (p < len && s[p] == '"') {
                for (p++; p < len && s[p] != '"'; p++)
                        if (s[p] == '\\' && p + 1 < len)
                                p++;
                return p < len ? p + 1 : p;
        }
        while (p < len && s[p] != ' ' && s[p] != '\t' && s[p] != ';' && s[p] != '(')
                p++;
        return p;
}

/* Append one result, its whitespace runs made one space, when it fits. */
static void append(char *out, size_t size, const char *r, size_t len)
{
        size_t n = strlen(out), need = len + (n ? 2 : 0);
        bool space = false;

        while (len && (r[len - 1] == ' ' || r[len - 1] == '\t'))
                len--;
        if (len == 0 || (len == 4 && strncasecmp(r, "none", 4) == 0) || n + need + 1 > size)
                return;
        if (n) {
                memcpy(out + n, "; ", 2);
                n += 2;
        }
        for (size_t i = 0; i < len; i++) {
                bool ws = r[i] == ' ' || r[i] == '\t';

                if (ws && space)
                        continue;
                space = ws;
                out[n++] = ws ? ' ' : r[i];
        }
        out[n] = 0;
}

/* The resinfos after the authserv-id, split at ";" outside quoted strings
 * and comments. */
static void take_results(const char *s, size_t len, size_t p, char *out, size_t size)
{
        size_t start = p;

        while (p <= len) {
                if (p == len || s[p] == ';') {
                        size_t b = skip_cfws(s, p, start);

                        if (b < p)
                                append(out, size, s + b, p - b);
                        start = ++p;
                } else if (s[p] == '"') {
                        p = value_end(s, len, p);
                } else if (s[p] == '(') {
                        size_t e = skip_cfws(s, len, p);

                        p = e > p ? e : p + 1;
                } else {
                        p++;
                }
        }
}

static void one_field(const uint8_t *f, size_t flen, const char *authserv_id, char *out, size_t size)
{
        char s[FIELD_MAX];
        const uint8_t *colon = memchr(f, ':', flen);
        size_t len = 0, p, e;

        if (!colon)
                return;
        /* Unfolded: CR and LF become spaces. */
        for (const uint8_t *q = colon + 1; q < f + flen && len < sizeof(s); q++)
                s[len++] = (char) (*q == '\r' || *q == '\n' ? ' ' : *q);
        if (len == sizeof(s))
                return;
        p = skip_cfws(s, len, 0);
        e = value_end(s, len, p);
        if (e - p != strlen(authserv_id) || strncasecmp(s + p, authserv_id, e - p) != 0)
                return;
        p = skip_cfws(s, len, e);
        while (p < len && s[p] >= '0' && s[p] <= '9')  /* authres-version */
                p++;
        p = skip_cfws(s, len, p);
        if (p < len && s[p] == ';')
                take_results(s, len, p + 1, out, size);
}

void arc_collect_results(const struct dkim_headers *h, const char *authserv_id, char *out, size_t size)
{
        out[0] = 0;
        for (size_t i = 0; i < h->count; i++)
                if (dkim_field_name_is(h, i, "authentication-results"))
                        one_field(h->block + h->fields[i].off, h->fields[i].len, authserv_id, out, size);
}
