/* SPDX-License-Identifier: MIT */
/*
 * Tag-list tokenizer.  See taglist.h.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "protocol/dkimsign-errors.h"
#include "dkim/taglist.h"

void dkim_reason(char *why, size_t whylen, const char *fmt, ...)
{
        va_list ap;

        if (!why || whylen == 0)
                return;
        va_start(ap, fmt);
        vsnprintf(why, whylen, fmt, ap);
        va_end(ap);
}

bool taglist_is_wsp(char c)
{
        return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool is_name_char(char c, bool first)
{
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');

        return alpha || (!first && ((c >= '0' && c <= '9') || c == '_'));
}

int taglist_next(const char *text, size_t len, size_t *pos, struct taglist_tag *ret, char *why, size_t whylen)
{
        size_t p = *pos, nlen = 0, vstart, vend, end;

        while (p < len && taglist_is_wsp(text[p]))
                p++;
        if (p == len) {
                *pos = p;
                return 0;
        }
        if (text[p] == ';') {
                dkim_reason(why, whylen, "the record has an empty tag (two \";\" in a row, or a \";\" first).");
                return DKIMSIGN_E_FORMAT;
        }
        if (!is_name_char(text[p], true)) {
                dkim_reason(why, whylen, "a tag name must start with a letter (offset %zu).", p);
                return DKIMSIGN_E_FORMAT;
        }
        while (p < len && is_name_char(text[p], nlen == 0)) {
                if (nlen == TAGLIST_NAME_MAX) {
                        dkim_reason(why, whylen, "a tag name is longer than %d characters.", TAGLIST_NAME_MAX);
                        return DKIMSIGN_E_FORMAT;
                }
                ret->name[nlen++] = text[p++];
        }
        ret->name[nlen] = '\0';
        while (p < len && taglist_is_wsp(text[p]))
                p++;
        if (p == len || text[p] != '=') {
                dkim_reason(why, whylen, "the tag \"%s\" has no \"=\".", ret->name);
                return DKIMSIGN_E_FORMAT;
        }
        p++;
        for (end = p; end < len && text[end] != ';'; end++) {
                unsigned char c = (unsigned char) text[end];

                if (!taglist_is_wsp((char) c) && (c < 0x21 || c > 0x7e)) {
                        dkim_reason(why, whylen, "the value of %s= holds a character that is not printable ASCII.",
                            ret->name);
                        return DKIMSIGN_E_FORMAT;
                }
        }
        vstart = p;
        vend = end;
        while (vstart < vend && taglist_is_wsp(text[vstart]))
                vstart++;
        while (vend > vstart && taglist_is_wsp(text[vend - 1]))
                vend--;
        ret->value = text + vstart;
        ret->value_len = vend - vstart;
        if (end < len) {
                /* An empty tag-spec is only allowed as the trailing ";". */
                size_t look = end + 1;

                while (look < len && taglist_is_wsp(text[look]))
                        look++;
                if (look < len && text[look] == ';') {
                        dkim_reason(why, whylen, "the record has an empty tag (two \";\" in a row).");
                        return DKIMSIGN_E_FORMAT;
                }
                end++;
        }
        *pos = end;
        return 1;
}
