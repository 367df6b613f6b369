/* SPDX-License-Identifier: MIT */
/*
 * Trusting a file by its owner and mode.  See fileperm.h.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "protocol/dkimsign-errors.h"
#include "util/fileperm.h"

int fileperm_check_stat(const struct stat *st, const char *path, uid_t also_trusted, char *why, size_t whylen)
{
        uid_t me = geteuid();
        mode_t writers = st->st_mode & (S_IWGRP | S_IWOTH);
        const char *bad = NULL;
        char owner[96];

        if (S_ISDIR(st->st_mode) && (st->st_mode & S_ISVTX))
                writers = 0;
        if (st->st_uid != 0 && st->st_uid != me && (also_trusted == FILEPERM_NO_UID || st->st_uid != also_trusted)) {
                if (also_trusted != FILEPERM_NO_UID && also_trusted != me && also_trusted != 0)
                        snprintf(owner, sizeof(owner), "owned by a user other than root, uid %u (who runs this) "
                                 "and uid %u", (unsigned) me, (unsigned) also_trusted);
                else
                        snprintf(owner, sizeof(owner), "owned by a user other than root and uid %u (who runs this)",
                                 (unsigned) me);
                bad = owner;
        } else if (writers == (S_IWGRP | S_IWOTH)) {
                bad = "writable by its group and by everyone (chmod go-w)";
        } else if (writers == S_IWGRP) {
                bad = "writable by its group (chmod g-w)";
        } else if (writers == S_IWOTH) {
                bad = "writable by everyone (chmod o-w)";
        }
        if (!bad)
                return 0;
        snprintf(why, whylen, "bad permissions on %s (owner uid %u, mode %04o): %s", path, (unsigned) st->st_uid,
                 (unsigned) (st->st_mode & 07777), bad);
        return DKIMSIGN_E_CONFIG;
}

int fileperm_check_fd(int fd, const char *path, uid_t also_trusted, char *why, size_t whylen)
{
        struct stat st;

        if (fstat(fd, &st) < 0) {
                int saved = errno;

                snprintf(why, whylen, "%s: %s", path, strerror(saved));
                errno = saved;
                return DKIMSIGN_E_SYSTEM;
        }
        return fileperm_check_stat(&st, path, also_trusted, why, whylen);
}

int fileperm_check_path(const char *path, char *ret_real, size_t size, char *why, size_t whylen)
{
        char real[PATH_MAX], walk[PATH_MAX];
        struct stat st;
        size_t len;
        int r;

        if (!realpath(path, real)) {
                int saved = errno;

                snprintf(why, whylen, "%s: %s", path, strerror(saved));
                errno = saved;
                return DKIMSIGN_E_SYSTEM;
        }
        len = strlen(real);
        if (len >= size) {
                snprintf(why, whylen, "%s: the resolved path is too long", path);
                errno = ENAMETOOLONG;
                return DKIMSIGN_E_SYSTEM;
        }
        memcpy(walk, real, len + 1);
        /* The file, then each directory above it: a writable one would let
         * its writers put another file in its place. */
        for (;;) {
                char *slash;

                if (lstat(walk, &st) < 0) {
                        int saved = errno;

                        snprintf(why, whylen, "%s: %s", walk, strerror(saved));
                        errno = saved;
                        return DKIMSIGN_E_SYSTEM;
                }
                if (strcmp(walk, real) == 0) {
                        r = fileperm_check_stat(&st, real, FILEPERM_NO_UID, why, whylen);
                } else {
                        char name[2 * PATH_MAX + 32];

                        snprintf(name, sizeof(name), "%s, a directory above %s", walk, real);
                        r = fileperm_check_stat(&st, name, FILEPERM_NO_UID, why, whylen);
                }
                if (r < 0)
                        return r;
                if (strcmp(walk, "/") == 0)
                        break;
                slash = strrchr(walk, '/');
                if (slash == walk)
                        slash[1] = '\0';
                else
                        *slash = '\0';
        }
        memcpy(ret_real, real, len + 1);
        return 0;
}
