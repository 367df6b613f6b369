/* SPDX-License-Identifier: MIT */
/*
 * Making key pairs on the token: generation (hsm_generate) and import of
 * an existing private key (hsm_import), both as token objects that are
 * CKA_PRIVATE, CKA_SENSITIVE, not CKA_EXTRACTABLE and can only sign, with
 * today's date as the public half's CKA_START_DATE when the token takes
 * it.
 *
 * It must never create a private key that is extractable or not
 * sensitive, never leave a half-made pair on the token (a failure destroys
 * what was made), never keep a copy of an imported key's secret parts
 * (wiped before returning) and never log.  Every call on the token holds
 * h->lock.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "hsm/hsm-private.h"

static const uint8_t rsa_e65537[] = { 0x01, 0x00, 0x01 };
static const CK_KEY_TYPE type_rsa = CKK_RSA;
static const CK_KEY_TYPE type_eddsa = CKK_EC_EDWARDS;

/* DKIMSIGN_E_EXISTS if a private key already carries label. */
static int label_unused(struct hsm *h, const char *label)
{
        struct tmpl t = { 0 };
        CK_OBJECT_HANDLE obj;
        CK_ULONG n;
        int r;

        hsmi_tmpl_class(&t, &class_private);
        hsmi_tmpl_add(&t, CKA_LABEL, label, strlen(label));
        r = hsmi_objects_find(h, &t, &obj, 1, &n);
        if (r < 0)
                return r;
        return n > 0 ? DKIMSIGN_E_EXISTS : 0;
}

/* ---- what the token can do, asked first ---- */

int hsm_token_caps(struct hsm *h, struct hsm_caps *ret)
{
        int r;

        hsmi_last_ckr = 0;
        if (!h || !ret)
                return DKIMSIGN_E_INTERNAL;
        pthread_mutex_lock(&h->lock);
        r = hsmi_slot_caps(h->p11, h->slot, ret);
        pthread_mutex_unlock(&h->lock);
        return r;
}

void hsm_lock_keys(struct hsm *h, bool lock)
{
        if (!h)
                return;
        pthread_mutex_lock(&h->lock);
        h->lock_keys = lock;
        pthread_mutex_unlock(&h->lock);
}

void hsm_allow_decrypt_keys(struct hsm *h, bool allow)
{
        if (!h)
                return;
        pthread_mutex_lock(&h->lock);
        h->allow_decrypt_keys = allow;
        pthread_mutex_unlock(&h->lock);
}

/* The RSA sizes both the token (min, max; 0: not said) and DKIM take. */
static void rsa_range(unsigned long min, unsigned long max, unsigned long *ret_lo, unsigned long *ret_hi)
{
        *ret_lo = min > HSM_RSA_MIN_BITS ? min : HSM_RSA_MIN_BITS;
        *ret_hi = max && max < HSM_RSA_MAX_BITS ? max : HSM_RSA_MAX_BITS;
}

int hsm_caps_check(const struct hsm_caps *caps, enum hsm_alg alg, unsigned bits, bool generate, char *why,
                   size_t whylen)
{
        unsigned long lo, hi, slo, shi;

        if (alg == HSM_ALG_ED25519) {
                if (!caps->ed_sign) {
                        snprintf(why, whylen, "this token has no Ed25519 (CKM_EDDSA); use %s",
                                 generate ? "--algorithm rsa" : "an RSA key");
                        return DKIMSIGN_E_ALG;
                }
                if (generate && !caps->ed_gen) {
                        snprintf(why, whylen, "this token makes no Ed25519 keys (CKM_EC_EDWARDS_KEY_PAIR_GEN); use "
                                 "--algorithm rsa, or import an Ed25519 key (dkimsignctl import)");
                        return DKIMSIGN_E_ALG;
                }
                return 0;
        }
        if (alg != HSM_ALG_RSA) {
                snprintf(why, whylen, "dkimsign signs with RSA and Ed25519 keys only");
                return DKIMSIGN_E_ALG;
        }
        if (!caps->rsa_sign) {
                snprintf(why, whylen, "this token cannot sign with RSA keys (CKM_RSA_PKCS); use %s",
                         generate ? "--algorithm ed25519" : "an Ed25519 key");
                return DKIMSIGN_E_ALG;
        }
        if (generate && !caps->rsa_gen) {
                snprintf(why, whylen, "this token makes no RSA keys (CKM_RSA_PKCS_KEY_PAIR_GEN); use --algorithm "
                         "ed25519, or import an RSA key (dkimsignctl import)");
                return DKIMSIGN_E_ALG;
        }
        bits = bits ? bits : HSM_RSA_DEFAULT_BITS;
        rsa_range(caps->rsa_sign_min, caps->rsa_sign_max, &slo, &shi);
        lo = slo;
        hi = shi;
        if (generate) {
                rsa_range(caps->rsa_gen_min, caps->rsa_gen_max, &lo, &hi);
                lo = lo > slo ? lo : slo;
                hi = hi < shi ? hi : shi;
        }
        if (lo > hi) {
                snprintf(why, whylen, "this token %s no RSA keys of %d to %d bits, as DKIM needs; use %s",
                         generate ? "makes" : "signs with", HSM_RSA_MIN_BITS, HSM_RSA_MAX_BITS,
                         generate ? "--algorithm ed25519" : "an Ed25519 key");
                return DKIMSIGN_E_ALG;
        }
        if (bits < lo || bits > hi) {
                if (generate)
                        snprintf(why, whylen, "this token makes RSA keys of %lu to %lu bits; use --bits %lu", lo, hi,
                                 bits > hi ? hi : lo);
                else
                        snprintf(why, whylen, "this token signs with RSA keys of %lu to %lu bits, and this key has "
                                 "%u; generate a key on the token instead (dkimsignctl keygen --bits %lu)", lo, hi,
                                 bits, bits > hi ? hi : lo);
                return DKIMSIGN_E_ALG;
        }
        return 0;
}

/* Ask the token, h->lock held: DKIMSIGN_E_ALG with hsm_last_why() when it
 * can't. */
static int caps_check_locked(struct hsm *h, enum hsm_alg alg, unsigned bits, bool generate)
{
        struct hsm_caps caps;
        int r = hsmi_slot_caps(h->p11, h->slot, &caps);

        if (r < 0)
                return r;
        return hsm_caps_check(&caps, alg, bits, generate, hsmi_last_why, sizeof(hsmi_last_why));
}

/* The token refused what dkimsign asked for with one of these: perhaps a
 * template whose "false" uses contradict how it makes keys. */
static bool template_refused(CK_RV rv)
{
        return rv == CKR_GENERAL_ERROR || rv == CKR_TEMPLATE_INCONSISTENT || rv == CKR_ATTRIBUTE_VALUE_INVALID;
}

/* The attributes of every private key made here: a token object that signs
 * and can never be read, unwrapped into or used for anything else.  wide:
 * the "false" uses are left to the module (see hsm.h, hsm_generate). */
static void tmpl_private(struct tmpl *t, const char *label, const uint8_t id[KEY_ID_LEN], bool wide, bool lock)
{
        hsmi_tmpl_add(t, CKA_TOKEN, &ck_true, sizeof(ck_true));
        hsmi_tmpl_add(t, CKA_PRIVATE, &ck_true, sizeof(ck_true));
        hsmi_tmpl_add(t, CKA_SENSITIVE, &ck_true, sizeof(ck_true));
        hsmi_tmpl_add(t, CKA_EXTRACTABLE, &ck_false, sizeof(ck_false));
        /* Locked (hsm_lock_keys): no PIN holder can relabel it onto another
         * domain.  SoftHSM 2.6.1 then refuses the session copy signing
         * prefers (C_CopyObject with CKA_TOKEN false: CKR_ATTRIBUTE_READ_ONLY),
         * so the key signs with its token object.  Unlocked, a key
         * relabelled onto another domain is still a new key to its label's
         * state (keys.state records label and fingerprint), pending until
         * DNS shows it there.  The public half stays modifiable: it carries
         * the key's retirement date. */
        if (lock)
                hsmi_tmpl_add(t, CKA_MODIFIABLE, &ck_false, sizeof(ck_false));
        hsmi_tmpl_add(t, CKA_SIGN, &ck_true, sizeof(ck_true));
        if (!wide) {
                hsmi_tmpl_add(t, CKA_SIGN_RECOVER, &ck_false, sizeof(ck_false));
                hsmi_tmpl_add(t, CKA_DECRYPT, &ck_false, sizeof(ck_false));
                hsmi_tmpl_add(t, CKA_UNWRAP, &ck_false, sizeof(ck_false));
                hsmi_tmpl_add(t, CKA_DERIVE, &ck_false, sizeof(ck_false));
        }
        hsmi_tmpl_add(t, CKA_LABEL, label, strlen(label));
        hsmi_tmpl_add(t, CKA_ID, id, KEY_ID_LEN);
}

static void tmpl_public(struct tmpl *t, const char *label, const uint8_t id[KEY_ID_LEN], bool wide)
{
        hsmi_tmpl_add(t, CKA_TOKEN, &ck_true, sizeof(ck_true));
        hsmi_tmpl_add(t, CKA_PRIVATE, &ck_false, sizeof(ck_false));
        hsmi_tmpl_add(t, CKA_VERIFY, &ck_true, sizeof(ck_true));
        if (!wide) {
                hsmi_tmpl_add(t, CKA_VERIFY_RECOVER, &ck_false, sizeof(ck_false));
                hsmi_tmpl_add(t, CKA_ENCRYPT, &ck_false, sizeof(ck_false));
                hsmi_tmpl_add(t, CKA_WRAP, &ck_false, sizeof(ck_false));
                hsmi_tmpl_add(t, CKA_DERIVE, &ck_false, sizeof(ck_false));
        }
        hsmi_tmpl_add(t, CKA_LABEL, label, strlen(label));
        hsmi_tmpl_add(t, CKA_ID, id, KEY_ID_LEN);
}

/* The token would not take Ed25519's curve as the OID: it may want its name. */
static bool curve_form_refused(CK_RV rv)
{
        return rv == CKR_ATTRIBUTE_VALUE_INVALID || rv == CKR_CURVE_NOT_SUPPORTED || rv == CKR_DOMAIN_PARAMS_INVALID;
}

/* One C_GenerateKeyPair with the strict or the wide template: with today's
 * start date, then without if the token refuses it; for Ed25519 with the
 * curve's OID, then its name if the token refuses the OID.  Either refusal
 * may come as CKR_ATTRIBUTE_VALUE_INVALID, so the combinations are tried
 * in order, the date kept as long as one works with it. */
static CK_RV keypair_try(struct hsm *h, const char *label, enum hsm_alg alg, CK_ULONG *bits,
                         const uint8_t id[KEY_ID_LEN], bool wide, CK_OBJECT_HANDLE *ret_priv, CK_OBJECT_HANDLE *ret_pub)
{
        CK_MECHANISM mech = { 0 };
        struct tmpl pub = { 0 }, priv = { 0 };
        CK_ATTRIBUTE *curve = NULL;
        CK_ULONG dated;
        CK_DATE today;
        CK_RV rv = CKR_GENERAL_ERROR;

        tmpl_public(&pub, label, id, wide);
        tmpl_private(&priv, label, id, wide, h->lock_keys);
        if (alg == HSM_ALG_RSA) {
                mech.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
                hsmi_tmpl_add(&pub, CKA_MODULUS_BITS, bits, sizeof(*bits));
                hsmi_tmpl_add(&pub, CKA_PUBLIC_EXPONENT, rsa_e65537, sizeof(rsa_e65537));
        } else {
                mech.mechanism = CKM_EC_EDWARDS_KEY_PAIR_GEN;
                hsmi_tmpl_add(&pub, CKA_EC_PARAMS, ed25519_oid, sizeof(ed25519_oid));
                curve = &pub.a[pub.n - 1];
        }
        hsmi_date_today(&today);
        hsmi_tmpl_add(&pub, CKA_START_DATE, &today, sizeof(today));
        dated = pub.n;
        for (int attempt = 0; attempt < 4; attempt++) {
                bool by_name = attempt % 2 == 1, undated = attempt >= 2;

                if (by_name && !curve)
                        continue;
                if (curve) {
                        curve->pValue = (void *) (by_name ? ed25519_name : ed25519_oid);
                        curve->ulValueLen = by_name ? sizeof(ed25519_name) : sizeof(ed25519_oid);
                }
                /* A token that keeps no dates still makes keys: without "created". */
                pub.n = undated ? dated - 1 : dated;
                rv = h->p11->C_GenerateKeyPair(h->admin, &mech, pub.a, pub.n, priv.a, priv.n, ret_pub, ret_priv);
                if (!(curve && curve_form_refused(rv)) && !hsmi_date_refused(rv))
                        break;
        }
        return rv;
}

/* The strict template first; the wide one only when allowed (hsm.h). */
static int keypair_generate(struct hsm *h, const char *label, enum hsm_alg alg, CK_ULONG bits,
                            const uint8_t id[KEY_ID_LEN], CK_OBJECT_HANDLE *ret_priv, CK_OBJECT_HANDLE *ret_pub)
{
        CK_OBJECT_HANDLE hpub = CK_INVALID_HANDLE, hpriv = CK_INVALID_HANDLE;
        CK_RV rv = keypair_try(h, label, alg, &bits, id, false, &hpriv, &hpub);

        if (template_refused(rv)) {
                if (!h->allow_decrypt_keys) {
                        hsmi_ckr_fail(rv);
                        hsmi_why("the token refused a key that can only sign (%s); it may make only keys that "
                                 "also decrypt (tpm2-pkcs11 does): set [token] allow_decrypt_keys = yes to accept "
                                 "such keys", hsm_ckr_name(rv));
                        return DKIMSIGN_E_ALG;
                }
                rv = keypair_try(h, label, alg, &bits, id, true, &hpriv, &hpub);
        }
        if (rv != CKR_OK)
                return hsmi_ckr_fail(rv);
        *ret_priv = hpriv;
        *ret_pub = hpub;
        return 0;
}

/* After a key was made: its real uses, read back.  One that may decrypt
 * without the allowance is refused (the caller destroys it). */
static int uses_check(struct hsm *h, const struct hsm_key *key)
{
        char uses[64];

        if (!(key->uses & HSM_USE_DECRYPT) || h->allow_decrypt_keys)
                return 0;
        hsm_uses_format(key->uses, ", ", uses, sizeof(uses));
        hsmi_why("the token made a key that may %s, not only sign: it was destroyed; set [token] "
                 "allow_decrypt_keys = yes to accept such keys", uses);
        return DKIMSIGN_E_ALG;
}

int hsm_generate(struct hsm *h, const char *label, enum hsm_alg alg, unsigned bits, struct hsm_key **ret)
{
        CK_OBJECT_HANDLE priv = CK_INVALID_HANDLE, pub = CK_INVALID_HANDLE;
        struct hsm_key *key = NULL;
        uint8_t id[KEY_ID_LEN];
        int r;

        hsmi_last_ckr = 0;
        hsmi_last_why[0] = '\0';
        if (!h || !ret)
                return DKIMSIGN_E_INTERNAL;
        r = hsmi_label_check(label);
        if (r < 0)
                return r;
        if (alg == HSM_ALG_RSA) {
                bits = bits ? bits : HSM_RSA_DEFAULT_BITS;
                if (bits < HSM_RSA_MIN_BITS || bits > HSM_RSA_MAX_BITS)
                        return DKIMSIGN_E_ALG;
        } else if (alg != HSM_ALG_ED25519)
                return DKIMSIGN_E_ALG;
        if (RAND_bytes(id, sizeof(id)) != 1)
                return DKIMSIGN_E_INTERNAL;

        pthread_mutex_lock(&h->lock);
        /* What the token can't make is refused before anything changes. */
        r = caps_check_locked(h, alg, bits, true);
        if (r == 0)
                r = label_unused(h, label);
        if (r == 0)
                r = keypair_generate(h, label, alg, bits, id, &priv, &pub);
        if (r == 0) {
                r = hsmi_key_load(h, priv, pub, &key);
                if (r == 0)
                        r = uses_check(h, key);
                /* Leave nothing half made behind. */
                if (r < 0) {
                        key = hsm_key_free(key);
                        hsmi_objects_destroy(h, priv, pub);
                }
        }
        pthread_mutex_unlock(&h->lock);
        if (r < 0)
                return r;
        *ret = key;
        return 0;
}

/* ---- import ---- */

static const struct {
        const char *param;
        CK_ATTRIBUTE_TYPE type;
} rsa_parts[] = {
        { OSSL_PKEY_PARAM_RSA_N, CKA_MODULUS },
        { OSSL_PKEY_PARAM_RSA_E, CKA_PUBLIC_EXPONENT },
        { OSSL_PKEY_PARAM_RSA_D, CKA_PRIVATE_EXPONENT },
        { OSSL_PKEY_PARAM_RSA_FACTOR1, CKA_PRIME_1 },
        { OSSL_PKEY_PARAM_RSA_FACTOR2, CKA_PRIME_2 },
        { OSSL_PKEY_PARAM_RSA_EXPONENT1, CKA_EXPONENT_1 },
        { OSSL_PKEY_PARAM_RSA_EXPONENT2, CKA_EXPONENT_2 },
        { OSSL_PKEY_PARAM_RSA_COEFFICIENT1, CKA_COEFFICIENT },
};
#define RSA_PARTS (sizeof(rsa_parts) / sizeof(rsa_parts[0]))

/* Big-endian octets of every RSA component; wiped and freed by rsa_parts_free(). */
struct rsa_bytes {
        uint8_t *v[RSA_PARTS];
        size_t len[RSA_PARTS];
};

static void rsa_bytes_free(struct rsa_bytes *b)
{
        for (size_t i = 0; i < RSA_PARTS; i++)
                OPENSSL_clear_free(b->v[i], b->len[i]);
}

static int rsa_bytes_get(EVP_PKEY *pkey, struct rsa_bytes *b)
{
        _cleanup_(bn_clear_freep) BIGNUM *extra = NULL;

        /* A multi-prime key has no PKCS#11 form. */
        if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_FACTOR3, &extra))
                return DKIMSIGN_E_ALG;
        for (size_t i = 0; i < RSA_PARTS; i++) {
                _cleanup_(bn_clear_freep) BIGNUM *bn = NULL;
                int len;

                if (!EVP_PKEY_get_bn_param(pkey, rsa_parts[i].param, &bn))
                        return DKIMSIGN_E_FORMAT;
                len = BN_num_bytes(bn);
                if (len <= 0 || len > RSA_MOD_MAX)
                        return DKIMSIGN_E_FORMAT;
                b->v[i] = OPENSSL_malloc((size_t) len);
                if (!b->v[i])
                        return DKIMSIGN_E_NOMEM;
                b->len[i] = (size_t) len;
                if (BN_bn2bin(bn, b->v[i]) != len)
                        return DKIMSIGN_E_INTERNAL;
        }
        return 0;
}

static int object_create(struct hsm *h, struct tmpl *t, CK_OBJECT_HANDLE *ret)
{
        CK_OBJECT_HANDLE obj;
        CK_RV rv;

        rv = h->p11->C_CreateObject(h->admin, t->a, t->n, &obj);
        if (rv != CKR_OK)
                return hsmi_ckr_fail(rv);
        *ret = obj;
        return 0;
}

/* Create the private then the public object (with today's start date, or
 * without if the token refuses it); on failure neither is left. */
static int pair_create(struct hsm *h, struct tmpl *priv, struct tmpl *pub, CK_OBJECT_HANDLE *ret_priv,
                       CK_OBJECT_HANDLE *ret_pub)
{
        CK_OBJECT_HANDLE hpriv = CK_INVALID_HANDLE, hpub = CK_INVALID_HANDLE;
        CK_DATE today;
        int r;

        r = object_create(h, priv, &hpriv);
        if (r < 0) {
                if (template_refused(hsmi_last_ckr))
                        hsmi_why("the token would not create the private key object (%s): it may not import "
                                 "private keys (tpm2-pkcs11 does not); generate a key on the token instead "
                                 "(dkimsignctl keygen)", hsm_ckr_name(hsmi_last_ckr));
                return r;
        }
        hsmi_date_today(&today);
        hsmi_tmpl_add(pub, CKA_START_DATE, &today, sizeof(today));
        r = object_create(h, pub, &hpub);
        if (r < 0 && hsmi_date_refused(hsmi_last_ckr)) {
                pub->n--;
                r = object_create(h, pub, &hpub);
        }
        if (r < 0) {
                hsmi_objects_destroy(h, hpriv, CK_INVALID_HANDLE);
                return r;
        }
        *ret_priv = hpriv;
        *ret_pub = hpub;
        return 0;
}

static int rsa_import(struct hsm *h, const char *label, EVP_PKEY *pkey, const uint8_t id[KEY_ID_LEN],
                      CK_OBJECT_HANDLE *ret_priv, CK_OBJECT_HANDLE *ret_pub)
{
        struct rsa_bytes b = { 0 };
        struct tmpl priv = { 0 }, pub = { 0 };
        int r;

        r = rsa_bytes_get(pkey, &b);
        if (r == 0) {
                hsmi_tmpl_add(&priv, CKA_CLASS, &class_private, sizeof(class_private));
                hsmi_tmpl_add(&priv, CKA_KEY_TYPE, &type_rsa, sizeof(type_rsa));
                tmpl_private(&priv, label, id, false, h->lock_keys);
                for (size_t i = 0; i < RSA_PARTS; i++)
                        hsmi_tmpl_add(&priv, rsa_parts[i].type, b.v[i], b.len[i]);
                hsmi_tmpl_add(&pub, CKA_CLASS, &class_public, sizeof(class_public));
                hsmi_tmpl_add(&pub, CKA_KEY_TYPE, &type_rsa, sizeof(type_rsa));
                tmpl_public(&pub, label, id, false);
                hsmi_tmpl_add(&pub, CKA_MODULUS, b.v[0], b.len[0]);
                hsmi_tmpl_add(&pub, CKA_PUBLIC_EXPONENT, b.v[1], b.len[1]);
                r = pair_create(h, &priv, &pub, ret_priv, ret_pub);
        }
        rsa_bytes_free(&b);
        return r;
}

static int ed25519_import(struct hsm *h, const char *label, EVP_PKEY *pkey, const uint8_t id[KEY_ID_LEN],
                          CK_OBJECT_HANDLE *ret_priv, CK_OBJECT_HANDLE *ret_pub)
{
        uint8_t seed[ED25519_LEN], point[2 + ED25519_LEN] = { 0x04, ED25519_LEN };
        size_t seed_len = sizeof(seed), pub_len = ED25519_LEN;
        int r = DKIMSIGN_E_FORMAT;

        if (EVP_PKEY_get_raw_private_key(pkey, seed, &seed_len) != 1 || seed_len != ED25519_LEN ||
            EVP_PKEY_get_raw_public_key(pkey, point + 2, &pub_len) != 1 || pub_len != ED25519_LEN)
                goto out;
        /* The curve as its OID, then (refused) as its name, as keygen does. */
        for (int form = 0; form < 2; form++) {
                const uint8_t *curve = form ? ed25519_name : ed25519_oid;
                size_t curve_len = form ? sizeof(ed25519_name) : sizeof(ed25519_oid);
                struct tmpl priv = { 0 }, pub = { 0 };

                hsmi_tmpl_add(&priv, CKA_CLASS, &class_private, sizeof(class_private));
                hsmi_tmpl_add(&priv, CKA_KEY_TYPE, &type_eddsa, sizeof(type_eddsa));
                tmpl_private(&priv, label, id, false, h->lock_keys);
                hsmi_tmpl_add(&priv, CKA_EC_PARAMS, curve, curve_len);
                hsmi_tmpl_add(&priv, CKA_VALUE, seed, sizeof(seed));
                hsmi_tmpl_add(&pub, CKA_CLASS, &class_public, sizeof(class_public));
                hsmi_tmpl_add(&pub, CKA_KEY_TYPE, &type_eddsa, sizeof(type_eddsa));
                tmpl_public(&pub, label, id, false);
                hsmi_tmpl_add(&pub, CKA_EC_PARAMS, curve, curve_len);
                /* The DER OCTET STRING form, as SoftHSM and PKCS#11 2.40 write it. */
                hsmi_tmpl_add(&pub, CKA_EC_POINT, point, sizeof(point));
                r = pair_create(h, &priv, &pub, ret_priv, ret_pub);
                if (r == 0 || !curve_form_refused(hsmi_last_ckr))
                        break;
        }
out:
        OPENSSL_cleanse(seed, sizeof(seed));
        return r;
}

static int import_alg(EVP_PKEY *pkey, enum hsm_alg *ret)
{
        if (EVP_PKEY_is_a(pkey, "RSA")) {
                int bits = EVP_PKEY_get_bits(pkey);

                if (bits < HSM_RSA_MIN_BITS || bits > HSM_RSA_MAX_BITS)
                        return DKIMSIGN_E_ALG;
                *ret = HSM_ALG_RSA;
                return 0;
        }
        if (EVP_PKEY_is_a(pkey, "ED25519")) {
                *ret = HSM_ALG_ED25519;
                return 0;
        }
        return DKIMSIGN_E_ALG;
}

int hsm_import(struct hsm *h, const char *label, EVP_PKEY *pkey, struct hsm_key **ret)
{
        CK_OBJECT_HANDLE priv = CK_INVALID_HANDLE, pub = CK_INVALID_HANDLE;
        struct hsm_key *key = NULL;
        uint8_t id[KEY_ID_LEN];
        enum hsm_alg alg;
        int r;

        hsmi_last_ckr = 0;
        hsmi_last_why[0] = '\0';
        if (!h || !pkey || !ret)
                return DKIMSIGN_E_INTERNAL;
        r = hsmi_label_check(label);
        if (r < 0)
                return r;
        r = import_alg(pkey, &alg);
        if (r < 0)
                return r;
        if (RAND_bytes(id, sizeof(id)) != 1)
                return DKIMSIGN_E_INTERNAL;

        pthread_mutex_lock(&h->lock);
        r = caps_check_locked(h, alg, alg == HSM_ALG_RSA ? (unsigned) EVP_PKEY_get_bits(pkey) : 0, false);
        if (r == 0)
                r = label_unused(h, label);
        if (r == 0)
                r = alg == HSM_ALG_RSA ? rsa_import(h, label, pkey, id, &priv, &pub)
                                       : ed25519_import(h, label, pkey, id, &priv, &pub);
        if (r == 0) {
                r = hsmi_key_load(h, priv, pub, &key);
                if (r == 0)
                        r = uses_check(h, key);
                if (r < 0) {
                        key = hsm_key_free(key);
                        hsmi_objects_destroy(h, priv, pub);
                }
        }
        pthread_mutex_unlock(&h->lock);
        if (r < 0)
                return r;
        *ret = key;
        return 0;
}
