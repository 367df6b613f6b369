/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the configuration parser, on any text.  What it parsed is
 * read back whole (never put into the environment).
 */
#include <stdint.h>
#include <string.h>

#include "keys/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct config *c = NULL;
        char err[512];

        if (size > 64 * 1024)
                return 0;
        if (config_parse((const char *) data, size, &c, err, sizeof(err)) == 0) {
                size_t n = 0;

                for (size_t i = 0; i < c->nmodule_env; i++)
                        n += strlen(c->module_env[i]);
                for (size_t i = 0; i < c->hpolicy_len; i++)
                        n += strlen(c->hpolicy[i].name) + c->hpolicy[i].oversign;
                for (size_t i = 0; i < c->ndomains; i++) {
                        (void) config_find_domain(c, c->domains[i].name);
                        for (size_t k = 0; k < c->domains[i].hpolicy_len; k++)
                                n += strlen(c->domains[i].hpolicy[k].name);
                }
                (void) n;
                config_free(c);
        }
        return 0;
}
