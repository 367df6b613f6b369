/* SPDX-License-Identifier: MIT */
/*
 * The metrics' text: a snapshot of figures (counters.h gathers them) in
 * the OpenMetrics 1.0.0 text format, or in Prometheus' text format 0.0.4
 * for node_exporter's textfile collector.  Names and units follow
 * Prometheus' conventions; docs/metrics.md lists every series.
 *
 * Pure: no I/O, no clock, no globals; the output goes into a bounded
 * buffer, and a text over its bound is an error, never a cut one.
 */
#ifndef DAEMON_METRICS_H
#define DAEMON_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/buf.h"

/* Algorithms, as the a= tag names them. */
enum metrics_alg { METRICS_RSA, METRICS_ED25519, METRICS_ALGS };

/* Why a SIGN request was not signed: the wire statuses, and quotas apart
 * (a quota refusal is BUSY on the wire). */
enum metrics_reason {
        METRICS_R_BAD_REQUEST,
        METRICS_R_VERSION,
        METRICS_R_TOO_LARGE,
        METRICS_R_REFUSED,
        METRICS_R_DENIED,
        METRICS_R_NO_KEY,
        METRICS_R_TOKEN,
        METRICS_R_BUSY,
        METRICS_R_INTERNAL,
        METRICS_R_QUOTA,
        METRICS_REASONS,
};

/* Request outcomes the request histogram tells apart. */
enum metrics_outcome { METRICS_SIGNED, METRICS_NOT_SIGNED, METRICS_OUTCOMES };

/* Bucket bounds in microseconds; the last bucket is +Inf. */
#define METRICS_BUCKETS 15
extern const uint64_t metrics_bucket_us[METRICS_BUCKETS - 1];

struct metrics_hist {
        uint64_t buckets[METRICS_BUCKETS];  /* counts per bucket, not cumulative */
        uint64_t sum_us;
};

/* The bucket a duration falls in. */
size_t metrics_bucket(uint64_t us);

struct metrics_domain {
        const char *name;         /* borrowed; "_other" for those past max_domains */
        uint64_t signatures[METRICS_ALGS];
};

struct metrics_key {
        const char *domain, *selector;      /* borrowed */
        enum metrics_alg alg;
        int state;                /* enum key_state */
        int dns;                  /* enum key_dns */
        /* Unix seconds, 0: not (yet) */
        int64_t created, active, retires, dns_checked;
};

#define METRICS_KEY_STATES 4      /* pending, published, active, retired */
#define METRICS_DNS_RESULTS 7     /* enum key_dns */

struct metrics_snapshot {
        /* counters */
        uint64_t messages_signed;
        uint64_t signatures[METRICS_ALGS];
        uint64_t refusals[METRICS_REASONS];
        uint64_t connections_total, connections_refused;
        uint64_t reloads, reload_failures;
        uint64_t token_faults, token_recoveries;
        struct metrics_hist request[METRICS_OUTCOMES];
        struct metrics_hist token_sign[METRICS_ALGS];
        /* gauges */
        uint64_t connections, queue_depth, sessions, sessions_busy, processes;
        int64_t start_time;
        size_t keys_by_state[METRICS_KEY_STATES];
        /* per domain and per key, when per_domain */
        bool per_domain;
        const struct metrics_domain *domains;
        size_t ndomains;
        const struct metrics_key *keys;
        size_t nkeys;
};

/*
 * Append s's text in format (enum msg_metrics_format) to out, whose
 * maximum bounds it: DKIMSIGN_E_TOO_LARGE when it does not fit (out is
 * then as it was), DKIMSIGN_E_NOMEM.
 */
int metrics_format(const struct metrics_snapshot *s, int format, struct buf *out);

const char *metrics_reason_name(enum metrics_reason r);

#endif
