/* SPDX-License-Identifier: MIT */
/*
 * One check of every key's record and state, in the caller's thread: look
 * the records up (pending and published keys first, then active ones,
 * which are only watched for a missing record), then, under the state
 * directory's lock, take what dkimsignctl wrote in the state file, move the
 * keys along (lifecycle_step), store the new times in the keys' atomics and
 * write the file back if anything changed.  Lookups happen outside the
 * lock, so nobody waits on the network for the file.
 *
 * dkimsignd's DNS watcher runs it from its thread every [dns]
 * check_interval; `dkimsignctl refresh` runs it once.  It never logs: what
 * happened comes back in a report, as events and counts, for the caller to
 * log or print (keys_event_sentence).
 */
#ifndef KEYS_KEYCHECK_H
#define KEYS_KEYCHECK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <openssl/evp.h>

#include "keys/keys.h"
#include "keys/lifecycle.h"
#include "dns/resolve.h"

/* Lookups in a row that got no answer before a check gives up. */
#define KEYCHECK_FAILURES_MAX 3

struct keycheck_report {
        struct keyreg_entry **keys;      /* borrowed: the check's keys, sorted by domain (events index them) */
        struct lifecycle_event *events;  /* owned */
        size_t nevents;
        size_t answered, failed;         /* lookups that got an answer, and that did not */
        size_t bogus;                    /* answers (among answered) that failed DNSSEC validation */
        size_t skipped;                  /* keys not looked up after KEYCHECK_FAILURES_MAX failures in a row */
        unsigned failures_in_row;
        int file_result;                 /* 0, or the state file's problem: */
        char file_error[768];            /* ... in a sentence */
};

/*
 * One check of keys[0..n) (sorted in place by domain; the report borrows
 * the array).  res NULL: no lookups, the state file says what DNS shows
 * (someone else looks up: [dns] watch = timer).  stop (may be NULL) is read
 * between lookups: once set, the lookups end and the check goes on with
 * what it has.  0 with *ret filled (free with keycheck_report_clear), or
 * DKIMSIGN_E_NOMEM.
 */
int keycheck_run(struct keyreg_entry **keys, size_t n, struct dns_resolver *res, const char *state_dir,
                 const atomic_bool *stop, struct keycheck_report *ret);

void keycheck_report_clear(struct keycheck_report *r);

/* One event of a report as a sentence ("key s._domainkey.d is active: ...");
 * *ret_warning (may be NULL) says whether it deserves a warning. */
void keycheck_event_sentence(const struct keycheck_report *r, const struct lifecycle_event *ev, char *buf,
                             size_t size, bool *ret_warning);

/* What DNS shows at label (a key's <selector>._domainkey.<domain>) for the
 * public key pub: a record with it, none, others, a revoked one, only
 * unreadable ones, a bogus answer, or no answer; dns_resolver_last_security
 * then says what validation said. */
enum key_dns keycheck_lookup(struct dns_resolver *res, const char *label, EVP_PKEY *pub);

#endif
