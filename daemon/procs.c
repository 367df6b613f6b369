/* SPDX-License-Identifier: MIT */
/*
 * The supervisor of the signer processes.  See procs.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dkimsign-build.h"
#include "protocol/dkimsign-errors.h"
#include "util/log.h"
#include "daemon/procs.h"
#include "util/clock.h"

#if HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#else
static inline int sd_notify(int unset, const char *state) { (void) unset; (void) state; return 0; }
static inline int sd_watchdog_enabled(int unset, uint64_t *usec) { (void) unset; (void) usec; return 0; }
#endif

#define PROCS_MAX 64
#define READY_TIMEOUT_MS 300000   /* a child lists every key of the token first */
#define QUICK_DEATH_MS 10000      /* a child dying sooner after its start is failing, not unlucky */
#define RESTARTS_MAX 5            /* quick deaths in a row before the supervisor gives up */

struct child {
        pid_t pid;                /* 0: not running */
        uint64_t started_ms;
        unsigned quick_deaths;
};

struct procs {
        size_t n;
        procs_child_fn fn;
        void *userdata;
        int sigfd;
        pid_t self;
        struct child kids[PROCS_MAX];
};

/* In the new child: become child i and never return. */
static void child_become(struct procs *p, size_t i, int ready_fd) __attribute__((noreturn));
static void child_become(struct procs *p, size_t i, int ready_fd)
{
        close(p->sigfd);
        /* A supervisor killed outright takes its children with it. */
        prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0);
        if (getppid() != p->self)
                _exit(1);
        /* Only the supervisor speaks to systemd (NotifyAccess=main). */
        unsetenv("NOTIFY_SOCKET");
        unsetenv("WATCHDOG_USEC");
        unsetenv("WATCHDOG_PID");
        exit(p->fn(i, ready_fd, p->userdata) == 0 ? 0 : 1);
}

/* Wait for the child's ready byte; false when it exited or took too long. */
static bool ready_wait(int fd)
{
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        char byte;
        int r;

        do
                r = poll(&pfd, 1, READY_TIMEOUT_MS);
        while (r < 0 && errno == EINTR);
        if (r <= 0)
                return false;
        while ((r = (int) read(fd, &byte, 1)) < 0 && errno == EINTR)
                ;
        return r == 1;
}

/* Forget child pid (it exited); its index, or p->n when it is not ours. */
static size_t forget(struct procs *p, pid_t pid)
{
        for (size_t i = 0; i < p->n; i++)
                if (p->kids[i].pid == pid) {
                        p->kids[i].pid = 0;
                        return i;
                }
        return p->n;
}

/* Wait for child pid to exit (blocking) and forget it. */
static void reap(struct procs *p, pid_t pid)
{
        int status;

        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        forget(p, pid);
}

/* Start child i and wait until it serves. */
static int child_start(struct procs *p, size_t i)
{
        int fds[2];
        pid_t pid;

        if (pipe2(fds, O_CLOEXEC) < 0) {
                log_err("signer process %zu: pipe: %s", i, strerror(errno));
                return DKIMSIGN_E_SYSTEM;
        }
        pid = fork();
        if (pid < 0) {
                log_err("signer process %zu: fork: %s", i, strerror(errno));
                close(fds[0]);
                close(fds[1]);
                return DKIMSIGN_E_SYSTEM;
        }
        if (pid == 0) {
                close(fds[0]);
                child_become(p, i, fds[1]);
        }
        close(fds[1]);
        p->kids[i] = (struct child) { .pid = pid, .started_ms = now_ms(), .quick_deaths = p->kids[i].quick_deaths };
        if (ready_wait(fds[0])) {
                close(fds[0]);
                log_info("signer process %zu (pid %d) serves", i, (int) pid);
                return 0;
        }
        close(fds[0]);
        log_err("signer process %zu (pid %d) did not start (see its messages above)", i, (int) pid);
        kill(pid, SIGKILL);
        reap(p, pid);
        return DKIMSIGN_E_SYSTEM;
}

static void signal_all(struct procs *p, int sig, pid_t except)
{
        for (size_t i = 0; i < p->n; i++)
                if (p->kids[i].pid > 0 && p->kids[i].pid != except)
                        kill(p->kids[i].pid, sig);
}

static size_t alive(const struct procs *p)
{
        size_t k = 0;

        for (size_t i = 0; i < p->n; i++)
                k += p->kids[i].pid > 0;
        return k;
}

static void describe_exit(int status, char *buf, size_t size)
{
        if (WIFSIGNALED(status))
                snprintf(buf, size, "was killed by signal %d", WTERMSIG(status));
        else
                snprintf(buf, size, "exited with %d", WEXITSTATUS(status));
}

/* A child died while it should be serving: start it again, unless it keeps
 * dying at once (then the whole daemon fails, and systemd restarts it). */
static int child_replace(struct procs *p, size_t i, int status)
{
        struct child *k = &p->kids[i];
        char how[64];

        describe_exit(status, how, sizeof(how));
        k->quick_deaths = now_ms() - k->started_ms < QUICK_DEATH_MS ? k->quick_deaths + 1 : 0;
        for (;;) {
                if (k->quick_deaths >= RESTARTS_MAX) {
                        log_err("signer process %zu %s, %u times in a row soon after starting; giving up", i, how,
                                k->quick_deaths);
                        return DKIMSIGN_E_SYSTEM;
                }
                log_err("signer process %zu %s; starting it again", i, how);
                /* After a quick death, a pause: whatever killed it may pass. */
                if (k->quick_deaths)
                        sleep(1);
                if (child_start(p, i) == 0)
                        return 0;
                k->quick_deaths++;
                snprintf(how, sizeof(how), "did not start");
        }
}

/* Every child that exited since the last look. */
static int reap_exited(struct procs *p)
{
        int status, r = 0;
        pid_t pid;

        while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
                size_t i = forget(p, pid);

                if (i < p->n && r == 0)
                        r = child_replace(p, i, status);
        }
        return r;
}

/* SIGTERM to every child, then wait for all: each finishes what is in
 * flight first. */
static int stop_all(struct procs *p, const char *why)
{
        int status, worst = 0;

        sd_notify(0, "STOPPING=1");
        log_info("%s: stopping %zu signer process(es)", why, alive(p));
        signal_all(p, SIGTERM, 0);
        while (alive(p) > 0) {
                pid_t pid = waitpid(-1, &status, 0);

                if (pid < 0 && errno == EINTR)
                        continue;
                if (pid < 0)
                        break;
                if (forget(p, pid) < p->n && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
                        worst = DKIMSIGN_E_SYSTEM;
        }
        return worst;
}

static int supervise(struct procs *p)
{
        uint64_t watchdog_usec = 0, last_ping = now_ms();
        struct signalfd_siginfo si;
        int r;

        if (sd_watchdog_enabled(0, &watchdog_usec) <= 0)
                watchdog_usec = 0;
        sd_notify(0, "READY=1");
        for (;;) {
                struct pollfd pfd = { .fd = p->sigfd, .events = POLLIN };
                int timeout = watchdog_usec ? (int) (watchdog_usec / 2000) : -1;

                r = poll(&pfd, 1, timeout);
                if (watchdog_usec && now_ms() - last_ping >= watchdog_usec / 2000 && alive(p) == p->n) {
                        sd_notify(0, "WATCHDOG=1");
                        last_ping = now_ms();
                }
                if (r < 0 && errno != EINTR) {
                        log_err("poll: %s", strerror(errno));
                        stop_all(p, "the supervisor failed");
                        return DKIMSIGN_E_SYSTEM;
                }
                if (r <= 0 || read(p->sigfd, &si, sizeof(si)) != (ssize_t) sizeof(si))
                        continue;
                switch (si.ssi_signo) {
                case SIGTERM:
                case SIGINT:
                        return stop_all(p, si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
                case SIGHUP:
                        log_info("SIGHUP: reloading every signer process");
                        signal_all(p, SIGHUP, 0);
                        break;
                case SIGUSR1:
                        /* A child reloaded on request: the others follow. */
                        signal_all(p, SIGHUP, (pid_t) si.ssi_pid);
                        break;
                case SIGCHLD:
                        if (reap_exited(p) < 0) {
                                stop_all(p, "a signer process keeps failing");
                                return DKIMSIGN_E_SYSTEM;
                        }
                        break;
                default:
                        break;
                }
        }
}

int procs_run(size_t n, procs_child_fn fn, void *userdata)
{
        struct procs p = { .n = n, .fn = fn, .userdata = userdata, .self = getpid() };
        sigset_t mask;
        int r = 0;

        if (n == 0 || n > PROCS_MAX)
                return DKIMSIGN_E_INTERNAL;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGCHLD);
        sigaddset(&mask, SIGUSR1);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        p.sigfd = signalfd(-1, &mask, SFD_CLOEXEC);
        if (p.sigfd < 0) {
                log_err("signalfd: %s", strerror(errno));
                return DKIMSIGN_E_SYSTEM;
        }
        for (size_t i = 0; i < n && r == 0; i++)
                r = child_start(&p, i);
        if (r == 0) {
                log_info("%zu signer processes serve", n);
                r = supervise(&p);
        } else {
                stop_all(&p, "start-up failed");
        }
        close(p.sigfd);
        return r;
}

void procs_reload_others(void)
{
        kill(getppid(), SIGUSR1);
}
