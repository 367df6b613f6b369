/* SPDX-License-Identifier: MIT */
/*
 * Replay driver for the fuzz targets in builds without libFuzzer: runs
 * LLVMFuzzerTestOneInput once per file named on the command line (or per
 * file in each directory named), so the seed corpora and every minimized
 * crash stay regression tests in `meson test --suite fuzz`.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
        FILE *f = fopen(path, "rb");
        uint8_t *data = NULL;
        size_t len = 0, cap = 0, n;

        if (!f) {
                perror(path);
                return 1;
        }
        do {
                if (len == cap) {
                        uint8_t *p;

                        cap = cap ? cap * 2 : 65536;
                        p = realloc(data, cap);
                        if (!p) {
                                free(data);
                                fclose(f);
                                return 1;
                        }
                        data = p;
                }
                n = fread(data + len, 1, cap - len, f);
                len += n;
        } while (n > 0);
        fclose(f);
        LLVMFuzzerTestOneInput(data, len);
        free(data);
        return 0;
}

int main(int argc, char **argv)
{
        size_t count = 0;
        int failed = 0;

        for (int i = 1; i < argc; i++) {
                struct stat st;

                if (stat(argv[i], &st) < 0) {
                        perror(argv[i]);
                        return 1;
                }
                if (S_ISDIR(st.st_mode)) {
                        DIR *d = opendir(argv[i]);
                        struct dirent *e;

                        while (d && (e = readdir(d))) {
                                char path[4096];

                                if (e->d_name[0] == '.')
                                        continue;
                                snprintf(path, sizeof(path), "%s/%s", argv[i], e->d_name);
                                failed |= run_file(path);
                                count++;
                        }
                        if (d)
                                closedir(d);
                } else {
                        failed |= run_file(argv[i]);
                        count++;
                }
        }
        printf("%zu inputs replayed\n", count);
        return failed || count == 0;
}
