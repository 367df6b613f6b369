/* SPDX-License-Identifier: MIT */
/*
 * dkimsign-exporter: serves dkimsignd's metrics over HTTP for Prometheus,
 * so the signing daemon itself needs no network.  At every GET /metrics
 * it asks dkimsignd on its socket (a METRICS request, util/daemonreq.h)
 * and returns the text, in OpenMetrics when the scraper accepts it.
 *
 * One connection at a time, each bounded: a request of at most
 * HTTP_REQUEST_MAX octets that must arrive within READ_TIMEOUT_MS, one
 * answer, then the connection is closed.  It never reads a body, never
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
#include <sys/time.h>
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
#define WRITE_TIMEOUT_S 10
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
        fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
            bind(fd, (struct sockaddr *) &sa, len) < 0 || listen(fd, 16) < 0) {
                log_err("listening on %s: %s", addr, strerror(errno));
                if (fd >= 0)
                        close(fd);
                return -1;
        }
        return fd;
}

static void send_all(int fd, const char *p, size_t n)
{
        while (n) {
                ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        return;   /* the scraper went away: nothing to tell it */
                p += w;
                n -= (size_t) w;
        }
}

static void respond(int fd, int code, const char *reason, const char *type, const char *extra, const char *body,
                    size_t len, bool head)
{
        char h[512];
        int n = snprintf(h, sizeof(h),
                         "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n",
                         code, reason, type, len, extra ? extra : "");

        if (n > 0 && (size_t) n < sizeof(h))
                send_all(fd, h, (size_t) n);
        if (!head)
                send_all(fd, body, len);
}

static void respond_text(int fd, int code, const char *reason, const char *extra, const char *text, bool head)
{
        respond(fd, code, reason, "text/plain; charset=utf-8", extra, text, strlen(text), head);
}

/* Read one request within READ_TIMEOUT_MS; 0 with *ret, or the parser's error. */
static int read_request(int fd, struct http_request *ret)
{
        char data[HTTP_REQUEST_MAX];
        uint64_t deadline = now_ms() + READ_TIMEOUT_MS;
        size_t len = 0, used;
        int r = DKIMSIGN_E_INCOMPLETE;

        while (r == DKIMSIGN_E_INCOMPLETE && len < sizeof(data)) {
                struct pollfd p = { .fd = fd, .events = POLLIN };
                uint64_t now = now_ms();
                ssize_t n;

                if (now >= deadline || poll(&p, 1, (int) (deadline - now)) <= 0)
                        return DKIMSIGN_E_TIMEOUT;
                n = recv(fd, data + len, sizeof(data) - len, MSG_DONTWAIT);
                if (n < 0 && (errno == EINTR || errno == EAGAIN))
                        continue;
                if (n <= 0)
                        return DKIMSIGN_E_CLOSED;
                len += (size_t) n;
                r = http_parse_request(data, len, ret, &used);
        }
        return r;
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

static void serve_metrics(int fd, const struct options *o, const struct http_request *rq, bool head)
{
        char why[1024], *text = NULL;
        size_t len = 0;
        int r = daemonreq_text(o->socket, MSG_METRICS, rq->openmetrics ? MSG_METRICS_OPENMETRICS : MSG_METRICS_PROMETHEUS,
                               o->timeout_s, &text, &len, why, sizeof(why));

        if (r == 0) {
                respond(fd, 200, "OK",
                        rq->openmetrics ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
                                        : "text/plain; version=0.0.4; charset=utf-8",
                        NULL, text, len, head);
        } else {
                /* The scrape fails (up == 0) and says why; the log says it too. */
                log_failure(why);
                strncat(why, "\n", sizeof(why) - strlen(why) - 1);
                if (r == DKIMSIGN_E_DENIED)
                        respond_text(fd, 403, "Forbidden", NULL, why, head);
                else
                        respond_text(fd, 503, "Service Unavailable", NULL, why, head);
        }
        free(text);
}

static void serve(int fd, const struct options *o)
{
        struct timeval tv = { .tv_sec = WRITE_TIMEOUT_S };
        struct http_request rq;
        bool head;
        int r;

        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        r = read_request(fd, &rq);
        if (r == DKIMSIGN_E_TOO_LARGE) {
                respond_text(fd, 431, "Request Header Fields Too Large", NULL, "request too large\n", false);
                return;
        }
        if (r < 0) {
                if (r == DKIMSIGN_E_FORMAT)
                        respond_text(fd, 400, "Bad Request", NULL, "malformed request\n", false);
                return;
        }
        head = strcmp(rq.method, "HEAD") == 0;
        if (!head && strcmp(rq.method, "GET") != 0)
                respond_text(fd, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n", "only GET and HEAD\n", false);
        else if (rq.has_body)
                respond_text(fd, 400, "Bad Request", NULL, "a GET has no body\n", head);
        else if (strcmp(rq.target, "/metrics") == 0)
                serve_metrics(fd, o, &rq, head);
        else if (strcmp(rq.target, "/") == 0)
                respond_text(fd, 200, "OK", NULL, "dkimsign-exporter: the metrics are at /metrics\n", head);
        else
                respond_text(fd, 404, "Not Found", NULL, "not found: try /metrics\n", head);
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
        for (;;) {
                int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);

                if (c < 0) {
                        if (errno != EINTR && errno != ECONNABORTED)
                                log_warn("accept: %s", strerror(errno));
                        continue;
                }
                serve(c, &o);
                close(c);
        }
}
