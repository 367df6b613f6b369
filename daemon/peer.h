/* SPDX-License-Identifier: MIT */
/*
 * Who is on the other end of a connection, as the kernel says
 * (SO_PEERCRED, SO_PEERGROUPS): filled in at accept, read by the policy.
 * A plain struct: no I/O, nothing to free.
 */
#ifndef DAEMON_PEER_H
#define DAEMON_PEER_H

#include <stddef.h>
#include <sys/types.h>

#define PEER_GROUPS_MAX 64

struct peer {
        uid_t uid;
        gid_t gid;
        pid_t pid;
        size_t ngroups;
        gid_t groups[PEER_GROUPS_MAX];  /* supplementary groups, as many as fit */
};

#endif
