/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: dkimsign-milter's scan of an address field for a name
 * without a domain (client/milter-mta.c), on header values as an MTA
 * hands them over, and the line scanner on the same bytes.  Neither may
 * read past the input (ASan), and the scanner's longest line is bounded by
 * the input.  The input is copied to a buffer of its own size so a read
 * past it is caught.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client/milter-mta.h"

#define CHECK(x) do { if (!(x)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct milter_scan s = { 0 };
        char *copy = malloc(size ? size : 1);

        if (!copy)
                return 0;
        if (size)
                memcpy(copy, data, size);
        (void) milter_mta_unqualified(copy, size);
        /* Any prefix is a value too (a field cut at the header limit). */
        (void) milter_mta_unqualified(copy, size / 2);
        milter_scan_feed(&s, copy, size / 2);
        milter_scan_feed(&s, copy + size / 2, size - size / 2);
        CHECK(milter_scan_longest(&s) <= size);
        free(copy);
        return 0;
}
