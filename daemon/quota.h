/* SPDX-License-Identifier: MIT */
/*
 * Signing quotas: how many messages each peer uid, and each d= domain, may
 * get signed in a minute and in a day ([limits] uid_quota_per_minute ...,
 * [domain] quota_per_minute ...), so that a compromised MTA account
 * can't mass-sign unseen.  A message counts once, however many
 * signatures it gets.  The windows are the calendar minute and the UTC
 * day.
 *
 * The counters live in one shared mapping made before the signer
 * processes start, so every process counts against the same quota; a
 * robust process-shared mutex guards it (a process that dies holding it
 * leaves the table usable).  Fixed size: QUOTA_SLOTS counters, reused
 * once their day is over.
 */
#ifndef DAEMON_QUOTA_H
#define DAEMON_QUOTA_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define QUOTA_SLOTS 16384

struct quota_table;

struct quota_limits {
        uint64_t per_minute;     /* 0: no limit */
        uint64_t per_day;
};

/* What went over, for the refusal's sentence and the audit line. */
struct quota_refusal {
        const char *who;         /* "uid" or "domain" */
        const char *window;      /* "minute" or "day" */
        uint64_t limit;
};

/* A table in a shared anonymous mapping (inherited by fork). */
int quota_table_new(struct quota_table **ret);
/* Unmap it (in each process that is done with it).  Accepts NULL. */
struct quota_table *quota_table_free(struct quota_table *t);

/*
 * Count one message for uid (under uid_limits) and domain (under
 * domain_limits), at now (Unix seconds), when neither is over its quota;
 * else count nothing, say which in *ret and return DKIMSIGN_E_QUOTA.
 * A table with no free counter lets the message through (a counter can't
 * be made for it) and says so through *ret_full.
 */
int quota_take(struct quota_table *t, int64_t now, uid_t uid, const struct quota_limits *uid_limits,
               const char *domain, const struct quota_limits *domain_limits, struct quota_refusal *ret,
               int *ret_full);
/* Give back what quota_take counted (the message was not signed after all). */
void quota_give_back(struct quota_table *t, int64_t now, uid_t uid, const struct quota_limits *uid_limits,
                     const char *domain, const struct quota_limits *domain_limits);

#endif
