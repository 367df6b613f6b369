/* SPDX-License-Identifier: MIT */
/*
 * dkimsignd: configuration, token login, the listening socket (inherited
 * from systemd or created), then the event loop.  Everything that can fail
 * at start-up fails here, loudly, before the daemon says it is ready.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "dkimsign-build.h"
#include "dkimsign-errors.h"
#include "dnswatch.h"
#include "hsm.h"
#include "keys.h"
#include "keystate.h"
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
        /* The loop accepts until EAGAIN: a blocking listener would hang it. */
        if (fcntl(SD_LISTEN_FDS_START, F_SETFL, fcntl(SD_LISTEN_FDS_START, F_GETFL) | O_NONBLOCK) < 0 ||
            fcntl(SD_LISTEN_FDS_START, F_SETFD, FD_CLOEXEC) < 0) {
                log_err("the socket systemd passed: %s", strerror(errno));
                return DKIMSIGN_E_SYSTEM;
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
        /* Kept so signing can log in again after a token reset, when
         * the PIN file is out of reach of the dropped privileges. */
        hsm_keep_pin(h);
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
        int64_t now = (int64_t) time(NULL);

        for (size_t i = 0; i < t->count; i++)
                log_info("key %s._domainkey.%s: %s %u bits%s, %s", t->keys[i].selector, t->keys[i].domain,
                         hsm_alg_name(t->keys[i].key->alg), t->keys[i].key->bits,
                         t->keys[i].key->local ? "" : " (imported)",
                         key_state_name(keytab_key_state(t, i, now, NULL, NULL)));
        log_info("%zu signing key(s) on the token", t->count);
}

/* The keys' lifecycle states from the state file, attached to t.  A damaged
 * file is an error: nothing is reset behind the admin's back. */
static int attach_states(struct keyreg *reg, struct keytab *t, const struct config *c, char *why, size_t whylen)
{
        struct keystate file = { 0 };
        char inner[768];
        int r = keystate_load(c->state_dir, &file, inner, sizeof(inner));

        if (r < 0) {
                snprintf(why, whylen, "key states: %s (%s): repair the line, or move the file away to start "
                         "every key as pending", inner, dkimsign_strerror(r));
                return r;
        }
        r = keyreg_attach(reg, t, c, &file);
        if (r < 0)
                snprintf(why, whylen, "key states: %s", dkimsign_strerror(r));
        keystate_clear(&file);
        return r;
}

/* The state directory, made if missing; one the daemon can't write is a
 * warning, not a refusal: the states are then kept in memory only. */
static void prepare_state_dir(const struct config *c)
{
        if (mkdir(c->state_dir, 0750) < 0 && errno != EEXIST)
                log_warn("state_dir %s: %s; key states are kept in memory only, and lost at restart", c->state_dir,
                         strerror(errno));
        else if (access(c->state_dir, W_OK | X_OK) < 0)
                log_warn("state_dir %s is not writable (%s); key states are kept in memory only, and lost at "
                         "restart", c->state_dir, strerror(errno));
}

/* What a reload needs: where the configuration is, the open token, and
 * the key state registry and watcher the new generation joins. */
struct reload_source {
        const char *config_path;
        struct hsm *h;
        const struct config *running;
        struct keyreg *reg;
        struct dnswatch *watch;
};

static struct sign_ctx *reload_generation(void *userdata, char *why, size_t whylen)
{
        struct reload_source *src = userdata;
        struct config *c = NULL;
        struct keytab *keys = NULL;
        struct sign_ctx *ctx = NULL;
        int r;

        r = config_load(src->config_path, &c, why, whylen);
        if (r < 0)
                return NULL;
        /* What was set up at start-up can't change without a restart. */
        if (strcmp(c->module, src->running->module) != 0 || strcmp(c->token_label, src->running->token_label) != 0 ||
            c->sessions != src->running->sessions || strcmp(c->socket_path, src->running->socket_path) != 0)
                log_warn("reload: [token] module/label/sessions and [daemon] socket take effect at the next restart");
        r = keytab_load(src->h, &keys);
        if (r < 0) {
                snprintf(why, whylen, "listing the keys on the token: %s (%s)", dkimsign_strerror(r),
                         hsm_ckr_name(hsm_last_ckr()));
                config_free(c);
                return NULL;
        }
        if (attach_states(src->reg, keys, c, why, whylen) < 0) {
                keytab_free(keys);
                config_free(c);
                return NULL;
        }
        log_keys(keys);
        if (src->watch)
                dnswatch_reconfigure(src->watch, c);
        if (sign_ctx_new(c, keys, &ctx) < 0) {
                snprintf(why, whylen, "out of memory");
                return NULL;
        }
        src->running = ctx->config;
        return ctx;
}

/* Started as root: everything that needs root is done (socket, token
 * login); become the configured user for good. */
static int drop_privileges(const struct config *c)
{
        struct passwd *pw;

        if (geteuid() != 0)
                return 0;
        if (!c->user) {
                log_warn("running as root: set [daemon] user to an unprivileged user");
                return 0;
        }
        pw = getpwnam(c->user);
        if (!pw) {
                log_err("[daemon] user %s does not exist", c->user);
                return DKIMSIGN_E_CONFIG;
        }
        if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) < 0 ||
            setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) < 0) {
                log_err("dropping privileges to %s: %s", c->user, strerror(errno));
                return DKIMSIGN_E_SYSTEM;
        }
        if (setuid(0) == 0 || seteuid(0) == 0) {
                log_err("could regain root after dropping privileges; refusing to run");
                return DKIMSIGN_E_INTERNAL;
        }
        /* Changing credentials resets it: keep key material out of core dumps. */
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        log_info("running as %s (uid %u)", c->user, (unsigned) pw->pw_uid);
        return 0;
}

static int open_listener(const struct config *c, int *ret_fd)
{
        int r = inherited_socket(ret_fd);

        if (r > 0) {
                log_info("listening on the socket passed by systemd");
                return 0;
        }
        if (r < 0)
                return r;
        r = server_listen_unix(c->socket_path, c->socket_mode, c->socket_user, c->socket_group, ret_fd);
        if (r == 0)
                log_info("listening on %s", c->socket_path);
        return r;
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
        struct reload_source src = { .config_path = DKIMSIGN_DEFAULT_CONFIG };
        struct config *c = NULL;
        struct hsm *h = NULL;
        struct keytab *keys = NULL;
        struct keyreg *reg = NULL;
        struct dnswatch *watch = NULL;
        struct workers *w = NULL;
        struct server *s = NULL;
        struct sign_ctx *ctx = NULL;
        struct rlimit no_core = { 0, 0 };
        bool check_only = false;
        char err[1024];
        int opt, fd = -1, r;

        while ((opt = getopt_long(argc, argv, "c:thV", opts, NULL)) != -1) {
                switch (opt) {
                case 'c': src.config_path = optarg; break;
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

        r = config_load(src.config_path, &c, err, sizeof(err));
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
        if (r == 0)
                r = keyreg_new(&reg);
        if (r == 0) {
                r = attach_states(reg, keys, c, err, sizeof(err));
                if (r < 0)
                        log_err("%s; refusing to start", err);
        }
        if (r == 0) {
                r = dnswatch_new(reg, c, &watch, err, sizeof(err));
                if (r < 0)
                        log_err("%s", err);
        }
        if (r == 0) {
                log_keys(keys);
                if (check_only)
                        goto out;
                r = open_listener(c, &fd);
        }
        if (r == 0)
                r = drop_privileges(c);
        if (r == 0)
                prepare_state_dir(c);
        if (r == 0) {
                r = workers_start(h, c->sessions, c->limits.max_queue, c->sign_timeout_ms, &w);
                if (r < 0)
                        log_err("starting %zu token sessions: %s (%s)", c->sessions, dkimsign_strerror(r),
                                hsm_ckr_name(hsm_last_ckr()));
        }
        if (r == 0) {
                src.h = h;
                src.running = c;
                src.reg = reg;
                src.watch = watch;
                r = sign_ctx_new(c, keys, &ctx);
                c = NULL;     /* transferred */
                keys = NULL;  /* transferred */
        }
        if (r == 0) {
                r = server_new(ctx, fd, w, reload_generation, &src, &s);
                fd = -1;      /* transferred */
                ctx = NULL;   /* transferred */
        }
        if (r == 0) {
                r = dnswatch_start(watch);
                if (r < 0)
                        log_err("starting the DNS watcher: %s", strerror(errno));
        }
        if (r == 0)
                r = server_run(s);
out:
        server_free(s);
        /* Before the workers: it reads the registry, not the token. */
        dnswatch_free(watch);
        if (workers_stop(w) > 0) {
                /* Finalizing the module under a thread still inside it
                 * could crash; exiting is enough. */
                log_err("exiting with a token call still hung");
                h = NULL;
        }
        if (fd >= 0)
                close(fd);
        sign_ctx_unref(ctx);
        keytab_free(keys);
        keyreg_free(reg);
        hsm_close(h);
        config_free(c);
        return r < 0 ? 1 : 0;
}
