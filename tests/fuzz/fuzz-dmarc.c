/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the DMARC record parser, as dkimsignctl check runs it on TXT
 * text from DNS.  A parsed record must be a DMARC record, keep its counts
 * within bounds and hold only lowercase, valid report domains; a refused
 * one must say why.
 *
 * Checks abort() rather than assert(): they must hold in NDEBUG builds too.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/dkimsign-errors.h"
#include "dnscheck/dmarc.h"

#define INPUT_MAX (DMARC_RECORD_MAX + 64)

#define CHECK(x) do { if (!(x)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_uris(const struct dmarc_uri *u, size_t count)
{
        CHECK(count <= DMARC_URIS_MAX);
        for (size_t i = 0; i < count; i++) {
                CHECK(u[i].uri != NULL);
                CHECK(u[i].valid == (u[i].domain != NULL));
                if (!u[i].domain)
                        continue;
                CHECK(u[i].domain[0] && strlen(u[i].domain) <= 253);
                for (const char *c = u[i].domain; *c; c++)
                        CHECK(!(*c >= 'A' && *c <= 'Z') && *c != '@');
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct dmarc_record rec;
        char why[256];
        int r;

        if (size > INPUT_MAX)
                return 0;
        r = dmarc_parse((const char *) data, size, &rec, why, sizeof(why));
        if (r == 0) {
                CHECK(dmarc_is_record((const char *) data, size));
                CHECK(rec.p <= DMARC_POLICY_INVALID && rec.sp <= DMARC_POLICY_INVALID);
                CHECK(rec.pct >= -2 && rec.pct <= 100);
                CHECK(memchr(rec.unknown, '\0', sizeof(rec.unknown)) != NULL);
                check_uris(rec.rua, rec.rua_count);
                check_uris(rec.ruf, rec.ruf_count);
                dmarc_record_clear(&rec);
        } else {
                CHECK(r == DKIMSIGN_E_FORMAT || r == DKIMSIGN_E_TOO_LARGE || r == DKIMSIGN_E_NOMEM);
                CHECK(r == DKIMSIGN_E_NOMEM || why[0]);
        }
        (void) dmarc_is_record((const char *) data, size);
        return 0;
}
