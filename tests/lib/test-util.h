/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the C tests (cmocka): reading the shared corpus.
 */
#ifndef TEST_UTIL_H
#define TEST_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* The whole file DKIMSIGN_CORPUS/rel, NUL-terminated (not counted in
 * *ret_len); free() it.  Fails the test when the corpus is missing: a test
 * that silently skips its vectors proves nothing. */
uint8_t *test_read_corpus(const char *rel, size_t *ret_len);

#endif
