/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the header block parser and From-domain extraction, as the
 * daemon runs them on bytes from the socket, with small limits so the limit
 * checks are reached.  A parsed block must describe itself consistently, a
 * returned domain must be valid and lowercase (a U-label domain's A-label
 * form), and every field must canonicalize.  The input is also checked as a
 * domain name.
 *
 * Checks abort() rather than assert(): they must hold in NDEBUG builds too.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dkim/canon.h"
#include "protocol/dkimsign-errors.h"
#include "dkim/header.h"

#define INPUT_MAX (1024 * 1024)

#define CHECK(x) do { if (!(x)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void count_sink(void *userdata, const uint8_t *d, size_t len)
{
        (void)d;
        *(size_t *)userdata += len;
}

/* Fields tile the block: each ends in CRLF and the next starts after it. */
static void check_fields(const struct dkim_headers *h, size_t size,
                         const struct dkim_header_limits *lim)
{
        size_t end = 0;

        CHECK(h->count > 0 && h->count <= lim->max_fields);
        for (size_t i = 0; i < h->count; i++) {
                const struct dkim_field *f = &h->fields[i];
                CHECK(f->off == end);
                CHECK(f->name_len > 0 && f->name_len < f->len);
                CHECK((size_t)f->off + f->len + 2 <= size);
                CHECK(memcmp(h->block + f->off + f->len, "\r\n", 2) == 0);
                CHECK(memchr(h->block + f->off, ':', f->len) != NULL);
                end = f->off + f->len + 2;

                for (int c = DKIM_CANON_SIMPLE; c <= DKIM_CANON_RELAXED; c++) {
                        size_t n = 0;
                        dkim_header_canon((enum dkim_canon)c, h->block + f->off, f->len,
                                          i % 2 == 0, count_sink, &n);
                        CHECK(n <= (size_t)f->len + 2);
                }
        }
        CHECK(end == size);
}

static void check_from(const struct dkim_headers *h)
{
        char dom[DKIM_DOMAIN_SIZE];
        size_t froms = dkim_headers_count(h, "from");

        memset(dom, 0x5a, sizeof(dom));
        int r = dkim_headers_from_domain(h, dom, NULL);
        if (froms == 0)
                CHECK(r == DKIMSIGN_E_NO_FROM);
        else if (froms > 1)
                CHECK(r == DKIMSIGN_E_MULTI_FROM);
        else
                CHECK(r == 0 || r == DKIMSIGN_E_FORMAT || r == DKIMSIGN_E_MULTI_FROM || r == DKIMSIGN_E_IDN ||
                      r == DKIMSIGN_E_NOMEM);
        if (r != 0) {
                CHECK((uint8_t)dom[0] == 0x5a);
                return;
        }
        size_t len = strnlen(dom, sizeof(dom));
        CHECK(len < sizeof(dom));
        CHECK(dkim_domain_is_valid(dom, len));
        for (size_t i = 0; i < len; i++)
                CHECK(!(dom[i] >= 'A' && dom[i] <= 'Z'));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const struct dkim_header_limits lim = { .max_fields = 32, .max_line = 200 };
        struct dkim_headers h;

        if (size > INPUT_MAX)
                return 0;

        int r = dkim_headers_parse(data, size, &lim, &h);
        if (r == 0) {
                check_fields(&h, size, &lim);
                check_from(&h);
        } else {
                CHECK(r == DKIMSIGN_E_FORMAT || r == DKIMSIGN_E_TOO_LARGE ||
                      r == DKIMSIGN_E_NOMEM);
                CHECK(h.fields == NULL && h.count == 0);
        }
        dkim_headers_deinit(&h);

        (void)dkim_domain_is_valid((const char *)data, size);
        return 0;
}
