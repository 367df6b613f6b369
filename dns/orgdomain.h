/* SPDX-License-Identifier: MIT */
/*
 * Organizational domains (RFC 7489 section 3.2, DMARC): a name's
 * registrable domain by the Public Suffix List, through libpsl.  The
 * list is the newest of libpsl's built-in copy and the system's
 * (Debian's publicsuffix package, /usr/share/publicsuffix), loaded once,
 * then only read: safe from any thread.
 */
#ifndef DNS_ORGDOMAIN_H
#define DNS_ORGDOMAIN_H

#include <stdbool.h>
#include <stddef.h>

/* The organizational domain of domain (lowercase, no trailing dot), as a
 * pointer into domain: the registrable domain, or domain itself when it
 * is a public suffix or has none (RFC 7489: it is then its own). */
const char *dns_org_domain(const char *domain);

/* a and b share an organizational domain: a signature with d=a aligns
 * with a From domain b under DMARC's relaxed mode. */
bool dns_same_org(const char *a, const char *b);

/* Free the loaded list (at exit, for leak checkers).  Not thread-safe:
 * no other call may run or follow. */
void dns_org_domain_free(void);

#endif
