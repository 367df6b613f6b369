/* SPDX-License-Identifier: MIT */
/*
 * The key table.  See keys.h.  Selection is a binary search plus a scan of
 * one domain's few keys, so it costs the same with 10,000 domains as with one.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dkimsign-errors.h"
#include "header.h"
#include "keys.h"
#include "sign.h"

#define DOMAINKEY_INFIX "._domainkey."

int keys_parse_label(const char *label, char *ret_selector, size_t selsize, char *ret_domain,
                     size_t domsize)
{
        const char *mid = strstr(label, DOMAINKEY_INFIX);
        const char *dom;
        size_t sel_len, dom_len;

        if (!mid || mid == label)
                return DKIMSIGN_E_FORMAT;
        sel_len = (size_t) (mid - label);
        dom = mid + strlen(DOMAINKEY_INFIX);
        dom_len = strlen(dom);
        if (sel_len > DKIM_SELECTOR_MAX || sel_len >= selsize || dom_len >= domsize ||
            !dkim_domain_is_valid(label, sel_len) || !dkim_domain_is_valid(dom, dom_len))
                return DKIMSIGN_E_FORMAT;
        for (size_t i = 0; i < sel_len; i++)
                ret_selector[i] = (char) tolower((unsigned char) label[i]);
        ret_selector[sel_len] = 0;
        for (size_t i = 0; i <= dom_len; i++)
                ret_domain[i] = (char) tolower((unsigned char) dom[i]);
        return 0;
}

static int key_cmp(const void *a, const void *b)
{
        const struct signer_key *x = a, *y = b;
        int c = strcmp(x->domain, y->domain);

        return c ? c : strcmp(x->selector, y->selector);
}

int keytab_load(struct hsm *h, struct keytab **ret)
{
        struct hsm_key **all = NULL;
        size_t n = 0;
        struct keytab *t;
        int r;

        t = calloc(1, sizeof(*t));
        if (!t)
                return DKIMSIGN_E_NOMEM;
        r = hsm_list(h, &all, &n);
        if (r < 0)
                goto out;
        t->keys = calloc(n ? n : 1, sizeof(*t->keys));
        if (!t->keys) {
                r = DKIMSIGN_E_NOMEM;
                goto out;
        }
        for (size_t i = 0; i < n; i++) {
                char sel[DKIM_SELECTOR_MAX + 1], dom[DKIM_DOMAIN_SIZE];
                struct signer_key *k = &t->keys[t->count];

                if (!all[i]->pubkey || keys_parse_label(all[i]->label, sel, sizeof(sel), dom, sizeof(dom)) < 0)
                        continue;
                k->selector = strdup(sel);
                k->domain = strdup(dom);
                if (!k->selector || !k->domain) {
                        free(k->selector);
                        free(k->domain);
                        r = DKIMSIGN_E_NOMEM;
                        goto out;
                }
                k->key = all[i];
                all[i] = NULL;  /* transferred */
                t->count++;
        }
        qsort(t->keys, t->count, sizeof(*t->keys), key_cmp);
        *ret = t;
        t = NULL;
out:
        hsm_key_list_free(all, n);
        keytab_free(t);
        return r;
}

struct keytab *keytab_free(struct keytab *t)
{
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->count; i++) {
                free(t->keys[i].domain);
                free(t->keys[i].selector);
                hsm_key_free(t->keys[i].key);
        }
        free(t->keys);
        free(t);
        return NULL;
}

/* Index of the first key of domain, or count when there is none. */
static size_t first_of_domain(const struct keytab *t, const char *domain)
{
        size_t lo = 0, hi = t->count;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (strcmp(t->keys[mid].domain, domain) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo < t->count && strcmp(t->keys[lo].domain, domain) == 0 ? lo : t->count;
}

static bool selector_chosen(const struct config_domain *d, const char *selector)
{
        if (!d || d->nselectors == 0)
                return true;
        for (size_t i = 0; i < d->nselectors; i++)
                if (strcmp(d->selectors[i], selector) == 0)
                        return true;
        return false;
}

int keytab_select(const struct keytab *t, const struct config *c, const char *domain,
                  const struct signer_key **ret, size_t *ret_count, const char **ret_domain,
                  char *why, size_t whylen)
{
        const struct config_domain *d = config_domain_for(c, domain);
        /* A parent's section that covers its subdomains signs with d= parent. */
        const char *kd = d && d->key_domain ? d->key_domain
                       : d && strcmp(d->name, domain) != 0 ? d->name : domain;
        const struct signer_key *by_alg[3] = { NULL };
        size_t n = 0, retired = 0;

        for (size_t i = first_of_domain(t, kd); i < t->count && strcmp(t->keys[i].domain, kd) == 0; i++) {
                const struct signer_key *k = &t->keys[i];
                enum hsm_alg a = k->key->alg;

                if (!selector_chosen(d, k->selector) || (a != HSM_ALG_RSA && a != HSM_ALG_ED25519))
                        continue;
                /* dkimsignctl retire: the key stays on the token (its DNS
                 * record may still verify old mail) but never signs again. */
                if (k->key->retired[0]) {
                        retired++;
                        continue;
                }
                /* RFC 8301: verifiers reject RSA keys under 1024 bits, so an
                 * imported weak key never signs. */
                if (a == HSM_ALG_RSA && k->key->bits < HSM_RSA_MIN_BITS)
                        continue;
                if (by_alg[a]) {
                        snprintf(why, whylen,
                                 "domain %s has several %s keys (%s, %s): name one with 'selectors' in [domain %s]",
                                 kd, hsm_alg_name(a), by_alg[a]->selector, k->selector, d ? d->name : domain);
                        return DKIMSIGN_E_NO_KEY;
                }
                by_alg[a] = k;
        }
        for (int a = HSM_ALG_RSA; a <= HSM_ALG_ED25519; a++)
                if (by_alg[a])
                        ret[n++] = by_alg[a];
        if (n == 0) {
                snprintf(why, whylen, "no signing key for domain %s%s", kd,
                         retired ? " (its keys are retired)" : "");
                return DKIMSIGN_E_NO_KEY;
        }
        *ret_count = n;
        *ret_domain = kd;
        return 0;
}
