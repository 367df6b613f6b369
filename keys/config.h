/* SPDX-License-Identifier: MIT */
/*
 * dkimsignd.conf: the INI configuration shared by dkimsignd and dkimsignctl,
 * parsed with inih into a struct with every limit at a safe default.
 *
 * config_parse() is a pure function from text to a struct (fuzzed): no
 * I/O, no NSS, no logging; it fills an error sentence naming the line
 * instead.  config_resolve() is the one step that asks NSS (user and group
 * names), and config_load() reads a file and does both.
 */
#ifndef KEYS_CONFIG_H
#define KEYS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "dkim/sign.h"
#include "dns/resolve.h"

#define CONFIG_FILE_MAX (1024 * 1024)
#define CONFIG_DOMAINS_MAX 100000
#define CONFIG_SELECTORS_MAX 16
#define CONFIG_PUBLISH_WAIT_DEFAULT (48 * 3600)      /* seconds */
#define CONFIG_RETIRE_GRACE_DEFAULT (7 * 86400)
#define CONFIG_CHECK_INTERVAL_DEFAULT 600
#define CONFIG_DNS_TIMEOUT_DEFAULT_MS 5000
#define CONFIG_KEY_COPIES_DEFAULT 1024    /* about 8-11 MB per signer process with SoftHSM, when all are made */
#define CONFIG_KEY_COPIES_MAX 65536       /* HSM_KEY_COPIES_MAX */
#define CONFIG_MODULE_ENV_MAX 16          /* [token] module_env entries */
#define CONFIG_ENV_NAME_MAX 64            /* an environment variable's name */

/* Who looks the keys' records up: dkimsignd's watcher thread, or
 * `dkimsignctl refresh` from a timer (the daemon then only reads the file). */
enum config_dns_watch {
        CONFIG_WATCH_DAEMON = 0,
        CONFIG_WATCH_TIMER,
};

/* What a domain whose keys are not (yet) active in DNS does. */
enum config_unpublished {
        CONFIG_UNPUBLISHED_UNSET = 0,    /* a [domain] without the key: the global value */
        CONFIG_UNPUBLISHED_REFUSE,       /* sign nothing, say why (the default) */
        CONFIG_UNPUBLISHED_SIGN,         /* sign with a key DNS does not show yet */
};

/* Messages signed in a minute and in a UTC day; 0: no limit. */
struct config_quota {
        uint64_t per_minute;
        uint64_t per_day;
};

/* [token] reinitialize: when a reload finalizes and initializes the module
 * again.  AUTO: unless the module is known to show other processes'
 * changes without it (hsm_module_sees_changes). */
enum config_reinit {
        CONFIG_REINIT_AUTO = 0,
        CONFIG_REINIT_ALWAYS,
        CONFIG_REINIT_NEVER,
};

struct config_limits {
        size_t max_frame;          /* largest frame accepted */
        size_t max_header_block;   /* largest header block in a SIGN request */
        size_t max_headers;        /* most header fields */
        size_t max_line;           /* longest header line */
        size_t max_connections;
        size_t max_inflight;       /* requests in flight on one connection */
        size_t max_queue;          /* requests waiting for a token session, all connections */
        /* What one peer uid may hold, so no one takes all of the above. */
        size_t max_connections_per_uid;
        size_t max_inflight_per_uid;     /* requests read and not yet answered, all its connections */
        size_t max_buffered_per_uid;     /* octets in its connections' buffers and queued requests */
        size_t max_buffered;             /* the same, all peers together */
        unsigned read_timeout_ms;  /* a started frame must complete within this */
        unsigned idle_timeout_ms;  /* a connection with nothing in flight is closed after this */
        unsigned write_timeout_ms; /* a reply the peer does not read for this long closes it */
        struct config_quota uid_quota;     /* each peer uid's */
        struct config_quota domain_quota;  /* each d= domain's, where its section sets none */
};

/* A user: or group: entry of an allow list (a name or a number), until
 * config_resolve makes it an id. */
struct config_acl_name {
        bool is_user;
        unsigned line;                   /* for the error sentence */
        char *name;
};

/* Who may sign: "*", user:NAME|UID, group:NAME|GID.  Numbers are taken by
 * config_parse, names by config_resolve (NSS), once, at load. */
struct config_acl {
        bool set;                        /* the key was given */
        bool any;                        /* "*": whoever can reach the socket */
        uid_t *uids;
        size_t nuids;
        gid_t *gids;
        size_t ngids;
        struct config_acl_name *names;   /* as written; empty after config_resolve */
        size_t nnames;
};

struct config_domain {
        char *name;                      /* lowercased */
        char *key_domain;                /* sign with this domain's keys (d=), NULL: name */
        char *selectors[CONFIG_SELECTORS_MAX];  /* keys to use; none: every key on the token */
        size_t nselectors;
        /* Set when the section has headers, oversign or oversign_if_present:
         * its signed fields (its own headers, else [signing]'s), each
         * over-signed as its own lists, else [signing]'s, say.  NULL: the
         * global policy. */
        struct dkim_hpolicy *hpolicy;
        size_t hpolicy_len;
        bool subdomains;                 /* also governs every subdomain without a section */
        struct config_acl allow;         /* unset: [daemon] allow */
        /* Key lifecycle for this domain's own keys; unset: the [dns]/[signing] value. */
        bool has_publish_wait, has_retire_grace;
        uint64_t publish_wait, retire_grace;     /* seconds */
        enum config_unpublished unpublished;
        bool has_quota_minute, has_quota_day;
        struct config_quota quota;       /* for d= this domain; unset: [limits] domain_quota_* */
        /* Signing options of the signatures whose d= this section gives;
         * unset: [signing]'s (config_identity, config_expire, config_also_sign). */
        char *identity;                  /* i= template (dkim/identity.h), checked against d= at load */
        bool has_expire;
        uint64_t expire;
        bool has_also_sign;              /* also_sign given: a domain, or "none" (also_sign NULL) */
        char *also_sign;
};

#define CONFIG_METRICS_DOMAINS_MAX 10000
#define CONFIG_METRICS_KEYS_MAX 10000
/* [metrics] allow's default, when the group exists. */
#define CONFIG_METRICS_GROUP "dkimsign-metrics"

struct config {
        char *path;                 /* where it was read from, for messages */
        /* [daemon] */
        char *socket_path;
        mode_t socket_mode;
        char *socket_group;         /* NULL: the daemon's own group */
        char *socket_user;          /* NULL: the daemon's own user */
        char *user;                 /* started as root: drop to this user */
        unsigned user_line;
        struct config_acl allow;    /* default: "*" */
        int log_level;              /* syslog priority, LOG_INFO by default */
        int log_target;             /* [daemon] log: enum log_target of util/log.h (0 auto, 1 journal, 2 syslog, 3 stderr) */
        char *syslog_socket;        /* NULL: /dev/log */
        char *state_dir;            /* key states (keystate.h); DKIMSIGN_DEFAULT_STATEDIR */
        /* [token] */
        char *module;               /* a uri's module-path when only it names the module */
        char *token_label;          /* NULL: the token is chosen by token_uri */
        char *token_uri;            /* [token] uri (RFC 7512), as written; NULL: by token_label */
        char *pin_file;             /* NULL: $CREDENTIALS_DIRECTORY/pin */
        char *module_env[CONFIG_MODULE_ENV_MAX];  /* "NAME=VALUE", for the module (config_apply_module_env) */
        size_t nmodule_env;
        size_t sessions;            /* token sessions = worker threads (per process) */
        size_t processes;           /* signer processes (procs.h); 1: no supervisor */
        size_t key_copies;          /* keys signed with through session copies (hsm_key_copies), per process */
        unsigned sign_timeout_ms;   /* a token call longer than this is answered with a temporary error */
        bool allow_decrypt_keys;    /* a key that may also decrypt signs (and keygen may make one); default no */
        bool lock_keys;             /* keys made or imported are CKA_MODIFIABLE false; default yes */
        enum config_reinit reinitialize;  /* at reload: re-initialize the module (hsm_reinitialize) */
        /* [limits] */
        struct config_limits limits;
        /* [signing] */
        uint64_t expire;            /* x= = t= + expire; 0: no x= */
        char *identity;             /* i= template, relative to d= ("%d"); NULL: no i= */
        char *also_sign;            /* a second d= that signs every message too; NULL: none */
        struct dkim_hpolicy *hpolicy;   /* headers (or the default), marked by oversign (or the default) */
        size_t hpolicy_len;
        enum config_unpublished unpublished;  /* REFUSE unless set to sign */
        /* [dns]: the key lifecycle's DNS watch (dnswatch.h) */
        enum config_dns_watch dns_watch;
        char *dns_resolver;         /* "IP[:PORT]" or "recursive"; NULL: the system resolver */
        enum dns_dnssec dns_dnssec; /* validate answers: no (the default), auto or yes */
        char *dns_trust_anchor;     /* NULL: DNS_TRUST_ANCHOR_DEFAULT */
        unsigned dns_timeout_ms;    /* one lookup, all tries */
        uint64_t check_interval;    /* seconds between checks of the keys' records */
        uint64_t publish_wait;      /* seconds a record must be seen before its key signs */
        uint64_t retire_grace;      /* seconds an old key stays after its successor is active */
        /* [metrics]: what a METRICS request shows, and to whom (docs/metrics.md) */
        bool metrics_per_domain;    /* series per domain and per key; default yes */
        size_t metrics_max_domains; /* domains counted by name; the rest as "_other" */
        size_t metrics_max_keys;    /* keys with series of their own */
        struct config_acl metrics_allow;  /* beside root and the daemon's user; default: no one */
        /* [domain NAME] sections, sorted by name */
        struct config_domain *domains;
        size_t ndomains;
};

/* Parse text; on failure fills err (a sentence naming the line).  User and
 * group names are kept as names (config_resolve). */
int config_parse(const char *text, size_t len, struct config **ret, char *err, size_t errlen);
/* Look the names of c up in NSS: allow lists' user: and group: names
 * become ids, [daemon] user must exist.  DKIMSIGN_E_CONFIG with a sentence
 * naming the line in err. */
int config_resolve(struct config *c, char *err, size_t errlen);
/* Read, parse and resolve a file (at most CONFIG_FILE_MAX octets). */
int config_load(const char *path, struct config **ret, char *err, size_t errlen);
struct config *config_free(struct config *c);

/* The [dns] resolver settings of c as resolver options (borrowed from c);
 * server, when neither NULL nor "", stands for [dns] resolver. */
void config_dns_options(const struct config *c, const char *server, struct dns_resolver_options *ret);

/* The section for a domain, or NULL. */
const struct config_domain *config_find_domain(const struct config *c, const char *name);

/* The section that governs mail from domain: its own, else the nearest
 * parent's that says subdomains = yes, else NULL (defaults apply). */
const struct config_domain *config_domain_for(const struct config *c, const char *domain);

/* The lifecycle settings for the keys of key_domain (a d= domain): its
 * section's (config_domain_for), else the global ones. */
uint64_t config_publish_wait(const struct config *c, const char *key_domain);
/* The quota of signatures with d= domain: its section's, else [limits]'. */
struct config_quota config_domain_quota(const struct config *c, const char *domain);
uint64_t config_retire_grace(const struct config *c, const char *key_domain);
enum config_unpublished config_unpublished(const struct config *c, const char *key_domain);

/* The signing options of a signature made under section d (the one that
 * governs the domain asked for, or also_sign's; NULL: none): its own,
 * else [signing]'s.  identity: the i= template or NULL; expire: seconds
 * after t= or 0; also_sign: the second d= domain's name or NULL. */
const char *config_identity(const struct config *c, const struct config_domain *d);
uint64_t config_expire(const struct config *c, const struct config_domain *d);
const char *config_also_sign(const struct config *c, const struct config_domain *d);

/* Put each [token] module_env entry into the environment (replacing a
 * value already there), for the PKCS#11 module to read when it is loaded.
 * A value naming a file (starting with '/') must pass util/fileperm's
 * check, as the module does: DKIMSIGN_E_CONFIG with the sentence in why.
 * setenv() is not thread-safe: call it once, before the module is loaded
 * and before any thread starts.  0, or DKIMSIGN_E_SYSTEM. */
int config_apply_module_env(const struct config *c, char *why, size_t whylen);

/* The PIN file to read: pin_file, else $CREDENTIALS_DIRECTORY/pin (systemd
 * LoadCredential=pin:...).  Into ret (size bytes); DKIMSIGN_E_CONFIG if none. */
int config_pin_path(const struct config *c, char *ret, size_t size);

#endif
