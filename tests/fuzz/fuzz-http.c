/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: dkimsign-exporter's HTTP request parser, fed whatever a
 * peer on the listening port sends.  A parsed request must lie within the
 * input and the bounds, with a method of token characters and a target
 * starting with '/'; every prefix of a parsed request is incomplete or
 * the same request (the parser is called again as octets arrive).
 *
 * Checks abort() rather than assert(): they must hold in NDEBUG builds too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "exporter/http.h"
#include "protocol/dkimsign-errors.h"

#define INPUT_MAX (HTTP_REQUEST_MAX + 256)

#define CHECK(x) do { if (!(x)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct http_request rq, again;
        size_t used = 0, used2 = 0;
        int r;

        if (size > INPUT_MAX)
                return 0;
        r = http_parse_request((const char *) data, size, &rq, &used);
        if (r < 0) {
                CHECK(r == DKIMSIGN_E_INCOMPLETE || r == DKIMSIGN_E_FORMAT || r == DKIMSIGN_E_TOO_LARGE);
                return 0;
        }
        CHECK(used > 0 && used <= size && used <= HTTP_REQUEST_MAX);
        CHECK(rq.method[0] && strlen(rq.method) <= HTTP_METHOD_MAX);
        CHECK(rq.target[0] == '/' && strlen(rq.target) <= HTTP_TARGET_MAX);
        CHECK(rq.minor >= 0 && rq.minor <= 9);
        /* Only what was used decides: the same request from exactly it. */
        CHECK(http_parse_request((const char *) data, used, &again, &used2) == 0 && used2 == used);
        CHECK(memcmp(&again, &rq, sizeof(rq)) == 0);
        /* One octet short of its end, a request is not complete yet. */
        r = http_parse_request((const char *) data, used - 1, &again, &used2);
        CHECK(r != 0 || used2 < used);
        return 0;
}
