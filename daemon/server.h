/* SPDX-License-Identifier: MIT */
/*
 * The event loop: one epoll for the listening socket, every connection,
 * signals and finished jobs.  It frames requests, checks peer credentials
 * at accept, answers HELLO itself and hands SIGN to the worker pool; it
 * never waits for the token.
 */
#ifndef DAEMON_SERVER_H
#define DAEMON_SERVER_H

#include <stdbool.h>

#include "keys/config.h"
#include "daemon/workers.h"

struct server;
struct balance;

/* Builds the next generation for a reload (SIGHUP, or a RELOAD request:
 * from_request): NULL with a sentence in why when the new configuration or
 * keys can't be loaded, and the old generation stays. */
typedef struct sign_ctx *(*server_reload_fn)(void *userdata, bool from_request, char *why, size_t whylen);

/* Listen on fd (already bound and listening).  The server owns fd and the
 * reference to ctx it is given. */
int server_new(struct sign_ctx *ctx, int listen_fd, struct workers *w, server_reload_fn reload,
               void *userdata, struct server **ret);
struct server *server_free(struct server *s);
/* One of several signer processes: take new connections in turn with the
 * others, by b (borrowed; balance.h), as process index.  b NULL: alone. */
void server_set_balance(struct server *s, struct balance *b, size_t index);

/* Run until SIGTERM/SIGINT; then stop accepting, finish what is in flight,
 * flush the replies and return 0. */
int server_run(struct server *s);

/* Block SIGTERM, SIGINT and SIGHUP in this thread and every thread it
 * starts afterwards: the event loop takes them through a signalfd.  Call
 * before any thread is created. */
void server_block_signals(void);

/* Create, bind and listen on a Unix socket at path with mode, owner and
 * group (NULL: keep the process's), never changing a file by its path: it
 * is made in a private directory and renamed into place.  A stale socket
 * at path is replaced; any other file there is an error, and so is a
 * directory that others than root, this user and daemon_user ([daemon]
 * user, or NULL) may write without the sticky bit. */
int server_listen_unix(const char *path, mode_t mode, const char *user, const char *group, const char *daemon_user,
                       int *ret_fd);

#endif
