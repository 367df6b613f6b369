/* SPDX-License-Identifier: MIT */
/*
 * dkimsignctl's side of the key lifecycle (daemon/keystate.h): the states
 * `list` shows, the next selector `rotate` makes, and the DNS check after an
 * import that lets an already published key sign at once.  It reads and
 * writes the state file under its lock, as dkimsignd's watcher does; it
 * never prints and never exits: the commands in ctl.c do.
 */
#ifndef CTL_LIFECYCLE_H
#define CTL_LIFECYCLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "hsm.h"
#include "keys.h"

/* Attach the state file's states to t (see keyreg_attach); free *ret_reg
 * after t.  DKIMSIGN_E_STATE with the file and line in why. */
int ctl_lifecycle_attach(const struct config *c, struct keytab *t, struct keyreg **ret_reg, char *why,
                         size_t whylen);

/* A key's lifecycle as `list` shows it. */
struct ctl_key_life {
        enum key_state state;     /* what dkimsignd does with it now */
        bool unpublished;         /* active only because its domain says unpublished = sign */
        int64_t seen;             /* first seen in DNS, 0: not yet */
        int64_t active;           /* signs since, 0: not active */
        int64_t signs_from;       /* published: when it becomes active */
        int64_t retires;          /* active with a newer key: when it retires, 0: not */
        int64_t retired;          /* retired: since (0 when only the token's date says so) */
};

void ctl_key_life(const struct keytab *t, const struct config *c, size_t i, int64_t now, struct ctl_key_life *ret);

/* The selector `rotate` proposes for domain: "<r|e><YYYYMMDD>" (r for RSA,
 * e for Ed25519) of today (UTC), with "-2", "-3", ... when taken. */
int ctl_next_selector(const struct keytab *t, const char *domain, enum hsm_alg alg, char *ret, size_t size);

/*
 * After an import: look the key's record up now (through [dns] resolver).
 * When DNS already shows it (a migration from OpenDKIM), the key is
 * recorded active at once: its verifiers have the record already, so
 * waiting publish_wait would only stop the domain's mail.  Returns 1 when
 * made active, 0 when it stays pending (why says what DNS showed), or an
 * error with why.
 */
int ctl_activate_if_published(const struct config *c, const char *label, EVP_PKEY *pub, char *why,
                              size_t whylen);

/* One check of every key of t in DNS, as dkimsignd's watcher makes it,
 * written to the state file (`dkimsignctl refresh`, for [dns] watch =
 * timer).  The changes are logged on stderr. */
int ctl_refresh(const struct config *c, struct keyreg *reg, char *why, size_t whylen);

/* A duration as the configuration writes it: "48h", "7d", "90s". */
void ctl_duration(uint64_t seconds, char ret[24]);

#endif
