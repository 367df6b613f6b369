/* SPDX-License-Identifier: MIT */
/*
 * dkimsign: sign one message from stdin through dkimsignd and write it,
 * DKIM-Signature field(s) first, to stdout.  The message is streamed: it is
 * hashed as it is read and spooled to an unlinked temporary file (or read
 * again, when stdin is a regular file), never held whole in memory.
 *
 * Exit status: 0 signed; 64 usage; 65 the message can't be signed
 * (permanent); 75 try again later (daemon down, token failure, busy).
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dkimsign-build.h"
#include "client/dkimsign.h"

#define EXIT_USAGE 64
#define EXIT_DATAERR 65
#define EXIT_TEMPFAIL 75
#define CHUNK 65536

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
                "  -h, --help            show this help\n"
                "  -V, --version         show the version\n"
                "\n"
                "Exit status: 0 signed, 64 usage error, 65 the message can't be signed,\n"
                "75 temporary failure (try again later).\n",
                DKIMSIGN_DEFAULT_SOCKET_PATH);
}

static int fail(int r, const char *what)
{
        fprintf(stderr, "dkimsign: %s\n", what);
        return dkimsign_err_is_temporary(r) ? EXIT_TEMPFAIL : EXIT_DATAERR;
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

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "socket", required_argument, NULL, 's' },
                { "domain", required_argument, NULL, 'd' },
                { "canon", required_argument, NULL, 'c' },
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
        bool seekable, first_line_seen = false, lf_only = false;
        char *fields = NULL;
        struct stat st;
        long start = 0;
        uint8_t last = '\n';
        int opt, r, status = 0;
        size_t n;

        while ((opt = getopt_long(argc, argv, "s:d:c:hV", opts, NULL)) != -1) {
                switch (opt) {
                case 's': socket_path = optarg; break;
                case 'd': domain = optarg; break;
                case 'c':
                        if (dkimsign_canon_parse(optarg, &hc, &bc) < 0) {
                                fprintf(stderr, "dkimsign: --canon takes simple or relaxed, as H/B (e.g. relaxed/simple)\n");
                                return EXIT_USAGE;
                        }
                        break;
                case 'h': usage(stdout); return 0;
                case 'V': printf("dkimsign %s\n", DKIMSIGN_VERSION); return 0;
                default: usage(stderr); return EXIT_USAGE;
                }
        }
        if (optind < argc) {
                usage(stderr);
                return EXIT_USAGE;
        }

        seekable = fstat(STDIN_FILENO, &st) == 0 && S_ISREG(st.st_mode) && (start = ftell(stdin)) >= 0;
        if (!seekable) {
                spool = tmpfile();
                if (!spool)
                        return fail(DKIMSIGN_E_SYSTEM, "cannot create a temporary file to spool the message");
        }
        r = dkimsign_message_new(&msg);
        if (r == 0)
                r = dkimsign_message_set_canon(msg, hc, bc);
        if (r == 0 && domain)
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
                r = dkimsign_sign(client, msg, &fields);
        if (r < 0) {
                status = fail(r, client ? dkimsign_client_error(client) : dkimsign_strerror(r));
                goto out;
        }

        src = spool ? spool : stdin;
        if (fseek(src, spool ? 0 : start, SEEK_SET) < 0) {
                status = fail(DKIMSIGN_E_SYSTEM, "cannot read the message again");
                goto out;
        }
        if (write_fields(fields, lf_only) < 0)
                goto write_error;
        while ((n = fread(chunk, 1, sizeof(chunk), src)) > 0) {
                if (write_all(stdout, chunk, n) < 0)
                        goto write_error;
                last = chunk[n - 1];
        }
        /* A header-only message gets the empty line that ends its header
         * (after a line end of its own if the last line had none). */
        if (dkimsign_message_ended_in_header(msg)) {
                const char *eol = lf_only ? "\n" : "\r\n";

                if (last != '\n' && fputs(eol, stdout) == EOF)
                        goto write_error;
                if (fputs(eol, stdout) == EOF)
                        goto write_error;
        }
        if (fflush(stdout) == 0 && !ferror(stdout))
                goto out;
write_error:
        status = fail(DKIMSIGN_E_SYSTEM, "error writing standard output");
out:
        free(fields);
        dkimsign_message_free(msg);
        dkimsign_client_free(client);
        if (spool)
                fclose(spool);
        return status;
}
