/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the key state file parser (keys/keystate.c), on any text.
 * What parses must format back to text that parses to the same states.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "keys/keystate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct keystate s = { 0 }, back = { 0 };
        char why[256], *text = NULL;
        size_t len = 0;

        if (size > 256 * 1024)
                return 0;
        if (keystate_parse((const char *) data, size, &s, why, sizeof(why)) != 0)
                return 0;
        if (keystate_format(&s, &text, &len) != 0 || keystate_parse(text, len, &back, why, sizeof(why)) != 0 ||
            back.count != s.count)
                abort();
        for (size_t i = 0; i < s.count; i++) {
                const struct keystate_entry *a = &s.entries[i], *b = &back.entries[i];

                if (strcmp(a->label, b->label) || strcmp(a->fingerprint, b->fingerprint) || a->t.state != b->t.state ||
                    a->t.seen != b->t.seen || a->t.active != b->t.active || a->t.retired != b->t.retired ||
                    keystate_find(&s, a->label) != a)
                        abort();
        }
        free(text);
        keystate_clear(&s);
        keystate_clear(&back);
        return 0;
}
