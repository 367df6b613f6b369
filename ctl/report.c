/* SPDX-License-Identifier: MIT */
/*
 * dkimsignctl's messages, and its --json documents on stdout.  See ctl.h.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ctl/ctl.h"
#include "protocol/dkimsign-errors.h"

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

int ctl_json_out(json_t *v)
{
        int r = ctl_json_print(v, stdout);

        if (r == DKIMSIGN_E_SYSTEM)
                return ctl_report(EXIT_FAIL, "writing the JSON output: %s", strerror(errno));
        if (r < 0)
                return ctl_report(EXIT_FAIL, "building the JSON output: %s", dkimsign_strerror(r));
        return 0;
}
