/* SPDX-License-Identifier: MIT */
/*
 * Log rate limits.  See ratelimit.h.
 */
#include "util/ratelimit.h"

bool ratelimit_allow(struct ratelimit *rl, uint64_t now_ms, unsigned long *ret_dropped)
{
        *ret_dropped = 0;
        if (rl->logged == 0 || now_ms - rl->start_ms >= rl->window_ms) {
                *ret_dropped = rl->dropped;
                rl->start_ms = now_ms;
                rl->logged = 0;
                rl->dropped = 0;
        }
        if (rl->logged < rl->burst) {
                rl->logged++;
                return true;
        }
        rl->dropped++;
        return false;
}
