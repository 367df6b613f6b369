/* SPDX-License-Identifier: MIT */
/*
 * The exporter's HTTP request parser.  See http.h.
 */
#include <string.h>
#include <strings.h>

#include "exporter/http.h"
#include "protocol/dkimsign-errors.h"

/* The next line of data[*off, len): its start and length without the
 * line end; DKIMSIGN_E_INCOMPLETE when no line end is in yet. */
static int next_line(const char *data, size_t len, size_t *off, const char **ret, size_t *ret_len)
{
        const char *start = data + *off;
        const char *nl = memchr(start, '\n', len - *off);
        size_t n;

        if (!nl)
                return len - *off > HTTP_LINE_MAX ? DKIMSIGN_E_TOO_LARGE : DKIMSIGN_E_INCOMPLETE;
        n = (size_t) (nl - start);
        *off += n + 1;
        if (n && start[n - 1] == '\r')
                n--;
        if (n > HTTP_LINE_MAX)
                return DKIMSIGN_E_TOO_LARGE;
        if (memchr(start, '\r', n) || memchr(start, '\0', n))
                return DKIMSIGN_E_FORMAT;
        *ret = start;
        *ret_len = n;
        return 0;
}

static bool is_tchar(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* "METHOD SP TARGET SP HTTP/1.x" */
static int request_line(const char *l, size_t n, struct http_request *r)
{
        const char *sp1 = memchr(l, ' ', n), *sp2, *q;
        size_t mlen, tlen;

        if (!sp1)
                return DKIMSIGN_E_FORMAT;
        mlen = (size_t) (sp1 - l);
        sp2 = memchr(sp1 + 1, ' ', n - mlen - 1);
        if (!sp2 || mlen == 0 || mlen > HTTP_METHOD_MAX)
                return DKIMSIGN_E_FORMAT;
        for (size_t i = 0; i < mlen; i++)
                if (!is_tchar(l[i]))
                        return DKIMSIGN_E_FORMAT;
        tlen = (size_t) (sp2 - sp1 - 1);
        if (tlen == 0 || sp1[1] != '/')
                return DKIMSIGN_E_FORMAT;
        if (tlen > HTTP_TARGET_MAX)
                return DKIMSIGN_E_TOO_LARGE;
        for (size_t i = 0; i < tlen; i++)
                if ((unsigned char) sp1[1 + i] <= ' ' || (unsigned char) sp1[1 + i] >= 0x7f)
                        return DKIMSIGN_E_FORMAT;
        if ((size_t) (l + n - sp2 - 1) != 8 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0 || sp2[8] < '0' || sp2[8] > '9')
                return DKIMSIGN_E_FORMAT;
        memcpy(r->method, l, mlen);
        r->method[mlen] = 0;
        q = memchr(sp1 + 1, '?', tlen);
        if (q)
                tlen = (size_t) (q - sp1 - 1);
        memcpy(r->target, sp1 + 1, tlen);
        r->target[tlen] = 0;
        r->minor = sp2[8] - '0';
        return 0;
}

/* Whether [v, v+n) holds needle, in any letter case. */
static bool contains_nocase(const char *v, size_t n, const char *needle)
{
        size_t k = strlen(needle);

        for (size_t i = 0; i + k <= n; i++)
                if (strncasecmp(v + i, needle, k) == 0)
                        return true;
        return false;
}

/* "name: value"; the fields the exporter acts on are read, others only checked. */
static int header_field(const char *l, size_t n, struct http_request *r)
{
        const char *colon = memchr(l, ':', n), *v;
        size_t nlen, vlen;

        if (!colon || colon == l)
                return DKIMSIGN_E_FORMAT;
        nlen = (size_t) (colon - l);
        for (size_t i = 0; i < nlen; i++)
                if (!is_tchar(l[i]))
                        return DKIMSIGN_E_FORMAT;   /* also no space before the colon (RFC 9112 5.1) */
        v = colon + 1;
        vlen = n - nlen - 1;
        while (vlen && (*v == ' ' || *v == '\t'))
                v++, vlen--;
        while (vlen && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
                vlen--;
        if (nlen == 6 && strncasecmp(l, "accept", 6) == 0 && contains_nocase(v, vlen, "application/openmetrics-text"))
                r->openmetrics = true;
        if (nlen == 14 && strncasecmp(l, "content-length", 14) == 0 && !(vlen == 1 && v[0] == '0'))
                r->has_body = true;
        if (nlen == 17 && strncasecmp(l, "transfer-encoding", 17) == 0)
                r->has_body = true;
        return 0;
}

int http_parse_request(const char *data, size_t len, struct http_request *ret, size_t *ret_used)
{
        struct http_request r = { 0 };
        size_t off = 0, fields = 0;
        const char *l;
        size_t n;
        int e;

        if (len > HTTP_REQUEST_MAX)
                len = HTTP_REQUEST_MAX;   /* what lies past it can't be part of an acceptable request */
        /* RFC 9112 2.2: empty lines before the request line are ignored. */
        do {
                e = next_line(data, len, &off, &l, &n);
        } while (e == 0 && n == 0 && off < 16);
        if (e == 0 && n == 0)
                e = DKIMSIGN_E_FORMAT;
        if (e == 0)
                e = request_line(l, n, &r);
        while (e == 0) {
                e = next_line(data, len, &off, &l, &n);
                if (e < 0 || n == 0)
                        break;
                if (l[0] == ' ' || l[0] == '\t')
                        e = DKIMSIGN_E_FORMAT;   /* obsolete line folding: refused (RFC 9112 5.2) */
                else if (++fields > HTTP_HEADERS_MAX)
                        e = DKIMSIGN_E_TOO_LARGE;
                else
                        e = header_field(l, n, &r);
        }
        /* The whole bound read and still no end: it will never fit. */
        if (e == DKIMSIGN_E_INCOMPLETE && len == HTTP_REQUEST_MAX)
                e = DKIMSIGN_E_TOO_LARGE;
        if (e < 0)
                return e;
        *ret = r;
        *ret_used = off;
        return 0;
}
