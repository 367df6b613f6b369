/* SPDX-License-Identifier: MIT */
/* Unit tests for the handling of files that steer dkimsignd and
 * dkimsignctl: util/fileperm.c (owner and mode, OpenSSH-style "bad
 * permissions" with the path and the mode), util/readfile.c (links refused
 * where asked, the trusted check on what was opened), the configuration
 * refused when others may write it and header names that are not field
 * names, and keys/keystate.c's temporary (a link or a leftover in its
 * place is never opened, followed or truncated).  In a temporary
 * directory of real files. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
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

#include "keys/config.h"
#include "keys/keystate.h"
#include "protocol/dkimsign-errors.h"
#include "util/fileperm.h"
#include "util/readfile.h"

#define TOKEN "[token]\nmodule = /usr/lib/softhsm/libsofthsm2.so\nlabel = t\n"
#define FP_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

static char dir[64];

static int setup(void **state)
{
        (void) state;
        snprintf(dir, sizeof(dir), "/tmp/dkimsign-test-files-XXXXXX");
        if (!mkdtemp(dir))
                return -1;
        return 0;
}

static int teardown(void **state)
{
        char cmd[PATH_MAX + 16];

        (void) state;
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
        return system(cmd) == 0 ? 0 : -1;
}

static void path_in(char *ret, size_t size, const char *name)
{
        snprintf(ret, size, "%s/%s", dir, name);
}

static void file_write(const char *path, const char *text, mode_t mode)
{
        int fd;

        unlink(path);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, strlen(text)), (ssize_t) strlen(text));
        /* fchmod: the mode asked for, whatever the umask. */
        assert_int_equal(fchmod(fd, mode), 0);
        assert_int_equal(close(fd), 0);
}

static void assert_contains(const char *text, const char *want)
{
        if (!strstr(text, want))
                fail_msg("expected '%s' in: %s", want, text);
}

/* ---- util/fileperm.c ---- */

static void test_fileperm_stat(void **state)
{
        uid_t me = geteuid(), other = me == 4242 ? 4243 : 4242;
        static const struct {
                int owner;           /* 0: root, 1: me, 2: another user, 3: also_trusted */
                mode_t mode;
                const char *expect;  /* NULL: accepted */
        } cases[] = {
                { 0, S_IFREG | 0644, NULL },
                { 1, S_IFREG | 0600, NULL },
                { 0, S_IFREG | 0640, NULL },
                { 0, S_IFREG | 0664, "(owner uid 0, mode 0664): writable by its group (chmod g-w)" },
                { 0, S_IFREG | 0646, "mode 0646): writable by everyone (chmod o-w)" },
                { 0, S_IFREG | 0666, "mode 0666): writable by its group and by everyone" },
                { 1, S_IFREG | 0620, "mode 0620): writable by its group" },
                { 2, S_IFREG | 0600, "owned by a user other than root and uid" },
                { 3, S_IFREG | 0600, NULL },
                { 3, S_IFREG | 0660, "writable by its group" },
                { 0, S_IFDIR | 0755, NULL },
                { 0, S_IFDIR | 0775, "mode 0775): writable by its group" },
                /* Sticky: no one may replace another user's file there. */
                { 0, S_IFDIR | 01777, NULL },
                { 2, S_IFDIR | 01777, "owned by a user other than root" },
                /* The sticky bit means nothing on a file. */
                { 0, S_IFREG | 01666, "writable by its group and by everyone" },
        };

        (void) state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct stat st = { .st_mode = cases[i].mode };
                uid_t also = cases[i].owner == 3 ? other + 1 : FILEPERM_NO_UID;
                char why[512] = "";
                int r;

                st.st_uid = cases[i].owner == 0 ? 0 : cases[i].owner == 1 ? me : cases[i].owner == 2 ? other : also;
                if (me == 0 && cases[i].owner == 1)
                        st.st_uid = 0;
                r = fileperm_check_stat(&st, "/etc/x", also, why, sizeof(why));
                if (!cases[i].expect) {
                        if (r != 0)
                                fail_msg("case %zu refused: %s", i, why);
                        continue;
                }
                if (r != DKIMSIGN_E_CONFIG)
                        fail_msg("case %zu accepted", i);
                assert_contains(why, "bad permissions on /etc/x (owner uid ");
                assert_contains(why, cases[i].expect);
        }
}

static void test_fileperm_fd_and_path(void **state)
{
        char path[PATH_MAX], sub[256], link[PATH_MAX], real[PATH_MAX], why[1024];
        int fd;

        (void) state;
        path_in(path, sizeof(path), "f");
        file_write(path, "x\n", 0664);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        assert_true(fd >= 0);
        assert_int_equal(fileperm_check_fd(fd, path, FILEPERM_NO_UID, why, sizeof(why)), DKIMSIGN_E_CONFIG);
        assert_contains(why, path);
        assert_contains(why, "mode 0664");
        assert_int_equal(fchmod(fd, 0644), 0);
        assert_int_equal(fileperm_check_fd(fd, path, FILEPERM_NO_UID, why, sizeof(why)), 0);
        close(fd);

        /* A path: its links resolved, each directory above it checked. */
        path_in(sub, sizeof(sub), "sub");
        assert_int_equal(mkdir(sub, 0755), 0);
        snprintf(path, sizeof(path), "%s/lib.so", sub);
        file_write(path, "x", 0644);
        path_in(link, sizeof(link), "link.so");
        assert_int_equal(symlink(path, link), 0);
        assert_int_equal(fileperm_check_path(link, real, sizeof(real), why, sizeof(why)), 0);
        assert_string_equal(real, path);
        assert_int_equal(chmod(sub, 0775), 0);
        assert_int_equal(fileperm_check_path(link, real, sizeof(real), why, sizeof(why)), DKIMSIGN_E_CONFIG);
        assert_contains(why, "mode 0775");
        assert_contains(why, ", a directory above ");
        assert_contains(why, sub);
        assert_int_equal(chmod(sub, 01777), 0);
        assert_int_equal(fileperm_check_path(link, real, sizeof(real), why, sizeof(why)), 0);
        assert_int_equal(chmod(sub, 0755), 0);
        assert_int_equal(chmod(path, 0646), 0);
        assert_int_equal(fileperm_check_path(link, real, sizeof(real), why, sizeof(why)), DKIMSIGN_E_CONFIG);
        assert_contains(why, "mode 0646): writable by everyone");
        errno = 0;
        assert_int_equal(fileperm_check_path("/nonexistent/lib.so", real, sizeof(real), why, sizeof(why)),
                         DKIMSIGN_E_SYSTEM);
        assert_int_equal(errno, ENOENT);
}

/* ---- util/readfile.c ---- */

static void test_readfile_flags(void **state)
{
        char path[PATH_MAX], link[PATH_MAX], why[1024], *text = NULL;
        size_t len = 0;

        (void) state;
        path_in(path, sizeof(path), "key.pem");
        file_write(path, "secret\n", 0600);
        path_in(link, sizeof(link), "key-link.pem");
        unlink(link);
        assert_int_equal(symlink(path, link), 0);
        /* A link is read unless refused. */
        assert_int_equal(readfile(link, 1024, 0, &text, &len, why, sizeof(why)), 0);
        assert_string_equal(text, "secret\n");
        readfile_free(text, len);
        errno = 0;
        assert_int_equal(readfile(link, 1024, READFILE_NOFOLLOW, &text, &len, why, sizeof(why)), DKIMSIGN_E_SYSTEM);
        assert_int_equal(errno, ELOOP);
        assert_contains(why, link);
        assert_contains(why, "a symbolic link, refused");
        assert_int_equal(readfile(path, 1024, READFILE_NOFOLLOW, &text, &len, why, sizeof(why)), 0);
        readfile_free(text, len);
        /* READFILE_TRUSTED: the file opened, behind the link too. */
        assert_int_equal(chmod(path, 0620), 0);
        assert_int_equal(readfile(link, 1024, READFILE_TRUSTED, &text, &len, why, sizeof(why)), DKIMSIGN_E_CONFIG);
        assert_contains(why, "bad permissions on ");
        assert_contains(why, "mode 0620): writable by its group");
        assert_int_equal(readfile(link, 1024, 0, &text, &len, why, sizeof(why)), 0);
        readfile_free(text, len);
        /* A FIFO where the file should be: refused at once, never waited on
         * (the open would block for a writer without O_NONBLOCK). */
        path_in(path, sizeof(path), "fifo.state");
        unlink(path);
        assert_int_equal(mkfifo(path, 0600), 0);
        assert_int_equal(readfile(path, 1024, 0, &text, &len, why, sizeof(why)), DKIMSIGN_E_TOO_LARGE);
        assert_contains(why, "not a regular file");
        unlink(path);
}

/* ---- keys/config.c ---- */

static void test_config_load_refuses_writable(void **state)
{
        char path[PATH_MAX], err[1024];
        struct config *c = NULL;

        (void) state;
        path_in(path, sizeof(path), "dkimsignd.conf");
        file_write(path, TOKEN, 0644);
        assert_int_equal(config_load(path, &c, err, sizeof(err)), 0);
        c = config_free(c);
        static const mode_t bad[] = { 0664, 0646, 0666, 0620 };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                char mode[16];

                assert_int_equal(chmod(path, bad[i]), 0);
                assert_int_equal(config_load(path, &c, err, sizeof(err)), DKIMSIGN_E_CONFIG);
                assert_null(c);
                assert_contains(err, "bad permissions on ");
                assert_contains(err, path);
                snprintf(mode, sizeof(mode), "mode %04o", (unsigned) bad[i]);
                assert_contains(err, mode);
        }
        /* Owned by someone else (as root, the test can make that so). */
        assert_int_equal(chmod(path, 0644), 0);
        if (geteuid() == 0 && chown(path, 65534, (gid_t) -1) == 0) {
                assert_int_equal(config_load(path, &c, err, sizeof(err)), DKIMSIGN_E_CONFIG);
                assert_contains(err, "(owner uid 65534, mode 0644): owned by a user other than root");
        }
}

static void test_config_header_names(void **state)
{
        static const struct { const char *text; const char *expect; } cases[] = {
                { TOKEN "[signing]\nheaders = From;x\n", "line 5: 'From;x' is not a valid header field name" },
                { TOKEN "[signing]\nheaders = from, to\noversign = a=b\n",
                  "line 6: 'a=b' is not a valid header field name" },
                { TOKEN "[signing]\nheaders = from\n  x-a;b=c\n", "line 6: 'x-a;b=c' is not a valid header" },
                { TOKEN "[domain a.example]\nheaders = from, a=\n", "line 5: 'a=' is not a valid header field name" },
                { TOKEN "[domain a.example]\noversign = a;b\n", "line 5: 'a;b' is not a valid header field name" },
        };

        (void) state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct config *c = NULL;
                char err[512] = "";
                int r = config_parse(cases[i].text, strlen(cases[i].text), &c, err, sizeof(err));

                if (r == 0)
                        fail_msg("case %zu accepted: %s", i, cases[i].text);
                assert_null(c);
                assert_contains(err, cases[i].expect);
        }

        /* ftext otherwise: what RFC 5322 allows and DKIM can carry. */
        static const char ok[] = TOKEN "[signing]\nheaders = from, x-a_b.c!#$%&'*+-/?^`{|}~, to\n";
        struct config *c = NULL;
        char err[512] = "";

        if (config_parse(ok, strlen(ok), &c, err, sizeof(err)) != 0)
                fail_msg("refused: %s", err);
        config_free(c);
}

/* ---- keys/keystate.c ---- */

static void one_key(struct keystate *s)
{
        struct keystate_entry e = { .t = { .state = KEY_ACTIVE, .seen = 1690000000, .active = 1690172800 } };

        snprintf(e.label, sizeof(e.label), "s1._domainkey.example.com");
        snprintf(e.fingerprint, sizeof(e.fingerprint), FP_A);
        assert_int_equal(keystate_put(s, &e), 0);
}

static void assert_file(const char *path, const char *text, mode_t mode)
{
        char buf[256] = "";
        struct stat st;
        ssize_t n;
        int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

        assert_true(fd >= 0);
        n = read(fd, buf, sizeof(buf) - 1);
        assert_true(n >= 0);
        assert_int_equal(fstat(fd, &st), 0);
        close(fd);
        assert_string_equal(buf, text);
        assert_int_equal(st.st_mode & 07777, mode);
}

static void test_keystate_temp_never_followed(void **state)
{
        char sdir[256], tmp[PATH_MAX], target[PATH_MAX], why[512];
        struct keystate s = { 0 }, back = { 0 };
        struct stat st;

        (void) state;
        path_in(sdir, sizeof(sdir), "state");
        assert_int_equal(mkdir(sdir, 0700), 0);
        snprintf(tmp, sizeof(tmp), "%s/." KEYSTATE_FILE ".tmp", sdir);
        path_in(target, sizeof(target), "precious");
        one_key(&s);

        /* A symbolic link where the temporary goes: its target untouched,
         * the save made all the same. */
        file_write(target, "precious\n", 0600);
        assert_int_equal(symlink(target, tmp), 0);
        if (keystate_save(sdir, &s, why, sizeof(why)) != 0)
                fail_msg("save with a link at the temporary's name: %s", why);
        assert_file(target, "precious\n", 0600);
        assert_int_equal(lstat(tmp, &st), -1);
        assert_int_equal(keystate_load(sdir, &back, why, sizeof(why)), 0);
        assert_int_equal(back.count, 1);
        keystate_clear(&back);

        /* A hard link (what the state directory's owner can plant to a
         * file it may not write itself, without protected_hardlinks): not
         * truncated, not rewritten, its mode kept. */
        assert_int_equal(link(target, tmp), 0);
        if (keystate_save(sdir, &s, why, sizeof(why)) != 0)
                fail_msg("save with a hard link at the temporary's name: %s", why);
        assert_file(target, "precious\n", 0600);
        assert_int_equal(stat(target, &st), 0);
        assert_int_equal(st.st_nlink, 1);

        /* A crash's leftover temporary is replaced. */
        file_write(tmp, "half a file", 0600);
        assert_int_equal(keystate_save(sdir, &s, why, sizeof(why)), 0);
        assert_int_equal(lstat(tmp, &st), -1);
        assert_int_equal(keystate_load(sdir, &back, why, sizeof(why)), 0);
        assert_int_equal(back.count, 1);
        keystate_clear(&back);
        keystate_clear(&s);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_fileperm_stat),
                cmocka_unit_test(test_fileperm_fd_and_path),
                cmocka_unit_test(test_readfile_flags),
                cmocka_unit_test(test_config_load_refuses_writable),
                cmocka_unit_test(test_config_header_names),
                cmocka_unit_test(test_keystate_temp_never_followed),
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
