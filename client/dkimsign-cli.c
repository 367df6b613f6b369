/* SPDX-License-Identifier: MIT */
/*
 * dkimsign: sign one message from stdin through dkimsignd and write it,
 * DKIM-Signature field(s) first, to stdout.  The message is streamed: it is
 * hashed as it is read and spooled to an unlinked temporary file (or read
 * again, when stdin is a regular file), never held whole in memory.
 *
 * With --arc it seals instead (RFC 8617): the ARC set of the next instance,
 * under the --domain's key, recording the Authentication-Results of
 * --authserv-id, after checking the chain the message came with.
 *
 * Exit status: 0 signed (or, with --unsigned-ok, written back unsigned); 64
 * usage; 65 the message can't be signed (permanent); 75 try again later
 * (daemon down, token failure, busy).
 *
 * It never writes a diagnostic into the message: when stderr is the same
 * file as stdout (an Exim transport_filter, whose stderr Exim reads into
 * the message), its lines go to syslog instead.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "dkimsign-build.h"
#include "client/dkimsign.h"

#define EXIT_USAGE 64
#define EXIT_DATAERR 65
#define EXIT_TEMPFAIL 75
#define CHUNK 65536

/* Where each line goes (stderr or syslog), and the MTA's queue id that
 * starts it, if given. */
static bool use_syslog;
static const char *queue_id;

static void usage(FILE *f)
{
        fprintf(f,
                "Usage: dkimsign [OPTIONS] < message > signed-message\n"
                "\n"
                "Sign one RFC 5322 message from standard input through dkimsignd and\n"
                "write it to standard output with its DKIM-Signature field(s) prepended.\n"
                "\n"
                "  -s, --socket PATH     dkimsignd's socket (default %s)\n"
                "  -d, --domain DOMAIN   sign for DOMAIN (d=) instead of the From domain\n"
                "  -c, --canon H/B       canonicalization: simple or relaxed, for header\n"
                "                        and body (default relaxed/relaxed)\n"
                "  -u, --unsigned-ok     a message dkimsignd may not sign (no key for its\n"
                "                        domain, or not this user's to sign) is written\n"
                "                        back unchanged, exit 0 (for MTA filters)\n"
                "      --queue-id ID     start each line with the MTA's queue id ID\n"
                "      --arc             seal (ARC, RFC 8617) instead of signing: check the\n"
                "                        message's ARC chain and prepend the next ARC set,\n"
                "                        sealed with the key of --domain (required)\n"
                "      --authserv-id ID  with --arc: record the Authentication-Results\n"
                "                        fields of authserv-id ID (required)\n"
                "      --dns-server ADDR with --arc: ask ADDR (IP[:PORT]) for the chain's\n"
                "                        keys instead of the system's resolver\n"
                "  -h, --help            show this help\n"
                "  -V, --version         show the version\n"
                "\n"
                "Exit status: 0 signed (or written back unsigned with --unsigned-ok),\n"
                "64 usage error, 65 the message can't be signed, 75 temporary failure\n"
                "(try again later).  Lines go to standard error, or to syslog (facility\n"
                "mail) when standard error is standard output, as in an Exim\n"
                "transport_filter.\n",
                DKIMSIGN_DEFAULT_SOCKET_PATH);
}

/* stderr is the file stdout is (not a terminal): a line there would land
 * in the message.  Exim does this to a transport filter. */
static bool stderr_is_stdout(void)
{
        struct stat out, err;

        return !isatty(STDERR_FILENO) && fstat(STDOUT_FILENO, &out) == 0 && fstat(STDERR_FILENO, &err) == 0 &&
               out.st_dev == err.st_dev && out.st_ino == err.st_ino;
}

/* One line about this message: "dkimsign: [ID: ]TEXT", on stderr or to
 * syslog.  Control characters never reach either raw. */
static void say(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(int priority, const char *fmt, ...)
{
        char line[1024];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        if (n < 0)
                return;
        for (char *p = line; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        *p = '?';
        if (use_syslog)
                syslog(priority, "%s%s%s", queue_id ? queue_id : "", queue_id ? ": " : "", line);
        else
                fprintf(stderr, "dkimsign: %s%s%s\n", queue_id ? queue_id : "", queue_id ? ": " : "", line);
}

static int fail(int r, const char *what)
{
        bool temporary = dkimsign_err_is_temporary(r);

        say(temporary ? LOG_WARNING : LOG_ERR, "%s", what);
        return temporary ? EXIT_TEMPFAIL : EXIT_DATAERR;
}

/* What --unsigned-ok passes on: the daemon will not sign this message, and
 * says so for the message's domain, not for its form. */
static bool not_ours_to_sign(int r)
{
        return r == DKIMSIGN_E_NO_KEY || r == DKIMSIGN_E_DENIED;
}

static int write_all(FILE *f, const void *p, size_t n)
{
        return fwrite(p, 1, n, f) == n ? 0 : -1;
}

/* The signature fields, in the message's own line-end style. */
static int write_fields(const char *fields, bool lf_only)
{
        for (const char *p = fields; *p; p++) {
                if (lf_only && p[0] == '\r' && p[1] == '\n')
                        continue;
                if (putchar(*p) == EOF)
                        return -1;
        }
        return 0;
}

/* A command line it can't use: the usage on a terminal or pipe; one line
 * when stderr is the message (it would be lost there). */
static int usage_error(void)
{
        if (use_syslog)
                say(LOG_ERR, "invalid command line (see dkimsign --help)");
        else
                usage(stderr);
        return EXIT_USAGE;
}

int main(int argc, char **argv)
{
        enum { OPT_QUEUE_ID = 0x100, OPT_ARC, OPT_AUTHSERV_ID, OPT_DNS_SERVER };
        static const struct option opts[] = {
                { "socket", required_argument, NULL, 's' },
                { "domain", required_argument, NULL, 'd' },
                { "canon", required_argument, NULL, 'c' },
                { "unsigned-ok", no_argument, NULL, 'u' },
                { "queue-id", required_argument, NULL, OPT_QUEUE_ID },
                { "arc", no_argument, NULL, OPT_ARC },
                { "authserv-id", required_argument, NULL, OPT_AUTHSERV_ID },
                { "dns-server", required_argument, NULL, OPT_DNS_SERVER },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { 0 },
        };
        const char *socket_path = NULL, *domain = NULL;
        enum dkimsign_canon hc = DKIMSIGN_CANON_RELAXED, bc = DKIMSIGN_CANON_RELAXED;
        dkimsign_client *client = NULL;
        dkimsign_message *msg = NULL;
        FILE *spool = NULL, *src;
        static uint8_t chunk[CHUNK];
        bool seekable, first_line_seen = false, lf_only = false, unsigned_ok = false, arc = false;
        struct dkimsign_arc_options arc_opts = { 0 };
        char *fields = NULL, *unsigned_why = NULL;
        struct stat st;
        long start = 0;
        uint8_t last = '\n';
        int opt, r, status = 0;
        size_t n;

        use_syslog = stderr_is_stdout();
        if (use_syslog) {
                openlog("dkimsign", LOG_PID, LOG_MAIL);
                opterr = 0;
        }
        while ((opt = getopt_long(argc, argv, "s:d:c:uhV", opts, NULL)) != -1) {
                switch (opt) {
                case 's': socket_path = optarg; break;
                case 'd': domain = optarg; break;
                case 'c':
                        if (dkimsign_canon_parse(optarg, &hc, &bc) < 0) {
                                say(LOG_ERR, "--canon takes simple or relaxed, as H/B (e.g. relaxed/simple)");
                                return EXIT_USAGE;
                        }
                        break;
                case 'u': unsigned_ok = true; break;
                case OPT_QUEUE_ID: queue_id = optarg; break;
                case OPT_ARC: arc = true; break;
                case OPT_AUTHSERV_ID: arc_opts.authserv_id = optarg; break;
                case OPT_DNS_SERVER: arc_opts.dns_server = optarg; break;
                case 'h': usage(stdout); return 0;
                case 'V': printf("dkimsign %s\n", DKIMSIGN_VERSION); return 0;
                default: return usage_error();
                }
        }
        if (optind < argc)
                return usage_error();
        if (arc && (!domain || !arc_opts.authserv_id)) {
                say(LOG_ERR, "--arc needs --domain (the sealing domain) and --authserv-id");
                return EXIT_USAGE;
        }
        arc_opts.domain = domain;

        seekable = fstat(STDIN_FILENO, &st) == 0 && S_ISREG(st.st_mode) && (start = ftell(stdin)) >= 0;
        if (!seekable) {
                spool = tmpfile();
                if (!spool)
                        return fail(DKIMSIGN_E_SYSTEM, "cannot create a temporary file to spool the message");
        }
        r = dkimsign_message_new(&msg);
        if (r == 0)
                r = arc ? dkimsign_message_set_arc(msg) : dkimsign_message_set_canon(msg, hc, bc);
        if (r == 0 && domain && !arc)
                r = dkimsign_message_set_domain(msg, domain);
        if (r < 0) {
                status = fail(r, dkimsign_strerror(r));
                goto out;
        }
        while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0) {
                if (!first_line_seen) {
                        const uint8_t *nl = memchr(chunk, '\n', n);

                        if (nl) {
                                first_line_seen = true;
                                lf_only = nl == chunk || nl[-1] != '\r';
                        }
                }
                r = dkimsign_message_write(msg, chunk, n);
                if (r < 0) {
                        status = fail(r, r == DKIMSIGN_E_TOO_LARGE ? "the header block is too large"
                                                                   : dkimsign_strerror(r));
                        goto out;
                }
                if (spool && write_all(spool, chunk, n) < 0) {
                        status = fail(DKIMSIGN_E_SYSTEM, "cannot spool the message to a temporary file");
                        goto out;
                }
        }
        if (ferror(stdin)) {
                status = fail(DKIMSIGN_E_SYSTEM, "error reading standard input");
                goto out;
        }

        r = dkimsign_client_open(socket_path, &client);
        if (r == 0)
                r = arc ? dkimsign_arc_seal(client, msg, &arc_opts, &fields, NULL) : dkimsign_sign(client, msg, &fields);
        /* A chain that ended with cv=fail upstream gets no set: as a
         * message not ours to sign. */
        if (r < 0 && unsigned_ok && (not_ours_to_sign(r) || (arc && r == DKIMSIGN_E_HEADER))) {
                /* Said once the message is out, so the line never tells of
                 * a message that then failed to be written. */
                unsigned_why = strdup(client ? dkimsign_client_error(client) : dkimsign_strerror(r));
                if (!unsigned_why) {
                        status = fail(DKIMSIGN_E_NOMEM, dkimsign_strerror(DKIMSIGN_E_NOMEM));
                        goto out;
                }
        } else if (r < 0) {
                status = fail(r, client ? dkimsign_client_error(client) : dkimsign_strerror(r));
                goto out;
        }

        src = spool ? spool : stdin;
        if (fseek(src, spool ? 0 : start, SEEK_SET) < 0) {
                status = fail(DKIMSIGN_E_SYSTEM, "cannot read the message again");
                goto out;
        }
        if (fields && write_fields(fields, lf_only) < 0)
                goto write_error;
        while ((n = fread(chunk, 1, sizeof(chunk), src)) > 0) {
                if (write_all(stdout, chunk, n) < 0)
                        goto write_error;
                last = chunk[n - 1];
        }
        /* A header-only message gets the empty line that ends its header
         * (after a line end of its own if the last line had none); one
         * written back unsigned is left exactly as it came. */
        if (fields && dkimsign_message_ended_in_header(msg)) {
                const char *eol = lf_only ? "\n" : "\r\n";

                if (last != '\n' && fputs(eol, stdout) == EOF)
                        goto write_error;
                if (fputs(eol, stdout) == EOF)
                        goto write_error;
        }
        if (fflush(stdout) == 0 && !ferror(stdout)) {
                if (unsigned_why)
                        say(r == DKIMSIGN_E_NO_KEY ? LOG_INFO : LOG_WARNING, "not signed: %s", unsigned_why);
                goto out;
        }
write_error:
        status = fail(DKIMSIGN_E_SYSTEM, "error writing standard output");
out:
        free(fields);
        free(unsigned_why);
        dkimsign_message_free(msg);
        dkimsign_client_free(client);
        if (spool)
                fclose(spool);
        return status;
}
