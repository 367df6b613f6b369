/* SPDX-License-Identifier: MIT */
/*
 * Logging to stderr with "<N>" priority prefixes (sd-daemon(3) convention).
 * One write per line, so concurrent threads never interleave a line.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dkimsign-build.h"
#include "log.h"

#if HAVE_SYSTEMD
#include <systemd/sd-journal.h>
#endif

static const char *log_ident = "dkimsignd";
static int log_max = LOG_INFO;
static int log_prefix = 1;
static int log_journal;

/* stderr is journald's stream when JOURNAL_STREAM names its device:inode. */
static int stderr_is_journal(void)
{
        const char *js = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) < 0)
                return 0;
        return (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

void log_init(const char *ident, int max_priority)
{
        log_ident = ident;
        log_max = max_priority;
        /* On a terminal the bare "<6>" prefix is noise; journald wants it. */
        log_prefix = !isatty(STDERR_FILENO);
        log_journal = HAVE_SYSTEMD && stderr_is_journal();
}

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
        if (LOG_INFO > log_max)
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
        if (log_journal) {
                sd_journal_send("MESSAGE=%s", line, "PRIORITY=%d", LOG_INFO, "SYSLOG_IDENTIFIER=%s", log_ident,
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

void log_msg(int priority, const char *fmt, ...)
{
        char line[2048];
        size_t n = 0;
        va_list ap;
        int k;

        if (priority > log_max)
                return;
        if (log_prefix)
                k = snprintf(line, sizeof(line), "<%d>%s: ", priority, log_ident);
        else
                k = snprintf(line, sizeof(line), "%s: ", log_ident);
        if (k > 0)
                n = (size_t) k < sizeof(line) ? (size_t) k : sizeof(line) - 1;
        va_start(ap, fmt);
        k = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
        va_end(ap);
        if (k > 0)
                n += (size_t) k < sizeof(line) - n ? (size_t) k : sizeof(line) - n - 1;
        /* Control characters from a peer's input never reach the log raw. */
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) line[i] < 0x20 || line[i] == 0x7f)
                        line[i] = '?';
        if (n < sizeof(line))
                line[n++] = '\n';
        else
                line[sizeof(line) - 1] = '\n';
        if (write(STDERR_FILENO, line, n) < 0) {
                /* Nowhere left to report it. */
        }
}
