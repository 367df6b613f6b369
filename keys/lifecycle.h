/* SPDX-License-Identifier: MIT */
/*
 * The key lifecycle as a pure step function: given every key of the
 * registry (its recorded times, its domain's publish_wait and retire_grace,
 * whether the token retired it) and what DNS showed of each record in this
 * cycle, move the keys along and say what happened, as events.  No I/O, no
 * threads, no logging, no clock but the `now` it is given: a key check
 * (keycheck.h) looks the records up, calls it and stores the new times
 * where the workers read them; dkimsignd's DNS watcher and dkimsignctl
 * refresh log the events.
 *
 *   pending   + a matching record          -> published (seen: now, or now + 1
 *                                             when there is a wait to count)
 *   published + record gone or changed     -> pending (the wait starts again)
 *   published + seen + wait has passed     -> active
 *   active    + a newer active key of its
 *               domain and algorithm for
 *               retire_grace, or retired
 *               on the token               -> retired
 *   active    + record gone                -> stays active (a DNS outage must
 *                                             not stop mail), with an event
 *   no answer (KEY_DNS_FAILED) or not looked up: nothing changes.
 *   a bogus answer (KEY_DNS_BOGUS) is no record: it never makes a key
 *   published, let alone active.
 */
#ifndef KEYS_LIFECYCLE_H
#define KEYS_LIFECYCLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keys/keystate.h"

/* What one lookup of a key's record showed. */
enum key_dns {
        KEY_DNS_UNCHECKED = 0,   /* not checked yet */
        KEY_DNS_MATCH,           /* a record with this key */
        KEY_DNS_MISSING,         /* no TXT record at the name */
        KEY_DNS_MISMATCH,        /* records, none with this key */
        KEY_DNS_REVOKED,         /* the record has an empty p= */
        KEY_DNS_BROKEN,          /* a record that is not a valid DKIM key record */
        KEY_DNS_FAILED,          /* no answer (timeout, SERVFAIL): nothing known */
        KEY_DNS_BOGUS,           /* an answer that failed DNSSEC validation: not believed, so a
                                  * pending key stays pending and a published one goes back */
};

/* A short phrase for what DNS showed: "no TXT record", ... */
const char *key_dns_phrase(enum key_dns d);

enum lifecycle_what {
        LC_PUBLISHED,            /* DNS shows the record; signs from `when` */
        LC_BACK_TO_PENDING,      /* a published key's record went: dns says what DNS shows */
        LC_ACTIVE_NOT_IN_DNS,    /* an active key's record is not there (it keeps signing) */
        LC_RECORD_BACK,          /* an active key's record is there again */
        LC_PENDING_SEES,         /* a pending key's record changed to dns */
        LC_ACTIVE,               /* the wait is over: it signs */
        LC_RETIRED_SUCCEEDED,    /* `successor` has been active for retire_grace */
        LC_RETIRED_ON_TOKEN,     /* dkimsignctl retired it on the token */
        LC_FROM_FILE,            /* (a check, not the step) the state file's `state` was taken */
};

struct lifecycle_event {
        size_t key;              /* index into the step's keys */
        enum lifecycle_what what;
        enum key_dns dns;        /* LC_BACK_TO_PENDING, LC_ACTIVE_NOT_IN_DNS, LC_PENDING_SEES */
        int64_t when;            /* LC_PUBLISHED: when it will sign; LC_ACTIVE, LC_RETIRED_*: since when */
        size_t successor;        /* LC_RETIRED_SUCCEEDED: index of the newer key */
        enum key_state state;    /* LC_FROM_FILE: the state taken */
};

/* At most this many events per key and step (clock, DNS, clock again),
 * and one more per key for a check that reads the state file first. */
#define LIFECYCLE_EVENTS_PER_KEY 3
#define LIFECYCLE_EVENTS_PER_CHECK (LIFECYCLE_EVENTS_PER_KEY + 1)

/*
 * One step at now.  keys[0..n) are sorted by domain (each key is weighed
 * against its own domain's only) and their t is updated in place;
 * before[i] is what the previous cycle saw of key i and seen[i] what this
 * one saw (KEY_DNS_UNCHECKED when it was not looked up).  events (room for
 * LIFECYCLE_EVENTS_PER_KEY * n) gets what happened, in order; *ret_nevents
 * their count.  Returns true when any key's recorded times changed.
 */
bool lifecycle_step(struct key_view *keys, size_t n, const enum key_dns *before, const enum key_dns *seen,
                    int64_t now, struct lifecycle_event *events, size_t *ret_nevents);

#endif
