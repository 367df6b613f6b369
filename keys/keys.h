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
 *
 * Each key also has a lifecycle (keystate.h): only an active key signs,
 * unless its domain says `unpublished = sign`.  Its live state sits in a
 * registry entry (struct keyreg_entry) that outlives key tables: the DNS
 * watcher updates it with atomic stores while workers read it, and a reload
 * attaches the new table to the same entries, so no update is lost between
 * generations.  When a key becomes active or retires by the clock alone is
 * computed at selection time (keystate_effective): it needs no DNS.
 */
#ifndef KEYS_KEYS_H
#define KEYS_KEYS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "keys/config.h"
#include "hsm/hsm.h"
#include "keys/keystate.h"
#include "keys/lifecycle.h"

#define KEYS_PER_DOMAIN_MAX 4

/* A key's lifecycle as the running daemon knows it.  Written by the DNS
 * watcher (and a reload), read by every worker: atomics, no lock. */
struct key_live {
        _Atomic int state;              /* enum key_state, as recorded */
        _Atomic int64_t seen, active, retired;
        _Atomic uint64_t wait, grace;   /* its domain's publish_wait and retire_grace */
        _Atomic int dns;                /* enum key_dns */
        _Atomic int dnssec;             /* enum dns_security: what validation said of that answer */
        _Atomic int64_t checked;        /* when DNS was last asked, 0: never */
};

/* One key of the token, for as long as the daemon runs. */
struct keyreg_entry {
        char *label;                    /* "<selector>._domainkey.<domain>", lowercase */
        char *domain, *selector;
        enum hsm_alg alg;
        char fingerprint[KEYSTATE_FP_LEN + 1];
        EVP_PKEY *pubkey;               /* a reference of its own: the watcher compares records with it */
        _Atomic bool token_retired;     /* an end date on the token */
        _Atomic unsigned generation;    /* the newest key table it is in */
        struct key_live live;
};

struct signer_key {
        char *domain;            /* d=, lowercased */
        char *selector;          /* s= */
        struct hsm_key *key;     /* owned */
        struct keyreg_entry *reg; /* borrowed from the registry; NULL: pending */
};

struct keytab {
        struct signer_key *keys; /* sorted by domain, then selector */
        size_t count;
};

/* Why a key that may also decrypt never signs, unless c says so. */
#define KEYS_DECRYPT_REFUSED \
        "its private key may also decrypt: set [token] allow_decrypt_keys = yes to sign with it"

/* Load every DKIM key on the token.  Labels that are not DKIM key names
 * are skipped.  A key that may also decrypt gets KEYS_DECRYPT_REFUSED as
 * its hsm_key.refused unless c's [token] allow_decrypt_keys says yes: the
 * policy is the configuration's, hsm/ only reports the uses.  Free with
 * keytab_free(). */
int keytab_load(struct hsm *h, const struct config *c, struct keytab **ret);
struct keytab *keytab_free(struct keytab *t);

/*
 * The keys that sign mail for domain under config c: at most one active
 * key per algorithm (the newest active one), RSA first; with `unpublished =
 * sign`, a key that is not active yet signs when the algorithm has no
 * active key; the states are those at now (the request's t=).
 * section is domain's section (config_domain_for, resolved once per
 * request; NULL when none governs it).  *ret_domain is the d= domain (a
 * [domain]'s key_domain, or domain itself).  DKIMSIGN_E_NO_KEY with a sentence in why when there is none or
 * the choice is ambiguous.
 */
int keytab_select(const struct keytab *t, const struct config *c, const char *domain,
                  const struct config_domain *section, int64_t now,
                  const struct signer_key **ret, size_t *ret_count, const char **ret_domain,
                  char *why, size_t whylen);

/* Key i's state at now (keystate_effective over its domain's keys); *ret_since
 * and *ret_successor as there (both may be NULL). */
enum key_state keytab_key_state(const struct keytab *t, size_t i, int64_t now, int64_t *ret_since,
                                size_t *ret_successor);

/* A key's life at a moment, for listings and metrics; Unix seconds, 0: not. */
struct key_life {
        enum key_state state;     /* keytab_key_state */
        int64_t seen;             /* first seen in DNS */
        int64_t active;           /* active: signs since */
        int64_t recorded_active;  /* when it became active, as recorded (a retired key's too) */
        int64_t signs_from;       /* published: when it becomes active */
        int64_t retires;          /* active with a newer key: when it retires */
        int64_t retired;          /* retired: since (0 when only the token's date says so) */
};

/* Key i's life at now, from its registry entry and the clock. */
void keytab_key_life(const struct keytab *t, size_t i, int64_t now, struct key_life *ret);

/* Copy what a registry entry's atomics say into a struct. */
void key_live_times(const struct key_live *l, struct key_times *ret);

/* Take what the state file says when it is further on than what is known:
 * retired (by dkimsignctl or a previous run), or active (an import whose
 * record was already published); with dns_from_file (someone else looks the
 * records up: [dns] watch = timer), also pending or published as the file
 * says.  Returns true when something changed. */
bool key_live_adopt(struct key_live *l, const struct key_times *file, bool dns_from_file);

/* The registry of live key states, one entry per label and fingerprint.
 * Not thread-safe: a program with threads serializes its calls (dkimsignd's
 * DNS watcher owns the registry and its lock, dnswatch.h).  The entries'
 * key_live fields are atomics, read by any thread. */
struct keyreg;

int keyreg_new(struct keyreg **ret);
/* Accepts NULL.  Nothing may use a key table attached to it afterwards. */
struct keyreg *keyreg_free(struct keyreg *g);

/*
 * Give every key of t its registry entry: the one it had in an earlier
 * table, else a new one seeded from file (its entry, when the fingerprint
 * is the same key's; pending otherwise), and set each entry's wait and
 * grace from c.  t becomes the newest generation (the one the watcher
 * checks).  A key that never signs (refused for its custody, or RSA under
 * 1024 bits) gets none: it has no lifecycle, so it can't succeed, and
 * retire, a key that signs.
 */
int keyreg_attach(struct keyreg *g, struct keytab *t, const struct config *c, const struct keystate *file);

/* The entries of the newest generation: an owned array (free()) of
 * borrowed pointers, valid until keyreg_free. */
int keyreg_current(struct keyreg *g, struct keyreg_entry ***ret, size_t *ret_count);

/* Split "<selector>._domainkey.<domain>" (lowercasing into the outputs). */
int keys_parse_label(const char *label, char *ret_selector, size_t selsize, char *ret_domain,
                     size_t domsize);

#endif
