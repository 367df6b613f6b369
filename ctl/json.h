/* SPDX-License-Identifier: MIT */
/*
 * dkimsignctl's --json output, on jansson: every document is a jansson
 * value, and jansson writes it, so no JSON is written by hand.  Text stays
 * UTF-8.  Text that is not well-formed UTF-8 (a TXT record, a token's
 * label: anyone's bytes) is repaired, never passed through: each ill-formed
 * sequence becomes one U+FFFD (the "maximal subpart" practice of Unicode
 * chapter 3, what Python's bytes.decode(errors="replace") does), so the
 * output is always valid JSON.  Never prints anything but the document.
 */
#ifndef CTL_JSON_H
#define CTL_JSON_H

#include <stdbool.h>
#include <stdio.h>
#include <jansson.h>

/* Whether s is well-formed UTF-8 (RFC 3629: no overlong form, no
 * surrogate, nothing above U+10FFFF). */
bool ctl_utf8_valid(const char *s);

/* A copy of s with each ill-formed UTF-8 sequence replaced by U+FFFD (the
 * well-formed parts are kept as they are).  The caller frees it; NULL when
 * out of memory. */
char *ctl_utf8_repair(const char *s);

/* s as a JSON string, repaired as above; NULL gives JSON null.  A new
 * reference (for json_pack's "o" or json_*_set_new); NULL when out of
 * memory. */
json_t *ctl_json_text(const char *s);

/* Append v to the array *a, taking v's reference.  When v or *a is NULL
 * (out of memory) or appending fails, *a is released and set to NULL, so a
 * loop appends and the document's printing says what failed. */
void ctl_json_push(json_t **a, json_t *v);

/* v, indented, and a newline on f.  Takes v's reference (v NULL: what
 * building it found, out of memory).  0, DKIMSIGN_E_NOMEM, or
 * DKIMSIGN_E_SYSTEM when writing failed (errno set). */
int ctl_json_print(json_t *v, FILE *f);

#endif
