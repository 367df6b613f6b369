/* SPDX-License-Identifier: MIT */
/*
 * Event loop and connections.  See server.h.
 *
 * Each connection has a bounded input buffer (one frame at most) and a
 * bounded output buffer.  A connection stops being read while it has too
 * many requests in flight or too many replies unsent: back-pressure instead
 * of unbounded memory.  A connection that dies with jobs in flight is kept
 * (without its fd) until they come back, so a job never points at freed
 * memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "dkimsign-build.h"
#include "protocol/dkimsign-errors.h"
#include "protocol/frame.h"
#include "util/log.h"
#include "util/clock.h"
#include "util/fileperm.h"
#include "protocol/msg.h"
#include "util/ratelimit.h"
#include "daemon/accounts.h"
#include "daemon/metricsreq.h"
#include "daemon/policy.h"
#include "daemon/balance.h"
#include "daemon/server.h"

#if HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#else
static inline int sd_notify(int unset, const char *state) { (void) unset; (void) state; return 0; }
#define sd_notifyf(unset, ...) ((void) (unset), 0)
#endif

#define READ_CHUNK 65536
#define OUT_HIGH_WATER (256 * 1024)
#define OUT_MAX (8 * 1024 * 1024)
#define TICK_MS 1000
#define RESUME_ACCEPT_MAX 256   /* connections taken at once after a balance pause */
#define DRAIN_MAX_MS 30000
#define TRIM_AFTER_FREES 64
/* Before HELLO only a HELLO makes sense: a few dozen octets. */
#define HELLO_FRAME_MAX 1024
/* Log lines about refused or closed peers: at most this many a minute for
 * each reason, then one line with how many were left out. */
#define REFUSAL_LOG_BURST 20
#define REFUSAL_LOG_WINDOW_MS 60000

/* epoll data tags for the non-connection fds. */
static char tag_listen, tag_signal, tag_done;

struct conn {
        struct conn *prev, *next;
        struct conn *uid_prev, *uid_next;   /* acct's connections (acct->first) */
        int fd;                     /* -1 once closed */
        struct peer peer;
        struct account *acct;       /* its uid's share (accounts.h) */
        size_t held;                /* octets counted in acct->buffered and the server's */
        size_t queued_bytes;        /* payloads of its requests in flight */
        uint64_t stalled_since;     /* ms unsent output last made no progress; 0: none */
        struct buf in, out;
        uint32_t events;            /* registered epoll events */
        size_t inflight;
        uint64_t last_active;       /* ms */
        uint64_t frame_started;     /* ms a partial frame began, 0 if none */
        bool hello_done;
        uint16_t version;           /* the protocol version HELLO chose */
        bool closing;               /* close once out is flushed */
};

/* Live figures, kept by the loop's thread only. */
struct stats {
        uint64_t signed_msgs;
        uint64_t by_status[WIRE_INTERNAL + 1];  /* refusals and failures, by wire status */
        uint64_t connections;
        uint64_t reloads, reload_failures;
        uint64_t refused_connections, closed_timeout, closed_stalled, closed_bad_frame;
        uint64_t refused_quota;
        time_t started;
};

/* What the refusal and close log lines are limited by, one per reason. */
enum refusal {
        REFUSAL_CONNECTIONS,    /* max_connections, max_connections_per_uid, stopping */
        REFUSAL_FRAME,          /* oversize or malformed frame */
        REFUSAL_READ_TIMEOUT,
        REFUSAL_WRITE_TIMEOUT,
        REFUSAL_ADMIN,          /* STATUS or RELOAD from a peer that may not */
        REFUSAL_METRICS,        /* METRICS from a peer that may not */
        REFUSAL_MAX,
};

struct server {
        const struct config *c;       /* ctx->config */
        struct sign_ctx *ctx;         /* the current generation */
        server_reload_fn reload;
        void *reload_userdata;
        struct stats stats;
        uint64_t watchdog_usec;       /* 0: no watchdog */
        uint64_t last_watchdog;       /* ms */
        struct workers *w;
        int epfd, listen_fd, sig_fd;
        struct balance *balance;     /* NULL: the only signer process (balance.h) */
        size_t balance_index;
        bool listen_paused;          /* left to a process with fewer connections */
        uint64_t listen_paused_ms;
        struct conn *conns;
        size_t nconns;
        struct accounts *accounts;
        size_t buffered;              /* octets held for every peer (c->held summed) */
        bool held_global;             /* reading stopped for max_buffered: look again when it drops */
        /* A held uid (or the server) went back under its share: its
         * connections are taken up again at the end of this turn of the
         * loop (resume_held), never from inside the code that changed
         * the counts, which may hold connection pointers. */
        bool resume_due;
        /* Connections done with, freed at the end of this turn of the
         * loop (free_retired): an event or a pointer of this turn may
         * still name one, and must find it closed (fd -1), not freed. */
        struct conn *retired;
        struct ratelimit refusal_log[REFUSAL_MAX];
        bool stopping;
        uint64_t stop_started;
        size_t freed_since_trim;    /* connections freed since the last malloc_trim */
        uint8_t scratch[READ_CHUNK];
};

static int epoll_set(struct server *s, int op, int fd, uint32_t events, void *ptr)
{
        struct epoll_event ev = { .events = events, .data.ptr = ptr };

        return epoll_ctl(s->epfd, op, fd, &ev) < 0 ? DKIMSIGN_E_SYSTEM : 0;
}

/* A log line about a refused or closed peer, within its reason's rate. */
static void log_refusal(struct server *s, enum refusal why, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void log_refusal(struct server *s, enum refusal why, const char *fmt, ...)
{
        static const char *const names[REFUSAL_MAX] = {
                [REFUSAL_CONNECTIONS] = "refused connections", [REFUSAL_FRAME] = "bad frames",
                [REFUSAL_READ_TIMEOUT] = "read timeouts", [REFUSAL_WRITE_TIMEOUT] = "write timeouts",
                [REFUSAL_ADMIN] = "refused admin requests", [REFUSAL_METRICS] = "refused metrics requests",
        };
        unsigned long dropped;
        char line[256];
        va_list ap;

        if (!ratelimit_allow(&s->refusal_log[why], now_ms(), &dropped)) {
                return;
        }
        if (dropped)
                log_warn("%lu more %s were not logged", dropped, names[why]);
        va_start(ap, fmt);
        vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        log_warn("%s", line);
}

static bool account_under_share(const struct server *s, const struct account *acct)
{
        const struct config_limits *l = &s->c->limits;

        return acct->inflight < l->max_inflight_per_uid && acct->buffered < l->max_buffered_per_uid;
}

/* Bring c's count in its account and the server's to what it holds now:
 * its buffers (allocated octets) and its queued requests.  Counts only:
 * what went back under a share is taken up by resume_held. */
static void conn_charge(struct server *s, struct conn *c)
{
        struct account *acct = c->acct;
        size_t now = c->in.size + c->out.size + c->queued_bytes;

        acct->buffered = acct->buffered - c->held + now;
        s->buffered = s->buffered - c->held + now;
        c->held = now;
        if ((acct->held && account_under_share(s, acct)) ||
            (s->held_global && s->buffered < s->c->limits.max_buffered))
                s->resume_due = true;
}

/* Out of every list and every count, its buffers freed; the struct itself
 * waits in s->retired for the end of the loop's turn (free_retired). */
static void conn_retire(struct server *s, struct conn *c)
{
        struct account *acct = c->acct;

        if (c->prev)
                c->prev->next = c->next;
        else
                s->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        if (c->uid_prev)
                c->uid_prev->uid_next = c->uid_next;
        else
                acct->first = c->uid_next;
        if (c->uid_next)
                c->uid_next->uid_prev = c->uid_prev;
        buf_deinit(&c->in);
        buf_deinit(&c->out);
        c->queued_bytes = 0;
        conn_charge(s, c);
        acct->conns--;
        /* Its account may go now: a retired connection is never looked at again. */
        accounts_release(s->accounts, acct);
        c->acct = NULL;
        c->next = s->retired;
        c->prev = NULL;
        s->retired = c;
        s->nconns--;
}

static void free_retired(struct server *s)
{
        while (s->retired) {
                struct conn *c = s->retired;

                s->retired = c->next;
                free(c);
                s->freed_since_trim++;
        }
}

/* Close the socket now; the struct lives on while jobs are in flight. */
static void conn_close(struct server *s, struct conn *c)
{
        if (c->fd >= 0) {
                epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->fd = -1;
        }
        if (c->inflight == 0 && c->acct)
                conn_retire(s, c);
}

static size_t out_pending(const struct conn *c)
{
        return buf_remaining(&c->out);
}

/* Whether c's uid (and every peer together) may take more from it now;
 * when not, the account (or the server) is marked to look again once what
 * it holds goes down. */
static bool conn_within_shares(struct server *s, struct conn *c)
{
        const struct config_limits *l = &s->c->limits;

        if (!account_under_share(s, c->acct)) {
                c->acct->held = true;
                return false;
        }
        /* All peers together are over: only a uid that holds less than one
         * request's worth goes on, so a few heavy uids can't stop the rest. */
        if (s->buffered >= l->max_buffered && c->acct->buffered >= l->max_frame + 65536) {
                s->held_global = true;
                return false;
        }
        return true;
}

static void conn_update_events(struct server *s, struct conn *c)
{
        /* Hang-ups are heard even while the connection is not read (an
         * empty mask would not report them). */
        uint32_t ev = EPOLLRDHUP;
        size_t max_inflight = s->c->limits.max_inflight;

        if (c->fd < 0)
                return;
        if (!c->closing && !s->stopping && c->inflight < max_inflight &&
            out_pending(c) < OUT_HIGH_WATER && c->in.len < c->in.max && conn_within_shares(s, c))
                ev |= EPOLLIN;
        if (out_pending(c))
                ev |= EPOLLOUT;
        /* A frame's read_timeout runs only while the daemon reads it: read
         * again, its clock starts anew. */
        if ((ev & EPOLLIN) && !(c->events & EPOLLIN) && c->frame_started)
                c->frame_started = now_ms();
        if (ev != c->events) {
                epoll_set(s, EPOLL_CTL_MOD, c->fd, ev, c);
                c->events = ev;
        }
}

/* Write what can be written; 0, or DKIMSIGN_E_CLOSED when the peer is
 * gone.  Output left waiting starts the clock the write timeout reads. */
static int conn_flush(struct conn *c)
{
        while (out_pending(c)) {
                ssize_t n = send(c->fd, buf_ptr(&c->out), out_pending(c), MSG_NOSIGNAL | MSG_DONTWAIT);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                        break;
                if (n <= 0)
                        return DKIMSIGN_E_CLOSED;
                buf_consume(&c->out, (size_t) n);
        }
        /* The clock runs from when output began to wait until all of it
         * is gone: reading a trickle does not keep a backlog alive. */
        if (!out_pending(c))
                c->stalled_since = 0;
        else if (!c->stalled_since)
                c->stalled_since = now_ms();
        buf_release_if_empty(&c->out);
        buf_compact(&c->out);
        return 0;
}

/* Reply with an error and close the connection once it is sent. */
static void conn_fail(struct conn *c, uint32_t id, int r, const char *why)
{
        msg_error_encode_code(&c->out, id, r, why);
        c->closing = true;
}

static void handle_hello(struct server *s, struct conn *c, struct frame *f)
{
        struct msg_hello h;
        struct msg_hello_ok ok = { .max_frame = (uint32_t) s->c->limits.max_frame,
                                   .name = "dkimsignd " DKIMSIGN_VERSION };
        int r;

        ok.name_len = strlen(ok.name);
        r = msg_hello_decode(&f->payload, &h);
        if (r < 0)
                { conn_fail(c, f->id, r, "malformed HELLO"); return; }
        r = msg_negotiate_version(h.min_version, h.max_version, &ok.version);
        if (r < 0) {
                char why[128];

                snprintf(why, sizeof(why), "this daemon speaks protocol versions %d to %d; the client %u to %u",
                         PROTO_VERSION_MIN, PROTO_VERSION_MAX, h.min_version, h.max_version);
                { conn_fail(c, f->id, r, why); return; }
        }
        c->hello_done = true;
        c->version = ok.version;
        if (msg_hello_ok_encode(&c->out, f->id, &ok) < 0)
                c->closing = true;
}

static void handle_sign(struct server *s, struct conn *c, struct frame *f)
{
        struct job *j;
        int r;

        if (!c->hello_done)
                { conn_fail(c, f->id, DKIMSIGN_E_PROTOCOL, "HELLO must come first"); return; }
        /* Checked before it is copied: a request the worker would refuse
         * for its size or form never takes memory in the queue. */
        if (f->type == MSG_SEAL && c->version < PROTO_VERSION_SEAL) {
                /* A SEAL on a version 1 connection is a type that version
                 * does not have: the connection goes on (docs/protocol.md). */
                msg_error_encode_code(&c->out, f->id, DKIMSIGN_E_PROTOCOL, "SEAL needs protocol version 2");
                return;
        }
        {
                struct msg_sign m;
                struct msg_seal sm;
                struct buf view = f->payload;

                r = f->type == MSG_SEAL ? msg_seal_decode(&view, s->c->limits.max_header_block, &sm)
                                        : msg_sign_decode(&view, s->c->limits.max_header_block, &m);
                if (r < 0) {
                        s->stats.by_status[wire_status_from_err(r)]++;
                        counters_refusal(s->ctx->counters, counters_reason(r));
                        msg_error_encode_code(&c->out, f->id, r, r == DKIMSIGN_E_TOO_LARGE
                                              ? "the header block is over max_header_block"
                                              : f->type == MSG_SEAL ? "malformed SEAL request"
                                                                    : "malformed SIGN request");
                        return;
                }
        }
        j = calloc(1, sizeof(*j));
        if (j) {
                j->len = buf_remaining(&f->payload);
                j->payload = malloc(j->len ? j->len : 1);
        }
        if (!j || !j->payload) {
                job_free(j);
                msg_error_encode_code(&c->out, f->id, DKIMSIGN_E_BUSY, "the daemon is out of memory; try again later");
                return;
        }
        memcpy(j->payload, buf_ptr(&f->payload), j->len);
        j->conn = c;
        j->ctx = sign_ctx_ref(s->ctx);
        j->id = f->id;
        j->type = f->type;
        j->peer = c->peer;
        j->charged = j->len;
        j->queued_us = now_us();
        buf_init(&j->reply, OUT_MAX);
        r = workers_submit(s->w, j);
        if (r < 0) {
                job_free(j);
                s->stats.by_status[WIRE_BUSY]++;
                counters_refusal(s->ctx->counters, METRICS_R_BUSY);
                msg_error_encode_code(&c->out, f->id, r, "the signing queue is full; try again later");
                return;
        }
        c->inflight++;
        c->acct->inflight++;
        c->queued_bytes += j->charged;
        conn_charge(s, c);
}

/* STATUS and RELOAD are for the administrator: root or the daemon's own user. */
static bool peer_is_admin(const struct peer *p)
{
        return p->uid == 0 || p->uid == geteuid();
}

static const char *const status_names[] = {
        [WIRE_BAD_REQUEST] = "bad_request", [WIRE_VERSION] = "version", [WIRE_TOO_LARGE] = "too_large",
        [WIRE_REFUSED] = "refused", [WIRE_DENIED] = "denied", [WIRE_NO_KEY] = "no_key",
        [WIRE_TOKEN] = "token", [WIRE_BUSY] = "busy", [WIRE_INTERNAL] = "internal",
};

/*
 * This process's CPU time and the part of it spent inside the token's
 * signing calls, so that scripts/bench can tell the daemon's own cost per
 * signature from the token's.  With [token] processes > 1 each signer
 * process answers for itself: pid= says which.  Appended at n; returns
 * the new length.
 */
static size_t status_cpu(struct server *s, char *text, size_t size, size_t n)
{
        struct rusage ru;
        uint64_t calls = 0, token_ns = 0, cpu_us = 0;
        int k;

        if (getrusage(RUSAGE_SELF, &ru) == 0)
                cpu_us = (uint64_t) ru.ru_utime.tv_sec * 1000000u + (uint64_t) ru.ru_utime.tv_usec +
                         (uint64_t) ru.ru_stime.tv_sec * 1000000u + (uint64_t) ru.ru_stime.tv_usec;
        workers_token_cpu(s->w, &calls, &token_ns);
        if (n >= size)
                return n;
        k = snprintf(text + n, size - n, "pid=%ld\ncpu_us=%llu\ntoken_sign_calls=%llu\ntoken_sign_cpu_us=%llu\n",
                     (long) getpid(), (unsigned long long) cpu_us, (unsigned long long) calls,
                     (unsigned long long) (token_ns / 1000));
        if (k > 0)
                n += (size_t) k < size - n ? (size_t) k : size - n - 1;
        return n;
}

static void handle_status(struct server *s, struct conn *c, struct frame *f)
{
        char text[2048];
        size_t n = 0;
        int k;

        k = snprintf(text, sizeof(text),
                     "version=%s\nuptime_seconds=%lld\nkeys=%zu\nsessions=%zu\nconnections=%zu\n"
                     "connections_total=%llu\nqueue_depth=%zu\nrequests_signed=%llu\nreloads=%llu\n"
                     "reload_failures=%llu\npeers=%zu\nbuffered_octets=%zu\nconnections_refused=%llu\n"
                     "closed_read_timeout=%llu\nclosed_write_timeout=%llu\nclosed_bad_frame=%llu\nrefused_quota=%llu\n",
                     DKIMSIGN_VERSION, (long long) (time(NULL) - s->stats.started), s->ctx->keys->count,
                     workers_sessions(s->w), s->nconns, (unsigned long long) s->stats.connections,
                     workers_pending(s->w), (unsigned long long) s->stats.signed_msgs,
                     (unsigned long long) s->stats.reloads, (unsigned long long) s->stats.reload_failures,
                     accounts_count(s->accounts), s->buffered,
                     (unsigned long long) s->stats.refused_connections, (unsigned long long) s->stats.closed_timeout,
                     (unsigned long long) s->stats.closed_stalled, (unsigned long long) s->stats.closed_bad_frame,
                     (unsigned long long) s->stats.refused_quota);
        if (k > 0)
                n = (size_t) k < sizeof(text) ? (size_t) k : sizeof(text) - 1;
        for (size_t i = 1; i <= WIRE_INTERNAL && n < sizeof(text); i++) {
                k = snprintf(text + n, sizeof(text) - n, "errors_%s=%llu\n", status_names[i],
                             (unsigned long long) s->stats.by_status[i]);
                if (k > 0)
                        n += (size_t) k < sizeof(text) - n ? (size_t) k : sizeof(text) - n - 1;
        }
        n = status_cpu(s, text, sizeof(text), n);
        msg_text_encode(&c->out, MSG_STATUS_OK, f->id, text, n);
}

/* Swap in a new generation; requests in flight finish with the old one. */
static int do_reload(struct server *s, const char *why_started, bool from_request, char *why, size_t whylen)
{
        struct sign_ctx *next;

        sd_notify(0, "RELOADING=1");
        log_info("%s: reloading the configuration and keys", why_started);
        next = s->reload(s->reload_userdata, from_request, why, whylen);
        if (!next) {
                s->stats.reload_failures++;
                counters_add(s->ctx->counters, COUNTERS_RELOAD_FAILURES, 1);
                log_err("reload refused, the running configuration stays: %s", why);
                sd_notify(0, "READY=1\nSTATUS=reload failed; running the previous configuration");
                return DKIMSIGN_E_CONFIG;
        }
        sign_ctx_unref(s->ctx);
        s->ctx = next;
        s->c = next->config;
        s->stats.reloads++;
        counters_add(s->ctx->counters, COUNTERS_RELOADS, 1);
        snprintf(why, whylen, "reloaded: %zu signing key(s)", next->keys->count);
        log_info("%s", why);
        sd_notifyf(0, "READY=1\nSTATUS=signing with %zu key(s)", next->keys->count);
        return 0;
}

static void handle_reload(struct server *s, struct conn *c, struct frame *f)
{
        char why[512] = "";
        int r = do_reload(s, "RELOAD request", true, why, sizeof(why));

        if (r == 0)
                msg_text_encode(&c->out, MSG_RELOADED, f->id, why, strlen(why));
        else
                msg_error_encode_code(&c->out, f->id, r, why);
}

/* This process's gauges, for whichever process answers METRICS. */
static void publish_gauges(struct server *s)
{
        counters_gauges(s->ctx->counters, s->nconns, workers_pending(s->w), workers_sessions(s->w),
                        workers_busy(s->w));
}

/* METRICS: a permission of its own (pol_metrics_allowed), and version 2. */
static void handle_metrics(struct server *s, struct conn *c, struct frame *f)
{
        struct buf text;
        uint8_t format;
        int r;

        if (!c->hello_done) {
                conn_fail(c, f->id, DKIMSIGN_E_PROTOCOL, "HELLO must come first");
                return;
        }
        if (c->version < PROTO_VERSION_METRICS) {
                msg_error_encode_code(&c->out, f->id, DKIMSIGN_E_PROTOCOL, "METRICS needs protocol version 2");
                return;
        }
        if (msg_metrics_decode(&f->payload, &format) < 0) {
                msg_error_encode_code(&c->out, f->id, DKIMSIGN_E_FORMAT, "malformed METRICS request");
                return;
        }
        if (!pol_metrics_allowed(s->c, &c->peer, geteuid())) {
                log_refusal(s, REFUSAL_METRICS, "audit: refused metrics request from uid=%u pid=%d",
                            (unsigned) c->peer.uid, (int) c->peer.pid);
                msg_error_encode_code(&c->out, f->id, DKIMSIGN_E_DENIED,
                                      "only root, the daemon's own user and [metrics] allow may read the metrics");
                return;
        }
        publish_gauges(s);
        buf_init(&text, MSG_METRICS_MAX);
        r = metricsreq_answer(s->ctx, s->ctx->counters, format, (int64_t) time(NULL), &text);
        if (r == 0)
                r = msg_metrics_ok_encode(&c->out, f->id, (const char *) buf_ptr(&text), buf_remaining(&text));
        if (r < 0) {
                log_warn("metrics request: %s", dkimsign_strerror(r));
                msg_error_encode_code(&c->out, f->id, r, r == DKIMSIGN_E_TOO_LARGE
                                      ? "the metrics are over 4 MiB; lower [metrics] max_domains or max_keys"
                                      : NULL);
        }
        buf_deinit(&text);
}

static void handle_admin(struct server *s, struct conn *c, struct frame *f)
{
        if (!c->hello_done) {
                conn_fail(c, f->id, DKIMSIGN_E_PROTOCOL, "HELLO must come first");
                return;
        }
        if (msg_empty_decode(&f->payload) < 0) {
                msg_error_encode_code(&c->out, f->id, DKIMSIGN_E_FORMAT, "STATUS and RELOAD take no payload");
                return;
        }
        if (!peer_is_admin(&c->peer)) {
                log_refusal(s, REFUSAL_ADMIN, "audit: refused admin request from uid=%u pid=%d",
                            (unsigned) c->peer.uid, (int) c->peer.pid);
                msg_error_encode_code(&c->out, f->id, DKIMSIGN_E_DENIED,
                                      "only root or the daemon's own user may ask for status or reload");
                return;
        }
        if (f->type == MSG_STATUS)
                handle_status(s, c, f);
        else
                handle_reload(s, c, f);
}

/* Handle every complete frame in c->in, as far as limits allow. */
static void conn_process(struct server *s, struct conn *c)
{
        while (!c->closing && c->inflight < s->c->limits.max_inflight && out_pending(c) < OUT_HIGH_WATER &&
               c->acct->inflight < s->c->limits.max_inflight_per_uid) {
                struct frame f;
                size_t total;
                size_t max = c->hello_done ? s->c->limits.max_frame : HELLO_FRAME_MAX;
                int r = frame_peek(buf_ptr(&c->in), buf_remaining(&c->in), max, &total);

                if (r == DKIMSIGN_E_INCOMPLETE || (r == 0 && buf_remaining(&c->in) < total)) {
                        if (buf_remaining(&c->in) && !c->frame_started)
                                c->frame_started = now_ms();
                        break;
                }
                if (r < 0) {
                        s->stats.closed_bad_frame++;
                        log_refusal(s, REFUSAL_FRAME, "peer uid=%u pid=%d: %s frame%s; closing",
                                    (unsigned) c->peer.uid, (int) c->peer.pid,
                                    r == DKIMSIGN_E_TOO_LARGE ? "oversize" : "malformed",
                                    c->hello_done ? "" : " before HELLO");
                        conn_fail(c, 0, r, r == DKIMSIGN_E_TOO_LARGE
                                  ? (c->hello_done ? "frame larger than the daemon accepts"
                                                   : "frame larger than a HELLO before HELLO")
                                  : "malformed frame");
                        break;
                }
                c->frame_started = 0;
                r = frame_decode(buf_ptr(&c->in), total, &f);
                if (r < 0) {
                        conn_fail(c, 0, r, "malformed frame");
                        break;
                }
                switch (f.type) {
                case MSG_HELLO:
                        handle_hello(s, c, &f);
                        break;
                case MSG_SIGN:
                case MSG_SEAL:
                        handle_sign(s, c, &f);
                        break;
                case MSG_STATUS:
                case MSG_RELOAD:
                        handle_admin(s, c, &f);
                        break;
                case MSG_METRICS:
                        handle_metrics(s, c, &f);
                        break;
                default: {
                        char why[64];

                        /* Framing is intact, so the connection can go on. */
                        snprintf(why, sizeof(why), "unknown message type %u", f.type);
                        msg_error_encode_code(&c->out, f.id, DKIMSIGN_E_PROTOCOL, why);
                        break;
                }
                }
                buf_consume(&c->in, total);
        }
        buf_release_if_empty(&c->in);
        buf_compact(&c->in);
}

/* Returns false when the connection was closed (and maybe freed). */
static bool conn_readable(struct server *s, struct conn *c)
{
        size_t room = c->in.max - c->in.len;
        size_t want = room < READ_CHUNK ? room : READ_CHUNK;
        ssize_t n;

        if (want == 0 || !conn_within_shares(s, c))
                return true;
        /* Read into the shared scratch buffer and keep only what arrived:
         * a connection's own buffer is as small as its pending bytes. */
        do
                n = read(c->fd, s->scratch, want);
        while (n < 0 && errno == EINTR);
        if (n > 0 && buf_put(&c->in, s->scratch, (size_t) n) < 0) {
                conn_close(s, c);  /* out of memory: drop this peer, serve the others */
                return false;
        }
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
                /* The peer is gone (or half-closed): replies can't be read. */
                conn_close(s, c);
                return false;
        }
        c->last_active = now_ms();
        conn_process(s, c);
        conn_charge(s, c);
        return true;
}

static void conn_after_io(struct server *s, struct conn *c)
{
        if (c->fd < 0)
                return;
        if (conn_flush(c) < 0 || (c->closing && !out_pending(c))) {
                conn_close(s, c);
                return;
        }
        conn_charge(s, c);
        conn_update_events(s, c);
}

/* At the end of the loop's turn: the connections of every uid back under
 * its share (and, when all peers together are back under max_buffered,
 * every connection) get their buffered frames taken and are read again.
 * Closing one here only retires it (free_retired frees it later), so the
 * walk's next pointer stays valid. */
static void resume_held(struct server *s)
{
        bool global;

        if (!s->resume_due)
                return;
        s->resume_due = false;
        global = s->held_global && s->buffered < s->c->limits.max_buffered;
        if (global)
                s->held_global = false;
        /* First the accounts to resume, then their connections: an
         * account's flag is cleared once, not by its first connection. */
        for (struct conn *c = s->conns; c; c = c->next)
                if (c->acct && c->acct->held && account_under_share(s, c->acct)) {
                        c->acct->held = false;
                        c->acct->resume = true;
                }
        for (struct conn *c = s->conns, *next; c; c = next) {
                next = c->next;
                if (c->fd < 0 || !(c->acct->resume || global))
                        continue;
                conn_process(s, c);
                conn_after_io(s, c);
        }
        for (struct conn *c = s->conns; c; c = c->next)
                if (c->acct)
                        c->acct->resume = false;
}

/* The peer's supplementary groups, for group-based authorization.  A peer
 * in more groups than fit is judged on its uid and primary group only. */
static void peer_groups(int fd, struct peer *p)
{
        socklen_t len = sizeof(p->groups);

        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, p->groups, &len) == 0)
                p->ngroups = len / sizeof(gid_t);
        else
                p->ngroups = 0;
}

/* Whether this process takes the next connection now: alone, or holding
 * no more than any other signer process.  Else it stops watching the
 * listening socket for BALANCE_PAUSE_MS (resume_listen), so as not to
 * spin on a socket that stays readable until another process accepts. */
static bool listen_turn(struct server *s)
{
        if (!s->balance || balance_may_accept(s->balance, s->balance_index))
                return true;
        if (epoll_set(s, EPOLL_CTL_MOD, s->listen_fd, 0, &tag_listen) < 0)
                return true;
        s->listen_paused = true;
        s->listen_paused_ms = now_ms();
        return false;
}

/* Accept what the backlog holds: refusals all at once, one connection
 * to keep (see the end of the loop).  forced: whatever the others hold.
 * Returns whether it kept one. */
static bool accept_one(struct server *s, bool forced)
{
        if (!forced && !listen_turn(s))
                return false;
        for (;;) {
                struct ucred cred;
                socklen_t len = sizeof(cred);
                struct account *acct;
                const char *why;
                struct conn *c;
                int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

                if (fd < 0) {
                        if (errno == EINTR || errno == ECONNABORTED)
                                continue;
                        if (errno != EAGAIN && errno != EWOULDBLOCK)
                                log_warn("accept: %s", strerror(errno));
                        return false;
                }
                if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
                        log_warn("SO_PEERCRED: %s; connection refused", strerror(errno));
                        close(fd);
                        continue;
                }
                acct = accounts_get(s->accounts, cred.uid);
                why = s->stopping ? "the daemon is stopping"
                      : !acct ? "the daemon is out of memory"
                      : s->nconns >= s->c->limits.max_connections ? "too many connections (max_connections)"
                      : acct->conns >= s->c->limits.max_connections_per_uid
                      ? "too many connections from this uid (max_connections_per_uid)" : NULL;
                if (why) {
                        /* One best-effort error frame, then close. */
                        struct buf b;

                        buf_init(&b, 1024);
                        msg_error_encode_code(&b, 0, DKIMSIGN_E_BUSY, why);
                        if (send(fd, b.data, b.len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
                                /* Nothing more to do for it. */
                        }
                        buf_deinit(&b);
                        close(fd);
                        s->stats.refused_connections++;
                        counters_add(s->ctx->counters, COUNTERS_CONNECTIONS_REFUSED, 1);
                        log_refusal(s, REFUSAL_CONNECTIONS, "connection from uid=%u pid=%d refused: %s",
                                    (unsigned) cred.uid, (int) cred.pid, why);
                        accounts_release(s->accounts, acct);
                        continue;
                }
                c = calloc(1, sizeof(*c));
                if (!c) {
                        close(fd);
                        accounts_release(s->accounts, acct);
                        continue;
                }
                c->acct = acct;
                c->fd = fd;
                c->peer = (struct peer) { .uid = cred.uid, .gid = cred.gid, .pid = cred.pid };
                peer_groups(fd, &c->peer);
                buf_init(&c->in, s->c->limits.max_frame + FRAME_LEN_SIZE);
                buf_init(&c->out, OUT_MAX);
                c->last_active = now_ms();
                c->events = EPOLLIN | EPOLLRDHUP;
                if (epoll_set(s, EPOLL_CTL_ADD, fd, c->events, c) < 0) {
                        close(fd);
                        free(c);
                        accounts_release(s->accounts, acct);
                        continue;
                }
                c->next = s->conns;
                if (s->conns)
                        s->conns->prev = c;
                s->conns = c;
                c->uid_next = acct->first;
                if (acct->first)
                        ((struct conn *) acct->first)->uid_prev = c;
                acct->first = c;
                acct->conns++;
                s->nconns++;
                s->stats.connections++;
                counters_add(s->ctx->counters, COUNTERS_CONNECTIONS, 1);
                /* One connection a turn of the loop.  With [token]
                 * processes > 1 every signer process is woken for the
                 * shared listening socket, and the first to run used to
                 * take the whole backlog: 8 clients connecting at once
                 * landed 8 and 0, one process's 2 sessions serving all of
                 * them while the other's idled (scripts/bench: p99 3 to
                 * 6 x p50).  Back in epoll_wait, each takes the next in
                 * turn; a busy process, slower to come back, takes fewer. */
                return true;
        }
}

/* A finished request in the metrics: its outcome, its time, a token fault. */
static void count_done(struct server *s, const struct job *j)
{
        struct counters *k = s->ctx->counters;
        uint64_t us = now_us() - j->queued_us;

        if (j->result == 0) {
                counters_request(k, METRICS_SIGNED, us);
                return;
        }
        counters_request(k, METRICS_NOT_SIGNED, us);
        counters_refusal(k, counters_reason(j->result));
        if (wire_status_from_err(j->result) == WIRE_TOKEN)
                counters_add(k, COUNTERS_TOKEN_FAULTS, 1);
}

static void deliver_done(struct server *s)
{
        struct job *j = workers_take_done(s->w);

        while (j) {
                struct job *next = j->next;
                struct conn *c = j->conn;

                /* Its request was answered when its token call hung; c
                 * may be gone by now. */
                if (j->abandoned) {
                        job_free(j);
                        j = next;
                        continue;
                }
                c->inflight--;
                c->acct->inflight--;
                c->queued_bytes -= j->charged;
                if (j->result == 0)
                        s->stats.signed_msgs++;
                else
                        s->stats.by_status[wire_status_from_err(j->result)]++;
                if (j->result == DKIMSIGN_E_QUOTA)
                        s->stats.refused_quota++;
                count_done(s, j);
                if (c->fd >= 0) {
                        if (buf_put(&c->out, buf_ptr(&j->reply), buf_remaining(&j->reply)) < 0)
                                c->closing = true;  /* a reader that never reads */
                        conn_process(s, c);      /* frames held back by the in-flight limit */
                        conn_after_io(s, c);     /* charges c: its uid's other connections may go on */
                } else if (c->inflight == 0) {
                        conn_retire(s, c);
                } else {
                        conn_charge(s, c);
                }
                job_free(j);
                j = next;
        }
}

/* A started frame's read_timeout runs while the daemon reads it, and also
 * while its uid has nothing in flight: then no answer will take the uid's
 * connections up again, and a uid whose started frames alone fill its
 * share (max_buffered_per_uid) would wait for idle_timeout, unable to
 * sign on any connection meanwhile. */
static bool frame_clock_runs(const struct conn *c)
{
        return (c->events & EPOLLIN) || c->acct->inflight == 0;
}

static void sweep_timeouts(struct server *s)
{
        uint64_t now = now_ms();
        struct conn *c = s->conns;

        while (c) {
                struct conn *next = c->next;

                if (c->fd >= 0 && c->frame_started && frame_clock_runs(c) &&
                    now - c->frame_started > s->c->limits.read_timeout_ms) {
                        s->stats.closed_timeout++;
                        log_refusal(s, REFUSAL_READ_TIMEOUT, "peer uid=%u pid=%d: frame not completed within "
                                    "read_timeout; closing", (unsigned) c->peer.uid, (int) c->peer.pid);
                        conn_close(s, c);
                } else if (c->fd >= 0 && c->stalled_since && now - c->stalled_since > s->c->limits.write_timeout_ms) {
                        s->stats.closed_stalled++;
                        log_refusal(s, REFUSAL_WRITE_TIMEOUT, "peer uid=%u pid=%d: replies not read within "
                                    "write_timeout; closing", (unsigned) c->peer.uid, (int) c->peer.pid);
                        conn_close(s, c);
                } else if (c->fd >= 0 && c->inflight == 0 && !out_pending(c) &&
                           (s->stopping || now - c->last_active > s->c->limits.idle_timeout_ms)) {
                        conn_close(s, c);
                }
                c = next;
        }
        /* After a burst of connections, hand the freed heap back to the
         * system, so memory returns to where it was. */
        if (s->freed_since_trim >= TRIM_AFTER_FREES) {
                malloc_trim(0);
                s->freed_since_trim = 0;
        }
}

static void begin_stop(struct server *s, const char *why)
{
        if (s->stopping)
                return;
        log_info("%s: finishing requests in flight, then exiting", why);
        sd_notify(0, "STOPPING=1");
        s->stopping = true;
        s->stop_started = now_ms();
        epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->listen_fd, NULL);
        close(s->listen_fd);
        s->listen_fd = -1;
}

static void handle_signal(struct server *s)
{
        struct signalfd_siginfo si;

        while (read(s->sig_fd, &si, sizeof(si)) == sizeof(si)) {
                if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
                        begin_stop(s, si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
                else if (si.ssi_signo == SIGHUP && !s->stopping) {
                        char why[512] = "";

                        do_reload(s, "SIGHUP", false, why, sizeof(why));
                }
        }
}

static void signal_set(sigset_t *mask)
{
        sigemptyset(mask);
        sigaddset(mask, SIGTERM);
        sigaddset(mask, SIGINT);
        sigaddset(mask, SIGHUP);
}

void server_block_signals(void)
{
        sigset_t mask;

        signal_set(&mask);
        pthread_sigmask(SIG_BLOCK, &mask, NULL);
}

void server_set_balance(struct server *s, struct balance *b, size_t index)
{
        s->balance = b;
        s->balance_index = index;
        balance_set(b, index, s->nconns);
}

/* After a pause: watch the socket again, and take what the other
 * processes left waiting (gone, hung, or a restarted one still loading
 * its keys: they did not take it), all of it, up to a bound that keeps
 * the loop turning; else one connection a pause would pass while a
 * sibling restarts. */
static void resume_listen(struct server *s)
{
        s->listen_paused = false;
        if (s->listen_fd < 0 || s->stopping)
                return;
        if (epoll_set(s, EPOLL_CTL_MOD, s->listen_fd, EPOLLIN, &tag_listen) == 0)
                for (int i = 0; i < RESUME_ACCEPT_MAX && accept_one(s, true); i++) {
                }
}

int server_new(struct sign_ctx *ctx, int listen_fd, struct workers *w, server_reload_fn reload,
               void *userdata, struct server **ret)
{
        struct server *s = calloc(1, sizeof(*s));
        sigset_t mask;

        if (!s) {
                close(listen_fd);
                sign_ctx_unref(ctx);
                return DKIMSIGN_E_NOMEM;
        }
        s->ctx = ctx;
        s->c = ctx->config;
        s->reload = reload;
        s->reload_userdata = userdata;
        s->stats.started = time(NULL);
        s->w = w;
        for (size_t i = 0; i < REFUSAL_MAX; i++)
                s->refusal_log[i] = (struct ratelimit) RATELIMIT_INIT(REFUSAL_LOG_WINDOW_MS, REFUSAL_LOG_BURST);
        s->listen_fd = listen_fd;
        signal_set(&mask);
        server_block_signals();
        s->sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
        s->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (s->sig_fd < 0 || s->epfd < 0 || accounts_new(&s->accounts) < 0 ||
            epoll_set(s, EPOLL_CTL_ADD, listen_fd, EPOLLIN, &tag_listen) < 0 ||
            epoll_set(s, EPOLL_CTL_ADD, s->sig_fd, EPOLLIN, &tag_signal) < 0 ||
            epoll_set(s, EPOLL_CTL_ADD, workers_done_fd(w), EPOLLIN, &tag_done) < 0) {
                server_free(s);
                return DKIMSIGN_E_SYSTEM;
        }
        *ret = s;
        return 0;
}

struct server *server_free(struct server *s)
{
        if (!s)
                return NULL;
        while (s->conns) {
                struct conn *c = s->conns;

                if (c->fd >= 0)
                        close(c->fd);
                c->fd = -1;
                conn_retire(s, c);
        }
        free_retired(s);
        if (s->listen_fd >= 0)
                close(s->listen_fd);
        if (s->sig_fd >= 0)
                close(s->sig_fd);
        if (s->epfd >= 0)
                close(s->epfd);
        accounts_free(s->accounts);
        sign_ctx_unref(s->ctx);
        free(s);
        return NULL;
}

static int tick_ms(const struct server *s)
{
        uint64_t half = s->watchdog_usec / 2000;

        return s->watchdog_usec && half < TICK_MS ? (int) (half ? half : 1) : TICK_MS;
}

int server_run(struct server *s)
{
        struct epoll_event events[64];
        uint64_t last_sweep = now_ms();

        sd_notifyf(0, "READY=1\nSTATUS=signing with %zu key(s)", s->ctx->keys->count);
#if HAVE_SYSTEMD
        if (sd_watchdog_enabled(0, &s->watchdog_usec) <= 0)
                s->watchdog_usec = 0;
#endif
        for (;;) {
                int n = epoll_wait(s->epfd, events, 64, s->listen_paused ? BALANCE_PAUSE_MS : tick_ms(s));

                if (n < 0 && errno != EINTR) {
                        log_err("epoll_wait: %s", strerror(errno));
                        return DKIMSIGN_E_SYSTEM;
                }
                for (int i = 0; i < n; i++) {
                        void *p = events[i].data.ptr;
                        struct conn *c;

                        if (p == &tag_listen) {
                                accept_one(s, false);
                                continue;
                        }
                        if (p == &tag_signal) {
                                handle_signal(s);
                                continue;
                        }
                        if (p == &tag_done) {
                                deliver_done(s);
                                continue;
                        }
                        c = p;
                        if (c->fd < 0)
                                continue;
                        if (events[i].events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP) && !(events[i].events & EPOLLIN)) {
                                conn_close(s, c);
                                continue;
                        }
                        if ((events[i].events & EPOLLIN) && !conn_readable(s, c))
                                continue;
                        conn_after_io(s, c);
                }
                balance_set(s->balance, s->balance_index, s->nconns);
                if (s->listen_paused && now_ms() - s->listen_paused_ms >= BALANCE_PAUSE_MS)
                        resume_listen(s);
                /* The loop itself is what the watchdog guards: ping from here. */
                if (s->watchdog_usec && now_ms() - s->last_watchdog >= s->watchdog_usec / 2000) {
                        sd_notify(0, "WATCHDOG=1");
                        s->last_watchdog = now_ms();
                }
                if (now_ms() - last_sweep >= TICK_MS || s->stopping) {
                        sweep_timeouts(s);
                        publish_gauges(s);
                        metricsreq_post_dns(s->ctx, s->ctx->counters);
                        last_sweep = now_ms();
                }
                /* The safe points of the turn: nothing holds a connection
                 * pointer from the events above any more. */
                resume_held(s);
                free_retired(s);
                if (s->stopping && (s->nconns == 0 || now_ms() - s->stop_started > DRAIN_MAX_MS))
                        break;
        }
        return 0;
}

/* ---- the listening socket (when systemd passes none) ---- */

#define SOCKET_TEMP_NAME "s"

/* Split path into its directory (".", "/", or the part before the last
 * '/') and its last component, in the caller's buffers. */
static int socket_path_split(const char *path, char *dir, size_t dirsize, const char **ret_base)
{
        const char *slash = strrchr(path, '/');
        size_t n;

        if (!slash) {
                snprintf(dir, dirsize, ".");
                *ret_base = path;
        } else {
                n = slash == path ? 1 : (size_t) (slash - path);
                if (n >= dirsize)
                        return -1;
                memcpy(dir, path, n);
                dir[n] = '\0';
                *ret_base = slash + 1;
        }
        return **ret_base && strcmp(*ret_base, ".") != 0 && strcmp(*ret_base, "..") != 0 ? 0 : -1;
}

/* A directory of our own (mode 0700) in dfd, open on *ret_fd: no one else
 * can add, swap or link anything in it, so the socket is bound, given its
 * owner and made to listen there, then renamed into place whole. */
static int private_dir(int dfd, char name[32], int *ret_fd)
{
        for (int tries = 0; tries < 16; tries++) {
                unsigned char rnd[6];
                struct stat st;
                int fd;

                if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t) sizeof(rnd))
                        return -1;
                snprintf(name, 32, ".dkimsignd-%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3], rnd[4],
                         rnd[5]);
                if (mkdirat(dfd, name, 0700) < 0) {
                        if (errno == EEXIST)
                                continue;
                        return -1;
                }
                /* What was made is what is used: not a link or a directory
                 * put in its place meanwhile.  fchmod: a default ACL on the
                 * shared directory would have opened it to others. */
                fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd >= 0 && (fchmod(fd, 0700) < 0 || fstat(fd, &st) < 0 || st.st_uid != geteuid() ||
                                (st.st_mode & 07777) != 0700)) {
                        close(fd);
                        errno = EPERM;
                        fd = -1;
                }
                if (fd < 0) {
                        int saved = errno;

                        unlinkat(dfd, name, AT_REMOVEDIR);
                        errno = saved;
                        return -1;
                }
                *ret_fd = fd;
                return 0;
        }
        errno = EEXIST;
        return -1;
}

/* Bind fd to SOCKET_TEMP_NAME in the private directory pfd: through
 * /proc/self/fd, which names that very directory, where /proc is there;
 * else by its path (should the shared directory be changed meanwhile, the
 * socket lands elsewhere and is then missing from pfd: an error, no harm). */
static int bind_private(int fd, int pfd, const char *dir, const char *priv)
{
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct stat a, b;
        int n;

        n = snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d", pfd);
        if (n > 0 && (size_t) n < sizeof(sa.sun_path) && stat(sa.sun_path, &a) == 0 && fstat(pfd, &b) == 0 &&
            a.st_dev == b.st_dev && a.st_ino == b.st_ino)
                n = snprintf(sa.sun_path, sizeof(sa.sun_path), "/proc/self/fd/%d/" SOCKET_TEMP_NAME, pfd);
        else
                n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s/" SOCKET_TEMP_NAME, dir, priv);
        if (n < 0 || (size_t) n >= sizeof(sa.sun_path)) {
                errno = ENAMETOOLONG;
                return -1;
        }
        return bind(fd, (struct sockaddr *) &sa, sizeof(sa));
}

/* The socket's directory: whoever may write it may put another socket in
 * the daemon's place.  Root's, ours or [daemon] user's, and no one else
 * may write it (the sticky bit excepted: then no one may replace another
 * user's file). */
static int socket_dir_check(int dfd, const char *dir, const char *daemon_user)
{
        struct passwd *pw = daemon_user ? getpwnam(daemon_user) : NULL;
        char why[1024];

        if (fileperm_check_fd(dfd, dir, pw ? pw->pw_uid : FILEPERM_NO_UID, why, sizeof(why)) < 0) {
                log_err("the socket's directory: %s; whoever can write it could put another socket in the "
                        "daemon's place",
                        why);
                return DKIMSIGN_E_CONFIG;
        }
        return 0;
}

/* The uid and gid the socket gets; -1 for one not asked for. */
static int socket_owner(const char *user, const char *group, uid_t *ret_uid, gid_t *ret_gid)
{
        struct passwd *pw = user ? getpwnam(user) : NULL;
        struct group *g = group ? getgrnam(group) : NULL;

        if ((user && !pw) || (group && !g)) {
                log_err("socket owner %s:%s: %s", user ? user : "-", group ? group : "-",
                        (user && !pw) ? "no such user" : "no such group");
                return DKIMSIGN_E_CONFIG;
        }
        *ret_uid = pw ? pw->pw_uid : (uid_t) -1;
        *ret_gid = g ? g->gr_gid : (gid_t) -1;
        return 0;
}

/*
 * Started as root, the socket must never be chowned or chmodded by its
 * path: whoever can write its directory could swap a link in and have
 * root give them any file.  So it is born in a private directory with its
 * final mode (the umask around bind), given its owner there, without
 * following links, made to listen, and renamed into place, replacing a
 * stale socket in one step.
 */
int server_listen_unix(const char *path, mode_t mode, const char *user, const char *group, const char *daemon_user,
                       int *ret_fd)
{
        char dir[sizeof(((struct sockaddr_un *) 0)->sun_path)], priv[32];
        const char *base = NULL;
        struct stat st;
        uid_t uid = (uid_t) -1;
        gid_t gid = (gid_t) -1;
        mode_t old_umask;
        int fd = -1, dfd = -1, pfd = -1, bound = 0, r;

        if (strlen(path) >= sizeof(((struct sockaddr_un *) 0)->sun_path)) {
                log_err("socket path %s is too long", path);
                return DKIMSIGN_E_CONFIG;
        }
        if (socket_path_split(path, dir, sizeof(dir), &base) < 0) {
                log_err("socket path %s does not name a file", path);
                return DKIMSIGN_E_CONFIG;
        }
        r = socket_owner(user, group, &uid, &gid);
        if (r < 0)
                return r;
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0) {
                log_err("socket directory %s: %s", dir, strerror(errno));
                return DKIMSIGN_E_SYSTEM;
        }
        r = socket_dir_check(dfd, dir, daemon_user);
        if (r == 0 && fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISSOCK(st.st_mode)) {
                log_err("%s exists and is not a socket; refusing to replace it", path);
                r = DKIMSIGN_E_CONFIG;
        }
        if (r == 0 && private_dir(dfd, priv, &pfd) < 0) {
                log_err("a private directory for the socket in %s: %s", dir, strerror(errno));
                r = DKIMSIGN_E_SYSTEM;
        }
        if (r == 0) {
                fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                if (fd < 0) {
                        log_err("socket: %s", strerror(errno));
                        r = DKIMSIGN_E_SYSTEM;
                }
        }
        if (r == 0) {
                /* Born with its final mode: no chmod after. */
                old_umask = umask(~mode & 0777);
                bound = bind_private(fd, pfd, dir, priv) == 0;
                umask(old_umask);
                if (!bound) {
                        log_err("bind %s: %s", path, strerror(errno));
                        r = DKIMSIGN_E_SYSTEM;
                }
        }
        /* A default ACL on the directory overrides the umask: put the mode
         * right, still inside the private directory. */
        if (r == 0 && (fstatat(pfd, SOCKET_TEMP_NAME, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISSOCK(st.st_mode) ||
                       ((st.st_mode & 07777) != mode && fchmodat(pfd, SOCKET_TEMP_NAME, mode, 0) < 0))) {
                log_err("socket %s: %s", path, strerror(errno));
                r = DKIMSIGN_E_SYSTEM;
        }
        if (r == 0 && (uid != (uid_t) -1 || gid != (gid_t) -1) &&
            fchownat(pfd, SOCKET_TEMP_NAME, uid, gid, AT_SYMLINK_NOFOLLOW) < 0) {
                log_err("socket owner %s:%s: %s", user ? user : "-", group ? group : "-", strerror(errno));
                r = DKIMSIGN_E_CONFIG;
        }
        if (r == 0 && (listen(fd, SOMAXCONN) < 0 || renameat(pfd, SOCKET_TEMP_NAME, dfd, base) < 0)) {
                log_err("socket %s: %s", path, strerror(errno));
                r = DKIMSIGN_E_SYSTEM;
        }
        if (pfd >= 0) {
                if (r < 0 && bound)
                        unlinkat(pfd, SOCKET_TEMP_NAME, 0);
                close(pfd);
                unlinkat(dfd, priv, AT_REMOVEDIR);
        }
        close(dfd);
        if (r < 0) {
                if (fd >= 0)
                        close(fd);
                return r;
        }
        *ret_fd = fd;
        return 0;
}
