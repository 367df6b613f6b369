/* SPDX-License-Identifier: MIT */
/*
 * The live figures behind the metrics (metrics.h), cheap on the signing
 * path: relaxed atomic adds, no lock.
 *
 * They live in one shared mapping made before the signer processes start
 * (procs.h), so whichever process answers a METRICS request sums every
 * process's figures.  Each process counts in a slot of its own (no cache
 * line shared between processes on the hot path); a process started
 * again in a dead one's place takes its slot, and its counts, over, so
 * counters never go back.  Signatures by domain are counted in one
 * table shared by all, bounded at [metrics] max_domains names (the rest
 * counted as "_other"), fixed at start.
 *
 * With several processes only the first looks keys up in DNS (procs.h):
 * it posts each key's last result on a board in the mapping, bounded at
 * [metrics] max_keys keys, where the others read it.
 */
#ifndef DAEMON_COUNTERS_H
#define DAEMON_COUNTERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/metrics.h"

#define COUNTERS_OTHER_DOMAIN "_other"

/* Fields counted by counters_add. */
enum counters_field {
        COUNTERS_CONNECTIONS,
        COUNTERS_CONNECTIONS_REFUSED,
        COUNTERS_RELOADS,
        COUNTERS_RELOAD_FAILURES,
        COUNTERS_TOKEN_FAULTS,
        COUNTERS_TOKEN_RECOVERIES,
        COUNTERS_FIELDS,
};

/* One process's handle on the shared mapping. */
struct counters;

/* The mapping, for nslots processes and max_domains domain names; the
 * handle writes to slot 0 until counters_select.  Before any fork. */
int counters_new(size_t nslots, size_t max_domains, size_t max_keys, struct counters **ret);
/* In a signer process: count in slot index from now on. */
void counters_select(struct counters *c, size_t index);
/* Accepts NULL; returns NULL. */
struct counters *counters_free(struct counters *c);

/* The hot path.  c may be NULL (counts nothing). */
void counters_add(struct counters *c, enum counters_field f, uint64_t n);
void counters_signed(struct counters *c, const char *domain, const enum metrics_alg *algs, size_t n);
void counters_refusal(struct counters *c, enum metrics_reason r);
void counters_request(struct counters *c, enum metrics_outcome o, uint64_t us);
void counters_token_sign(struct counters *c, enum metrics_alg a, uint64_t us);
/* This process's gauges, published for the others to sum. */
void counters_gauges(struct counters *c, uint64_t connections, uint64_t queue_depth, uint64_t sessions,
                     uint64_t sessions_busy);

/* The DNS watch's last result for the key labelled label (enum key_dns,
 * and when, Unix seconds): posted by the process that looks keys up, read
 * by the others.  A full board takes no more keys. */
void counters_dns_put(struct counters *c, const char *label, int dns, int64_t checked);
/* false when label was never posted. */
bool counters_dns_get(const struct counters *c, const char *label, int *ret_dns, int64_t *ret_checked);

/*
 * Every slot summed into *ret (its counters, histograms and gauges, and
 * processes: the slots in use), and the domain table into *ret_domains,
 * sorted by name (malloc'd: free() it; its names point into the mapping,
 * valid while c is).  Keys and per_domain are the caller's to fill.
 */
int counters_snapshot(const struct counters *c, struct metrics_snapshot *ret, struct metrics_domain **ret_domains,
                      size_t *ret_ndomains);

/* The reason a dkimsign_err result is counted under. */
enum metrics_reason counters_reason(int r);

#endif
