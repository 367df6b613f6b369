/* SPDX-License-Identifier: MIT */
/*
 * Organizational domains through libpsl.  See orgdomain.h.
 */
#include <pthread.h>
#include <string.h>
#include <strings.h>

#include <libpsl.h>

#include "dns/orgdomain.h"

static pthread_once_t psl_once = PTHREAD_ONCE_INIT;
static psl_ctx_t *psl_loaded;      /* psl_latest's, ours to free */
static const psl_ctx_t *psl;       /* what lookups use */

static void psl_load(void)
{
        /* NULL: the system's list if it is newer than the built-in one. */
        psl_loaded = psl_latest(NULL);
        psl = psl_loaded ? psl_loaded : psl_builtin();
}

const char *dns_org_domain(const char *domain)
{
        const char *reg;

        pthread_once(&psl_once, psl_load);
        reg = psl ? psl_registrable_domain(psl, domain) : NULL;
        return reg ? reg : domain;
}

bool dns_same_org(const char *a, const char *b)
{
        return strcasecmp(dns_org_domain(a), dns_org_domain(b)) == 0;
}

void dns_org_domain_free(void)
{
        psl_free(psl_loaded);
        psl_loaded = NULL;
        psl = NULL;
}
