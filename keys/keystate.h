/* SPDX-License-Identifier: MIT */
/*
 * Key states: the lifecycle of each DKIM key, and the state file that keeps
 * it across restarts (STATE_DIR/keys.state).
 *
 *   pending    generated (or imported); its record is not in DNS yet, or
 *              does not match the token's public key
 *   published  DNS showed a matching record, first at time `seen`
 *   active     seen + the domain's publish_wait has passed: it signs
 *   retired    it never signs again (its record may stay published)
 *
 * The file is outside input (an admin may edit it, a disk may damage it):
 * its parser is bounded and strict, and a damaged file is an error naming
 * the line, never an empty state: signing with the wrong keys, or not at
 * all, must not follow silently from a bad disk.  Writes are atomic (a
 * temporary file, fsync, rename, fsync of the directory) and serialized
 * between dkimsignd and dkimsignctl by a lock on the directory.
 *
 * Pure functions (parse, format, effective state) do no I/O and never log.
 */
#ifndef KEYS_KEYSTATE_H
#define KEYS_KEYSTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>

#include "dns/resolve.h"

#define KEYSTATE_FILE "keys.state"
#define KEYSTATE_MAGIC "dkimsign-keystate 1"
#define KEYSTATE_FILE_MAX (64 * 1024 * 1024)
#define KEYSTATE_ENTRIES_MAX 500000
#define KEYSTATE_LINE_MAX 512
#define KEYSTATE_LABEL_MAX 255
#define KEYSTATE_FP_LEN 64              /* hex SHA-256 of the DER SubjectPublicKeyInfo */
#define KEYSTATE_TIME_MAX 253402300799  /* 9999-12-31T23:59:59Z */

enum key_state {
        KEY_PENDING = 0,
        KEY_PUBLISHED,
        KEY_ACTIVE,
        KEY_RETIRED,
};

/* "pending", "published", "active", "retired". */
const char *key_state_name(enum key_state s);

/* One key's recorded life; times are Unix seconds, 0 = not (yet). */
struct key_times {
        enum key_state state;
        int64_t seen;      /* first seen matching in DNS */
        int64_t active;    /* signs from (recorded once the wait was over, or at import) */
        int64_t retired;   /* retired at */
};

struct keystate_entry {
        char label[KEYSTATE_LABEL_MAX + 1];          /* "<selector>._domainkey.<domain>", lowercase */
        char fingerprint[KEYSTATE_FP_LEN + 1];       /* which key of that label it is */
        struct key_times t;
        enum dns_security dnssec;    /* what validation said of the last answer for its record */
};

struct keystate {
        struct keystate_entry *entries;  /* owned, sorted by label, one per label */
        size_t count, cap;
};

/*
 * Parse a state file's text.  0 with *ret filled (free with keystate_clear);
 * DKIMSIGN_E_STATE with "line N: ..." in why for anything malformed,
 * inconsistent (a published key without its first-seen time), duplicated or
 * truncated (the last line must be "end COUNT"); DKIMSIGN_E_TOO_LARGE over
 * KEYSTATE_FILE_MAX or KEYSTATE_ENTRIES_MAX.
 */
int keystate_parse(const char *text, size_t len, struct keystate *ret, char *why, size_t whylen);

/* The file text for s, into an owned, NUL-terminated *ret (free()). */
int keystate_format(const struct keystate *s, char **ret, size_t *ret_len);

/* Free the entries and zero s; accepts a zeroed struct. */
void keystate_clear(struct keystate *s);

/* The entry for label, or NULL. */
const struct keystate_entry *keystate_find(const struct keystate *s, const char *label);

/* Insert e, or replace the entry of its label.  DKIMSIGN_E_NOMEM,
 * DKIMSIGN_E_TOO_LARGE (KEYSTATE_ENTRIES_MAX), DKIMSIGN_E_FORMAT (a label or
 * fingerprint the parser would refuse). */
int keystate_put(struct keystate *s, const struct keystate_entry *e);

/* The fingerprint of a public key (borrowed), lowercase hex. */
int keystate_fingerprint(EVP_PKEY *pub, char ret[KEYSTATE_FP_LEN + 1]);

/*
 * What the state file of a directory holds.  No file yet: 0 and an empty
 * state (every key pending).  DKIMSIGN_E_STATE with the path and line in why
 * for a damaged file; DKIMSIGN_E_SYSTEM when it can't be read.
 */
int keystate_load(const char *dir, struct keystate *ret, char *why, size_t whylen);

/* Write s atomically as the directory's state file (mode 0644: labels and
 * times are not secret).  DKIMSIGN_E_SYSTEM with the path in why. */
int keystate_save(const char *dir, const struct keystate *s, char *why, size_t whylen);

/* An exclusive lock on the state directory (flock), held until *ret_fd is
 * closed; waits for the other holder.  Every read-modify-write of the file
 * happens under it. */
int keystate_lock(const char *dir, int *ret_fd, char *why, size_t whylen);

/*
 * One key as the lifecycle sees it, for keystate_effective: its d= domain,
 * algorithm, whether the token retired it, its recorded times, and its
 * domain's publish_wait and retire_grace (seconds).
 */
struct key_view {
        const char *domain;
        int alg;
        bool token_retired;
        struct key_times t;
        uint64_t wait, grace;
};

/*
 * The state of keys[i] at now, from what was recorded and the clock alone
 * (no DNS): published becomes active at seen + wait; an active key retires
 * at grace after a newer key of its domain and algorithm became active; a
 * key retired on the token is retired.  *ret_since (may be NULL) gets when
 * it became active or retired, 0 otherwise; *ret_successor (may be NULL)
 * the index of the key that supersedes it, or (size_t) -1.
 */
enum key_state keystate_effective(const struct key_view *keys, size_t n, size_t i, int64_t now,
                                  int64_t *ret_since, size_t *ret_successor);

/* t (seconds since the epoch) as "YYYY-MM-DDTHH:MM:SSZ", for logs and
 * listings; the number itself when it is out of range. */
void keystate_utc(int64_t t, char ret[24]);

#endif
