/* SPDX-License-Identifier: MIT */
/*
 * Whether a file that steers a privileged program may be trusted: its
 * configuration, the token's PIN, the PKCS#11 module it loads as root.
 * Such a file must belong to root or to the user the program runs as (the
 * effective uid), and no one else may write it: no group or world write
 * bit.  OpenSSH's "bad permissions" check (StrictModes), with the path,
 * the owner and the mode in the sentence.  A directory with the sticky bit
 * (/tmp) passes although others may write it: they cannot rename or remove
 * what they do not own there.
 *
 * libc only: no logging, no globals.  It never changes a file's owner or
 * mode; the administrator does (the sentence says how).
 */
#ifndef UTIL_FILEPERM_H
#define UTIL_FILEPERM_H

#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

/* Pass as also_trusted when only root and the effective uid may own it. */
#define FILEPERM_NO_UID ((uid_t) -1)

/*
 * st (of path, which only names it in the sentence) is owned by root, the
 * effective uid or also_trusted, and writable by its owner only (a sticky
 * directory excepted).  0, or DKIMSIGN_E_CONFIG with a sentence in why:
 * "bad permissions on PATH (owner uid U, mode 0664): writable by its group".
 */
int fileperm_check_stat(const struct stat *st, const char *path, uid_t also_trusted, char *why, size_t whylen);

/* The same for the file open on fd (fstat): what is checked is what is
 * read, whatever a path names meanwhile.  DKIMSIGN_E_SYSTEM (errno kept)
 * when fstat fails. */
int fileperm_check_fd(int fd, const char *path, uid_t also_trusted, char *why, size_t whylen);

/*
 * A file to be opened by path later (dlopen takes no descriptor): its
 * symbolic links resolved (realpath) into ret_real (size bytes), then the
 * file and every directory above it up to / checked as above, so no one
 * but root or this user can replace it between the check and the open;
 * open ret_real, not path.  0; DKIMSIGN_E_SYSTEM (errno kept: ENOENT, ...)
 * when path does not resolve; DKIMSIGN_E_CONFIG with a sentence in why.
 */
int fileperm_check_path(const char *path, char *ret_real, size_t size, char *why, size_t whylen);

#endif
