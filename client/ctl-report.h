/* SPDX-License-Identifier: MIT */
/*
 * dkimsignctl's messages: one line on stderr, "dkimsignctl: " first.
 * Each returns the status it is given, so a command can
 * `return ctl_report(EXIT_FAIL, ...)`.  And its JSON strings.
 */
#ifndef CTL_REPORT_H
#define CTL_REPORT_H

#include <stdarg.h>

int ctl_vreport(int status, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
int ctl_report(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* s (NULL: "") as a JSON string on stdout, ASCII only: what is not
 * printable ASCII (a TXT record is anyone's bytes) is escaped. */
void ctl_json_string(const char *s);

#endif
