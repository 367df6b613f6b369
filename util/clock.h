/* SPDX-License-Identifier: MIT */
/*
 * Clocks.  Timeouts and rate limits use the monotonic clock, which a change
 * of the date does not move; Unix seconds (time()) are for what is recorded
 * or sent (t=, key states).
 */
#ifndef UTIL_CLOCK_H
#define UTIL_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Milliseconds on CLOCK_MONOTONIC (since an arbitrary point). */
uint64_t now_ms(void);
/* Microseconds on CLOCK_MONOTONIC, for durations the metrics measure. */
uint64_t now_us(void);

/* The time ms milliseconds from now on clock, for the *timed* waits of
 * pthreads (which take an absolute time). */
struct timespec clock_deadline(clockid_t clock, unsigned ms);

#endif
