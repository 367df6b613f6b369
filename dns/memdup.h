/* SPDX-License-Identifier: MIT */
/*
 * A NUL-terminated copy of len octets that need not be NUL-terminated
 * themselves (text inside a record or a buffer).  Unlike strndup it never
 * looks past len, so sanitizers with strict string checks agree; an
 * interior NUL is copied as is.  NULL when out of memory.
 */
#ifndef DNS_MEMDUP_H
#define DNS_MEMDUP_H

#include <stdlib.h>
#include <string.h>

static inline char *dns_memdup_str(const char *s, size_t len)
{
        char *copy = malloc(len + 1);

        if (copy) {
                memcpy(copy, s, len);
                copy[len] = '\0';
        }
        return copy;
}

#endif
