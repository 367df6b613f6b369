/* SPDX-License-Identifier: MIT */
/* Unit tests for keys/keystate.c: the state file's parser (every
 * refusal naming its line), format/parse round trips, atomic saves in a
 * real directory, and the lifecycle's clock rules (activation after the
 * wait, retirement after a successor's grace). */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <openssl/evp.h>

#include "protocol/dkimsign-errors.h"
#include "keys/keystate.h"

#define FP_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define FP_B "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define HEAD "dkimsign-keystate 1\n"

static void test_parse_valid(void **state)
{
        static const char text[] =
                "# comment\n\n" HEAD
                "s2._domainkey.example.com " FP_B " published 1700000000 0 0\n"
                "s1._domainkey.example.com " FP_A " active 1690000000 1690172800 0\n"
                "old._domainkey.example.org " FP_A " retired 1 2 3\n"
                "new._domainkey.example.org " FP_B " pending 0 0 0\n"
                "end 4\n";
        struct keystate s = { 0 };
        const struct keystate_entry *e;
        char why[256];

        assert_int_equal(keystate_parse(text, strlen(text), &s, why, sizeof(why)), 0);
        assert_int_equal(s.count, 4);
        /* Sorted by label, so lookups are binary searches. */
        assert_string_equal(s.entries[0].label, "new._domainkey.example.org");
        e = keystate_find(&s, "s1._domainkey.example.com");
        assert_non_null(e);
        assert_int_equal(e->t.state, KEY_ACTIVE);
        assert_int_equal(e->t.seen, 1690000000);
        assert_int_equal(e->t.active, 1690172800);
        assert_string_equal(e->fingerprint, FP_A);
        assert_null(keystate_find(&s, "s3._domainkey.example.com"));
        keystate_clear(&s);

        /* An empty state is a valid file too. */
        assert_int_equal(keystate_parse(HEAD "end 0\n", strlen(HEAD "end 0\n"), &s, why, sizeof(why)), 0);
        assert_int_equal(s.count, 0);
        keystate_clear(&s);
}

static void test_parse_refusals(void **state)
{
        static const struct { const char *text; const char *expect; } cases[] = {
                { "", "line 1: no 'end' line" },
                { "end 0\n", "line 1: expected 'dkimsign-keystate 1'" },
                { "dkimsign-keystate 2\nend 0\n", "line 1: expected" },
                { HEAD "end 0", "line 2: no newline at the end" },
                { HEAD, "line 2: no 'end' line" },
                { HEAD "end 1\n", "line 2: the end line counts 1 keys, the file has 0" },
                { HEAD "end 0\nx\n", "line 3: text after the end line" },
                { HEAD "S1._domainkey.example.com " FP_A " active 1 1 0\nend 1\n", "line 2: 'S1._domainkey" },
                { HEAD "s1.example.com " FP_A " active 1 1 0\nend 1\n", "line 2: 's1.example.com' is not a key label" },
                { HEAD "._domainkey.example.com " FP_A " active 1 1 0\nend 1\n", "not a key label" },
                { HEAD "s1._domainkey.example..com " FP_A " active 1 1 0\nend 1\n", "not a key label" },
                { HEAD "s1._domainkey.example.com " FP_A "0 active 1 1 0\nend 1\n", "line 2: the fingerprint" },
                { HEAD "s1._domainkey.example.com AAAA active 1 1 0\nend 1\n", "the fingerprint" },
                { HEAD "s1._domainkey.example.com " FP_A " actve 1 1 0\nend 1\n", "line 2: unknown state" },
                { HEAD "s1._domainkey.example.com " FP_A " active 01 1 0\nend 1\n", "a time is not a number" },
                { HEAD "s1._domainkey.example.com " FP_A " active -1 1 0\nend 1\n", "a time is not a number" },
                { HEAD "s1._domainkey.example.com " FP_A " active 1 999999999999 0\nend 1\n", "a time" },
                { HEAD "s1._domainkey.example.com " FP_A " published 0 0 0\nend 1\n", "first seen" },
                { HEAD "s1._domainkey.example.com " FP_A " active 5 0 0\nend 1\n", "became active" },
                { HEAD "s1._domainkey.example.com " FP_A " retired 5 6 0\nend 1\n", "was retired" },
                { HEAD "s1._domainkey.example.com " FP_A " active 1 1\nend 1\n", "line 2: expected 'LABEL" },
                { HEAD "s1._domainkey.example.com " FP_A " active 1 1 0 0\nend 1\n", "unknown DNSSEC status" },
                { HEAD "s1._domainkey.example.com " FP_A " active 1 1 0 unchecked\nend 1\n", "unknown DNSSEC" },
                { HEAD "s1._domainkey.example.com " FP_A " active 1 1 0 secure 0\nend 1\n", "expected 'LABEL" },
                { HEAD "s1._domainkey.example.com  " FP_A " active 1 1 0\nend 1\n", "line 2: expected 'LABEL" },
                { HEAD "s1._domainkey.example.com " FP_A " active 1 1 0 \nend 1\n", "line 2: expected 'LABEL" },
                { HEAD "s1._domainkey.example.com " FP_A " active 1 1 0\r\nend 1\n", "line 2: a NUL, CR or tab" },
                { HEAD "s1._domainkey.example.com\t" FP_A " active 1 1 0\nend 1\n", "a NUL, CR or tab" },
                { HEAD "s1._domainkey.example.com " FP_A " active 1 1 0\n"
                       "s1._domainkey.example.com " FP_B " pending 0 0 0\nend 2\n", "appears twice" },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct keystate s = { 0 };
                char why[256] = "";
                int r = keystate_parse(cases[i].text, strlen(cases[i].text), &s, why, sizeof(why));

                if (r != DKIMSIGN_E_STATE)
                        fail_msg("case %zu: %d, not DKIMSIGN_E_STATE (%s)", i, r, why);
                assert_int_equal(s.count, 0);
                if (!strstr(why, cases[i].expect))
                        fail_msg("case %zu: '%s' lacks '%s'", i, why, cases[i].expect);
        }
}

static void test_parse_bounds(void **state)
{
        struct keystate s = { 0 };
        char why[256], line[700];
        char *text;
        size_t len;

        /* A NUL octet and an overlong line. */
        assert_int_equal(keystate_parse(HEAD "\0\nend 0\n", sizeof(HEAD) + 7, &s, why, sizeof(why)), DKIMSIGN_E_STATE);
        assert_non_null(strstr(why, "line 2"));
        memset(line, 'a', sizeof(line));
        memcpy(line, HEAD, strlen(HEAD));
        line[sizeof(line) - 1] = '\n';
        assert_int_equal(keystate_parse(line, sizeof(line), &s, why, sizeof(why)), DKIMSIGN_E_STATE);
        assert_non_null(strstr(why, "longer than"));
        /* Larger than the file limit: refused before it is read. */
        len = KEYSTATE_FILE_MAX + 1;
        text = malloc(len);
        assert_non_null(text);
        memset(text, '#', len);
        assert_int_equal(keystate_parse(text, len, &s, why, sizeof(why)), DKIMSIGN_E_TOO_LARGE);
        free(text);
}

static void test_format_round_trip_and_put(void **state)
{
        struct keystate s = { 0 }, back = { 0 };
        struct keystate_entry e = { .fingerprint = FP_A, .t = { KEY_ACTIVE, 100, 200, 0 } };
        char *text = NULL, why[256];
        size_t len = 0;

        snprintf(e.label, sizeof(e.label), "b._domainkey.example.com");
        assert_int_equal(keystate_put(&s, &e), 0);
        snprintf(e.label, sizeof(e.label), "a._domainkey.example.com");
        e.t = (struct key_times) { KEY_PUBLISHED, 300, 0, 0 };
        assert_int_equal(keystate_put(&s, &e), 0);
        /* Replacing keeps one entry per label. */
        e.t = (struct key_times) { KEY_RETIRED, 300, 400, 500 };
        e.dnssec = DNS_SEC_BOGUS;
        assert_int_equal(keystate_put(&s, &e), 0);
        assert_int_equal(s.count, 2);
        assert_string_equal(s.entries[0].label, "a._domainkey.example.com");
        /* Nothing the parser would refuse goes in. */
        snprintf(e.label, sizeof(e.label), "Not A Label");
        assert_int_equal(keystate_put(&s, &e), DKIMSIGN_E_FORMAT);
        snprintf(e.label, sizeof(e.label), "c._domainkey.example.com");
        snprintf(e.fingerprint, sizeof(e.fingerprint), "xyz");
        assert_int_equal(keystate_put(&s, &e), DKIMSIGN_E_FORMAT);

        assert_int_equal(keystate_format(&s, &text, &len), 0);
        assert_int_equal(strlen(text), len);
        assert_int_equal(keystate_parse(text, len, &back, why, sizeof(why)), 0);
        assert_int_equal(back.count, 2);
        for (size_t i = 0; i < 2; i++) {
                assert_string_equal(back.entries[i].label, s.entries[i].label);
                assert_string_equal(back.entries[i].fingerprint, s.entries[i].fingerprint);
                assert_int_equal(back.entries[i].t.state, s.entries[i].t.state);
                assert_int_equal(back.entries[i].t.seen, s.entries[i].t.seen);
                assert_int_equal(back.entries[i].t.active, s.entries[i].t.active);
                assert_int_equal(back.entries[i].t.retired, s.entries[i].t.retired);
                assert_int_equal(back.entries[i].dnssec, s.entries[i].dnssec);
        }
        /* Unvalidated answers leave the field out: the six-field form. */
        assert_non_null(strstr(text, " 500 bogus\n"));
        assert_non_null(strstr(text, "b._domainkey.example.com " FP_A " active 100 200 0\n"));
        free(text);
        keystate_clear(&s);
        keystate_clear(&back);
}

static void test_save_and_load(void **state)
{
        char dir[] = "/tmp/test-keystate-XXXXXX", path[128], why[512];
        struct keystate s = { 0 }, back = { 0 };
        struct keystate_entry e = { .label = "s._domainkey.example.com", .fingerprint = FP_B,
                                    .t = { KEY_PUBLISHED, 1234, 0, 0 } };
        struct stat st;
        DIR *d;
        struct dirent *de;
        size_t files = 0;
        int fd = -1;

        assert_non_null(mkdtemp(dir));
        /* No file yet: every key pending, not an error. */
        assert_int_equal(keystate_load(dir, &back, why, sizeof(why)), 0);
        assert_int_equal(back.count, 0);
        assert_int_equal(keystate_lock(dir, &fd, why, sizeof(why)), 0);
        assert_int_equal(keystate_put(&s, &e), 0);
        assert_int_equal(keystate_save(dir, &s, why, sizeof(why)), 0);
        close(fd);
        assert_int_equal(keystate_load(dir, &back, why, sizeof(why)), 0);
        assert_int_equal(back.count, 1);
        assert_int_equal(back.entries[0].t.seen, 1234);
        keystate_clear(&back);
        snprintf(path, sizeof(path), "%s/" KEYSTATE_FILE, dir);
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0644);
        /* The temporary file is gone: only keys.state is left. */
        d = opendir(dir);
        assert_non_null(d);
        while ((de = readdir(d)))
                if (de->d_name[0] != '.' || strcmp(de->d_name, ".keys.state.tmp") == 0)
                        files++;
        closedir(d);
        assert_int_equal(files, 1);

        /* A damaged file is an error naming the path and line, never empty. */
        {
                FILE *f = fopen(path, "w");

                assert_non_null(f);
                fputs(HEAD "s._domainkey.example.com " FP_B " published 0 0 0\nend 1\n", f);
                fclose(f);
        }
        assert_int_equal(keystate_load(dir, &back, why, sizeof(why)), DKIMSIGN_E_STATE);
        assert_non_null(strstr(why, path));
        assert_non_null(strstr(why, "line 2"));
        /* A directory where the file should be. */
        unlink(path);
        assert_int_equal(mkdir(path, 0700), 0);
        assert_int_equal(keystate_load(dir, &back, why, sizeof(why)), DKIMSIGN_E_STATE);
        rmdir(path);
        rmdir(dir);
        /* A missing directory can't be locked or written. */
        assert_int_equal(keystate_lock(dir, &fd, why, sizeof(why)), DKIMSIGN_E_SYSTEM);
        assert_int_equal(keystate_save(dir, &s, why, sizeof(why)), DKIMSIGN_E_SYSTEM);
        keystate_clear(&s);
}

static void test_fingerprint(void **state)
{
        EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
        char a[KEYSTATE_FP_LEN + 1], b[KEYSTATE_FP_LEN + 1];

        assert_non_null(k);
        assert_int_equal(keystate_fingerprint(k, a), 0);
        assert_int_equal(keystate_fingerprint(k, b), 0);
        assert_string_equal(a, b);
        assert_int_equal(strlen(a), KEYSTATE_FP_LEN);
        assert_int_equal(strspn(a, "0123456789abcdef"), KEYSTATE_FP_LEN);
        EVP_PKEY_free(k);
}

static enum key_state at(const struct key_view *v, size_t n, size_t i, int64_t now, int64_t *since, size_t *next)
{
        return keystate_effective(v, n, i, now, since, next);
}

static void test_effective_clock(void **state)
{
        struct key_view v[] = {
                { "example.com", 1, false, { KEY_PENDING, 0, 0, 0 }, 100, 50 },
                { "example.com", 2, false, { KEY_PUBLISHED, 1000, 0, 0 }, 100, 50 },
                { "example.com", 2, true, { KEY_ACTIVE, 10, 20, 0 }, 100, 50 },     /* retired on the token */
                { "example.org", 1, false, { KEY_RETIRED, 10, 20, 30 }, 100, 50 },
                { "example.org", 2, false, { KEY_PUBLISHED, 1000, 0, 0 }, 0, 50 },  /* no wait */
        };
        int64_t since = -1;
        size_t next = 0;

        assert_int_equal(at(v, 5, 0, 5000, &since, &next), KEY_PENDING);
        assert_int_equal(since, 0);
        assert_int_equal(next, (size_t) -1);
        assert_int_equal(at(v, 5, 1, 1099, &since, NULL), KEY_PUBLISHED);
        assert_int_equal(at(v, 5, 1, 1100, &since, NULL), KEY_ACTIVE);
        assert_int_equal(since, 1100);
        assert_int_equal(at(v, 5, 2, 5000, &since, NULL), KEY_RETIRED);
        assert_int_equal(at(v, 5, 3, 5000, &since, NULL), KEY_RETIRED);
        assert_int_equal(since, 30);
        assert_int_equal(at(v, 5, 4, 1000, &since, NULL), KEY_ACTIVE);
}

static void test_effective_succession(void **state)
{
        struct key_view v[] = {
                { "example.com", 1, false, { KEY_ACTIVE, 50, 100, 0 }, 10, 50 },     /* old rsa */
                { "example.com", 1, false, { KEY_PUBLISHED, 190, 0, 0 }, 10, 50 },   /* new rsa: active at 200 */
                { "example.com", 2, false, { KEY_ACTIVE, 50, 100, 0 }, 10, 50 },     /* ed25519: not its successor */
                { "example.net", 1, false, { KEY_ACTIVE, 50, 300, 0 }, 10, 50 },     /* another domain */
                { "example.org", 1, false, { KEY_ACTIVE, 50, 100, 0 }, 10, 50 },     /* same time: no order */
                { "example.org", 1, false, { KEY_ACTIVE, 50, 100, 0 }, 10, 50 },
        };
        int64_t since = 0;
        size_t next = 0;

        /* Before the new key is active, nothing succeeds the old one. */
        assert_int_equal(at(v, 6, 0, 199, &since, &next), KEY_ACTIVE);
        assert_int_equal(next, (size_t) -1);
        /* Active, with a successor: it retires at 200 + 50. */
        assert_int_equal(at(v, 6, 0, 220, &since, &next), KEY_ACTIVE);
        assert_int_equal(next, 1);
        assert_int_equal(since, 100);
        assert_int_equal(at(v, 6, 0, 250, &since, &next), KEY_RETIRED);
        assert_int_equal(since, 250);
        assert_int_equal(at(v, 6, 1, 250, &since, &next), KEY_ACTIVE);
        assert_int_equal(next, (size_t) -1);
        /* Other algorithms and domains are not successors. */
        assert_int_equal(at(v, 6, 2, 10000, &since, &next), KEY_ACTIVE);
        assert_int_equal(at(v, 6, 3, 10000, &since, &next), KEY_ACTIVE);
        /* Two keys active since the same second: neither retires the other. */
        assert_int_equal(at(v, 6, 4, 10000, &since, &next), KEY_ACTIVE);
        assert_int_equal(next, (size_t) -1);
        /* A successor retired on the token retires nobody. */
        v[1].token_retired = true;
        assert_int_equal(at(v, 6, 0, 10000, &since, &next), KEY_ACTIVE);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_valid),
                cmocka_unit_test(test_parse_refusals),
                cmocka_unit_test(test_parse_bounds),
                cmocka_unit_test(test_format_round_trip_and_put),
                cmocka_unit_test(test_save_and_load),
                cmocka_unit_test(test_fingerprint),
                cmocka_unit_test(test_effective_clock),
                cmocka_unit_test(test_effective_succession),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
