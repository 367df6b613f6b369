/* SPDX-License-Identifier: MIT */
/*
 * DKIM key record text.  See record.h.  Only public key material passes
 * through here.  Parsing a published record is dkimrec.c's.
 */
#include <string.h>
#include <openssl/x509.h>

#include "protocol/dkimsign-errors.h"
#include "dkim/record.h"
#include "dkim/sign.h"

int dkim_record_text(EVP_PKEY *pub, struct buf *out)
{
        size_t start = out->len;
        uint8_t raw[32];
        size_t raw_len = sizeof(raw);
        uint8_t *der = NULL;
        int der_len;
        int r;

        switch (EVP_PKEY_get_base_id(pub)) {
        case EVP_PKEY_RSA:
                der_len = i2d_PUBKEY(pub, &der);
                if (der_len <= 0)
                        return DKIMSIGN_E_INTERNAL;
                r = buf_put(out, "v=DKIM1; k=rsa; p=", strlen("v=DKIM1; k=rsa; p="));
                if (r == 0)
                        r = dkim_base64_put(out, der, (size_t) der_len);
                OPENSSL_free(der);
                break;
        case EVP_PKEY_ED25519:
                if (!EVP_PKEY_get_raw_public_key(pub, raw, &raw_len) || raw_len != sizeof(raw))
                        return DKIMSIGN_E_INTERNAL;
                r = buf_put(out, "v=DKIM1; k=ed25519; p=", strlen("v=DKIM1; k=ed25519; p="));
                if (r == 0)
                        r = dkim_base64_put(out, raw, raw_len);
                break;
        default:
                return DKIMSIGN_E_ALG;
        }
        if (r < 0)
                out->len = start;
        return r;
}

int dkim_record_zone_value(const char *text, size_t len, struct buf *out)
{
        size_t start = out->len;
        bool several = len > 255;
        int r = 0;

        if (several)
                r = buf_put(out, "( ", 2);
        for (size_t off = 0; r == 0 && (off < len || len == 0); ) {
                size_t take = len - off > 255 ? 255 : len - off;

                if (off > 0)
                        r = buf_put(out, "\n  ", 3);
                if (r == 0)
                        r = buf_put(out, "\"", 1);
                if (r == 0)
                        r = buf_put(out, text + off, take);
                if (r == 0)
                        r = buf_put(out, "\"", 1);
                off += take;
                if (len == 0)
                        break;
        }
        if (r == 0 && several)
                r = buf_put(out, " )", 2);
        if (r < 0)
                out->len = start;
        return r;
}
