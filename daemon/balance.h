/* SPDX-License-Identifier: MIT */
/*
 * Connections spread over the signer processes ([token] processes > 1).
 * They share one listening socket, and the kernel wakes every one of them
 * for a new connection: the first to run took them all, so eight clients
 * connecting at once landed eight and none, one process's sessions serving
 * all of them while the other's idled.  Each process now publishes how
 * many connections it holds in a shared mapping made before the fork, and
 * takes a new one only while it holds no more than the fewest.  Clients
 * keep their connections, so where a connection lands decides which
 * sessions it waits for.  Never blocks, never locks: counts are atomics,
 * and a stale count only makes a process wait a moment longer
 * (server.c retries after BALANCE_PAUSE_MS and then accepts anyway, so a
 * process that died or hangs can't stop the others).
 */
#ifndef DAEMON_BALANCE_H
#define DAEMON_BALANCE_H

#include <stdbool.h>
#include <stddef.h>

/* How long a process that holds more than the fewest leaves a new
 * connection to the others before it takes it itself. */
#define BALANCE_PAUSE_MS 20

struct balance;

/* A table for n processes in a shared anonymous mapping (inherited by
 * fork); every count 0.  n from 1 to 64. */
int balance_new(size_t n, struct balance **ret);
/* Unmap it (in each process that is done with it).  Accepts NULL. */
struct balance *balance_free(struct balance *b);

/* Process me now holds conns connections. */
void balance_set(struct balance *b, size_t me, size_t conns);
/* May process me take a new connection: it holds no more than any other. */
bool balance_may_accept(const struct balance *b, size_t me);

/* The rule itself, pure: conns[me] is at most every conns[i]. */
bool balance_fewest(const size_t *conns, size_t n, size_t me);

#endif
