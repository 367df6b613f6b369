/* SPDX-License-Identifier: MIT */
/*
 * The DNS watcher: a thread of its own that looks up each key's TXT record
 * every [dns] check_interval, moves keys along their lifecycle (pending ->
 * published when a matching record is seen; published -> pending when it
 * goes away before the key is active), records the moves the clock makes
 * (active at seen + publish_wait, retired at retire_grace after a newer key
 * of the same algorithm became active) and writes the state file.
 *
 * With [dns] watch = timer the daemon makes no lookups (its unit may deny
 * it the network): `dkimsignctl refresh`, run by a timer, does them and
 * writes the file, and the watcher takes pending and published from there
 * every check_interval.
 *
 * It never blocks signing: workers read the key states through atomics
 * (keys.h), every lookup is bounded by [dns] timeout, and a check cycle
 * gives up after a few lookups that got no answer.  A DNS failure changes
 * no state.  An active key whose record disappears keeps signing (a DNS
 * outage or a zone mistake must not stop a domain's mail), with a warning
 * in the log at every check until the record is back or the key retired.
 *
 * A damaged (or unwritable) state file is logged and never overwritten;
 * the states go on in memory.  Retirements it records (succession after
 * retire_grace) go to the state file only; the token's end date is set by
 * dkimsignctl retire alone, so the daemon never writes to the token.
 */
#ifndef DAEMON_DNSWATCH_H
#define DAEMON_DNSWATCH_H

#include <openssl/evp.h>

#include "keys/config.h"
#include "keys/keys.h"
#include "keys/keystate.h"
#include "dns/resolve.h"

struct dnswatch;

/*
 * A watcher with c's [dns] settings and state_dir (copied), and a key
 * registry of its own (keys.h), which it guards with a lock of its own.
 * The resolver is made here, so a bad [dns] resolver fails now:
 * DKIMSIGN_E_CONFIG with a sentence in why.  The thread starts with
 * dnswatch_start.
 */
int dnswatch_new(const struct config *c, struct dnswatch **ret, char *why, size_t whylen);
int dnswatch_start(struct dnswatch *w);

/* keyreg_attach on the watcher's registry: t becomes the generation the
 * watcher checks.  Safe while the thread runs. */
int dnswatch_attach(struct dnswatch *w, struct keytab *t, const struct config *c, const struct keystate *file);

/* This process leaves the lookups to another (a signer process other
 * than the first, procs.h): the watcher takes the states from the file
 * only, whatever [dns] watch says, now and after reloads.  Call before
 * dnswatch_start. */
void dnswatch_files_only(struct dnswatch *w);

/* After a reload: take c's [dns] settings (state_dir stays until a
 * restart) and check the keys now.  Thread-safe. */
void dnswatch_reconfigure(struct dnswatch *w, const struct config *c);

/* Stop the thread (after the lookup it is in, at most [dns] timeout) and
 * free.  Accepts NULL; returns NULL. */
struct dnswatch *dnswatch_free(struct dnswatch *w);

#endif
