/* SPDX-License-Identifier: MIT */
/*
 * The one HTTP/1.x request dkimsign-exporter reads from a connection:
 * request line and header fields, bounded (HTTP_REQUEST_MAX octets, each
 * line HTTP_LINE_MAX, HTTP_HEADERS_MAX fields), parsed by a pure function
 * (no I/O, no allocation) that a fuzz target calls directly.  A body is
 * never read: a GET has none, and anything else is refused.
 */
#ifndef EXPORTER_HTTP_H
#define EXPORTER_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_REQUEST_MAX 8192
#define HTTP_LINE_MAX 4096
#define HTTP_HEADERS_MAX 64
#define HTTP_METHOD_MAX 16
#define HTTP_TARGET_MAX 1024

struct http_request {
        char method[HTTP_METHOD_MAX + 1];
        char target[HTTP_TARGET_MAX + 1];  /* the path, without the query */
        int minor;                         /* HTTP/1.<minor> */
        bool openmetrics;                  /* Accept names application/openmetrics-text */
        bool has_body;                     /* Content-Length other than 0, or Transfer-Encoding */
};

/*
 * Parse the request at the start of data (len octets): 0 when the header
 * block is complete (*ret filled, *ret_used its length), DKIMSIGN_E_INCOMPLETE
 * when more octets are needed, DKIMSIGN_E_TOO_LARGE over a bound,
 * DKIMSIGN_E_FORMAT for anything else malformed (bare LF lines are taken,
 * as RFC 9112 2.2 allows).
 */
int http_parse_request(const char *data, size_t len, struct http_request *ret, size_t *ret_used);

#endif
