/* SPDX-License-Identifier: MIT */
/*
 * Peer authorization.  See policy.h.  Names were resolved to ids when the
 * configuration was loaded: nothing here touches NSS or the disk.
 */
#include "daemon/policy.h"

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

bool pol_authorized(const struct config *c, const struct config_domain *section, const struct peer *p)
{
        return acl_allows(section && section->allow.set ? &section->allow : &c->allow, p);
}
