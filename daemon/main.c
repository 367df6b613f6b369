/* SPDX-License-Identifier: MIT */
/*
 * dkimsignd: configuration, token login, the listening socket (inherited
 * from systemd or created), then the event loop.  Everything that can fail
 * at start-up fails here, loudly, before the daemon says it is ready.
 * With [token] processes > 1 this process becomes the supervisor of that
 * many signer processes, each of which logs in and serves (procs.h).
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

#include "keys/config.h"
#include "dkimsign-build.h"
#include "protocol/dkimsign-errors.h"
#include "daemon/dnswatch.h"
#include "hsm/hsm.h"
#include "keys/keys.h"
#include "keys/keystate.h"
#include "util/log.h"
#include "daemon/procs.h"
#include "dns/orgdomain.h"
#include "daemon/balance.h"
#include "daemon/server.h"
#include "daemon/workers.h"

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

_Static_assert(CONFIG_KEY_COPIES_MAX <= HSM_KEY_COPIES_MAX, "[token] key_copies beyond what hsm/ takes");

/* The configured token, by its label or its [token] uri, set to sign
 * through copies of its keys; not yet logged in.  Which token it is
 * (label and serial) is logged. */
static int token_open(const struct config *c, struct hsm **ret)
{
        int r = c->token_uri ? hsm_open_uri(c->token_uri, c->module, ret) : hsm_open(c->module, c->token_label, ret);
        struct hsm_token_id id;

        if (r == DKIMSIGN_E_CONFIG) {
                log_err("refusing to load the PKCS#11 module: %s", hsm_last_why());
                return r;
        }
        if (r < 0) {
                unsigned long ckr = hsm_last_ckr();
                char what[HSM_URI_MAX + 1024];

                /* hsm_open_uri's sentence names the URI and the module
                 * (for several tokens, their serials). */
                if (c->token_uri && hsm_last_why()[0])
                        snprintf(what, sizeof(what), "%s", hsm_last_why());
                else
                        snprintf(what, sizeof(what), "token '%s' in %s: %s",
                                 c->token_uri ? c->token_uri : c->token_label, c->module, dkimsign_strerror(r));
                /* The CKR name, and for an unprivileged signer where to
                 * look: most modules fail so when their files are out of
                 * its reach. */
                log_err("%s%s%s%s%s", what,
                        ckr ? " (" : "", ckr ? hsm_ckr_name(ckr) : "", ckr ? ")" : "",
                        geteuid() != 0 && r != DKIMSIGN_E_EXISTS
                                ? "; running as a user other than root: the token's files or the module's "
                                  "group must be reachable by this user (SoftHSM: its token directory, "
                                  "tokendir in SOFTHSM2_CONF; opencryptoki: membership of the pkcs11 "
                                  "group; tpm2-pkcs11: its store, TPM2_PKCS11_STORE)"
                                : "");
                return r;
        }
        hsm_token_id(*ret, &id);
        log_info("token '%s' (serial %s) in %s", id.label, id.serial[0] ? id.serial : "none", c->module);
        r = hsm_key_copies(*ret, c->key_copies);
        if (r < 0) {
                log_err("[token] key_copies: %s", dkimsign_strerror(r));
                *ret = hsm_close(*ret);
        }
        return r;
}

static int open_token(const struct config *c, struct hsm **ret)
{
        struct hsm_token_id id;
        char pin_path[4096];
        struct hsm *h = NULL;
        int r;

        r = token_open(c, &h);
        if (r < 0)
                return r;
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
        if (r == DKIMSIGN_E_CONFIG)
                log_err("refusing the PIN file: %s", hsm_last_why());
        else if (r < 0) {
                hsm_token_id(h, &id);
                log_err("login to token '%s' with the PIN in %s: %s", id.label, pin_path, dkimsign_strerror(r));
        }
        if (r < 0) {
                hsm_close(h);
                return r;
        }
        *ret = h;
        return 0;
}

/* The signing quotas' counters: made before any signer process is forked,
 * so they all count in the same table. */
static struct quota_table *quotas;
/* The metrics' counters (counters.h): likewise made before the fork, one
 * slot per signer process. */
static struct counters *counters;
/* [token] processes > 1: the signer processes' connection counts (made
 * before they start), and which of them this one is. */
static struct balance *balance;
static size_t balance_index;

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

        for (size_t i = 0; i < t->count; i++) {
                const struct signer_key *k = &t->keys[i];

                if (k->key->refused)
                        log_warn("key %s._domainkey.%s: never signs: %s", k->selector, k->domain, k->key->refused);
                else
                        log_info("key %s._domainkey.%s: %s %u bits%s, %s", k->selector, k->domain,
                                 hsm_alg_name(k->key->alg), k->key->bits, k->key->local ? "" : " (imported)",
                                 key_state_name(keytab_key_state(t, i, now, NULL, NULL)));
        }
        log_info("%zu signing key(s) on the token", t->count);
}

/* The keys' lifecycle states from the state file, attached to t.  A damaged
 * file is an error: nothing is reset behind the admin's back. */
static int attach_states(struct dnswatch *watch, struct keytab *t, const struct config *c, char *why,
                         size_t whylen)
{
        struct keystate file = { 0 };
        char inner[768];
        int r = keystate_load(c->state_dir, &file, inner, sizeof(inner));

        if (r < 0) {
                snprintf(why, whylen, "key states: %s (%s): repair the line, or move the file away to start "
                         "every key as pending", inner, dkimsign_strerror(r));
                return r;
        }
        r = dnswatch_attach(watch, t, c, &file);
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
        struct dnswatch *watch;
        bool supervised;        /* one of [token] processes: tell the others */
        struct quota_table *quota;  /* the signing quotas' counters, shared by every process */
        struct counters *counters;  /* the metrics' counters, likewise */
        bool watch_file_only;   /* another process watches DNS (procs.h) */
};

static bool same_string(const char *a, const char *b)
{
        return a == b || (a && b && strcmp(a, b) == 0);
}

static bool same_module_env(const struct config *a, const struct config *b)
{
        if (a->nmodule_env != b->nmodule_env)
                return false;
        for (size_t i = 0; i < a->nmodule_env; i++)
                if (strcmp(a->module_env[i], b->module_env[i]) != 0)
                        return false;
        return true;
}

/* How long a reload waits for the signatures in progress before it
 * initializes the module again. */
#define REINIT_WAIT_MS 5000

/* The module initialized again, so the keys listed next are the token's
 * as it is now, whatever the module caches (hsm_reinitialize). */
static int token_reinitialize(struct hsm *h, const struct config *c, char *why, size_t whylen)
{
        unsigned long ckr;
        int r;

        if (c->reinitialize == CONFIG_REINIT_NEVER ||
            (c->reinitialize == CONFIG_REINIT_AUTO && hsm_module_sees_changes(h)))
                return 0;
        r = hsm_reinitialize(h, REINIT_WAIT_MS);
        if (r == DKIMSIGN_E_BUSY) {
                /* Nothing changed: the keys are listed as before. */
                log_warn("reload: the PKCS#11 module was not initialized again: %s; a module that reads the "
                         "token once per initialization (tpm2-pkcs11) shows key changes at the next reload",
                         hsm_last_why());
                return 0;
        }
        if (r < 0) {
                ckr = hsm_last_ckr();
                snprintf(why, whylen, "initializing the PKCS#11 module again: %s: %s%s%s%s; signing fails until a "
                         "reload or restart succeeds", hsm_last_why(), dkimsign_strerror(r), ckr ? " (" : "",
                         ckr ? hsm_ckr_name(ckr) : "", ckr ? ")" : "");
                return r;
        }
        return 0;
}

static struct sign_ctx *reload_generation(void *userdata, bool from_request, char *why, size_t whylen)
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
        if (strcmp(c->module, src->running->module) != 0 || !same_string(c->token_label, src->running->token_label) ||
            !same_string(c->token_uri, src->running->token_uri) ||
            c->sessions != src->running->sessions || c->processes != src->running->processes ||
            c->key_copies != src->running->key_copies || !same_module_env(c, src->running) ||
            strcmp(c->socket_path, src->running->socket_path) != 0)
                log_warn("reload: [token] module/label/uri/module_env/sessions/processes/key_copies and [daemon] "
                         "socket take effect at the next restart");
        r = token_reinitialize(src->h, c, why, whylen);
        if (r < 0) {
                config_free(c);
                return NULL;
        }
        r = keytab_load(src->h, c, &keys);
        if (r < 0) {
                snprintf(why, whylen, "listing the keys on the token: %s (%s)", dkimsign_strerror(r),
                         hsm_ckr_name(hsm_last_ckr()));
                config_free(c);
                return NULL;
        }
        if (attach_states(src->watch, keys, c, why, whylen) < 0) {
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
        ctx->quota = src->quota;
        ctx->counters = src->counters;
        src->running = ctx->config;
        if (from_request && src->supervised)
                procs_reload_others();
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
        r = server_listen_unix(c->socket_path, c->socket_mode, c->socket_user, c->socket_group, c->user, ret_fd);
        if (r == 0)
                log_info("listening on %s", c->socket_path);
        return r;
}

/* One signer: the logged-in token, its keys and their states, the DNS
 * watcher, the worker pool and the event loop.  dkimsignd runs one, or
 * [token] processes of them under a supervisor (procs.h). */
struct signer {
        struct config *c;
        struct hsm *h;
        struct keytab *keys;
        struct dnswatch *watch;
        struct workers *w;
        struct server *s;
        struct sign_ctx *ctx;
        struct reload_source src;
};

/* The keys on sg->h with their lifecycle states, and the DNS watcher. */
static int signer_load(struct signer *sg)
{
        char err[1024];
        int r = keytab_load(sg->h, sg->c, &sg->keys);

        if (r < 0)
                log_err("listing the keys on the token: %s (%s)", dkimsign_strerror(r), hsm_ckr_name(hsm_last_ckr()));
        if (r == 0) {
                r = dnswatch_new(sg->c, &sg->watch, err, sizeof(err));
                if (r < 0)
                        log_err("%s", err);
                else if (sg->src.watch_file_only)
                        dnswatch_files_only(sg->watch);
        }
        if (r == 0) {
                r = attach_states(sg->watch, sg->keys, sg->c, err, sizeof(err));
                if (r < 0)
                        log_err("%s; refusing to start", err);
        }
        if (r == 0)
                log_keys(sg->keys);
        return r;
}

/* Serve on fd (taken) until SIGTERM; ready_fd (>= 0) hears one byte once
 * the loop is about to run. */
static int signer_serve(struct signer *sg, int fd, int ready_fd)
{
        struct config *c = sg->c;
        int r = workers_start(sg->h, c->sessions, c->limits.max_queue, c->sign_timeout_ms, &sg->w);

        if (r == DKIMSIGN_E_BUSY)
                log_err("starting %zu token sessions: the token opens none to sign on beside the one dkimsignd "
                        "keeps for its keys (%s); raise the token's session limit, or end what else holds its "
                        "sessions", c->sessions, hsm_ckr_name(hsm_last_ckr()));
        else if (r < 0)
                log_err("starting %zu token sessions: %s (%s)", c->sessions, dkimsign_strerror(r),
                        hsm_ckr_name(hsm_last_ckr()));
        if (r < 0) {
                close(fd);
                return r;
        }
        sg->src.h = sg->h;
        sg->src.running = c;
        sg->src.watch = sg->watch;
        sg->src.quota = quotas;
        sg->src.counters = counters;
        r = sign_ctx_new(c, sg->keys, &sg->ctx);
        sg->c = NULL;     /* transferred */
        sg->keys = NULL;  /* transferred */
        if (r == 0) {
                sg->ctx->quota = quotas;
                sg->ctx->counters = counters;
                r = server_new(sg->ctx, fd, sg->w, reload_generation, &sg->src, &sg->s);
                sg->ctx = NULL;   /* transferred */
                if (r == 0)
                        server_set_balance(sg->s, balance, balance_index);
        } else {
                close(fd);
        }
        if (r == 0) {
                r = dnswatch_start(sg->watch);
                if (r < 0)
                        log_err("starting the DNS watcher: %s", strerror(errno));
        }
        if (r == 0 && ready_fd >= 0) {
                (void) !write(ready_fd, "1", 1);
                close(ready_fd);
        }
        if (r == 0)
                r = server_run(sg->s);
        return r;
}

static void signer_close(struct signer *sg)
{
        bool hung = false;

        server_free(sg->s);
        if (workers_stop(sg->w) > 0) {
                hung = true;
                /* Finalizing the module under a thread still inside it
                 * could crash, and the hung request still points into the
                 * key registry (the watcher's): exiting is enough, so
                 * neither is freed. */
                log_err("exiting with a token call still hung");
                sg->h = NULL;
                sg->watch = NULL;
        }
        /* After the workers: they read the key states in its registry. */
        dnswatch_free(sg->watch);
        /* The Public Suffix List the policy reads, unless a worker may still. */
        if (!hung)
                dns_org_domain_free();
        sign_ctx_unref(sg->ctx);
        keytab_free(sg->keys);
        hsm_close(sg->h);
        config_free(sg->c);
}

/* What every signer process starts from. */
struct child_source {
        const char *config_path;
        enum log_target log_target;     /* the supervisor's, until the child reads the configuration */
        const char *syslog_socket;
        struct hsm_pin *pin;
        int listen_fd;
};

/* A signer process (procs.h): its own module instance and login. */
static int signer_child(size_t index, int ready_fd, void *userdata)
{
        struct child_source *cs = userdata;
        struct signer sg = { .src = { .config_path = cs->config_path, .supervised = true,
                                      .watch_file_only = index > 0 } };
        static char ident[32];
        char err[1024];
        int r;

        balance_index = index;
        /* Which signer said it, in the log: dkimsignd/0, dkimsignd/1, ... */
        snprintf(ident, sizeof(ident), "dkimsignd/%zu", index);
        counters_select(counters, index);
        log_init(ident, LOG_INFO);
        log_set_target(cs->log_target, cs->syslog_socket);
        r = config_load(cs->config_path, &sg.c, err, sizeof(err));
        if (r < 0) {
                log_err("configuration: %s", err);
        } else {
                log_init(ident, sg.c->log_level);
                log_set_target((enum log_target) sg.c->log_target, sg.c->syslog_socket);
                r = token_open(sg.c, &sg.h);
        }
        if (r == 0) {
                hsm_keep_pin(sg.h);
                r = hsm_login_pin(sg.h, cs->pin);
                if (r < 0) {
                        struct hsm_token_id id;

                        hsm_token_id(sg.h, &id);
                        log_err("login to token '%s': %s", id.label, dkimsign_strerror(r));
                }
        }
        cs->pin = hsm_pin_free(cs->pin);   /* this process's copy */
        if (r == 0)
                r = signer_load(&sg);
        if (r == 0) {
                r = signer_serve(&sg, cs->listen_fd, ready_fd);
                cs->listen_fd = -1;
        }
        if (cs->listen_fd >= 0)
                close(cs->listen_fd);
        signer_close(&sg);
        return r < 0 ? 1 : 0;
}

/* [token] processes > 1: the PIN is read once, here, before the
 * privileges go; each child logs in with it after. */
static int run_supervised(struct config *c, const char *config_path, int fd)
{
        struct child_source cs = { .config_path = config_path, .listen_fd = fd,
                                   .log_target = (enum log_target) c->log_target, .syslog_socket = c->syslog_socket };
        char pin_path[4096];
        int r = config_pin_path(c, pin_path, sizeof(pin_path));

        if (r < 0)
                log_err("no PIN: set [token] pin_file, or pass a 'pin' credential (LoadCredential=)");
        if (r == 0) {
                r = hsm_pin_read(pin_path, &cs.pin);
                if (r == DKIMSIGN_E_CONFIG)
                        log_err("refusing the PIN file: %s", hsm_last_why());
                else if (r < 0)
                        log_err("reading the PIN in %s: %s", pin_path, dkimsign_strerror(r));
        }
        if (r == 0)
                r = drop_privileges(c);
        if (r == 0) {
                prepare_state_dir(c);
                r = balance_new(c->processes, &balance);
                if (r < 0)
                        log_err("spreading connections over the signer processes: %s", dkimsign_strerror(r));
        }
        if (r == 0) {
                log_info("starting %zu signer processes of %zu token session(s) each", c->processes, c->sessions);
                r = procs_run(c->processes, signer_child, &cs);
        }
        balance = balance_free(balance);
        hsm_pin_free(cs.pin);
        close(fd);
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
        const char *config_path = DKIMSIGN_DEFAULT_CONFIG;
        struct signer sg = { 0 };
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

        r = config_load(config_path, &sg.c, err, sizeof(err));
        if (r < 0) {
                log_err("configuration: %s", err);
                return 1;
        }
        log_init("dkimsignd", sg.c->log_level);
        log_set_target((enum log_target) sg.c->log_target, sg.c->syslog_socket);
        /* Now, while this is the only thread, and before the module is
         * loaded or a signer process forked (they inherit it). */
        if (config_apply_module_env(sg.c, err, sizeof(err)) < 0) {
                log_err("[token] module_env: %s", err);
                config_free(sg.c);
                return 1;
        }
        raise_fd_limit(sg.c);
        sg.src.config_path = config_path;
        if (quota_table_new(&quotas) < 0 ||
            counters_new(sg.c->processes, sg.c->metrics_max_domains, sg.c->metrics_max_keys, &counters) < 0) {
                log_err("signing quotas and metrics: out of memory");
                quota_table_free(quotas);
                config_free(sg.c);
                return 1;
        }
        if (sg.c->processes > 1 && !check_only) {
                /* No token module in this process: they do not survive a fork. */
                r = open_listener(sg.c, &fd);
                if (r == 0)
                        r = run_supervised(sg.c, config_path, fd);
                config_free(sg.c);
                quota_table_free(quotas);
                counters_free(counters);
                return r < 0 ? 1 : 0;
        }
        r = open_token(sg.c, &sg.h);
        if (r == 0)
                r = signer_load(&sg);
        if (r == 0 && !check_only)
                r = open_listener(sg.c, &fd);
        if (r == 0 && !check_only)
                r = drop_privileges(sg.c);
        if (r == 0 && !check_only) {
                prepare_state_dir(sg.c);
                r = signer_serve(&sg, fd, -1);
                fd = -1;   /* taken */
        }
        if (fd >= 0)
                close(fd);
        signer_close(&sg);
        quota_table_free(quotas);
        counters_free(counters);
        return r < 0 ? 1 : 0;
}
