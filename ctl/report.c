/* SPDX-License-Identifier: MIT */
/*
 * dkimsignctl's messages and JSON strings.  See ctl.h.
 */
#include <stdio.h>

#include "ctl/ctl.h"

int ctl_vreport(int status, const char *fmt, va_list ap)
{
        fputs("dkimsignctl: ", stderr);
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        return status;
}

int ctl_report(int status, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        status = ctl_vreport(status, fmt, ap);
        va_end(ap);
        return status;
}

void ctl_json_string(const char *s)
{
        putchar('"');
        for (; s && *s; s++) {
                unsigned char c = (unsigned char) *s;

                if (c == '"' || c == '\\')
                        printf("\\%c", c);
                else if (c < 0x20 || c >= 0x7f)
                        printf("\\u%04x", c);
                else
                        putchar(c);
        }
        putchar('"');
}
