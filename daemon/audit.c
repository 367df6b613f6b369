/* SPDX-License-Identifier: MIT */
/*
 * The audit record: one line per signature and per refusal, through the
 * logger (util/log.h); under journald with structured fields.  See audit.h.
 */
#include <stdio.h>
#include <time.h>

#include "daemon/audit.h"
#include "dkimsign-build.h"
#include "util/log.h"

#if HAVE_SYSTEMD
#include <systemd/sd-journal.h>
#endif

static void sanitize(char *s)
{
        for (; *s; s++)
                if ((unsigned char) *s < 0x20 || *s == 0x7f)
                        *s = '?';
}

void log_audit(const struct audit *a)
{
        char line[1024], when[32];
        struct timespec ts;
        struct tm tm;

        /* An info line like any other: at log_level warning, nothing to
         * format (it is on every signature's path). */
        if (!log_enabled(LOG_INFO))
                return;
        /* journald stamps its records itself; a plain log line needs its own. */
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        if (a->error)
                snprintf(line, sizeof(line), "audit: %s time=%s uid=%u pid=%d domain=%s message-id=%s error=\"%s\"",
                         a->outcome, when, a->uid, a->pid, a->domain ? a->domain : "-",
                         a->message_id ? a->message_id : "-", a->error);
        else
                snprintf(line, sizeof(line),
                         "audit: %s time=%s uid=%u pid=%d domain=%s selector=%s alg=%s message-id=%s",
                         a->outcome, when, a->uid, a->pid, a->domain ? a->domain : "-",
                         a->selector ? a->selector : "-", a->algorithm ? a->algorithm : "-",
                         a->message_id ? a->message_id : "-");
        sanitize(line);
#if HAVE_SYSTEMD
        if (log_to_journal()) {
                sd_journal_send("MESSAGE=%s", line, "PRIORITY=%d", LOG_INFO, "SYSLOG_IDENTIFIER=%s", log_identity(),
                                "DKIMSIGN_OUTCOME=%s", a->outcome, "DKIMSIGN_PEER_UID=%u", a->uid,
                                "DKIMSIGN_PEER_PID=%d", a->pid, "DKIMSIGN_DOMAIN=%s", a->domain ? a->domain : "",
                                "DKIMSIGN_SELECTOR=%s", a->selector ? a->selector : "",
                                "DKIMSIGN_ALGORITHM=%s", a->algorithm ? a->algorithm : "",
                                "DKIMSIGN_MESSAGE_ID=%s", a->message_id ? a->message_id : "",
                                "DKIMSIGN_ERROR=%s", a->error ? a->error : "", NULL);
                return;
        }
#endif
        log_msg(LOG_INFO, "%s", line);
}
