/* SPDX-License-Identifier: MIT */
/*
 * dkimsignctl's --json output on jansson, and the UTF-8 repair that keeps
 * outside bytes from making it invalid.  See json.h.  It never writes JSON
 * syntax itself: jansson does, and jansson refuses a string that is not
 * UTF-8, so every string goes through ctl_json_text.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/json.h"
#include "protocol/dkimsign-errors.h"

#define REPLACEMENT "\xef\xbf\xbd"   /* U+FFFD in UTF-8 */

/*
 * The length (1 to 4) of the well-formed UTF-8 sequence that starts at s,
 * or 0 when it is ill-formed; then *ret_bad is the length (1 to 3) of its
 * maximal subpart: the lead byte and the continuation bytes that were still
 * possible, which one U+FFFD replaces.  The second byte's range depends on
 * the lead byte (Unicode Table 3-7): that is what refuses overlong forms
 * (E0, F0), surrogates (ED) and code points above U+10FFFF (F4).  The NUL
 * at the end is never a continuation byte, so this stops at it.
 */
static size_t utf8_sequence(const unsigned char *s, size_t *ret_bad)
{
        unsigned char lo = 0x80, hi = 0xbf;
        size_t n;

        if (s[0] < 0x80)
                return 1;
        if (s[0] >= 0xc2 && s[0] <= 0xdf) {
                n = 2;
        } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
                n = 3;
                if (s[0] == 0xe0)
                        lo = 0xa0;
                else if (s[0] == 0xed)
                        hi = 0x9f;
        } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
                n = 4;
                if (s[0] == 0xf0)
                        lo = 0x90;
                else if (s[0] == 0xf4)
                        hi = 0x8f;
        } else {
                *ret_bad = 1;   /* a continuation byte, C0, C1 or F5..FF */
                return 0;
        }
        for (size_t i = 1; i < n; i++) {
                if (s[i] < lo || s[i] > hi) {
                        *ret_bad = i;
                        return 0;
                }
                lo = 0x80;
                hi = 0xbf;
        }
        return n;
}

bool ctl_utf8_valid(const char *s)
{
        const unsigned char *p = (const unsigned char *) s;
        size_t n, bad;

        for (; *p; p += n)
                if (!(n = utf8_sequence(p, &bad)))
                        return false;
        return true;
}

char *ctl_utf8_repair(const char *s)
{
        const unsigned char *p = (const unsigned char *) s;
        size_t len = strlen(s), n, bad;
        char *out, *o;

        /* Each replaced byte grows to at most the 3 of U+FFFD. */
        if (len > (SIZE_MAX - 1) / 3)
                return NULL;
        out = o = malloc(3 * len + 1);
        if (!out)
                return NULL;
        while (*p) {
                n = utf8_sequence(p, &bad);
                if (n) {
                        memcpy(o, p, n);
                        o += n;
                        p += n;
                } else {
                        memcpy(o, REPLACEMENT, 3);
                        o += 3;
                        p += bad;
                }
        }
        *o = '\0';
        return out;
}

json_t *ctl_json_text(const char *s)
{
        char *fixed;
        json_t *v;

        if (!s)
                return json_null();
        if (ctl_utf8_valid(s))
                return json_string(s);
        fixed = ctl_utf8_repair(s);
        if (!fixed)
                return NULL;
        v = json_string(fixed);
        free(fixed);
        return v;
}

void ctl_json_push(json_t **a, json_t *v)
{
        if (*a && json_array_append_new(*a, v) == 0)
                return;
        if (!*a)
                json_decref(v);
        json_decref(*a);   /* append_new released v */
        *a = NULL;
}

int ctl_json_print(json_t *v, FILE *f)
{
        int r = 0;

        if (!v)
                return DKIMSIGN_E_NOMEM;
        /* UTF-8 out as UTF-8: no JSON_ENSURE_ASCII. */
        if (json_dumpf(v, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER) < 0 || fputc('\n', f) == EOF ||
            fflush(f) == EOF)
                r = ferror(f) ? DKIMSIGN_E_SYSTEM : DKIMSIGN_E_NOMEM;
        json_decref(v);
        return r;
}
