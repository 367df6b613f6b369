/* SPDX-License-Identifier: MIT */
/*
 * Signer processes ([token] processes = N > 1).  SoftHSM signs through
 * OpenSSL 3, whose decoders take process-wide locks: threads of one
 * process contend (Ed25519: about 7,900 signatures/s from two threads,
 * 13,000/s from two processes on two cores).  So dkimsignd can run N
 * copies of its signer, each a process with its own token module instance,
 * login, sessions and event loop, all accepting on the one listening
 * socket; the first process stays a small supervisor.
 *
 * The supervisor starts the children one after another (a login rewrites
 * SoftHSM's token file, and a process opening the token at that moment may
 * not find it), tells systemd it is ready once all are, forwards SIGHUP
 * and SIGTERM, pings the watchdog while all live, and starts a child that
 * died again.  A child that asks (SIGUSR1, after a RELOAD request it
 * answered) has the others reloaded too.
 */
#ifndef DAEMON_PROCS_H
#define DAEMON_PROCS_H

#include <stddef.h>

/* A child's life: set up, write one byte to ready_fd once it serves (then
 * close it), serve until SIGTERM; its return value is the exit status. */
typedef int (*procs_child_fn)(size_t index, int ready_fd, void *userdata);

/*
 * Run n children of child() and supervise them until SIGTERM or SIGINT
 * (blocked in the caller, see server_block_signals; SIGCHLD and SIGUSR1
 * are blocked here).  Returns 0 after a clean stop, DKIMSIGN_E_SYSTEM when
 * a child could not be started (at start-up, or RESTARTS_MAX times in a
 * row later).  The caller must have no other threads.
 */
int procs_run(size_t n, procs_child_fn child, void *userdata);

/* In a child: ask the supervisor to reload the other children. */
void procs_reload_others(void);

#endif
