/* SPDX-License-Identifier: MIT */
/*
 * Key states and their file.  See keystate.h.
 *
 * File format, one record a line, fields separated by one space:
 *
 *   # comment lines and blank lines are ignored
 *   dkimsign-keystate 1
 *   LABEL FINGERPRINT STATE SEEN ACTIVE RETIRED [DNSSEC]
 *   ...
 *   end COUNT
 *
 * LABEL is "<selector>._domainkey.<domain>" in lowercase, FINGERPRINT the
 * key's hex SHA-256 (a key destroyed and made again under the same label is
 * another key), STATE pending|published|active|retired, and the times are
 * Unix seconds, 0 for none.  DNSSEC is what validation said of the last
 * answer for the key's record (secure|insecure|bogus); it is left out when
 * the answer was not validated, so a file written with [dns] dnssec = no
 * stays readable by versions that knew only six fields.  The "end" line
 * catches a truncated file.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/x509.h>

#include "protocol/dkimsign-errors.h"
#include "keys/keystate.h"
#include "util/readfile.h"

static const char *const state_names[] = {
        [KEY_PENDING] = "pending", [KEY_PUBLISHED] = "published",
        [KEY_ACTIVE] = "active", [KEY_RETIRED] = "retired",
};

const char *key_state_name(enum key_state s)
{
        return (unsigned) s <= KEY_RETIRED ? state_names[s] : "unknown";
}

static int bad(char *why, size_t whylen, size_t line, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int bad(char *why, size_t whylen, size_t line, const char *fmt, ...)
{
        char msg[256];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (whylen)
                snprintf(why, whylen, "line %zu: %s", line, msg);
        return DKIMSIGN_E_STATE;
}

static bool label_is_valid(const char *s, size_t len)
{
        const char *mid;

        if (len == 0 || len > KEYSTATE_LABEL_MAX)
                return false;
        for (size_t i = 0; i < len; i++) {
                char c = s[i];

                if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_'))
                        return false;
                if (c == '.' && (i == 0 || i + 1 == len || s[i - 1] == '.'))
                        return false;
        }
        mid = memmem(s, len, "._domainkey.", 12);
        return mid && mid > s && (size_t) (mid - s) + 12 < len;
}

static bool fingerprint_is_valid(const char *s, size_t len)
{
        if (len != KEYSTATE_FP_LEN)
                return false;
        for (size_t i = 0; i < len; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return true;
}

/* A decimal time without sign or leading zeros, 0..KEYSTATE_TIME_MAX. */
static int parse_time(const char *s, size_t len, int64_t *ret)
{
        int64_t n = 0;

        if (len == 0 || len > 12 || (len > 1 && s[0] == '0'))
                return -1;
        for (size_t i = 0; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -1;
                n = n * 10 + (s[i] - '0');
        }
        if (n > KEYSTATE_TIME_MAX)
                return -1;
        *ret = n;
        return 0;
}

/* Split one line into at most max fields on single spaces; -1 on an empty
 * field (two spaces, or a leading or trailing one). */
static int split_fields(const char *line, size_t len, const char **f, size_t *flen, size_t max)
{
        size_t n = 0, start = 0;

        for (size_t i = 0; i <= len; i++) {
                if (i < len && line[i] != ' ')
                        continue;
                if (i == start || n == max)
                        return -1;
                f[n] = line + start;
                flen[n++] = i - start;
                start = i + 1;
        }
        return (int) n;
}

static bool field_is(const char *f, size_t len, const char *word)
{
        return len == strlen(word) && memcmp(f, word, len) == 0;
}

/* "secure", "insecure" or "bogus"; DNS_SEC_UNCHECKED for anything else. */
static enum dns_security security_of(const char *f, size_t len)
{
        for (int k = DNS_SEC_INSECURE; k <= DNS_SEC_BOGUS; k++)
                if (field_is(f, len, dns_security_name((enum dns_security) k)))
                        return (enum dns_security) k;
        return DNS_SEC_UNCHECKED;
}

static int parse_entry(const char **f, const size_t *fl, size_t line, struct keystate_entry *e, char *why,
                       size_t whylen)
{
        int k;

        if (!label_is_valid(f[0], fl[0]))
                return bad(why, whylen, line, "'%.*s' is not a key label (selector._domainkey.domain, lowercase)",
                           (int) (fl[0] < 80 ? fl[0] : 80), f[0]);
        if (!fingerprint_is_valid(f[1], fl[1]))
                return bad(why, whylen, line, "the fingerprint is not 64 lowercase hex digits");
        for (k = KEY_PENDING; k <= KEY_RETIRED; k++)
                if (field_is(f[2], fl[2], state_names[k]))
                        break;
        if (k > KEY_RETIRED)
                return bad(why, whylen, line, "unknown state (pending, published, active or retired)");
        memcpy(e->label, f[0], fl[0]);
        e->label[fl[0]] = 0;
        memcpy(e->fingerprint, f[1], fl[1]);
        e->fingerprint[fl[1]] = 0;
        e->t.state = (enum key_state) k;
        if (parse_time(f[3], fl[3], &e->t.seen) < 0 || parse_time(f[4], fl[4], &e->t.active) < 0 ||
            parse_time(f[5], fl[5], &e->t.retired) < 0)
                return bad(why, whylen, line, "a time is not a number of seconds (0 to %lld)",
                           (long long) KEYSTATE_TIME_MAX);
        e->dnssec = DNS_SEC_UNCHECKED;
        if (fl[6] && (e->dnssec = security_of(f[6], fl[6])) == DNS_SEC_UNCHECKED)
                return bad(why, whylen, line, "unknown DNSSEC status (secure, insecure or bogus)");
        if (e->t.state == KEY_PUBLISHED && !e->t.seen)
                return bad(why, whylen, line, "a published key needs the time it was first seen");
        if (e->t.state == KEY_ACTIVE && !e->t.active)
                return bad(why, whylen, line, "an active key needs the time it became active");
        if (e->t.state == KEY_RETIRED && !e->t.retired)
                return bad(why, whylen, line, "a retired key needs the time it was retired");
        return 0;
}

static int entry_cmp(const void *a, const void *b)
{
        return strcmp(((const struct keystate_entry *) a)->label, ((const struct keystate_entry *) b)->label);
}

static int grow(struct keystate *s)
{
        struct keystate_entry *p;
        size_t cap;

        if (s->count < s->cap)
                return 0;
        if (s->count >= KEYSTATE_ENTRIES_MAX)
                return DKIMSIGN_E_TOO_LARGE;
        cap = s->cap ? s->cap * 2 : 16;
        if (cap > KEYSTATE_ENTRIES_MAX)
                cap = KEYSTATE_ENTRIES_MAX;
        p = realloc(s->entries, cap * sizeof(*p));
        if (!p)
                return DKIMSIGN_E_NOMEM;
        s->entries = p;
        s->cap = cap;
        return 0;
}

/* One line (without its newline) of the file; *ret_end set on "end N". */
static int parse_line(struct keystate *s, const char *l, size_t ll, size_t line, bool *seen_magic,
                      bool *ret_end, char *why, size_t whylen)
{
        const char *f[7];
        size_t fl[7] = { 0 };
        int n, r;

        if (ll == 0 || l[0] == '#')
                return 0;
        if (!*seen_magic) {
                if (ll != strlen(KEYSTATE_MAGIC) || memcmp(l, KEYSTATE_MAGIC, ll) != 0)
                        return bad(why, whylen, line, "expected '%s' (not a dkimsignd state file, or another version)",
                                   KEYSTATE_MAGIC);
                *seen_magic = true;
                return 0;
        }
        n = split_fields(l, ll, f, fl, 7);
        if (n == 2 && field_is(f[0], fl[0], "end")) {
                int64_t count;

                if (parse_time(f[1], fl[1], &count) < 0 || (uint64_t) count != s->count)
                        return bad(why, whylen, line, "the end line counts %.*s keys, the file has %zu",
                                   (int) (fl[1] < 20 ? fl[1] : 20), f[1], s->count);
                *ret_end = true;
                return 0;
        }
        if (n != 6 && n != 7)
                return bad(why, whylen, line, "expected 'LABEL FINGERPRINT STATE SEEN ACTIVE RETIRED [DNSSEC]'");
        r = grow(s);
        if (r == DKIMSIGN_E_TOO_LARGE)
                return bad(why, whylen, line, "more than %d keys", KEYSTATE_ENTRIES_MAX), DKIMSIGN_E_TOO_LARGE;
        if (r < 0)
                return r;
        r = parse_entry(f, fl, line, &s->entries[s->count], why, whylen);
        if (r == 0)
                s->count++;
        return r;
}

int keystate_parse(const char *text, size_t len, struct keystate *ret, char *why, size_t whylen)
{
        struct keystate s = { 0 };
        bool seen_magic = false, end = false;
        size_t line = 0, i = 0;
        int r = 0;

        if (whylen)
                why[0] = 0;
        if (len > KEYSTATE_FILE_MAX) {
                snprintf(why, whylen, "larger than %d octets", KEYSTATE_FILE_MAX);
                return DKIMSIGN_E_TOO_LARGE;
        }
        while (i < len && r == 0) {
                const char *l = text + i, *nl = memchr(l, '\n', len - i);
                size_t ll;

                line++;
                if (end) {
                        r = bad(why, whylen, line, "text after the end line");
                        break;
                }
                if (!nl) {
                        r = bad(why, whylen, line, "no newline at the end: the file was cut short");
                        break;
                }
                ll = (size_t) (nl - l);
                i += ll + 1;
                if (ll > KEYSTATE_LINE_MAX) {
                        r = bad(why, whylen, line, "longer than %d characters", KEYSTATE_LINE_MAX);
                        break;
                }
                if (memchr(l, 0, ll) || memchr(l, '\r', ll) || memchr(l, '\t', ll)) {
                        r = bad(why, whylen, line, "a NUL, CR or tab character");
                        break;
                }
                r = parse_line(&s, l, ll, line, &seen_magic, &end, why, whylen);
        }
        if (r == 0 && !end)
                r = bad(why, whylen, line + 1, "no 'end' line: the file was cut short or is not a state file");
        if (r == 0 && s.count > 1) {
                qsort(s.entries, s.count, sizeof(*s.entries), entry_cmp);
                for (size_t k = 1; k < s.count; k++)
                        if (strcmp(s.entries[k - 1].label, s.entries[k].label) == 0) {
                                snprintf(why, whylen, "key %s appears twice", s.entries[k].label);
                                r = DKIMSIGN_E_STATE;
                                break;
                        }
        }
        if (r < 0) {
                keystate_clear(&s);
                return r;
        }
        *ret = s;
        return 0;
}

int keystate_format(const struct keystate *s, char **ret, size_t *ret_len)
{
        char *text = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&text, &size);

        if (!f)
                return DKIMSIGN_E_NOMEM;
        fprintf(f, "# dkimsignd key states, kept by dkimsignd and dkimsignctl; see docs/configuration.md\n"
                   "%s\n", KEYSTATE_MAGIC);
        for (size_t i = 0; i < s->count; i++) {
                const struct keystate_entry *e = &s->entries[i];

                fprintf(f, "%s %s %s %" PRId64 " %" PRId64 " %" PRId64 "%s%s\n", e->label, e->fingerprint,
                        key_state_name(e->t.state), e->t.seen, e->t.active, e->t.retired,
                        e->dnssec ? " " : "", e->dnssec ? dns_security_name(e->dnssec) : "");
        }
        fprintf(f, "end %zu\n", s->count);
        if (fclose(f) != 0) {
                free(text);
                return DKIMSIGN_E_NOMEM;
        }
        *ret = text;
        *ret_len = size;
        return 0;
}

void keystate_clear(struct keystate *s)
{
        free(s->entries);
        *s = (struct keystate) { 0 };
}

static size_t lower_bound(const struct keystate *s, const char *label)
{
        size_t lo = 0, hi = s->count;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (strcmp(s->entries[mid].label, label) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo;
}

const struct keystate_entry *keystate_find(const struct keystate *s, const char *label)
{
        size_t i = lower_bound(s, label);

        return i < s->count && strcmp(s->entries[i].label, label) == 0 ? &s->entries[i] : NULL;
}

int keystate_put(struct keystate *s, const struct keystate_entry *e)
{
        size_t i;
        int r;

        if (!label_is_valid(e->label, strnlen(e->label, sizeof(e->label))) ||
            !fingerprint_is_valid(e->fingerprint, strnlen(e->fingerprint, sizeof(e->fingerprint))) ||
            (unsigned) e->t.state > KEY_RETIRED)
                return DKIMSIGN_E_FORMAT;
        i = lower_bound(s, e->label);
        if (i < s->count && strcmp(s->entries[i].label, e->label) == 0) {
                s->entries[i] = *e;
                return 0;
        }
        r = grow(s);
        if (r < 0)
                return r;
        memmove(&s->entries[i + 1], &s->entries[i], (s->count - i) * sizeof(*s->entries));
        s->entries[i] = *e;
        s->count++;
        return 0;
}

int keystate_fingerprint(EVP_PKEY *pub, char ret[KEYSTATE_FP_LEN + 1])
{
        unsigned char *der = NULL, md[32];
        unsigned int md_len = 0;
        int len = i2d_PUBKEY(pub, &der), ok;

        if (len <= 0)
                return DKIMSIGN_E_FORMAT;
        ok = EVP_Digest(der, (size_t) len, md, &md_len, EVP_sha256(), NULL) == 1 && md_len == sizeof(md);
        OPENSSL_free(der);
        if (!ok)
                return DKIMSIGN_E_INTERNAL;
        for (size_t i = 0; i < sizeof(md); i++)
                snprintf(ret + 2 * i, 3, "%02x", md[i]);
        return 0;
}

/* ---- the file ---- */

static int state_path(const char *dir, const char *name, char *ret, size_t size)
{
        int n = snprintf(ret, size, "%s/%s", dir, name);

        return n < 0 || (size_t) n >= size ? DKIMSIGN_E_TOO_LARGE : 0;
}

int keystate_load(const char *dir, struct keystate *ret, char *why, size_t whylen)
{
        char path[4096], inner[512], *text = NULL;
        size_t len = 0;
        int r;

        if (state_path(dir, KEYSTATE_FILE, path, sizeof(path)) < 0) {
                snprintf(why, whylen, "state_dir %s: path too long", dir);
                return DKIMSIGN_E_CONFIG;
        }
        r = readfile(path, KEYSTATE_FILE_MAX, READFILE_NOFOLLOW, &text, &len, why, whylen);
        if (r == DKIMSIGN_E_SYSTEM && errno == ENOENT) {
                *ret = (struct keystate) { 0 };
                return 0;
        }
        if (r < 0)
                return r == DKIMSIGN_E_TOO_LARGE ? DKIMSIGN_E_STATE : r;
        r = keystate_parse(text, len, ret, inner, sizeof(inner));
        readfile_free(text, len);
        if (r < 0)
                snprintf(why, whylen, "%s: %s", path, inner);
        return r;
}

static int write_all(int fd, const char *p, size_t len)
{
        while (len) {
                ssize_t n = write(fd, p, len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return -1;
                p += n;
                len -= (size_t) n;
        }
        return 0;
}

/* A new temporary of our own in the state directory dfd: whatever holds
 * its name (a crash's leftover, or a link planted by whoever else can
 * write the directory, such as the daemon's user when dkimsignctl runs as
 * root) is unlinked, never opened, truncated or followed: O_EXCL creates
 * a new file or fails.  Another writer racing for the name makes it try
 * again, a few times. */
static int temp_create(int dfd, const char *name)
{
        for (int tries = 0; tries < 8; tries++) {
                int fd;

                if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT)
                        return -1;
                fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0644);
                if (fd >= 0 || errno != EEXIST)
                        return fd;
        }
        return -1;
}

int keystate_save(const char *dir, const struct keystate *s, char *why, size_t whylen)
{
        static const char tmp[] = "." KEYSTATE_FILE ".tmp";
        char *text = NULL;
        size_t len = 0;
        bool created;
        int fd = -1, dfd = -1, r;

        r = keystate_format(s, &text, &len);
        if (r < 0) {
                snprintf(why, whylen, "out of memory");
                return r;
        }
        /* Every step by the directory's descriptor: the directory the
         * temporary is made in is the one it is renamed in and synced. */
        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0) {
                snprintf(why, whylen, "state_dir %s: %s", dir, strerror(errno));
                free(text);
                return DKIMSIGN_E_SYSTEM;
        }
        fd = temp_create(dfd, tmp);
        created = fd >= 0;
        /* fchmod: the mode whatever the umask; the file is no secret. */
        if (fd < 0 || fchmod(fd, 0644) < 0 || write_all(fd, text, len) < 0 || fsync(fd) < 0) {
                snprintf(why, whylen, "%s/%s: %s", dir, tmp, strerror(errno));
                r = DKIMSIGN_E_SYSTEM;
        } else if (close(fd) < 0 || (fd = -1, renameat(dfd, tmp, dfd, KEYSTATE_FILE) < 0)) {
                fd = -1;
                snprintf(why, whylen, "%s/%s: %s", dir, KEYSTATE_FILE, strerror(errno));
                r = DKIMSIGN_E_SYSTEM;
        } else if (fsync(dfd) < 0) {
                /* The rename itself must reach the disk, or a crash can
                 * bring the old file back. */
                snprintf(why, whylen, "%s: %s", dir, strerror(errno));
                r = DKIMSIGN_E_SYSTEM;
        }
        if (fd >= 0)
                close(fd);
        /* Only a temporary this call made: never a name it did not create. */
        if (r < 0 && created)
                unlinkat(dfd, tmp, 0);
        close(dfd);
        free(text);
        return r;
}

int keystate_lock(const char *dir, int *ret_fd, char *why, size_t whylen)
{
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd < 0) {
                snprintf(why, whylen, "state_dir %s: %s", dir, strerror(errno));
                return DKIMSIGN_E_SYSTEM;
        }
        while (flock(fd, LOCK_EX) < 0) {
                if (errno == EINTR)
                        continue;
                snprintf(why, whylen, "locking state_dir %s: %s", dir, strerror(errno));
                close(fd);
                return DKIMSIGN_E_SYSTEM;
        }
        *ret_fd = fd;
        return 0;
}

/* ---- the state at a given time ---- */

/* The state from the key's own record and the clock, before succession. */
static enum key_state own_state(const struct key_view *k, int64_t now, int64_t *ret_since)
{
        *ret_since = 0;
        if (k->token_retired)
                return KEY_RETIRED;
        switch (k->t.state) {
        case KEY_RETIRED:
                *ret_since = k->t.retired;
                return KEY_RETIRED;
        case KEY_ACTIVE:
                *ret_since = k->t.active;
                return KEY_ACTIVE;
        case KEY_PUBLISHED:
                if (k->t.seen > 0 && (uint64_t) k->t.seen + k->wait <= (uint64_t) now) {
                        *ret_since = k->t.seen + (int64_t) k->wait;
                        return KEY_ACTIVE;
                }
                return KEY_PUBLISHED;
        default:
                return KEY_PENDING;
        }
}

enum key_state keystate_effective(const struct key_view *keys, size_t n, size_t i, int64_t now,
                                  int64_t *ret_since, size_t *ret_successor)
{
        const struct key_view *k = &keys[i];
        int64_t since, next_since = 0;
        size_t next = (size_t) -1;
        enum key_state st = own_state(k, now, &since);

        if (st == KEY_ACTIVE) {
                /* The earliest key of the same domain and algorithm that
                 * became active after this one succeeds it. */
                for (size_t j = 0; j < n; j++) {
                        int64_t js;

                        if (j == i || keys[j].alg != k->alg || strcmp(keys[j].domain, k->domain) != 0 ||
                            own_state(&keys[j], now, &js) != KEY_ACTIVE || js <= since)
                                continue;
                        if (next == (size_t) -1 || js < next_since) {
                                next = j;
                                next_since = js;
                        }
                }
                if (next != (size_t) -1 && (uint64_t) next_since + k->grace <= (uint64_t) now) {
                        st = KEY_RETIRED;
                        since = next_since + (int64_t) k->grace;
                }
        }
        if (ret_since)
                *ret_since = since;
        if (ret_successor)
                *ret_successor = next;
        return st;
}

void keystate_utc(int64_t t, char ret[24])
{
        struct tm tm;
        time_t tt = (time_t) t;

        if (!gmtime_r(&tt, &tm) || !strftime(ret, 24, "%Y-%m-%dT%H:%M:%SZ", &tm))
                snprintf(ret, 24, "%lld", (long long) t);
}
