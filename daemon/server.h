/* SPDX-License-Identifier: MIT */
/*
 * The event loop: one epoll for the listening socket, every connection,
 * signals and finished jobs.  It frames requests, checks peer credentials
 * at accept, answers HELLO itself and hands SIGN to the worker pool; it
 * never waits for the token.
 */
#ifndef SERVER_H
#define SERVER_H

#include "config.h"
#include "workers.h"

struct server;

/* Listen on fd (already bound and listening).  The server owns fd. */
int server_new(const struct config *c, int listen_fd, struct workers *w, struct server **ret);
struct server *server_free(struct server *s);

/* Run until SIGTERM/SIGINT; then stop accepting, finish what is in flight,
 * flush the replies and return 0. */
int server_run(struct server *s);

/* Block SIGTERM, SIGINT and SIGHUP in this thread and every thread it
 * starts afterwards: the event loop takes them through a signalfd.  Call
 * before any thread is created. */
void server_block_signals(void);

/* Create, bind and listen on a Unix socket at path with mode and group
 * (NULL: keep the process's).  A stale socket at path is replaced; any
 * other file there is an error. */
int server_listen_unix(const char *path, mode_t mode, const char *group, int *ret_fd);

#endif
