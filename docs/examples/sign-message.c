/* SPDX-License-Identifier: MIT */
/*
 * sign-message: sign one message with libdkimsign, out of the dkimsign
 * tree.  Build it against the installed library:
 *
 *     cc -o sign-message sign-message.c $(pkg-config --cflags --libs dkimsign)
 *     ./sign-message [SOCKET] < message.eml > signed.eml
 *
 * It streams standard input into the library (which canonicalizes and
 * hashes the body as it goes, keeping only the header block), asks
 * dkimsignd for the DKIM-Signature field(s), and writes them followed by
 * the message.  To write the message after its signature it keeps a copy
 * in memory: fine for an example; a real MTA already has the message
 * spooled.  Exit status: 0 signed, 65 can't be signed, 75 try again later.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dkimsign.h>

#define EX_DATAERR 65
#define EX_TEMPFAIL 75

static int fail(int r, const char *what, const char *why)
{
        fprintf(stderr, "sign-message: %s: %s\n", what, why ? why : dkimsign_strerror(r));
        return dkimsign_err_is_temporary(r) ? EX_TEMPFAIL : EX_DATAERR;
}

int main(int argc, char **argv)
{
        const char *socket_path = argc > 1 ? argv[1] : NULL;  /* NULL: the default socket */
        dkimsign_client *client = NULL;
        dkimsign_message *msg = NULL;
        char *fields = NULL, *copy = NULL, chunk[65536];
        size_t len = 0, n;
        int r, status = 0;

        r = dkimsign_message_new(&msg);
        if (r < 0)
                return fail(r, "new message", NULL);
        while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0) {
                char *p = realloc(copy, len + n);

                if (!p) {
                        status = fail(DKIMSIGN_E_NOMEM, "reading the message", NULL);
                        goto out;
                }
                copy = p;
                memcpy(copy + len, chunk, n);
                len += n;
                r = dkimsign_message_write(msg, chunk, n);
                if (r < 0) {
                        status = fail(r, "reading the message", NULL);
                        goto out;
                }
        }
        if (ferror(stdin)) {
                status = fail(DKIMSIGN_E_SYSTEM, "reading the message", "read error on standard input");
                goto out;
        }

        /* On failure the client is still allocated when it could be, so
         * dkimsign_client_error() can say why. */
        r = dkimsign_client_open(socket_path, &client);
        if (r < 0) {
                status = fail(r, "connecting to dkimsignd", client ? dkimsign_client_error(client) : NULL);
                goto out;
        }
        r = dkimsign_sign(client, msg, &fields);
        if (r < 0) {
                status = fail(r, "signing", dkimsign_client_error(client));
                goto out;
        }

        /* The fields end in CRLF; the message is written as it came. */
        fputs(fields, stdout);
        fwrite(copy, 1, len, stdout);
        if (fflush(stdout) != 0)
                status = fail(DKIMSIGN_E_SYSTEM, "writing the message", "write error on standard output");
out:
        free(fields);
        free(copy);
        dkimsign_message_free(msg);
        dkimsign_client_free(client);
        return status;
}
