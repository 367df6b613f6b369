/* SPDX-License-Identifier: MIT */
/*
 * A log line's rate limit: at most burst lines in each window, and how
 * many were left out, to be said with the first line of the next window.
 * A plain struct, no lock: one thread owns it, or its caller locks.
 */
#ifndef UTIL_RATELIMIT_H
#define UTIL_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct ratelimit {
        uint64_t window_ms;
        unsigned burst;
        /* state */
        uint64_t start_ms;
        unsigned logged;
        unsigned long dropped;
};

#define RATELIMIT_INIT(window, n) { .window_ms = (window), .burst = (n) }

/* Whether to log this event now (monotonic ms); *ret_dropped: how many
 * events the window before this one left out (say so once), else 0. */
bool ratelimit_allow(struct ratelimit *rl, uint64_t now_ms, unsigned long *ret_dropped);

#endif
