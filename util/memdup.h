/* SPDX-License-Identifier: MIT */
/*
 * Bounded copies of text that is not NUL-terminated (a record's text, a
 * buffer's bytes).  Part of util/, which any folder may use: plain libc, no
 * I/O, no logging, no globals.
 */
#ifndef UTIL_MEMDUP_H
#define UTIL_MEMDUP_H

#include <stddef.h>

/*
 * A NUL-terminated copy of the len octets at s.  Unlike strndup it never
 * looks past len, so sanitizers with strict string checks agree; an
 * interior NUL is copied as is.  The caller frees the copy; NULL when out
 * of memory.  (The dns_ prefix is historical: the helper began in dns/.)
 */
char *dns_memdup_str(const char *s, size_t len);

#endif
