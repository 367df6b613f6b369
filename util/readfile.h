/* SPDX-License-Identifier: MIT */
/*
 * Reading a whole small file (the configuration, the key state file, a key
 * file to import) into memory, bounded: only a regular file, and only up to
 * a size the caller names, so a mistaken path (a device, a FIFO, a huge
 * log) is refused instead of read for ever.
 */
#ifndef UTIL_READFILE_H
#define UTIL_READFILE_H

#include <stddef.h>

/* readfile's flags. */
enum {
        /* Refuse a symbolic link as the last component (O_NOFOLLOW): for
         * files whose name is never meant to be a link (the key state file,
         * a key file to import). */
        READFILE_NOFOLLOW = 1 << 0,
        /* The file read must pass fileperm_check_fd (util/fileperm.h):
         * owned by root or this user, writable by no one else. */
        READFILE_TRUSTED = 1 << 1,
};

/*
 * Read path (with flags, READFILE_*) into an owned buffer of *ret_len
 * octets plus a terminating NUL.  The buffer may hold a secret: free it
 * with readfile_free.  On failure a sentence naming path in why and:
 * DKIMSIGN_E_SYSTEM (open, stat or read failed; errno is kept, so a caller
 * can tell ENOENT; ELOOP: a link refused by READFILE_NOFOLLOW),
 * DKIMSIGN_E_TOO_LARGE (not a regular file, or larger than max),
 * DKIMSIGN_E_CONFIG (bad permissions, READFILE_TRUSTED), DKIMSIGN_E_NOMEM.
 */
int readfile(const char *path, size_t max, unsigned flags, char **ret, size_t *ret_len, char *why, size_t whylen);

/* Wipe and free a buffer from readfile.  Accepts NULL. */
void readfile_free(char *data, size_t len);

#endif
