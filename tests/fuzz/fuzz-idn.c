/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: a domain to its A-label form (dkim/idn.c), as dkimsignd runs
 * it on the From domain of every message and on the domain a client asks
 * for, and back to U-labels for display.  An accepted name comes out as a
 * lowercase host name of 253 octets at most, converts to itself again, and
 * its U-label form, when there is one, converts back to it.  A refusal
 * always says why and leaves the output alone.
 *
 * Checks abort() rather than assert(): they must hold in NDEBUG builds too.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dkim/idn.h"
#include "protocol/dkimsign-errors.h"

/* A little over the longest input converted, so the length check is hit. */
#define INPUT_MAX (DKIM_IDN_INPUT_MAX + 16)

#define CHECK(x) do { if (!(x)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char out[DKIM_DOMAIN_SIZE] = "", again[DKIM_DOMAIN_SIZE], u[DKIM_IDN_UNICODE_SIZE];
        const char *why = NULL;
        int r;

        if (size > INPUT_MAX)
                return 0;
        r = dkim_domain_to_ascii((const char *) data, size, out, &why);
        if (r != 0) {
                CHECK(r == DKIMSIGN_E_FORMAT || r == DKIMSIGN_E_IDN || r == DKIMSIGN_E_NOMEM);
                CHECK(why && why[0] && out[0] == '\0');
                return 0;
        }
        size_t n = strlen(out);
        CHECK(n > 0 && n <= DKIM_DOMAIN_MAX && dkim_domain_is_valid(out, n));
        for (size_t i = 0; i < n; i++)
                CHECK(!(out[i] >= 'A' && out[i] <= 'Z'));
        CHECK(dkim_domain_to_ascii(out, n, again, NULL) == 0 && strcmp(again, out) == 0);
        if (dkim_domain_to_unicode(out, u, sizeof(u))) {
                CHECK(dkim_domain_to_ascii(u, strlen(u), again, NULL) == 0);
                CHECK(strcmp(again, out) == 0);
        }
        return 0;
}
