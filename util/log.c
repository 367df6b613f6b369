/* SPDX-License-Identifier: MIT */
/*
 * Logging to stderr with "<N>" priority prefixes (sd-daemon(3) convention).
 * One write per line, so concurrent threads never interleave a line.
 * See log.h.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dkimsign-build.h"
#include "util/log.h"

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

void log_set_prefix(bool on)
{
        log_prefix = on;
}

bool log_enabled(int priority)
{
        return priority <= log_max;
}

bool log_to_journal(void)
{
        return log_journal;
}

const char *log_identity(void)
{
        return log_ident;
}
