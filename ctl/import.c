/* SPDX-License-Identifier: MIT */
/*
 * dkimsignctl import: one unencrypted PEM private key into the token,
 * checked (type, size) before anything is written.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "ctl/ctl.h"
#include "protocol/dkimsign-errors.h"
#include "util/readfile.h"

/* ---- reading key files ---- */

/* The DER of one PEM private key block: PKCS#8 or PKCS#1 (RSA). */
static EVP_PKEY *der_private_key(const char *name, const unsigned char *der, long len)
{
        const unsigned char *p = der;
        EVP_PKEY *pkey = NULL;

        if (strcmp(name, PEM_STRING_PKCS8INF) == 0) {
                PKCS8_PRIV_KEY_INFO *p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, len);

                if (p8 && p == der + len)
                        pkey = EVP_PKCS82PKEY(p8);
                PKCS8_PRIV_KEY_INFO_free(p8);
        } else {
                pkey = d2i_PrivateKey(EVP_PKEY_RSA, NULL, &p, len);
                if (pkey && p != der + len)
                        pkey = (EVP_PKEY_free(pkey), NULL);
        }
        return pkey;
}

/* Why a decoded key can't be a DKIM key, or NULL. */
static const char *key_unsuitable(EVP_PKEY *pkey, char *buf, size_t size)
{
        EVP_PKEY_CTX *ctx;
        int ok;

        if (EVP_PKEY_is_a(pkey, "RSA")) {
                int bits = EVP_PKEY_get_bits(pkey);
                BIGNUM *third = NULL;

                if (bits < HSM_RSA_MIN_BITS || bits > HSM_RSA_MAX_BITS) {
                        snprintf(buf, size, "a %d-bit RSA key; DKIM RSA keys are %d to %d bits (RFC 8301)", bits,
                                 HSM_RSA_MIN_BITS, HSM_RSA_MAX_BITS);
                        return buf;
                }
                if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_FACTOR3, &third)) {
                        BN_clear_free(third);
                        return "a multi-prime RSA key, which a PKCS#11 token can't hold";
                }
        } else if (!EVP_PKEY_is_a(pkey, "ED25519")) {
                snprintf(buf, size, "a key of type %s; DKIM keys are RSA or Ed25519", EVP_PKEY_get0_type_name(pkey));
                return buf;
        }
        /* A damaged key would sign garbage: its parts must belong together. */
        ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
        ok = ctx && EVP_PKEY_check(ctx) == 1;
        EVP_PKEY_CTX_free(ctx);
        return ok ? NULL : "an inconsistent key (its parts do not belong together)";
}

/*
 * The one unencrypted private key of a PEM file, RSA (1024..4096 bits) or
 * Ed25519.  Everything read is wiped.  On failure a sentence in why that
 * names the file and never quotes it.  A symbolic link is refused
 * (O_NOFOLLOW): dkimsignctl runs as root, and a link planted where a key
 * file is expected would have it read, and put on the token, a file its
 * planter could not read.
 */
int pem_private_key(const char *path, EVP_PKEY **ret, char *why, size_t whylen)
{
        char *text = NULL, reason[160];
        const char *bad = NULL;
        EVP_PKEY *pkey = NULL;
        size_t text_len = 0;
        unsigned keys = 0;
        bool encrypted = false, other = false, malformed = false;
        BIO *bio;

        if (readfile(path, KEY_FILE_MAX, READFILE_NOFOLLOW, &text, &text_len, why, whylen) < 0)
                return -1;
        bio = BIO_new_mem_buf(text, (int) text_len);
        while (bio) {
                char *name = NULL, *header = NULL;
                unsigned char *data = NULL;
                long len = 0;

                /* PEM_FLAG_SECURE: its copies of the base64 text are wiped too. */
                if (!PEM_read_bio_ex(bio, &name, &header, &data, &len, PEM_FLAG_SECURE | PEM_FLAG_EAY_COMPATIBLE)) {
                        unsigned long e = ERR_peek_last_error();

                        /* No further BEGIN line is the normal end. */
                        if (!(ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE))
                                malformed = true;
                        break;
                }
                if (strcmp(name, PEM_STRING_PKCS8) == 0 ||
                    ((strcmp(name, PEM_STRING_PKCS8INF) == 0 || strcmp(name, PEM_STRING_RSA) == 0) &&
                     strstr(header, "ENCRYPTED")))
                        encrypted = true;
                else if (strcmp(name, PEM_STRING_PKCS8INF) == 0 || strcmp(name, PEM_STRING_RSA) == 0) {
                        if (++keys == 1 && !(pkey = der_private_key(name, data, len)))
                                malformed = true;
                } else if (strstr(name, "PRIVATE KEY"))
                        other = true;
                OPENSSL_secure_free(name);
                OPENSSL_secure_free(header);
                OPENSSL_secure_clear_free(data, (size_t) (len > 0 ? len : 0));
        }
        BIO_free(bio);
        ERR_clear_error();
        readfile_free(text, text_len);

        if (encrypted)
                bad = "the key is encrypted; decrypt it to a private file first (openssl pkey), import that, "
                      "then remove it";
        else if (malformed)
                bad = "malformed PEM (a damaged block, or not a valid PKCS#8 or PKCS#1 private key)";
        else if (keys > 1)
                bad = "more than one private key in the file";
        else if (keys == 0 && other)
                bad = "a kind of private key DKIM does not use; DKIM keys are RSA or Ed25519";
        else if (keys == 0)
                bad = "no PEM private key (BEGIN PRIVATE KEY or BEGIN RSA PRIVATE KEY)";
        else if (!pkey)
                bad = "malformed private key";
        else
                bad = key_unsuitable(pkey, reason, sizeof(reason));
        if (bad) {
                snprintf(why, whylen, "%s: %s", path, bad);
                EVP_PKEY_free(pkey);
                return -1;
        }
        *ret = pkey;
        return 0;
}

/* ---- import ---- */

int import_failed(int r, const char *label)
{
        if (r == DKIMSIGN_E_EXISTS)
                return die("a key named %s already exists on the token; choose another selector", label);
        /* What the token can't take, said by hsm/ (hsm_last_why). */
        if (hsm_last_why()[0])
                return die("importing %s: %s", label, hsm_last_why());
        return die("importing %s: %s (%s)", label, dkimsign_strerror(r), hsm_ckr_name(hsm_last_ckr()));
}

/* An imported key usually has its record published already (OpenDKIM
 * signed with it): when DNS shows it now, it is active at once, so a
 * migration never stops a domain's mail for publish_wait. */
void import_lifecycle(const struct config *c, const char *label, EVP_PKEY *pub)
{
        char why[1024];
        int r = ctl_activate_if_published(c, label, pub, why, sizeof(why));

        if (r == 1)
                printf("DNS already shows the record of %s: the key is active at once (dkimsignd signs with it "
                       "from its next reload)\n", label);
        else if (r == 0)
                printf("%s is pending (%s): it signs once dkimsignd has seen its record for publish_wait\n", label,
                       why);
        else
                ctl_report(0, "warning: the state of %s was not recorded (%s); it starts pending",
                           label, why);
}

int cmd_import(const struct options *o)
{
        char label[HSM_LABEL_MAX + 1], why[512], name[TOKEN_NAME_SIZE];
        struct config *c = NULL;
        struct hsm *h = NULL;
        struct hsm_key *k = NULL;
        EVP_PKEY *pkey = NULL;
        int r, status;

        status = check_name_options(o, "import");
        if (status)
                return status;
        if (make_label(o->selector, o->domain, label, sizeof(label)))
                return EXIT_FAIL;
        /* The file first: a bad file never needs the token. */
        if (pem_private_key(o->args[0], &pkey, why, sizeof(why)) < 0)
                return die("%s", why);
        if (open_all(o, &c, &h)) {
                EVP_PKEY_free(pkey);
                return EXIT_FAIL;
        }
        r = hsm_import(h, label, pkey, &k);
        if (r < 0)
                status = import_failed(r, label);
        else {
                printf("imported %s %u-bit key %s into token %s (listed as imported: it was not made there)\n",
                       hsm_alg_name(k->alg), k->bits, label, token_name(h, name));
                printf("%s is no longer needed: remove it (shred -u)\n", o->args[0]);
                printf("its DNS record (unchanged if it is already published):\n");
                status = print_record(k, label);
                if (status == 0)
                        import_lifecycle(c, label, k->pubkey);
        }
        EVP_PKEY_free(pkey); /* clears the private parts */
        hsm_key_free(k);
        hsm_close(h);
        config_free(c);
        return status;
}
