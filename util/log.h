/* SPDX-License-Identifier: MIT */
/*
 * Logging for the executables (libraries never log).  Lines go to stderr
 * with a syslog priority prefix ("<3>"), which journald understands when the
 * daemon runs under systemd, and which reads fine on a terminal; or, where
 * journald is not there and nothing reads stderr, to syslog: the same line,
 * as a datagram to /dev/log (facility daemon, with the pid).
 * Never pass a PIN or message content to these functions.
 */
#ifndef UTIL_LOG_H
#define UTIL_LOG_H

#include <stdbool.h>
#include <syslog.h>

/* Where lines go (dkimsignd.conf [daemon] log). */
enum log_target {
        LOG_TARGET_AUTO,     /* journald's stream if stderr is it; syslog when
                                journald is not running and stderr goes nowhere
                                (closed, /dev/null); else stderr */
        LOG_TARGET_JOURNAL,  /* stderr with priority prefixes, read by journald */
        LOG_TARGET_SYSLOG,
        LOG_TARGET_STDERR,
};

#define LOG_SYSLOG_SOCKET "/dev/log"

void log_init(const char *ident, int max_priority);
/* Choose the target (log_init starts with AUTO); syslog_socket: the
 * syslog daemon's socket, NULL for /dev/log (tests give their own). */
void log_set_target(enum log_target target, const char *syslog_socket);
void log_msg(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Whether lines start with the "<N>" priority (log_init: when stderr is
 * not a terminal).  Off for a program whose parent logs its stderr line by
 * line with a priority of its own (an OpenSMTPD filter). */
void log_set_prefix(bool on);

/* Whether a line of this priority is written: callers with costly
 * formatting ask first. */
bool log_enabled(int priority);
/* Whether stderr is journald's stream (structured records may be sent). */
bool log_to_journal(void);
/* The identifier given to log_init. */
const char *log_identity(void);

#define log_err(...) log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
