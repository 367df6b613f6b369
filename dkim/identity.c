/* SPDX-License-Identifier: MIT */
/*
 * i= templates checked and filled in.  See identity.h.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "protocol/dkimsign-errors.h"
#include "dkim/identity.h"

#define RELATIVE "%d"

/* RFC 5322 atext, but '=' (a tag-list parser that splits on every '='
 * misreads it, and dkim-quoted-printable would have to encode it). */
static bool is_atext(unsigned char ch)
{
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
               (ch && strchr("!#$%&'*+-/?^_`{|}~", ch));
}

static bool is_qtext(unsigned char ch)
{
        return ch > ' ' && ch < 0x7f && !strchr("\"\\;=@", ch);
}

static bool local_part_ok(const char *s, size_t len)
{
        if (len == 0)
                return true;  /* "@domain": RFC 6376 lets the local part go */
        if (len > DKIM_LOCAL_PART_MAX)
                return false;
        if (s[0] == '"') {
                if (len < 3 || s[len - 1] != '"')
                        return false;
                for (size_t i = 1; i + 1 < len; i++)
                        if (!is_qtext((unsigned char) s[i]))
                                return false;
                return true;
        }
        /* dot-atom: atoms joined by single dots, none at either end. */
        if (s[0] == '.' || s[len - 1] == '.')
                return false;
        for (size_t i = 0; i < len; i++) {
                if (s[i] == '.' ? s[i + 1] == '.' : !is_atext((unsigned char) s[i]))
                        return false;
        }
        return true;
}

bool dkim_identity_is_relative(const char *tmpl)
{
        size_t len = strlen(tmpl), rl = strlen(RELATIVE);
        const char *at = strchr(tmpl, '@');

        /* The '@' can't be within the "%d" it ends with. */
        return at && len >= rl && strcmp(tmpl + len - rl, RELATIVE) == 0;
}

int dkim_identity_make(const char *tmpl, const char *d, char ret[DKIM_IDENTITY_SIZE], char *why, size_t whylen)
{
        const char *at = strchr(tmpl, '@');
        char domain[DKIM_DOMAIN_SIZE + 2];
        size_t local_len, dlen = strlen(d), n;
        int k;

        if (!at || strchr(at + 1, '@')) {
                snprintf(why, whylen, "'%s' is not an identity: it takes local@domain or @domain (one '@')", tmpl);
                return DKIMSIGN_E_FORMAT;
        }
        local_len = (size_t) (at - tmpl);
        if (!local_part_ok(tmpl, local_len)) {
                snprintf(why, whylen, "'%.*s' is not a local part dkimsign puts in i=: a dot-atom without '=', or a "
                         "quoted string without spaces, '\\', ';', '=' and '@', at most %d characters",
                         (int) (local_len > 80 ? 80 : local_len), tmpl, DKIM_LOCAL_PART_MAX);
                return DKIMSIGN_E_FORMAT;
        }
        if (dkim_identity_is_relative(tmpl)) {
                /* "@%d" is d= itself; "@sub.%d" a subdomain of it. */
                size_t plen = strlen(at + 1) - strlen(RELATIVE);

                if (plen && at[plen] != '.') {
                        snprintf(why, whylen, "'%s': %s stands for d=, and what comes before it must end in a dot "
                                 "(@news.%s)", tmpl, RELATIVE, RELATIVE);
                        return DKIMSIGN_E_FORMAT;
                }
                k = snprintf(domain, sizeof(domain), "%.*s%s", (int) plen, at + 1, d);
        } else {
                k = snprintf(domain, sizeof(domain), "%s", at + 1);
        }
        n = (size_t) k;
        if (k < 0 || n > DKIM_DOMAIN_MAX) {
                snprintf(why, whylen, "identity '%s' with d=%s makes a domain longer than %d characters", tmpl, d,
                         DKIM_DOMAIN_MAX);
                return DKIMSIGN_E_TOO_LARGE;
        }
        if (local_len + 1 + n > DKIM_IDENTITY_MAX) {
                snprintf(why, whylen, "identity '%s' with d=%s is longer than %d characters", tmpl, d,
                         DKIM_IDENTITY_MAX);
                return DKIMSIGN_E_TOO_LARGE;
        }
        if (!dkim_domain_is_valid(domain, n)) {
                snprintf(why, whylen, "identity '%s': '%s' is not a valid domain name", tmpl, domain);
                return DKIMSIGN_E_FORMAT;
        }
        for (size_t i = 0; i < n; i++)
                if (domain[i] >= 'A' && domain[i] <= 'Z')
                        domain[i] = (char) (domain[i] + 32);
        /* RFC 6376 3.5: i='s domain is d= or a subdomain of it. */
        if (!(n == dlen && strcmp(domain, d) == 0) &&
            !(n > dlen && domain[n - dlen - 1] == '.' && strcmp(domain + n - dlen, d) == 0)) {
                snprintf(why, whylen, "identity '%s': %s is neither d=%s nor a subdomain of it (RFC 6376 3.5)",
                         tmpl, domain, d);
                return DKIMSIGN_E_FORMAT;
        }
        /* local_len + 1 + n <= DKIM_IDENTITY_MAX, checked above. */
        memcpy(ret, tmpl, local_len);
        ret[local_len] = '@';
        memcpy(ret + local_len + 1, domain, n + 1);
        return 0;
}
