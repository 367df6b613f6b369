/* SPDX-License-Identifier: MIT */
/*
 * The audit record of dkimsignd: every signature and every refusal, one
 * line each.  Under journald the fields are structured (DKIMSIGN_OUTCOME=,
 * DKIMSIGN_PEER_UID=, ...), so `journalctl DKIMSIGN_DOMAIN=example.com`
 * finds them.  Never pass message content but the Message-ID.
 */
#ifndef DAEMON_AUDIT_H
#define DAEMON_AUDIT_H

struct audit {
        const char *outcome;    /* "signed" or "refused" */
        unsigned uid;
        int pid;
        const char *domain;
        const char *selector;   /* NULL for a refusal */
        const char *algorithm;  /* NULL for a refusal */
        const char *message_id;
        const char *error;      /* NULL when signed */
};

/* Log a; at a log level above info, nothing is formatted. */
void log_audit(const struct audit *a);

#endif
