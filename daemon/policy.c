/* SPDX-License-Identifier: MIT */
/*
 * Peer authorization.  See policy.h.  Names were resolved to ids when the
 * configuration was loaded: nothing here touches NSS or the disk (the
 * Public Suffix List is loaded once, by dns/orgdomain.c).
 */
#include <stdio.h>
#include <string.h>

#include "daemon/policy.h"
#include "dns/orgdomain.h"

static bool acl_has_gid(const struct config_acl *acl, gid_t gid)
{
        for (size_t i = 0; i < acl->ngids; i++)
                if (acl->gids[i] == gid)
                        return true;
        return false;
}

static bool acl_allows(const struct config_acl *acl, const struct peer *p)
{
        if (acl->any)
                return true;
        for (size_t i = 0; i < acl->nuids; i++)
                if (acl->uids[i] == p->uid)
                        return true;
        if (acl_has_gid(acl, p->gid))
                return true;
        for (size_t i = 0; i < p->ngroups; i++)
                if (acl_has_gid(acl, p->groups[i]))
                        return true;
        return false;
}

/* The list that governs domain: its section's, else the nearest parent
 * section's that sets one, else [daemon] allow. */
static const struct config_acl *acl_for(const struct config *c, const char *domain)
{
        for (const char *name = domain; name; name = strchr(name, '.') ? strchr(name, '.') + 1 : NULL) {
                const struct config_domain *d = config_find_domain(c, name);

                if (d && d->allow.set)
                        return &d->allow;
        }
        return &c->allow;
}

bool pol_allowed(const struct config *c, const char *domain, const struct peer *p)
{
        return acl_allows(acl_for(c, domain), p);
}

bool pol_may_sign(const struct config *c, const char *requested, const char *d, const char *from,
                  const struct peer *p, char *why, size_t whylen)
{
        if (!pol_allowed(c, requested, p)) {
                snprintf(why, whylen, "uid %u is not authorized to sign for domain %s", (unsigned) p->uid,
                         requested);
                return false;
        }
        if (strcmp(d, requested) != 0 && !pol_allowed(c, d, p)) {
                snprintf(why, whylen, "uid %u is not authorized to sign with d=%s (the key domain of %s)",
                         (unsigned) p->uid, d, requested);
                return false;
        }
        /* Aligned with From under DMARC: the signature speaks for F too. */
        if (strcmp(from, d) != 0 && strcmp(from, requested) != 0 && dns_same_org(d, from) &&
            !pol_allowed(c, from, p)) {
                snprintf(why, whylen, "uid %u is not authorized to sign for the From domain %s, which d=%s "
                         "aligns with", (unsigned) p->uid, from, d);
                return false;
        }
        return true;
}

bool pol_metrics_allowed(const struct config *c, const struct peer *p, uid_t self)
{
        return p->uid == 0 || p->uid == self || acl_allows(&c->metrics_allow, p);
}
