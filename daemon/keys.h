/* SPDX-License-Identifier: MIT */
/*
 * The key table: which token keys sign for which domain.
 *
 * Keys are found on the token by label, "<selector>._domainkey.<domain>",
 * and chosen per domain: the selectors a [domain] section names, or every
 * key of the domain when it names none (one per algorithm; two of the same
 * algorithm without a choice is ambiguous and signs nothing).  Retired keys
 * (an end date on the token, hsm_retire) stay in the table, for listing,
 * but are never chosen.  The table is built once and read-only afterwards,
 * so worker threads share it freely.
 */
#ifndef KEYS_H
#define KEYS_H

#include <stddef.h>

#include "config.h"
#include "hsm.h"

#define KEYS_PER_DOMAIN_MAX 4

struct signer_key {
        char *domain;            /* d=, lowercased */
        char *selector;          /* s= */
        struct hsm_key *key;     /* owned */
};

struct keytab {
        struct signer_key *keys; /* sorted by domain, then selector */
        size_t count;
};

/* Load every DKIM key on the token.  Labels that are not DKIM key names
 * are skipped.  Free with keytab_free(). */
int keytab_load(struct hsm *h, struct keytab **ret);
struct keytab *keytab_free(struct keytab *t);

/*
 * The keys that sign mail for domain under config c: at most one active
 * (not retired) key per algorithm, RSA first.  *ret_domain is the d= domain (a [domain]'s
 * key_domain, or domain itself).  DKIMSIGN_E_NO_KEY with a sentence in why
 * when there is none or the choice is ambiguous.
 */
int keytab_select(const struct keytab *t, const struct config *c, const char *domain,
                  const struct signer_key **ret, size_t *ret_count, const char **ret_domain,
                  char *why, size_t whylen);

/* Split "<selector>._domainkey.<domain>" (lowercasing into the outputs). */
int keys_parse_label(const char *label, char *ret_selector, size_t selsize, char *ret_domain,
                     size_t domsize);

#endif
