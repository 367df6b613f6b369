/* SPDX-License-Identifier: MIT */
/*
 * What each peer uid holds in the daemon: connections, requests read and
 * not yet answered, and buffered octets (its connections' buffers and
 * queued requests), so the event loop can hold one uid to its share
 * ([limits] *_per_uid) while the others go on.  The loop's thread only:
 * no lock.  An account exists while its uid holds anything.
 */
#ifndef DAEMON_ACCOUNTS_H
#define DAEMON_ACCOUNTS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct account {
        uid_t uid;
        size_t conns;
        size_t inflight;
        size_t buffered;
        /* A connection of this uid stopped being read for a limit: look
         * at its connections again when what it holds goes down. */
        bool held;
        bool resume;             /* being taken up again (server.c, resume_held) */
        void *first;             /* the event loop's list of its connections (server.c) */
        struct account *next;    /* hash chain */
};

struct accounts;

int accounts_new(struct accounts **ret);
/* Free every account (the loop is done). Accepts NULL. */
struct accounts *accounts_free(struct accounts *a);
/* uid's account, made when it has none; NULL when out of memory. */
struct account *accounts_get(struct accounts *a, uid_t uid);
/* Drop the account once it holds nothing (no connection: first is NULL). */
void accounts_release(struct accounts *a, struct account *acct);
/* Accounts that hold something. */
size_t accounts_count(const struct accounts *a);

#endif
