/* SPDX-License-Identifier: MIT */
/*
 * The signing queue, fair across peer uids: one FIFO queue per uid, and
 * the uids with work served in turn, one job each.  A uid that queues
 * thousands of requests delays another uid's request by at most one of
 * its own per turn, not by all of them.  A plain structure: the worker
 * pool's lock guards it.
 */
#ifndef DAEMON_FAIRQ_H
#define DAEMON_FAIRQ_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct job;
struct fairq;

int fairq_new(struct fairq **ret);
/* Free the structure; the jobs still queued are the caller's (take them
 * first with fairq_pop).  Accepts NULL. */
struct fairq *fairq_free(struct fairq *q);
/* Queue job (linked through job->next) for uid.  DKIMSIGN_E_NOMEM. */
int fairq_push(struct fairq *q, uid_t uid, struct job *job);
/* The next job: the oldest of the uid whose turn it is; NULL when empty. */
struct job *fairq_pop(struct fairq *q);
/* Take out every job for which drop(job, arg) is true, as a list linked
 * by next, oldest of each uid first. */
struct job *fairq_remove_if(struct fairq *q, bool (*drop)(const struct job *job, void *arg), void *arg);
size_t fairq_len(const struct fairq *q);

#endif
