/* SPDX-License-Identifier: MIT */
/*
 * dkimsignctl status, reload and metrics: one request to the running
 * dkimsignd over its socket (docs/protocol.md, util/daemonreq.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl/ctl.h"
#include "protocol/dkimsign-errors.h"
#include "protocol/msg.h"
#include "util/daemonreq.h"

#define TIMEOUT_S 30

static int cmd_daemon(const struct options *o, uint8_t type, char **ret_text, size_t *ret_len)
{
        struct config *c = NULL;
        char why[1024];
        int r;

        if (load_config(o, &c))
                return EXIT_FAIL;
        r = daemonreq_text(c->socket_path, type, MSG_METRICS_PROMETHEUS, TIMEOUT_S, ret_text, ret_len, why,
                           sizeof(why));
        config_free(c);
        if (r < 0)
                return die("%s", why);
        return 0;
}

static int print_answer(const struct options *o, uint8_t type)
{
        char *text = NULL;
        int r = cmd_daemon(o, type, &text, NULL);

        if (r)
                return r;
        fputs(text, stdout);
        if (*text && text[strlen(text) - 1] != '\n')
                fputc('\n', stdout);
        free(text);
        return 0;
}

int cmd_status(const struct options *o)
{
        return print_answer(o, MSG_STATUS);
}

int cmd_reload(const struct options *o)
{
        return print_answer(o, MSG_RELOAD);
}

/* text into path whole: a temporary file beside it, synced, renamed over
 * it, so node_exporter never reads half a file. */
static int write_atomically(const char *path, const char *text, size_t len)
{
        char tmp[4096];
        size_t done = 0;
        int fd, n = snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path);

        if (n < 0 || (size_t) n >= sizeof(tmp))
                return die("%s: path too long", path);
        /* A name no one can guess, made with O_EXCL (no link followed):
         * another user of the directory can neither take it first nor
         * point it elsewhere. */
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return die("%s: %s", tmp, strerror(errno));
        while (done < len) {
                ssize_t w = write(fd, text + done, len - done);

                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        break;
                done += (size_t) w;
        }
        /* The mode whatever the umask: node_exporter runs as another user. */
        if (done < len || fchmod(fd, 0644) < 0 || fsync(fd) < 0 || close(fd) < 0) {
                int e = errno;

                if (done < len || fcntl(fd, F_GETFD) >= 0)
                        close(fd);
                unlink(tmp);
                return die("writing %s: %s", tmp, strerror(e));
        }
        if (rename(tmp, path) < 0) {
                int e = errno;

                unlink(tmp);
                return die("renaming %s to %s: %s", tmp, path, strerror(e));
        }
        return 0;
}

int cmd_metrics(const struct options *o)
{
        char *text = NULL;
        size_t len = 0;
        int r = cmd_daemon(o, MSG_METRICS, &text, &len);

        if (r)
                return r;
        if (o->nargs == 1)
                r = write_atomically(o->args[0], text, len);
        else
                fwrite(text, 1, len, stdout);
        free(text);
        return r;
}
