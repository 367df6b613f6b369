/* SPDX-License-Identifier: MIT */
/*
 * Bounded whole-file reads.  See readfile.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/crypto.h>

#include "protocol/dkimsign-errors.h"
#include "util/fileperm.h"
#include "util/readfile.h"

/* Close fd keeping errno, so the caller sees the error that mattered. */
static int fail(int fd, int r)
{
        int saved = errno;

        if (fd >= 0)
                close(fd);
        errno = saved;
        return r;
}

int readfile(const char *path, size_t max, unsigned flags, char **ret, size_t *ret_len, char *why, size_t whylen)
{
        struct stat st;
        size_t len = 0, size;
        char *data;
        int fd, r;

        /* O_NONBLOCK: a FIFO planted where the file should be must not
         * hang the open (and whatever lock the caller holds); it changes
         * nothing for a regular file, and anything else is refused below. */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK |
                  ((flags & READFILE_NOFOLLOW) ? O_NOFOLLOW : 0));
        if (fd < 0 || fstat(fd, &st) < 0) {
                int saved = errno;
                struct stat lst;

                if (fd < 0 && saved == ELOOP && (flags & READFILE_NOFOLLOW) && lstat(path, &lst) == 0 &&
                    S_ISLNK(lst.st_mode))
                        snprintf(why, whylen, "%s: a symbolic link, refused: name the file itself", path);
                else
                        snprintf(why, whylen, "%s: %s", path, strerror(saved));
                errno = saved;
                return fail(fd, DKIMSIGN_E_SYSTEM);
        }
        if (!S_ISREG(st.st_mode)) {
                snprintf(why, whylen, "%s: not a regular file", path);
                return fail(fd, DKIMSIGN_E_TOO_LARGE);
        }
        /* Checked on what was opened: a path swapped meanwhile changes nothing. */
        if ((flags & READFILE_TRUSTED) && (r = fileperm_check_stat(&st, path, FILEPERM_NO_UID, why, whylen)) < 0)
                return fail(fd, r);
        if ((uint64_t) st.st_size > max) {
                snprintf(why, whylen, "%s: larger than %zu octets", path, max);
                return fail(fd, DKIMSIGN_E_TOO_LARGE);
        }
        size = (size_t) st.st_size;
        /* Zeroed, and freed wiped: key files pass through here. */
        data = OPENSSL_zalloc(size + 1);
        if (!data) {
                snprintf(why, whylen, "%s: out of memory", path);
                return fail(fd, DKIMSIGN_E_NOMEM);
        }
        while (len < size) {
                ssize_t n = read(fd, data + len, size - len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        int saved = errno;

                        snprintf(why, whylen, "%s: %s", path, strerror(saved));
                        OPENSSL_clear_free(data, size + 1);
                        errno = saved;
                        return fail(fd, DKIMSIGN_E_SYSTEM);
                }
                if (n == 0)
                        break;  /* shrank while read: take what is there */
                len += (size_t) n;
        }
        close(fd);
        data[len] = 0;
        *ret = data;
        *ret_len = len;
        return 0;
}

void readfile_free(char *data, size_t len)
{
        if (data)
                OPENSSL_clear_free(data, len + 1);
}
