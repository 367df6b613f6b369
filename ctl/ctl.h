/* SPDX-License-Identifier: MIT */
/*
 * dkimsignctl's parts, one file a command group: main.c (the command line),
 * common.c (configuration, token, names, records, the key listing),
 * keys.c (init-token, keygen, dns-record, list), import.c,
 * import-opendkim.c, lifecycle.c (refresh, rotate, retire, destroy and the
 * key states), check.c (check, records), daemon.c (status, reload),
 * report.c (messages and JSON output), json.c (the JSON values, on jansson:
 * json.h).  Each cmd_* prints its result or one error line and returns the
 * exit status.
 */
#ifndef CTL_CTL_H
#define CTL_CTL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>

#include "ctl/json.h"
#include "dkim/idn.h"
#include "keys/config.h"
#include "hsm/hsm.h"
#include "keys/keys.h"

#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define PIN_MAX 256
#define KEY_FILE_MAX (64 * 1024)          /* a 4096-bit RSA PEM is about 3.3 kB */
#define TABLE_FILE_MAX (16 * 1024 * 1024)
#define FINGERPRINT_SIZE 64               /* "SHA256:" + 43 base64 characters */
#define SECTION_KEYS_MAX 2                /* dkimsignd signs with one key per algorithm */

/* Command options, as bits: each command says which it accepts. */
enum {
        OPT_DOMAIN = 1 << 0,
        OPT_SELECTOR = 1 << 1,
        OPT_ALGORITHM = 1 << 2,
        OPT_BITS = 1 << 3,
        OPT_SO_PIN_FILE = 1 << 4,
        OPT_JSON = 1 << 5,
        OPT_YES = 1 << 6,
        OPT_CONFIG_OUT = 1 << 7,
        OPT_RESOLVER = 1 << 8,
};

struct options {
        const char *config;
        const char *domain;
        const char *selector;
        const char *algorithm;
        const char *so_pin_file;
        const char *config_out;
        const char *resolver;    /* check: the DNS resolver to ask */
        unsigned bits;
        bool json;
        bool yes;
        unsigned given;          /* OPT_* bits seen on the command line */
        char **args;             /* the command's operands (borrowed from argv) */
        size_t nargs;
};

struct command {
        const char *name;
        int (*run)(const struct options *o);
        unsigned opts;           /* the OPT_* it accepts */
        size_t min_args, max_args;
        const char *synopsis;
        const char *help;
};

/* ---- report.c ---- */

/*
 * dkimsignctl's messages: one line on stderr, "dkimsignctl: " first.
 * Each returns the status it is given, so a command can
 * `return ctl_report(EXIT_FAIL, ...)`.
 */
int ctl_vreport(int status, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
int ctl_report(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A --json document (built with ctl/json.h; its reference is taken, NULL:
 * out of memory) on stdout.  0, or EXIT_FAIL after saying why. */
int ctl_json_out(json_t *v);

/* ---- common.c ---- */

/* The token's keys with their lifecycle, as list and refresh show them. */
struct key_listing {
        struct config *c;
        struct hsm *h;
        struct keytab *t;
        struct keyreg *reg;
        struct ctl_key_life *life;   /* one per key, from key_listing_lives */
};

int check_name_options(const struct options *o, const char *cmd);
/* A domain from the command line (--domain, a DOMAIN operand) in lowercase
 * A-label form into ret: U-labels are taken (IDNA2008, dkim/idn.h), a final
 * dot dropped.  0, or EXIT_USAGE after saying why it is no domain name. */
int domain_arg(const char *arg, char ret[DKIM_DOMAIN_SIZE]);
/* domain as dkimsignctl shows it: an internationalized one in both forms,
 * "xn--bcher-kva.example (bücher.example)", any other alone.  Into ret;
 * returns it. */
#define DOMAIN_SHOW_SIZE (DKIM_DOMAIN_SIZE + DKIM_IDN_UNICODE_SIZE + 3)
const char *domain_show(const char *domain, char ret[DOMAIN_SHOW_SIZE]);
/* --json's "domain_unicode": domain's U-label form, or domain itself when
 * it has none (a new reference; NULL when out of memory). */
json_t *json_domain_unicode(const char *domain);
const char *date_show(const char *d, char ret[11]);
int die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int fingerprint(EVP_PKEY *pub, char ret[FINGERPRINT_SIZE]);
bool key_generated(const struct hsm_key *k);
void key_listing_close(struct key_listing *l);
int key_listing_lives(struct key_listing *l);
int key_listing_open(const struct options *o, struct key_listing *l);
int load_config(const struct options *o, struct config **ret);
void lowercase(char *s);
int make_label(const char *selector, const char *domain, char *label, size_t size);
int open_all(const struct options *o, struct config **ret_c, struct hsm **ret_h);
int print_record(const struct hsm_key *k, const char *label);
int read_pin(const char *path, char *pin, size_t *ret_len);
bool selector_is_valid(const char *s);
int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int open_token(const struct config *c, struct hsm **ret);
/* The token h is open on, for messages: 'LABEL' (serial SERIAL), the
 * serial telling apart tokens of one label.  Into ret; returns it. */
#define TOKEN_NAME_SIZE 80
const char *token_name(const struct hsm *h, char ret[TOKEN_NAME_SIZE]);
/* The token the configuration asks for, for messages before it is open:
 * its label, or its [token] uri.  Borrowed from c. */
const char *token_wanted(const struct config *c);

/* ---- lifecycle.c ---- */

/*
 * dkimsignctl's side of the key lifecycle (keys/keystate.h): the states
 * `list` shows, the next selector `rotate` makes, and the DNS check after an
 * import that lets an already published key sign at once.  It reads and
 * writes the state file under its lock, as dkimsignd's watcher does; it
 * never prints and never exits: the commands in ctl.c do.
 */
/* Attach the state file's states to t (see keyreg_attach); free *ret_reg
 * after t.  DKIMSIGN_E_STATE with the file and line in why. */
int ctl_lifecycle_attach(const struct config *c, struct keytab *t, struct keyreg **ret_reg, char *why,
                         size_t whylen);

/* A key's lifecycle as `list` shows it. */
struct ctl_key_life {
        enum key_state state;     /* what dkimsignd does with it now */
        bool unpublished;         /* active only because its domain says unpublished = sign */
        int64_t seen;             /* first seen in DNS, 0: not yet */
        int64_t active;           /* signs since, 0: not active */
        int64_t signs_from;       /* published: when it becomes active */
        int64_t retires;          /* active with a newer key: when it retires, 0: not */
        int64_t retired;          /* retired: since (0 when only the token's date says so) */
        enum dns_security dnssec; /* what validation said of the last answer for its record */
};

void ctl_key_life(const struct keytab *t, const struct config *c, size_t i, int64_t now, struct ctl_key_life *ret);

/* The selector `rotate` proposes for domain: "<r|e><YYYYMMDD>" (r for RSA,
 * e for Ed25519) of today (UTC), with "-2", "-3", ... when taken. */
int ctl_next_selector(const struct keytab *t, const char *domain, enum hsm_alg alg, char *ret, size_t size);

/*
 * After an import: look the key's record up now (through [dns] resolver).
 * When DNS already shows it (a migration from OpenDKIM), the key is
 * recorded active at once: its verifiers have the record already, so
 * waiting publish_wait would only stop the domain's mail.  Returns 1 when
 * made active, 0 when it stays pending (why says what DNS showed), or an
 * error with why.
 */
int ctl_activate_if_published(const struct config *c, const char *label, EVP_PKEY *pub, char *why,
                              size_t whylen);

/* One check of every key of t in DNS, as dkimsignd's watcher makes it,
 * written to the state file (`dkimsignctl refresh`, for [dns] watch =
 * timer).  The changes are logged on stderr. */
int ctl_refresh(const struct config *c, struct keyreg *reg, char *why, size_t whylen);

/* A duration as the configuration writes it: "48h", "7d", "90s". */
void ctl_duration(uint64_t seconds, char ret[24]);

int cmd_destroy(const struct options *o);
int cmd_refresh(const struct options *o);
int cmd_retire(const struct options *o);
int cmd_rotate(const struct options *o);

/* ---- keys.c ---- */

int find_named(const struct config *c, struct hsm *h, const char *label, struct hsm_key **ret);
void list_life_notes(const struct keytab *t, const struct ctl_key_life *life);
int cmd_dns_record(const struct options *o);
int cmd_init_token(const struct options *o);
int cmd_keygen(const struct options *o);
int cmd_list(const struct options *o);

/* ---- import.c, import-opendkim.c ---- */

int import_failed(int r, const char *label);
void import_lifecycle(const struct config *c, const char *label, EVP_PKEY *pub);
int pem_private_key(const char *path, EVP_PKEY **ret, char *why, size_t whylen);
int cmd_import(const struct options *o);
int cmd_import_opendkim(const struct options *o);

/* ---- check.c ---- */

/*
 * dkimsignctl check and records: a domain's published SPF, DKIM and DMARC
 * records, judged (check) or suggested (records).  ctl.c parses the command
 * line and opens the configuration and the token; these functions print
 * their report (stdout) or one error line (stderr) and return the exit
 * status.
 */
/* Exit status of `check`, besides 0 (everything ok), 1 (could not run)
 * and 2 (usage). */
#define CTL_CHECK_EXIT_WARNINGS 3     /* warnings, no errors */
#define CTL_CHECK_EXIT_ERRORS 4       /* at least one error */
#define CTL_CHECK_EXIT_INCOMPLETE 5   /* no error found, but a lookup failed for now: run it again */

/*
 * dkimsignctl check DOMAIN: SPF, every DKIM selector of domain on the token
 * h (borrowed), DMARC.  resolver: --resolver, or NULL for c's [dns]
 * resolver, or the system's.
 */
int ctl_check(const struct config *c, struct hsm *h, const char *domain, const char *resolver, bool json);

/* dkimsignctl records DOMAIN: the SPF, DKIM and DMARC records to publish. */
int ctl_records(const struct config *c, struct hsm *h, const char *domain, bool json);

int cmd_check(const struct options *o);
int cmd_records(const struct options *o);

/* ---- daemon.c ---- */

/* dkimsignctl's requests to a running dkimsignd (util/daemonreq.h). */
int cmd_metrics(const struct options *o);
int cmd_reload(const struct options *o);
int cmd_status(const struct options *o);

#endif
