/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the DKIM key record parser and the key decoder behind it,
 * as dkimsignctl check and dkimsignd's DNS watch run them on TXT text from
 * DNS.  A parsed record has a key or is revoked; a key decoded from p= must
 * compare equal to itself through dkim_keyrec_matches when its encoding is
 * the canonical one.
 *
 * Checks abort() rather than assert(): they must hold in NDEBUG builds too.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "dkim/dkimrec.h"
#include "protocol/dkimsign-errors.h"

#define INPUT_MAX (DKIM_KEYREC_MAX + 64)

#define CHECK(x) do { if (!(x)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Is p= the canonical DER of pkey (so a match is certain)? */
static bool canonical(const struct dkim_keyrec *rec, EVP_PKEY *pkey)
{
        unsigned char *der = NULL;
        int len;
        bool same;

        if (rec->alg == DKIM_KEYREC_ED25519)
                return true;
        len = i2d_PUBKEY(pkey, &der);
        same = len > 0 && (size_t) len == rec->p_len && memcmp(der, rec->p, rec->p_len) == 0;
        OPENSSL_free(der);
        if (same)
                return true;
        der = NULL;
        len = i2d_PublicKey(pkey, &der);
        same = len > 0 && (size_t) len == rec->p_len && memcmp(der, rec->p, rec->p_len) == 0;
        OPENSSL_free(der);
        return same;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct dkim_keyrec rec;
        EVP_PKEY *pkey = NULL;
        char why[256];
        int r;

        if (size > INPUT_MAX)
                return 0;
        r = dkim_keyrec_parse((const char *) data, size, &rec, why, sizeof(why));
        if (r != 0) {
                CHECK(r == DKIMSIGN_E_FORMAT || r == DKIMSIGN_E_NOMEM);
                CHECK(r == DKIMSIGN_E_NOMEM || why[0]);
                return 0;
        }
        CHECK(rec.k != NULL);
        CHECK(rec.revoked == (rec.p == NULL));
        CHECK(rec.p_len <= size);
        r = dkim_keyrec_pubkey(&rec, &pkey);
        if (r == 0) {
                CHECK(pkey != NULL);
                r = dkim_keyrec_matches(&rec, pkey, why, sizeof(why));
                CHECK(r == 0 || r == DKIMSIGN_E_NO_KEY);
                if (canonical(&rec, pkey))
                        CHECK(r == 0);
                EVP_PKEY_free(pkey);
        } else {
                CHECK(r == DKIMSIGN_E_FORMAT || r == DKIMSIGN_E_NO_KEY || r == DKIMSIGN_E_ALG);
        }
        dkim_keyrec_clear(&rec);
        return 0;
}
