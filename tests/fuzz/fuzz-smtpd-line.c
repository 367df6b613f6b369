/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the OpenSMTPD filter protocol line parser and the address
 * field check of dkimsign-smtpd-filter (client/smtpd-proto.c), on bytes as
 * smtpd could write them.  The input is split at its newlines, each line
 * parsed in place as the filter does: a parsed line must describe itself
 * consistently (its strings inside the line, its parameters' length
 * right); each line is also fed to the address check, whole and byte by
 * byte, which must agree.
 *
 * Checks abort() rather than assert(): they must hold in NDEBUG builds too.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client/dkimsign.h"
#include "client/smtpd-proto.h"

#define INPUT_MAX (256 * 1024)

#define CHECK(x) do { if (!(x)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool inside(const char *p, const char *line, size_t len)
{
        return p >= line && p <= line + len;
}

static void check_line(const char *orig, size_t len)
{
        char *line = malloc(len + 1);
        struct smtpd_line l;
        int r;

        if (!line)
                return;
        memcpy(line, orig, len);
        line[len] = 0;
        r = smtpd_line_parse(line, len, &l);
        if (r < 0) {
                CHECK(r == DKIMSIGN_E_FORMAT || r == DKIMSIGN_E_TOO_LARGE);
                CHECK(l.name == NULL && l.params == NULL && l.session == 0);
                free(line);
                return;
        }
        CHECK(len <= SMTPD_LINE_MAX && memchr(orig, 0, len) == NULL);
        CHECK(l.name && inside(l.name, line, len) && strlen(l.name) > 0);
        if (l.kind == SMTPD_CONFIG) {
                CHECK(memcmp(orig, "config|", 7) == 0);
                CHECK(l.params == NULL || (inside(l.params, line, len) && strlen(l.params) == l.params_len));
        } else {
                CHECK(l.kind == SMTPD_REPORT || l.kind == SMTPD_FILTER);
                CHECK(l.version && inside(l.version, line, len));
                CHECK(strcmp(l.subsystem, "smtp-in") == 0 || strcmp(l.subsystem, "smtp-out") == 0);
                CHECK(l.params && strlen(l.params) == l.params_len);
                /* The parameters are the line's tail, '|' and all. */
                CHECK(l.params_len == 0 || memcmp(orig + len - l.params_len, l.params, l.params_len) == 0);
                (void) smtpd_version_supported(l.version);
                if (l.kind == SMTPD_FILTER) {
                        size_t ulen;
                        const char *u = smtpd_data_unescape(l.params, l.params_len, &ulen);

                        CHECK(u + ulen == l.params + l.params_len);
                        CHECK(!smtpd_data_is_end(l.params, l.params_len) || ulen == 0);
                }
        }
        free(line);
}

static void check_scan(const char *text, size_t len)
{
        struct smtpd_addr_scan whole, bytes;

        smtpd_addr_scan_init(&whole);
        smtpd_addr_scan_init(&bytes);
        smtpd_addr_scan_feed(&whole, text, len);
        for (size_t i = 0; i < len; i++)
                smtpd_addr_scan_feed(&bytes, text + i, 1);
        CHECK(smtpd_addr_scan_end(&whole) == smtpd_addr_scan_end(&bytes));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const char *p = (const char *) data, *end = p + size;

        if (size > INPUT_MAX)
                return 0;
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                size_t len = nl ? (size_t) (nl - p) : (size_t) (end - p);

                check_line(p, len);
                check_scan(p, len);
                p += len + (nl ? 1 : 0);
        }
        return 0;
}
