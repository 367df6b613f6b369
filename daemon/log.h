/* SPDX-License-Identifier: MIT */
/*
 * Logging for the executables (libraries never log).  Lines go to stderr
 * with a syslog priority prefix ("<3>"), which journald understands when the
 * daemon runs under systemd, and which reads fine on a terminal.
 * Never pass a PIN or message content to these functions.
 */
#ifndef LOG_H
#define LOG_H

#include <syslog.h>

void log_init(const char *ident, int max_priority);
void log_msg(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One audit record: every signature and every refusal.  Under journald
 * the fields are structured (DKIMSIGN_OUTCOME=, DKIMSIGN_PEER_UID=, ...),
 * so `journalctl DKIMSIGN_DOMAIN=example.com` finds them. */
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
void log_audit(const struct audit *a);

#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
