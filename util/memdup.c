/* SPDX-License-Identifier: MIT */
/*
 * Bounded string copies.  See memdup.h.
 */
#include <stdlib.h>
#include <string.h>

#include "util/memdup.h"

char *dns_memdup_str(const char *s, size_t len)
{
        char *copy = malloc(len + 1);

        if (copy) {
                memcpy(copy, s, len);
                copy[len] = '\0';
        }
        return copy;
}
