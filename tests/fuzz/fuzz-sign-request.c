/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: everything the daemon does with a SIGN payload before any
 * key is involved: decode the request, parse its header block under small
 * limits, find the From domain, choose the h= list and hash the headers.
 */
#include <stdint.h>

#include "protocol/buf.h"
#include "protocol/dkimsign-errors.h"
#include "dkim/header.h"
#include "protocol/msg.h"
#include "dkim/sign.h"

#define INPUT_MAX (1024 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct dkim_header_limits lim = { .max_fields = 200, .max_line = 2000 };
        const char *hnames[DKIM_HNAMES_MAX];
        char domain[DKIM_DOMAIN_SIZE];
        struct dkim_headers h;
        struct msg_sign s;
        struct buf p, field;
        size_t n;

        if (size > INPUT_MAX)
                return 0;
        buf_view(&p, data, size);
        if (msg_sign_decode(&p, 256 * 1024, &s) < 0)
                return 0;
        if (dkim_headers_parse(s.headers, s.headers_len, &lim, &h) < 0)
                return 0;
        (void) dkim_headers_from_domain(&h, domain, NULL);
        if (dkim_select_headers(&h, dkim_default_hpolicy, dkim_default_hpolicy_len, hnames,
                                DKIM_HNAMES_MAX, &n) == 0) {
                struct dkim_sig_spec spec = {
                        .alg = "rsa-sha256",
                        .header_canon = s.header_canon,
                        .body_canon = s.body_canon,
                        .domain = "example.com",
                        .selector = "fuzz",
                        .timestamp = 1,
                        .body_hash = s.body_hash,
                        .hnames = hnames,
                        .hcount = n,
                };
                uint8_t digest[DKIM_SHA256_LEN];

                buf_init(&field, 16384);
                if (dkim_sig_field_begin(&spec, &field) == 0)
                        (void) dkim_sig_digest(&h, &spec, field.data, field.len, digest);
                buf_deinit(&field);
        }
        dkim_headers_deinit(&h);
        return 0;
}
