/* SPDX-License-Identifier: MIT */
/*
 * dkimsign-smtpd-filter: an OpenSMTPD filter (smtpd-filters(7), protocol
 * 0.6 and 0.7, run by smtpd through `filter ... proc-exec`) that signs the
 * messages of the listeners it is attached to through dkimsignd.
 *
 * smtpd hands the filter each line of a message (data-line) and takes back
 * the lines the filter writes, which are what it queues.  The filter gives
 * each line to libdkimsign as it comes (the library keeps the bounded
 * header block and a running body hash) and spools it, in the form it will
 * write it back, to an unlinked temporary file: at the final "." it asks
 * dkimsignd for the signature and writes back the DKIM-Signature field(s),
 * then the spooled message.  Memory stays bounded whatever the message's
 * size; the message is never logged.
 *
 * smtpd 6.8 changes a message after its filters, so the filter signs the
 * message as smtpd will queue it, or leaves it unsigned with one line
 * saying why (docs/opensmtpd.md):
 * - it adds Date and Message-ID when they are missing: the filter adds
 *   them first, to a message it signs;
 * - it appends its host name to an address without a domain in From, To
 *   or Cc: such a message passes unsigned;
 * - it mangles a line it reads back from a filter that is over 2,047
 *   octets (cut short, the next line lost): body lines over 998 octets
 *   (RFC 5322's limit) are split, and signed so; a header line over 998
 *   octets leaves the message unsigned.
 *
 * dkimsignd down or failing (a temporary failure): the message is refused
 * with 451 at the commit phase, so the client tries again (the default),
 * or accepted unsigned (--on-tempfail accept).  Refused for good (no key
 * for the From domain, no From, two From): it passes unsigned.  A message
 * the filter could not spool whole is refused with 451 either way.  Every
 * message not signed gets one line on stderr, which smtpd logs.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "dkimsign-build.h"
#include "client/dkimsign.h"
#include "client/smtpd-proto.h"
#include "util/log.h"

#define EXIT_USAGE 64
#define LINE_LIMIT 998          /* RFC 5322 2.1.1, CRLF excluded */
#define BUCKETS 256
#define TEMPFAIL_REPLY "451 4.7.0 DKIM signing temporarily unavailable, try again later"
#define SPOOL_REPLY "451 4.3.0 Temporary failure in the DKIM signing filter"

static struct {
        const char *socket;     /* NULL: the library's default */
        enum dkimsign_canon header_canon, body_canon;
        bool tempfail_accept;
} opt = { .header_canon = DKIMSIGN_CANON_RELAXED, .body_canon = DKIMSIGN_CANON_RELAXED };

enum field { FIELD_OTHER, FIELD_ADDRESS, FIELD_NONE };

/* One message being read, from its first data line to its ".". */
struct msg {
        dkimsign_message *m;    /* NULL: not signed (why says why) */
        FILE *spool;            /* the lines to write back, dot-escaped */
        bool in_header;
        bool broken;            /* a line could not be spooled: refuse it */
        enum field field;
        char field_name[8];     /* of an address field: From, To or Cc */
        struct smtpd_addr_scan scan;
        bool has_date, has_msgid;
        unsigned split;         /* body lines split at LINE_LIMIT */
        char why[192];
};

struct session {
        uint64_t id;
        struct session *next;
        char msgid[24];         /* smtpd's message id (tx-begin), for the log */
        struct msg *msg;
        const char *refuse;     /* the reply at commit, or NULL: proceed */
};

static struct session *sessions[BUCKETS];
static dkimsign_client *client;
static bool daemon_down;

/* ---- sessions ---- */

static struct session **session_slot(uint64_t id)
{
        struct session **p = &sessions[(id ^ id >> 32) % BUCKETS];

        while (*p && (*p)->id != id)
                p = &(*p)->next;
        return p;
}

static struct session *session_get(uint64_t id)
{
        struct session **p = session_slot(id);

        if (!*p) {
                *p = calloc(1, sizeof(**p));
                if (!*p) {
                        log_msg(LOG_ERR, "session_get: %s", dkimsign_strerror(DKIMSIGN_E_NOMEM));
                        exit(1);
                }
                (*p)->id = id;
        }
        return *p;
}

static void msg_free(struct msg *m)
{
        if (!m)
                return;
        dkimsign_message_free(m->m);
        if (m->spool)
                fclose(m->spool);
        free(m);
}

static void session_end(uint64_t id)
{
        struct session **p = session_slot(id), *s = *p;

        if (!s)
                return;
        *p = s->next;
        msg_free(s->msg);
        free(s);
}

static const char *msgid_of(const struct session *s)
{
        return s->msgid[0] ? s->msgid : "-";
}

/* ---- writing to smtpd ---- */

static void emit(const struct session *s, uint64_t token, const char *line, size_t len)
{
        printf("filter-dataline|%016" PRIx64 "|%016" PRIx64 "|%.*s\n", s->id, token, (int) len, line);
}

static void result(const struct session *s, uint64_t token, const char *reply)
{
        if (reply)
                printf("filter-result|%016" PRIx64 "|%016" PRIx64 "|reject|%s\n", s->id, token, reply);
        else
                printf("filter-result|%016" PRIx64 "|%016" PRIx64 "|proceed\n", s->id, token);
}

/* ---- one message ---- */

/* Not signed, with this reason (the first one given is kept). */
static void no_sign(struct msg *m, const char *why)
{
        if (m->m) {
                snprintf(m->why, sizeof(m->why), "%s", why);
                dkimsign_message_free(m->m);
                m->m = NULL;
        }
}

static void msg_begin(struct session *s)
{
        struct msg *m = calloc(1, sizeof(*m));
        int r;

        if (!m) {
                log_msg(LOG_ERR, "msg_begin: %s", dkimsign_strerror(DKIMSIGN_E_NOMEM));
                exit(1);
        }
        m->in_header = true;
        m->field = FIELD_NONE;
        s->refuse = NULL;
        s->msg = m;
        m->spool = tmpfile();
        if (!m->spool) {
                log_msg(LOG_ERR, "%s: cannot create a spool file: %s", msgid_of(s), strerror(errno));
                m->broken = true;
                return;
        }
        r = dkimsign_message_new(&m->m);
        if (r == 0)
                r = dkimsign_message_set_canon(m->m, opt.header_canon, opt.body_canon);
        if (r < 0) {
                dkimsign_message_free(m->m);
                m->m = NULL;
                snprintf(m->why, sizeof(m->why), "%s", dkimsign_strerror(r));
        }
}

/* One line of the message (no line end) to the library and the spool. */
static void put_line(struct msg *m, const char *text, size_t len)
{
        if (m->m) {
                int r = dkimsign_message_write(m->m, text, len);

                if (r == 0)
                        r = dkimsign_message_write(m->m, "\r\n", 2);
                if (r < 0)
                        no_sign(m, r == DKIMSIGN_E_TOO_LARGE ? "header block over its limit" : dkimsign_strerror(r));
        }
        if (m->broken)
                return;
        if ((len > 0 && text[0] == '.' && putc('.', m->spool) == EOF) || fwrite(text, 1, len, m->spool) != len ||
            putc('\n', m->spool) == EOF)
                m->broken = true;
}

/* The field before this line is complete. */
static void field_end(struct msg *m)
{
        char why[sizeof(m->why)];

        if (m->field == FIELD_ADDRESS && smtpd_addr_scan_end(&m->scan)) {
                snprintf(why, sizeof(why), "an address without a domain in %s, which smtpd qualifies after the filter",
                         m->field_name);
                no_sign(m, why);
        }
        m->field = FIELD_NONE;
}

static void field_begin(struct msg *m, const char *text, size_t len)
{
        static const char *const addresses[] = { "From", "To", "Cc" };
        const char *colon = memchr(text, ':', len);
        size_t n = colon ? (size_t) (colon - text) : len;

        m->field = FIELD_OTHER;
        if (n == 4 && strncasecmp(text, "Date", 4) == 0)
                m->has_date = true;
        else if (n == 10 && strncasecmp(text, "Message-ID", 10) == 0)
                m->has_msgid = true;
        for (size_t i = 0; colon && i < 3; i++)
                if (n == strlen(addresses[i]) && strncasecmp(text, addresses[i], n) == 0) {
                        m->field = FIELD_ADDRESS;
                        snprintf(m->field_name, sizeof(m->field_name), "%s", addresses[i]);
                        smtpd_addr_scan_init(&m->scan);
                        smtpd_addr_scan_feed(&m->scan, colon + 1, len - n - 1);
                }
}

/* Date and Message-ID, which smtpd adds after the filter when they are
 * missing: added here, before signing, to a message being signed. */
static void add_missing(struct msg *m)
{
        char line[320], domain[254];
        uint8_t rnd[12];
        struct tm tm;
        time_t now = time(NULL);

        if (!m->m)
                return;
        if (!m->has_date && localtime_r(&now, &tm)) {
                size_t n = strftime(line, sizeof(line), "Date: %a, %d %b %Y %H:%M:%S %z", &tm);

                if (n > 0)
                        put_line(m, line, n);
        }
        /* A message without a usable From is refused by dkimsignd: smtpd
         * adds its own Message-ID to it. */
        if (!m->has_msgid && m->m && dkimsign_message_from_domain(m->m, domain, sizeof(domain)) == 0 &&
            getrandom(rnd, sizeof(rnd), 0) == (ssize_t) sizeof(rnd)) {
                int n = snprintf(line, sizeof(line), "Message-ID: <");

                for (size_t i = 0; i < sizeof(rnd); i++)
                        n += snprintf(line + n, sizeof(line) - (size_t) n, "%02x", rnd[i]);
                n += snprintf(line + n, sizeof(line) - (size_t) n, "@%s>", domain);
                put_line(m, line, (size_t) n);
        }
}

static void header_end(struct msg *m)
{
        field_end(m);
        add_missing(m);
        m->in_header = false;
}

static void header_line(struct msg *m, const char *text, size_t len)
{
        if (len == 0) {
                header_end(m);
                put_line(m, text, len);
                return;
        }
        if (len > LINE_LIMIT)
                no_sign(m, "a header line over 998 octets");
        if (text[0] == ' ' || text[0] == '\t') {
                if (m->field == FIELD_ADDRESS)
                        smtpd_addr_scan_feed(&m->scan, text, len);
        } else {
                field_end(m);
                field_begin(m, text, len);
        }
        put_line(m, text, len);
}

/* A body line over LINE_LIMIT octets is split: smtpd would mangle it
 * past 2,047 octets (and a next hop may split it after signing). */
static void body_line(struct msg *m, const char *text, size_t len)
{
        if (len > LINE_LIMIT)
                m->split++;
        while (len > LINE_LIMIT) {
                put_line(m, text, LINE_LIMIT);
                text += LINE_LIMIT;
                len -= LINE_LIMIT;
        }
        put_line(m, text, len);
}

/* The returned fields, "DKIM-Signature: ...\r\n\t...\r\n", line by line. */
static void emit_fields(const struct session *s, uint64_t token, const char *fields)
{
        while (*fields) {
                const char *end = strstr(fields, "\r\n");
                size_t len = end ? (size_t) (end - fields) : strlen(fields);

                emit(s, token, fields, len);
                fields += len + (end ? 2 : 0);
        }
}

/* Write back the spooled lines; false when they could not all be read. */
static bool emit_spool(const struct session *s, uint64_t token, FILE *spool)
{
        char *line = NULL;
        size_t size = 0;
        ssize_t n;

        if (fflush(spool) == EOF || fseek(spool, 0, SEEK_SET) < 0)
                return false;
        while ((n = getline(&line, &size, spool)) > 0)
                emit(s, token, line, (size_t) n - 1);
        free(line);
        return !ferror(spool);
}

static void outage(bool failing, const char *why)
{
        if (failing && !daemon_down)
                log_msg(LOG_ERR, "dkimsignd unreachable or failing (%s): %s mail until it is back", why,
                        opt.tempfail_accept ? "accepting unsigned" : "refusing (451)");
        else if (!failing && daemon_down)
                log_msg(LOG_NOTICE, "dkimsignd reachable again");
        daemon_down = failing;
}

/* Ask dkimsignd; *ret_fields on success. */
static int sign(struct msg *m, char **ret_fields, const char **ret_why)
{
        int r = 0;

        if (!client) {
                r = dkimsign_client_open(opt.socket, &client);
                if (r < 0) {
                        *ret_why = client ? dkimsign_client_error(client) : dkimsign_strerror(r);
                        snprintf(m->why, sizeof(m->why), "%s", *ret_why);
                        dkimsign_client_free(client);
                        client = NULL;
                        *ret_why = m->why;
                        return r;
                }
        }
        r = dkimsign_sign(client, m->m, ret_fields);
        if (r < 0) {
                snprintf(m->why, sizeof(m->why), "%s", dkimsign_client_error(client));
                *ret_why = m->why;
                /* A connection that failed is not used again. */
                if (dkimsign_err_is_temporary(r)) {
                        dkimsign_client_free(client);
                        client = NULL;
                }
        }
        return r;
}

/* The final ".": sign, write the message back, and decide the commit. */
static void msg_end(struct session *s, uint64_t token)
{
        struct msg *m = s->msg;
        char *fields = NULL;
        const char *why = m->why;
        int r = -1;

        if (m->in_header) {
                /* A message without a body: the header ends here. */
                header_end(m);
                put_line(m, "", 0);
        }
        if (m->m && !m->broken) {
                r = sign(m, &fields, &why);
                if (r < 0 && dkimsign_err_is_temporary(r)) {
                        outage(true, why);
                        if (!opt.tempfail_accept)
                                s->refuse = TEMPFAIL_REPLY;
                } else {
                        outage(false, NULL);
                }
        }
        if (fields)
                emit_fields(s, token, fields);
        if (m->broken || !emit_spool(s, token, m->spool)) {
                log_msg(LOG_ERR, "%s: refused (451): the message could not be spooled whole: %s", msgid_of(s),
                        strerror(errno));
                s->refuse = SPOOL_REPLY;
        } else if (fields) {
                log_msg(LOG_INFO, "%s: signed%s", msgid_of(s),
                        m->split ? " (body lines over 998 octets split)" : "");
        } else if (s->refuse) {
                log_msg(LOG_INFO, "%s: refused (451): %s", msgid_of(s), why);
        } else {
                log_msg(LOG_INFO, "%s: not signed: %s", msgid_of(s), why[0] ? why : "no reason given");
        }
        emit(s, token, ".", 1);
        free(fields);
        msg_free(m);
        s->msg = NULL;
}

static void on_data_line(struct session *s, uint64_t token, const char *line, size_t len)
{
        const char *text;
        size_t tlen;

        if (!s->msg)
                msg_begin(s);
        if (smtpd_data_is_end(line, len)) {
                msg_end(s, token);
                return;
        }
        text = smtpd_data_unescape(line, len, &tlen);
        if (s->msg->in_header)
                header_line(s->msg, text, tlen);
        else
                body_line(s->msg, text, tlen);
}

/* ---- the protocol ---- */

static void registrations(void)
{
        static const char *const lines[] = {
                "register|report|smtp-in|link-disconnect", "register|report|smtp-in|tx-begin",
                "register|report|smtp-in|tx-reset", "register|report|smtp-in|tx-rollback",
                "register|filter|smtp-in|data-line", "register|filter|smtp-in|commit", "register|ready",
        };

        for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
                printf("%s\n", lines[i]);
}

static void on_report(const struct smtpd_line *l)
{
        struct session *s;

        if (strcmp(l->name, "link-disconnect") == 0) {
                session_end(l->session);
                return;
        }
        s = session_get(l->session);
        if (strcmp(l->name, "tx-begin") == 0) {
                snprintf(s->msgid, sizeof(s->msgid), "%.*s", (int) strcspn(l->params, "|"), l->params);
        } else if (strcmp(l->name, "tx-reset") == 0 || strcmp(l->name, "tx-rollback") == 0) {
                msg_free(s->msg);
                s->msg = NULL;
                s->refuse = NULL;
        }
}

static void on_filter(const struct smtpd_line *l)
{
        struct session *s = session_get(l->session);

        if (strcmp(l->name, "data-line") == 0) {
                on_data_line(s, l->token, l->params, l->params_len);
        } else if (strcmp(l->name, "commit") == 0) {
                result(s, l->token, s->refuse);
                s->refuse = NULL;
        } else {
                /* A phase this filter did not register for. */
                result(s, l->token, NULL);
        }
}

/* One line from smtpd; false ends the filter (smtpd then stops: a filter
 * that misreads the protocol must not pass mail). */
static bool on_line(char *line, size_t len)
{
        struct smtpd_line l;
        int r = smtpd_line_parse(line, len, &l);

        if (r < 0) {
                log_msg(LOG_ERR, "unreadable line from smtpd (%s): %s", dkimsign_strerror(r),
                        r == DKIMSIGN_E_TOO_LARGE ? "too long" : "not the filter protocol");
                return false;
        }
        if (l.kind == SMTPD_CONFIG) {
                if (strcmp(l.name, "ready") == 0)
                        registrations();
                return true;
        }
        if (!smtpd_version_supported(l.version)) {
                log_msg(LOG_ERR, "filter protocol version %s is not supported (0.6 and 0.7 are)", l.version);
                return false;
        }
        if (strcmp(l.subsystem, "smtp-in") != 0)
                return true;
        if (l.kind == SMTPD_REPORT)
                on_report(&l);
        else
                on_filter(&l);
        return true;
}

/* Read stdin line by line, each at most SMTPD_LINE_MAX octets; output is
 * flushed whenever no whole line is left to read. */
static int run(void)
{
        static char buf[SMTPD_LINE_MAX + 2];
        size_t have = 0;

        for (;;) {
                char *nl;
                ssize_t n;

                while ((nl = memchr(buf, '\n', have))) {
                        size_t len = (size_t) (nl - buf);

                        *nl = 0;
                        if (!on_line(buf, len))
                                return 1;
                        have -= len + 1;
                        memmove(buf, nl + 1, have);
                }
                if (have > SMTPD_LINE_MAX) {
                        log_msg(LOG_ERR, "a line from smtpd over %d octets", SMTPD_LINE_MAX);
                        return 1;
                }
                if (fflush(stdout) == EOF) {
                        log_msg(LOG_ERR, "cannot write to smtpd: %s", strerror(errno));
                        return 1;
                }
                n = read(STDIN_FILENO, buf + have, sizeof(buf) - 1 - have);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        if (n < 0)
                                log_msg(LOG_ERR, "cannot read from smtpd: %s", strerror(errno));
                        return n < 0 ? 1 : 0;
                }
                have += (size_t) n;
        }
}

static void usage(FILE *f)
{
        fprintf(f,
                "Usage: dkimsign-smtpd-filter [--socket PATH] [--canon C] [--on-tempfail tempfail|accept]\n"
                "\n"
                "An OpenSMTPD filter (proc-exec) that signs mail through dkimsignd.\n"
                "\n"
                "  -s, --socket PATH       dkimsignd's socket (default %s)\n"
                "  -c, --canon C           canonicalization, header/body (default relaxed/relaxed)\n"
                "  -t, --on-tempfail WHAT  dkimsignd down or failing: tempfail (refuse with 451,\n"
                "                          the default) or accept (pass unsigned)\n"
                "  -d, --debug             log each message signed at debug level too\n"
                "  -h, --help              show this help\n"
                "  -V, --version           show the version\n",
                DKIMSIGN_DEFAULT_SOCKET_PATH);
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "socket", required_argument, NULL, 's' },
                { "canon", required_argument, NULL, 'c' },
                { "on-tempfail", required_argument, NULL, 't' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { 0 },
        };
        int o, r;

        while ((o = getopt_long(argc, argv, "s:c:t:hV", opts, NULL)) != -1) {
                switch (o) {
                case 's':
                        opt.socket = optarg;
                        break;
                case 'c':
                        if (dkimsign_canon_parse(optarg, &opt.header_canon, &opt.body_canon) < 0) {
                                fprintf(stderr, "dkimsign-smtpd-filter: invalid canonicalization: %s\n", optarg);
                                return EXIT_USAGE;
                        }
                        break;
                case 't':
                        if (strcmp(optarg, "tempfail") != 0 && strcmp(optarg, "accept") != 0) {
                                fprintf(stderr, "dkimsign-smtpd-filter: --on-tempfail takes tempfail or accept\n");
                                return EXIT_USAGE;
                        }
                        opt.tempfail_accept = strcmp(optarg, "accept") == 0;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                case 'V':
                        printf("dkimsign-smtpd-filter %s\n", DKIMSIGN_VERSION);
                        return 0;
                default:
                        usage(stderr);
                        return EXIT_USAGE;
                }
        }
        if (optind < argc) {
                usage(stderr);
                return EXIT_USAGE;
        }
        log_init("dkimsign-smtpd-filter", LOG_INFO);
        /* smtpd logs each line of the filter's stderr with its own
         * priority: a "<6>" would be noise in it. */
        log_set_prefix(false);
        log_msg(LOG_INFO, "started: dkimsignd at %s, on-tempfail %s", opt.socket ? opt.socket : DKIMSIGN_DEFAULT_SOCKET_PATH,
                opt.tempfail_accept ? "accept" : "tempfail");
        r = run();
        for (size_t i = 0; i < BUCKETS; i++)
                while (sessions[i])
                        session_end(sessions[i]->id);
        dkimsign_client_free(client);
        return r;
}
