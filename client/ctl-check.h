/* SPDX-License-Identifier: MIT */
/*
 * dkimsignctl check and records: a domain's published SPF, DKIM and DMARC
 * records, judged (check) or suggested (records).  ctl.c parses the command
 * line and opens the configuration and the token; these functions print
 * their report (stdout) or one error line (stderr) and return the exit
 * status.
 */
#ifndef CTL_CHECK_H
#define CTL_CHECK_H

#include <stdbool.h>

#include "config.h"
#include "hsm.h"

/* Exit status of `check`, besides 0 (everything ok), 1 (could not run)
 * and 2 (usage). */
#define CTL_CHECK_EXIT_WARNINGS 3     /* warnings, no errors */
#define CTL_CHECK_EXIT_ERRORS 4       /* at least one error */
#define CTL_CHECK_EXIT_INCOMPLETE 5   /* no error found, but a lookup failed for now: run it again */

/*
 * dkimsignctl check DOMAIN: SPF, every DKIM selector of domain on the token
 * h (borrowed), DMARC.  resolver: --resolver, or NULL for c's [dns]
 * resolver, or the system's.
 */
int ctl_check(const struct config *c, struct hsm *h, const char *domain, const char *resolver, bool json);

/* dkimsignctl records DOMAIN: the SPF, DKIM and DMARC records to publish. */
int ctl_records(const struct config *c, struct hsm *h, const char *domain, bool json);

#endif
