/* SPDX-License-Identifier: MIT */
/*
 * Logging to stderr with "<N>" priority prefixes (sd-daemon(3) convention),
 * or to syslog.  One write per line, so concurrent threads never interleave
 * a line.  See log.h.
 *
 * Syslog is spoken here (RFC 3164 over a Unix datagram socket, as glibc's
 * syslog(3) does) rather than through syslog(3), whose socket is fixed at
 * /dev/log: a test gives a socket of its own, and a chroot its path.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "dkimsign-build.h"
#include "util/log.h"

static const char *log_ident = "dkimsignd";
static int log_max = LOG_INFO;
static int log_prefix = 1;
static int log_journal;
static enum log_target log_target = LOG_TARGET_AUTO;
static bool log_syslog;          /* the target chosen is syslog */
static char log_socket[sizeof(((struct sockaddr_un *) 0)->sun_path)] = LOG_SYSLOG_SOCKET;
/* The syslog socket, connected at the first line and again after a failed
 * send (syslogd restarted); the lock orders the threads' reconnects. */
static pthread_mutex_t syslog_lock = PTHREAD_MUTEX_INITIALIZER;
static int syslog_fd = -1;

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

/* Nothing reads stderr: it is closed, or /dev/null (a daemon started by
 * an init without journald). */
static bool stderr_goes_nowhere(void)
{
        struct stat st, null;

        if (fcntl(STDERR_FILENO, F_GETFD) < 0)
                return true;
        return fstat(STDERR_FILENO, &st) == 0 && S_ISCHR(st.st_mode) && stat("/dev/null", &null) == 0 &&
               st.st_rdev == null.st_rdev;
}

static bool journald_running(void)
{
        return access("/run/systemd/journal/socket", F_OK) == 0;
}

static void choose(void)
{
        bool journal = HAVE_SYSTEMD && stderr_is_journal();

        switch (log_target) {
        case LOG_TARGET_SYSLOG:
                log_syslog = true;
                break;
        case LOG_TARGET_JOURNAL:
        case LOG_TARGET_STDERR:
                log_syslog = false;
                break;
        default:
                log_syslog = !journal && !journald_running() && stderr_goes_nowhere();
                break;
        }
        log_journal = !log_syslog && journal && log_target != LOG_TARGET_STDERR;
        /* On a terminal the bare "<6>" prefix is noise; journald wants it. */
        log_prefix = log_target == LOG_TARGET_JOURNAL || !isatty(STDERR_FILENO);
}

void log_init(const char *ident, int max_priority)
{
        log_ident = ident;
        log_max = max_priority;
        choose();
}

void log_set_target(enum log_target target, const char *syslog_socket)
{
        pthread_mutex_lock(&syslog_lock);
        log_target = target;
        snprintf(log_socket, sizeof(log_socket), "%s", syslog_socket ? syslog_socket : LOG_SYSLOG_SOCKET);
        if (syslog_fd >= 0)
                close(syslog_fd);
        syslog_fd = -1;
        choose();
        pthread_mutex_unlock(&syslog_lock);
}

static int syslog_connect(void)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

        memcpy(sa.sun_path, log_socket, strlen(log_socket) + 1);
        if (fd >= 0 && connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                close(fd);
                fd = -1;
        }
        return fd;
}

/* One RFC 3164 datagram: "<PRI>Mmm dd hh:mm:ss ident[pid]: text", facility
 * daemon.  Lost when no syslog daemon listens, as with syslog(3), and when
 * its queue is full: a syslog daemon that stalls must not stall signing. */
static void syslog_line(int priority, const char *text, size_t len)
{
        char msg[2200], stamp[32];
        time_t now = time(NULL);
        struct tm tm;
        int n;

        localtime_r(&now, &tm);
        strftime(stamp, sizeof(stamp), "%b %e %H:%M:%S", &tm);
        n = snprintf(msg, sizeof(msg), "<%d>%s %s[%ld]: %.*s", LOG_DAEMON | priority, stamp, log_ident,
                     (long) getpid(), (int) len, text);
        if (n < 0)
                return;
        if ((size_t) n >= sizeof(msg))
                n = (int) sizeof(msg) - 1;
        pthread_mutex_lock(&syslog_lock);
        for (int tries = 0; tries < 2; tries++) {
                if (syslog_fd < 0)
                        syslog_fd = syslog_connect();
                if (syslog_fd >= 0 && send(syslog_fd, msg, (size_t) n, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0)
                        break;
                if (syslog_fd >= 0 && errno == EAGAIN)
                        break;
                if (syslog_fd >= 0)
                        close(syslog_fd);
                syslog_fd = -1;
        }
        pthread_mutex_unlock(&syslog_lock);
}

void log_msg(int priority, const char *fmt, ...)
{
        char line[2048];
        size_t n = 0;
        va_list ap;
        int k;

        if (priority > log_max)
                return;
        if (log_syslog)
                k = 0;   /* syslog_line puts its own header */
        else if (log_prefix)
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
        if (log_syslog) {
                syslog_line(priority, line, n);
                return;
        }
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
