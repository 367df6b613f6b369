/* SPDX-License-Identifier: MIT */
/*
 * dkimsign-exporter: serves dkimsignd's metrics over HTTP for Prometheus,
 * so the signing daemon itself needs no network.  At every GET /metrics
 * it asks dkimsignd on its socket (a METRICS request, util/daemonreq.h)
 * and returns the text, in OpenMetrics when the scraper accepts it.
 *
 * Up to MAX_CLIENTS connections side by side, each bounded: a request of
 * at most HTTP_REQUEST_MAX octets that must arrive within READ_TIMEOUT_MS,
 * one answer taken within WRITE_TIMEOUT_MS, then the connection is closed.  It never reads a body, never
 * keeps state between scrapes, and listens on loopback by default.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dkimsign-build.h"
#include "exporter/http.h"
#include "protocol/dkimsign-errors.h"
#include "protocol/msg.h"
#include "util/clock.h"
#include "util/daemonreq.h"
#include "util/log.h"
#include "util/ratelimit.h"

#define DEFAULT_LISTEN "127.0.0.1:9788"
#define READ_TIMEOUT_MS 5000
#define WRITE_TIMEOUT_MS 10000
#define MAX_CLIENTS 8   /* each may hold an answer of up to 4 MiB */
#define DAEMON_TIMEOUT_S 8   /* under Prometheus' default scrape_timeout (10 s) */

struct options {
        const char *listen;
        const char *socket;
        unsigned timeout_s;
};

static struct ratelimit failures_log = RATELIMIT_INIT(60000, 10);

static void usage(FILE *f)
{
        fprintf(f,
                "Usage: dkimsign-exporter [--listen ADDR:PORT] [--socket PATH] [--timeout SECONDS]\n"
                "\n"
                "Serve dkimsignd's metrics at http://ADDR:PORT/metrics (default %s),\n"
                "asking dkimsignd on its socket (default %s) at every scrape.\n"
                "See dkimsign-exporter(8).\n",
                DEFAULT_LISTEN, DKIMSIGN_DEFAULT_SOCKET);
}

/* "IPv4:PORT" or "[IPv6]:PORT". */
static int parse_listen(const char *s, struct sockaddr_storage *ret, socklen_t *ret_len)
{
        char host[64];
        const char *colon = strrchr(s, ':');
        char *end;
        unsigned long port;
        size_t n;

        if (!colon)
                return -1;
        port = strtoul(colon + 1, &end, 10);
        n = (size_t) (colon - s);
        if (!colon[1] || *end || port == 0 || port > 65535 || n == 0 || n >= sizeof(host))
                return -1;
        memcpy(host, s, n);
        host[n] = 0;
        memset(ret, 0, sizeof(*ret));
        if (host[0] == '[' && host[n - 1] == ']') {
                struct sockaddr_in6 *a = (struct sockaddr_in6 *) ret;

                host[n - 1] = 0;
                a->sin6_family = AF_INET6;
                a->sin6_port = htons((uint16_t) port);
                *ret_len = sizeof(*a);
                return inet_pton(AF_INET6, host + 1, &a->sin6_addr) == 1 ? 0 : -1;
        } else {
                struct sockaddr_in *a = (struct sockaddr_in *) ret;

                a->sin_family = AF_INET;
                a->sin_port = htons((uint16_t) port);
                *ret_len = sizeof(*a);
                return inet_pton(AF_INET, host, &a->sin_addr) == 1 ? 0 : -1;
        }
}

static int listen_on(const char *addr)
{
        struct sockaddr_storage sa;
        socklen_t len;
        int one = 1, fd;

        if (parse_listen(addr, &sa, &len) < 0) {
                log_err("--listen %s: not ADDR:PORT (an IPv4 address, or [IPv6])", addr);
                return -1;
        }
        fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
            bind(fd, (struct sockaddr *) &sa, len) < 0 || listen(fd, 16) < 0) {
                log_err("listening on %s: %s", addr, strerror(errno));
                if (fd >= 0)
                        close(fd);
                return -1;
        }
        return fd;
}

/* One connection: reading its request until deadline, then (writing)
 * its answer in out until a new deadline; fd -1 when the place is free. */
struct client {
        int fd;
        bool writing;
        uint64_t deadline;
        size_t len, out_len, out_off;
        char *out;
        char in[HTTP_REQUEST_MAX];
};

static void client_close(struct client *c)
{
        if (c->fd >= 0)
                close(c->fd);
        free(c->out);
        c->fd = -1;
        c->out = NULL;
}

/* The answer, whole, to be sent as the peer takes it, within WRITE_TIMEOUT_MS. */
static void respond(struct client *c, int code, const char *reason, const char *type, const char *extra,
                    const char *body, size_t len, bool head)
{
        char h[512];
        int n = snprintf(h, sizeof(h),
                         "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n",
                         code, reason, type, len, extra ? extra : "");

        if (head)
                len = 0;
        if (n <= 0 || (size_t) n >= sizeof(h) || !(c->out = malloc((size_t) n + len))) {
                client_close(c);
                return;
        }
        memcpy(c->out, h, (size_t) n);
        if (len)
                memcpy(c->out + n, body, len);
        c->out_len = (size_t) n + len;
        c->out_off = 0;
        c->writing = true;
        c->deadline = now_ms() + WRITE_TIMEOUT_MS;
}

static void respond_text(struct client *c, int code, const char *reason, const char *extra, const char *text,
                         bool head)
{
        respond(c, code, reason, "text/plain; charset=utf-8", extra, text, strlen(text), head);
}

/* A failed scrape in the log, within a rate. */
static void log_failure(const char *why)
{
        unsigned long dropped;

        if (!ratelimit_allow(&failures_log, now_ms(), &dropped))
                return;
        if (dropped)
                log_warn("%lu more failed scrapes were not logged", dropped);
        log_warn("scrape: %s", why);
}

static void serve_metrics(struct client *c, const struct options *o, const struct http_request *rq, bool head)
{
        char why[1024], *text = NULL;
        size_t len = 0;
        int r = daemonreq_text(o->socket, MSG_METRICS, rq->openmetrics ? MSG_METRICS_OPENMETRICS : MSG_METRICS_PROMETHEUS,
                               o->timeout_s, &text, &len, why, sizeof(why));

        if (r == 0) {
                respond(c, 200, "OK",
                        rq->openmetrics ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
                                        : "text/plain; version=0.0.4; charset=utf-8",
                        NULL, text, len, head);
        } else {
                /* The scrape fails (up == 0) and says why; the log says it too. */
                log_failure(why);
                strncat(why, "\n", sizeof(why) - strlen(why) - 1);
                if (r == DKIMSIGN_E_DENIED)
                        respond_text(c, 403, "Forbidden", NULL, why, head);
                else
                        respond_text(c, 503, "Service Unavailable", NULL, why, head);
        }
        free(text);
}

/* The request in, whole or refused: its answer. */
static void answer(struct client *c, const struct options *o, int r, const struct http_request *rq)
{
        bool head;

        if (r == DKIMSIGN_E_TOO_LARGE) {
                respond_text(c, 431, "Request Header Fields Too Large", NULL, "request too large\n", false);
                return;
        }
        if (r < 0) {
                respond_text(c, 400, "Bad Request", NULL, "malformed request\n", false);
                return;
        }
        head = strcmp(rq->method, "HEAD") == 0;
        if (!head && strcmp(rq->method, "GET") != 0)
                respond_text(c, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n", "only GET and HEAD\n", false);
        else if (rq->has_body)
                respond_text(c, 400, "Bad Request", NULL, "a GET has no body\n", head);
        else if (strcmp(rq->target, "/metrics") == 0)
                serve_metrics(c, o, rq, head);
        else if (strcmp(rq->target, "/") == 0)
                respond_text(c, 200, "OK", NULL, "dkimsign-exporter: the metrics are at /metrics\n", head);
        else
                respond_text(c, 404, "Not Found", NULL, "not found: try /metrics\n", head);
}

/* The peer is readable (reading) or writable (writing): one step. */
static void client_step(struct client *c, const struct options *o)
{
        if (!c->writing) {
                struct http_request rq;
                size_t used;
                ssize_t n = recv(c->fd, c->in + c->len, sizeof(c->in) - c->len, MSG_DONTWAIT);
                int r;

                if (n < 0 && (errno == EINTR || errno == EAGAIN))
                        return;
                if (n <= 0) {
                        client_close(c);
                        return;
                }
                c->len += (size_t) n;
                r = http_parse_request(c->in, c->len, &rq, &used);
                if (r != DKIMSIGN_E_INCOMPLETE || c->len == sizeof(c->in))
                        answer(c, o, r == DKIMSIGN_E_INCOMPLETE ? DKIMSIGN_E_TOO_LARGE : r, &rq);
        } else {
                ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);

                if (n < 0 && (errno == EINTR || errno == EAGAIN))
                        return;
                if (n <= 0) {
                        client_close(c);   /* the scraper went away: nothing to tell it */
                        return;
                }
                c->out_off += (size_t) n;
                if (c->out_off == c->out_len)
                        client_close(c);
        }
}

/* A place for a new connection: a free one, else the one that waited
 * longest for its request (a scraper sends it at once), else the oldest. */
static struct client *client_place(struct client *cs)
{
        struct client *best = NULL;

        for (size_t i = 0; i < MAX_CLIENTS; i++) {
                struct client *c = &cs[i];

                if (c->fd < 0)
                        return c;
                if (!best || (best->writing && !c->writing) ||
                    (best->writing == c->writing && c->deadline < best->deadline))
                        best = c;
        }
        client_close(best);
        return best;
}

static void client_accept(int lfd, struct client *cs)
{
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        struct client *c;

        if (fd < 0) {
                if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
                        log_warn("accept: %s", strerror(errno));
                return;
        }
        c = client_place(cs);
        c->fd = fd;
        c->writing = false;
        c->len = 0;
        c->deadline = now_ms() + READ_TIMEOUT_MS;
}

/* Connections side by side, at most MAX_CLIENTS, each with its deadline:
 * a peer that holds one open sending nothing (or taking its answer an
 * octet at a time) delays no other, and is dropped at its deadline, or
 * sooner when a new connection needs its place. */
static void serve(int lfd, const struct options *o)
{
        static struct client cs[MAX_CLIENTS];

        for (size_t i = 0; i < MAX_CLIENTS; i++)
                cs[i].fd = -1;
        for (;;) {
                struct pollfd p[MAX_CLIENTS + 1] = { { .fd = lfd, .events = POLLIN } };
                struct client *at[MAX_CLIENTS + 1] = { NULL };
                uint64_t now = now_ms(), next = now + 60000;
                nfds_t n = 1;

                for (size_t i = 0; i < MAX_CLIENTS; i++) {
                        if (cs[i].fd < 0)
                                continue;
                        if (cs[i].deadline <= now) {
                                client_close(&cs[i]);
                                continue;
                        }
                        if (cs[i].deadline < next)
                                next = cs[i].deadline;
                        p[n] = (struct pollfd) { .fd = cs[i].fd, .events = cs[i].writing ? POLLOUT : POLLIN };
                        at[n++] = &cs[i];
                }
                if (poll(p, n, (int) (next - now)) <= 0)
                        continue;
                for (nfds_t i = 1; i < n; i++)
                        if (p[i].revents)
                                client_step(at[i], o);
                if (p[0].revents & POLLIN)
                        client_accept(lfd, cs);
        }
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "listen", required_argument, NULL, 'l' },
                { "socket", required_argument, NULL, 's' },
                { "timeout", required_argument, NULL, 't' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { 0 },
        };
        struct options o = { .listen = DEFAULT_LISTEN, .socket = DKIMSIGN_DEFAULT_SOCKET,
                             .timeout_s = DAEMON_TIMEOUT_S };
        char *end;
        int opt, fd;

        while ((opt = getopt_long(argc, argv, "l:s:t:hV", opts, NULL)) != -1) {
                switch (opt) {
                case 'l': o.listen = optarg; break;
                case 's': o.socket = optarg; break;
                case 't':
                        o.timeout_s = (unsigned) strtoul(optarg, &end, 10);
                        if (*end || o.timeout_s == 0 || o.timeout_s > 300) {
                                fprintf(stderr, "dkimsign-exporter: --timeout takes 1 to 300 seconds\n");
                                return 2;
                        }
                        break;
                case 'h': usage(stdout); return 0;
                case 'V': printf("dkimsign-exporter %s\n", DKIMSIGN_VERSION); return 0;
                default: usage(stderr); return 2;
                }
        }
        if (optind < argc) {
                usage(stderr);
                return 2;
        }
        log_init("dkimsign-exporter", LOG_INFO);
        signal(SIGPIPE, SIG_IGN);
        fd = listen_on(o.listen);
        if (fd < 0)
                return 1;
        log_info("serving metrics at http://%s/metrics from %s", o.listen, o.socket);
        serve(fd, &o);
}
