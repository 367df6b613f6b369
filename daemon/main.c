/* SPDX-License-Identifier: MIT */
/*
 * dkimsignd: configuration, token login, the listening socket (inherited
 * from systemd or created), then the event loop.  Everything that can fail
 * at start-up fails here, loudly, before the daemon says it is ready.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "dkimsign-build.h"
#include "dkimsign-errors.h"
#include "hsm.h"
#include "keys.h"
#include "log.h"
#include "server.h"
#include "workers.h"

#if HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

static void usage(FILE *f)
{
        fprintf(f,
                "Usage: dkimsignd [--config FILE]\n"
                "\n"
                "DKIM signing daemon: signs for local MTAs over a Unix socket with keys\n"
                "that stay inside a PKCS#11 token.\n"
                "\n"
                "  -c, --config FILE   configuration file (default %s)\n"
                "  -t, --check         check the configuration and the token, then exit\n"
                "  -h, --help          show this help\n"
                "  -V, --version       show the version\n",
                DKIMSIGN_DEFAULT_CONFIG);
}

/* The socket systemd passed (dkimsignd.socket), if any: it must be one
 * AF_UNIX stream socket that is already listening. */
static int inherited_socket(int *ret_fd)
{
#if HAVE_SYSTEMD
        int n = sd_listen_fds(1);

        if (n < 0) {
                log_err("sd_listen_fds: %s", strerror(-n));
                return DKIMSIGN_E_SYSTEM;
        }
        if (n == 0)
                return 0;
        if (n > 1) {
                log_err("systemd passed %d sockets; dkimsignd takes exactly one", n);
                return DKIMSIGN_E_CONFIG;
        }
        if (sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_STREAM, 1, NULL, 0) <= 0) {
                log_err("the socket systemd passed is not a listening AF_UNIX stream socket");
                return DKIMSIGN_E_CONFIG;
        }
        *ret_fd = SD_LISTEN_FDS_START;
        return 1;
#else
        (void) ret_fd;
        return 0;
#endif
}

static int open_token(const struct config *c, struct hsm **ret)
{
        char pin_path[4096];
        struct hsm *h = NULL;
        int r;

        r = hsm_open(c->module, c->token_label, &h);
        if (r < 0) {
                log_err("token '%s' in %s: %s", c->token_label, c->module, dkimsign_strerror(r));
                return r;
        }
        r = config_pin_path(c, pin_path, sizeof(pin_path));
        if (r < 0) {
                log_err("no PIN: set [token] pin_file, or pass a 'pin' credential (LoadCredential=)");
                hsm_close(h);
                return r;
        }
        r = hsm_login_pin_file(h, pin_path);
        if (r < 0) {
                log_err("login to token '%s' with the PIN in %s: %s", c->token_label, pin_path,
                        dkimsign_strerror(r));
                hsm_close(h);
                return r;
        }
        *ret = h;
        return 0;
}

/* Every connection is a descriptor: raise the soft limit to the hard one
 * and say so when max_connections still can't fit. */
static void raise_fd_limit(const struct config *c)
{
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return;
        if (rl.rlim_cur < rl.rlim_max) {
                rl.rlim_cur = rl.rlim_max;
                setrlimit(RLIMIT_NOFILE, &rl);
        }
        if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < c->limits.max_connections + 64)
                log_warn("max_connections is %zu but only %llu descriptors are allowed (LimitNOFILE=)",
                         c->limits.max_connections, (unsigned long long) rl.rlim_cur);
}

static void log_keys(const struct keytab *t)
{
        for (size_t i = 0; i < t->count; i++)
                log_info("key %s._domainkey.%s: %s %u bits%s", t->keys[i].selector, t->keys[i].domain,
                         hsm_alg_name(t->keys[i].key->alg), t->keys[i].key->bits,
                         t->keys[i].key->local ? "" : " (imported)");
        log_info("%zu signing key(s) on the token", t->count);
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                { "config", required_argument, NULL, 'c' },
                { "check", no_argument, NULL, 't' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { 0 },
        };
        const char *config_path = DKIMSIGN_DEFAULT_CONFIG;
        struct config *c = NULL;
        struct hsm *h = NULL;
        struct keytab *keys = NULL;
        struct workers *w = NULL;
        struct server *s = NULL;
        struct sign_ctx ctx;
        struct rlimit no_core = { 0, 0 };
        bool check_only = false;
        char err[1024];
        int opt, fd = -1, r;

        while ((opt = getopt_long(argc, argv, "c:thV", opts, NULL)) != -1) {
                switch (opt) {
                case 'c': config_path = optarg; break;
                case 't': check_only = true; break;
                case 'h': usage(stdout); return 0;
                case 'V': printf("dkimsignd %s\n", DKIMSIGN_VERSION); return 0;
                default: usage(stderr); return 2;
                }
        }
        if (optind < argc) {
                usage(stderr);
                return 2;
        }
        log_init("dkimsignd", LOG_INFO);
        /* Before any thread exists (the token module may start its own). */
        server_block_signals();
        /* Key material never reaches disk through a core dump. */
        setrlimit(RLIMIT_CORE, &no_core);
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

        r = config_load(config_path, &c, err, sizeof(err));
        if (r < 0) {
                log_err("configuration: %s", err);
                return 1;
        }
        log_init("dkimsignd", c->log_level);
        raise_fd_limit(c);
        r = open_token(c, &h);
        if (r == 0) {
                r = keytab_load(h, &keys);
                if (r < 0)
                        log_err("listing the keys on the token: %s (%s)", dkimsign_strerror(r),
                                hsm_ckr_name(hsm_last_ckr()));
        }
        if (r == 0) {
                log_keys(keys);
                if (check_only)
                        goto out;
                r = inherited_socket(&fd);
                if (r == 0) {
                        r = server_listen_unix(c->socket_path, c->socket_mode, c->socket_group, &fd);
                        if (r == 0)
                                log_info("listening on %s", c->socket_path);
                } else if (r > 0) {
                        log_info("listening on the socket passed by systemd");
                        r = 0;
                }
        }
        if (r == 0) {
                ctx = (struct sign_ctx) { .config = c, .keys = keys };
                r = workers_start(h, &ctx, c->sessions, c->limits.max_queue, &w);
                if (r < 0)
                        log_err("starting %zu token sessions: %s (%s)", c->sessions, dkimsign_strerror(r),
                                hsm_ckr_name(hsm_last_ckr()));
        }
        if (r == 0) {
                r = server_new(c, fd, w, &s);
                fd = -1;  /* transferred */
        }
        if (r == 0)
                r = server_run(s);
out:
        server_free(s);
        workers_stop(w);
        if (fd >= 0)
                close(fd);
        keytab_free(keys);
        hsm_close(h);
        config_free(c);
        return r < 0 ? 1 : 0;
}
