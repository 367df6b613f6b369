/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: everything the daemon does with a SEAL payload before any
 * key is involved: decode the request, parse its header block under small
 * limits, read the ARC chain's structure, build the ARC-Authentication-
 * Results, ARC-Message-Signature and ARC-Seal and hash them; and what the
 * client's chain check reads of each ARC field (tags, b= stripped).
 */
#include <stdint.h>

#include "protocol/buf.h"
#include "protocol/dkimsign-errors.h"
#include "dkim/arc.h"
#include "dkim/header.h"
#include "protocol/msg.h"
#include "dkim/sign.h"

#define INPUT_MAX (1024 * 1024)

static void read_fields(const struct dkim_headers *h, const struct arc_chain *c)
{
        struct buf tmp;

        buf_init(&tmp, 64 * 1024);
        for (size_t n = 0; n < c->count; n++)
                for (int k = ARC_AMS; k <= ARC_AS; k++) {
                        const struct dkim_field *f = &h->fields[c->idx[n][k]];
                        const char *v;
                        size_t len;

                        (void) arc_field_tag(h->block + f->off, f->len, "h", &v, &len);
                        buf_reset(&tmp);
                        (void) arc_strip_b(h->block + f->off, f->len, &tmp);
                }
        buf_deinit(&tmp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct dkim_header_limits lim = { .max_fields = 200, .max_line = 2000 };
        const char *hnames[DKIM_HNAMES_MAX];
        struct dkim_headers h;
        struct arc_chain chain;
        struct msg_seal s;
        struct buf p, aar, ams, as;
        size_t n;

        if (size > INPUT_MAX)
                return 0;
        buf_view(&p, data, size);
        if (msg_seal_decode(&p, 256 * 1024, &s) < 0)
                return 0;
        if (dkim_headers_parse(s.headers, s.headers_len, &lim, &h) < 0)
                return 0;
        if (arc_chain_parse(&h, &chain, NULL, 0) < 0) {
                dkim_headers_deinit(&h);
                return 0;
        }
        read_fields(&h, &chain);
        buf_init(&aar, 16384);
        buf_init(&ams, 16384);
        buf_init(&as, 16384);
        if (s.instance <= ARC_INSTANCE_MAX &&
            arc_aar_build(s.instance, s.authserv_id, s.authserv_id_len, s.results, s.results_len, &aar) == 0 &&
            dkim_select_headers(&h, dkim_default_hpolicy, dkim_default_hpolicy_len, hnames, DKIM_HNAMES_MAX,
                                &n) == 0) {
                struct dkim_sig_spec spec = {
                        .head = "ARC-Message-Signature: i=1",
                        .alg = "rsa-sha256",
                        .header_canon = DKIM_CANON_RELAXED,
                        .body_canon = DKIM_CANON_RELAXED,
                        .domain = "example.com",
                        .selector = "fuzz",
                        .timestamp = 1,
                        .body_hash = s.body_hash,
                        .hnames = hnames,
                        .hcount = n,
                };
                struct arc_seal_spec seal = { .alg = "rsa-sha256", .instance = s.instance, .cv = (enum arc_cv) s.cv,
                                              .domain = "example.com", .selector = "fuzz", .timestamp = 1 };
                uint8_t digest[DKIM_SHA256_LEN];

                if (dkim_sig_field_begin(&spec, &ams) == 0 &&
                    dkim_sig_digest(&h, &spec, ams.data, ams.len, digest) == 0 && arc_seal_begin(&seal, &as) == 0)
                        (void) arc_seal_digest(&h, &chain, chain.count, aar.data, aar.len, ams.data, ams.len,
                                               as.data, as.len, digest);
        }
        buf_deinit(&aar);
        buf_deinit(&ams);
        buf_deinit(&as);
        dkim_headers_deinit(&h);
        return 0;
}
