/* SPDX-License-Identifier: MIT */
/* Helpers shared by the C tests.  See test-util.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "test-util.h"

uint8_t *test_read_corpus(const char *rel, size_t *ret_len)
{
        const char *dir = getenv("DKIMSIGN_CORPUS");
        char path[4096];
        uint8_t *data;
        long n = -1;
        FILE *f;

        if (!dir || !*dir)
                fail_msg("DKIMSIGN_CORPUS is not set");
        if ((size_t) snprintf(path, sizeof(path), "%s/%s", dir, rel) >= sizeof(path))
                fail_msg("corpus path too long: %s/%s", dir, rel);
        f = fopen(path, "rb");
        if (!f)
                fail_msg("cannot open %s", path);
        if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
                fail_msg("cannot size %s", path);
        data = malloc((size_t) n + 1);
        assert_non_null(data);
        if (fread(data, 1, (size_t) n, f) != (size_t) n)
                fail_msg("short read of %s", path);
        data[n] = 0;
        fclose(f);
        *ret_len = (size_t) n;
        return data;
}
