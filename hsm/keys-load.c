/* SPDX-License-Identifier: MIT */
/*
 * Reading key pairs from the token: a key's private attributes (how it
 * was made, never its secret), its public half (as an EVP_PKEY, and raw
 * for Ed25519) and its dates, and hsm_list's one-pass index of the token's
 * objects.  hsm_list refuses a key whose signing mechanism the token does
 * not list (an Ed25519 key on a token without CKM_EDDSA, put there by
 * another tool or before a firmware change): every signature with it
 * would fail.
 *
 * It must never ask for a private attribute (CKA_PRIVATE_EXPONENT,
 * CKA_VALUE, ...), never use a length the module reports past the buffer
 * it was given, never leave out of a listing a key that a passing token
 * error hid (that would stop signing for its domain: the listing fails
 * instead), and never log.  Every call on the token here is made with
 * h->lock held (hsm_list takes it; the rest expect it held).
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include "hsm/hsm-private.h"

/* ---- public keys ---- */

static int rsa_pubkey(const uint8_t *n, size_t n_len, const uint8_t *e, size_t e_len, EVP_PKEY **ret)
{
        _cleanup_(bn_clear_freep) BIGNUM *bn_n = NULL, *bn_e = NULL;
        OSSL_PARAM_BLD *bld = NULL;
        OSSL_PARAM *params = NULL;
        EVP_PKEY_CTX *ctx = NULL;
        EVP_PKEY *pkey = NULL;
        int r = DKIMSIGN_E_NOMEM;

        if (n_len == 0 || e_len == 0)
                return DKIMSIGN_E_FORMAT;
        bn_n = BN_bin2bn(n, (int) n_len, NULL);
        bn_e = BN_bin2bn(e, (int) e_len, NULL);
        bld = OSSL_PARAM_BLD_new();
        if (!bn_n || !bn_e || !bld)
                goto out;
        if (!OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) ||
            !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e))
                goto out;
        params = OSSL_PARAM_BLD_to_param(bld);
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
        if (!params || !ctx)
                goto out;
        r = DKIMSIGN_E_FORMAT;
        if (EVP_PKEY_fromdata_init(ctx) <= 0 || EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
                goto out;
        *ret = pkey;
        r = 0;
out:
        EVP_PKEY_CTX_free(ctx);
        OSSL_PARAM_free(params);
        OSSL_PARAM_BLD_free(bld);
        return r;
}

static bool ed25519_params(const uint8_t *p, size_t len)
{
        return (len == sizeof(ed25519_oid) && memcmp(p, ed25519_oid, len) == 0) ||
               (len == sizeof(ed25519_name) && memcmp(p, ed25519_name, len) == 0);
}

/* CKA_EC_POINT: SoftHSM wraps the 32 octets in a DER OCTET STRING; PKCS#11
 * 3.0 allows them raw. */
static int ed25519_pubkey(const uint8_t *pt, size_t len, struct hsm_key *key)
{
        const uint8_t *raw;
        EVP_PKEY *pkey;

        if (len == ED25519_LEN)
                raw = pt;
        else if (len == ED25519_LEN + 2 && pt[0] == 0x04 && pt[1] == ED25519_LEN)
                raw = pt + 2;
        else
                return DKIMSIGN_E_FORMAT;
        pkey = EVP_PKEY_new_raw_public_key_ex(NULL, "ED25519", NULL, raw, ED25519_LEN);
        if (!pkey)
                return DKIMSIGN_E_FORMAT;
        key->pubkey = pkey;
        memcpy(key->ed25519_pub, raw, ED25519_LEN);
        return 0;
}

/* ---- keys (h->lock held) ---- */

/* What names a key pair on the token: the label and CKA_ID its two
 * objects share. */
struct key_name {
        char label[HSM_LABEL_MAX + 1];
        uint8_t id[KEY_ID_MAX];
        size_t id_len;
};

/* A public key's material and dates as one read of an object returned
 * them: borrowed pointers, NULL when absent. */
struct pub_data {
        char created[HSM_DATE_LEN + 1];
        char retired[HSM_DATE_LEN + 1];
        const uint8_t *point, *n, *e;    /* CKA_EC_POINT, CKA_MODULUS, CKA_PUBLIC_EXPONENT */
        size_t point_len, n_len, e_len;
};

/* The buffers a pub_data read fills. */
struct pub_bufs {
        uint8_t start[16], end[16], point[EC_POINT_MAX], n[RSA_MOD_MAX], e[RSA_EXP_MAX];
};

/* The attributes a pub_data needs, into a (room for PUB_ATTRS): the dates
 * only when with_dates, for only a public object carries them (hsm.h). */
#define PUB_ATTRS 5
static CK_ULONG pub_attrs(struct pub_bufs *b, CK_ATTRIBUTE *a, bool with_dates)
{
        CK_ULONG n = 0;

        a[n++] = (CK_ATTRIBUTE) { CKA_EC_POINT, b->point, sizeof(b->point) };
        a[n++] = (CK_ATTRIBUTE) { CKA_MODULUS, b->n, sizeof(b->n) };
        a[n++] = (CK_ATTRIBUTE) { CKA_PUBLIC_EXPONENT, b->e, sizeof(b->e) };
        if (with_dates) {
                a[n++] = (CK_ATTRIBUTE) { CKA_START_DATE, b->start, sizeof(b->start) };
                a[n++] = (CK_ATTRIBUTE) { CKA_END_DATE, b->end, sizeof(b->end) };
        }
        return n;
}

/* pub_data from what hsmi_attrs_read left in the n attributes pub_attrs made. */
static void pub_data_got(const CK_ATTRIBUTE *a, CK_ULONG n, struct pub_data *p)
{
        const uint8_t **value[] = { &p->point, &p->n, &p->e };
        size_t *len[] = { &p->point_len, &p->n_len, &p->e_len };

        *p = (struct pub_data) { 0 };
        for (size_t i = 0; i < 3; i++)
                if (hsmi_attr_present(&a[i])) {
                        *value[i] = a[i].pValue;
                        *len[i] = a[i].ulValueLen;
                }
        if (n == PUB_ATTRS) {
                hsmi_attr_got_date(&a[3], p->created);
                hsmi_attr_got_date(&a[4], p->retired);
        }
}

/* Every token object a listing needs, from one search: the private keys'
 * handles, and each public key by name with its key material and dates
 * from one read.  A file-backed token (SoftHSM) opens an object's files
 * on every search that passes it and on every read of it, so a listing of
 * N keys costs one pass and one read per object: not one search per key
 * (quadratic), nor a search per class and a second read of each public
 * object. */
struct obj_index {
        CK_OBJECT_HANDLE *privs;         /* owned */
        size_t nprivs;
        struct pub_entry {
                struct key_name name;
                CK_OBJECT_HANDLE obj;
                bool read;               /* data holds what the object gave */
                struct pub_data data;    /* pointing into value */
                uint8_t *value;          /* owned: point, modulus, exponent */
        } *pubs;                         /* owned, sorted by name */
        size_t npubs, pubs_size;
};

static int key_name_cmp(const struct key_name *x, const struct key_name *y)
{
        int c = strcmp(x->label, y->label);

        if (c != 0)
                return c;
        if (x->id_len != y->id_len)
                return x->id_len < y->id_len ? -1 : 1;
        return memcmp(x->id, y->id, x->id_len);
}

static int pub_entry_cmp(const void *a, const void *b)
{
        return key_name_cmp(&((const struct pub_entry *) a)->name, &((const struct pub_entry *) b)->name);
}

/* Label (NUL-free) and CKA_ID as read by hsmi_attrs_read into name. */
static int key_name_from(const CK_ATTRIBUTE *label, const CK_ATTRIBUTE *id, struct key_name *name)
{
        if (!hsmi_attr_present(label) || label->ulValueLen > HSM_LABEL_MAX ||
            memchr(label->pValue, '\0', label->ulValueLen))
                return DKIMSIGN_E_FORMAT;
        name->label[label->ulValueLen] = '\0';
        /* CKA_ID defaults to empty. */
        name->id_len = hsmi_attr_present(id) ? id->ulValueLen : 0;
        return 0;
}

static void obj_index_clear(struct obj_index *x)
{
        for (size_t i = 0; i < x->npubs; i++)
                free(x->pubs[i].value);
        free(x->pubs);
        free(x->privs);
        *x = (struct obj_index) { 0 };
}

/* Keep a public key's entry, its key material copied out of the read's
 * buffers into value. */
static int pub_keep(struct obj_index *x, const struct key_name *name, CK_OBJECT_HANDLE obj, bool read,
                    const struct pub_data *d)
{
        struct pub_entry *p;
        uint8_t *v;

        if (x->npubs == x->pubs_size) {
                size_t size = x->pubs_size ? x->pubs_size * 2 : 64;
                struct pub_entry *grown = realloc(x->pubs, size * sizeof(*grown));

                if (!grown)
                        return DKIMSIGN_E_NOMEM;
                x->pubs = grown;
                x->pubs_size = size;
        }
        p = &x->pubs[x->npubs];
        *p = (struct pub_entry) { .name = *name, .obj = obj, .read = read, .data = *d };
        if (read) {
                v = p->value = malloc(d->point_len + d->n_len + d->e_len + 1);
                if (!v)
                        return DKIMSIGN_E_NOMEM;
                p->data.point = d->point ? memcpy(v, d->point, d->point_len) : NULL;
                v += d->point_len;
                p->data.n = d->n ? memcpy(v, d->n, d->n_len) : NULL;
                v += d->n_len;
                p->data.e = d->e ? memcpy(v, d->e, d->e_len) : NULL;
        }
        x->npubs++;
        return 0;
}

/* One object into the index: its class and name, and for a public key
 * its material and dates, in one read.  Objects that are not keys, or
 * whose name no key of ours could have, stay out. */
static int obj_index_add(struct hsm *h, struct obj_index *x, CK_OBJECT_HANDLE obj)
{
        CK_OBJECT_CLASS cls = 0;
        struct key_name name;
        struct pub_bufs b = { 0 };
        struct pub_data d = { 0 };
        CK_ATTRIBUTE a[3 + PUB_ATTRS] = {
                { CKA_CLASS, &cls, sizeof(cls) },
                { CKA_LABEL, name.label, HSM_LABEL_MAX },
                { CKA_ID, name.id, sizeof(name.id) },
        };
        CK_ULONG n = 3 + pub_attrs(&b, a + 3, true);
        int r = hsmi_attrs_read(h, obj, a, n);

        /* SoftHSM 2.6.1 fails every read of a private object that carries
         * dates (see hsm.h), which another tool may have set: then the
         * class and name alone. */
        if (r < 0 && r != DKIMSIGN_E_TOO_LARGE) {
                n = 3;
                r = hsmi_attrs_read(h, obj, a, n);
        }
        /* Gone since the search (another process destroyed it), or too
         * large for any key of ours: not in the listing.  Any other
         * failure fails it, for a key left out by a passing token error
         * would stop signing for its domain. */
        if (r == DKIMSIGN_E_TOO_LARGE || (r < 0 && hsmi_handle_gone_obj(hsmi_last_ckr)))
                return 0;
        if (r < 0)
                return r;
        if (!hsmi_attr_present(&a[0]) || a[0].ulValueLen != sizeof(cls))
                return 0;
        /* Every key has a CKA_ID, empty by default: one the module could
         * not give (too large, when it reports that as absent) would file
         * the key under the wrong name. */
        if (!hsmi_attr_present(&a[2]))
                return 0;
        if (cls == CKO_PRIVATE_KEY) {
                x->privs[x->nprivs++] = obj;
                return 0;
        }
        if (cls != CKO_PUBLIC_KEY || key_name_from(&a[1], &a[2], &name) < 0)
                return 0;
        if (n > 3)
                pub_data_got(a + 3, n - 3, &d);
        return pub_keep(x, &name, obj, n > 3, &d);
}

static int obj_index_load(struct hsm *h, struct obj_index *ret)
{
        _cleanup_(freep) CK_OBJECT_HANDLE *objs = NULL;
        struct obj_index x = { 0 };
        struct tmpl t = { 0 };
        size_t n = 0;
        int r;

        hsmi_tmpl_add(&t, CKA_TOKEN, &ck_true, sizeof(ck_true));
        r = hsmi_objects_find_all(h, &t, &objs, &n, OBJECTS_MAX);
        if (r < 0)
                return r;
        x.privs = calloc(n ? n : 1, sizeof(*x.privs));
        r = x.privs ? 0 : DKIMSIGN_E_NOMEM;
        for (size_t i = 0; r == 0 && i < n; i++)
                r = obj_index_add(h, &x, objs[i]);
        if (r < 0) {
                obj_index_clear(&x);
                return r;
        }
        if (x.npubs)  /* pubs is NULL on a token without public keys */
                qsort(x.pubs, x.npubs, sizeof(*x.pubs), pub_entry_cmp);
        *ret = x;
        return 0;
}

/* The public key object named name: from the index when there is one
 * (*ret_entry then points at it), or by a search.  CK_INVALID_HANDLE when
 * there is none. */
static int key_pub_find(struct hsm *h, const struct obj_index *index, const struct key_name *name,
                        CK_OBJECT_HANDLE *ret, const struct pub_entry **ret_entry)
{
        struct tmpl t = { 0 };
        CK_OBJECT_HANDLE pub;
        CK_ULONG n;
        int r;

        *ret_entry = NULL;
        if (index) {
                struct pub_entry want = { .name = *name };

                if (index->npubs)
                        *ret_entry = bsearch(&want, index->pubs, index->npubs, sizeof(*index->pubs), pub_entry_cmp);
                *ret = *ret_entry ? (*ret_entry)->obj : CK_INVALID_HANDLE;
                return 0;
        }
        hsmi_tmpl_class(&t, &class_public);
        hsmi_tmpl_add(&t, CKA_LABEL, name->label, strlen(name->label));
        hsmi_tmpl_add(&t, CKA_ID, name->id, name->id_len);
        r = hsmi_objects_find(h, &t, &pub, 1, &n);
        if (r < 0)
                return r;
        *ret = n > 0 ? pub : CK_INVALID_HANDLE;
        return 0;
}

/* Why a private key with these CKA_PRIVATE, CKA_SENSITIVE and
 * CKA_EXTRACTABLE values must not sign, or NULL.  An attribute the module
 * does not report counts as the unsafe value: custody is shown, not
 * assumed. */
static const char *custody_refusal(const CK_ATTRIBUTE *is_private, const CK_ATTRIBUTE *sensitive,
                                   const CK_ATTRIBUTE *extractable)
{
        bool v;

        if (hsmi_attr_got_bool(is_private, &v) < 0 || !v)
                return "its private key is not CKA_PRIVATE: it can be used without the token's PIN";
        if (hsmi_attr_got_bool(sensitive, &v) < 0 || !v)
                return "its private key is not CKA_SENSITIVE: its secret can be read off the token";
        if (hsmi_attr_got_bool(extractable, &v) < 0 || v)
                return "its private key is CKA_EXTRACTABLE: it can be wrapped and taken off the token";
        return NULL;
}

/* The private key's own attributes, in one read: algorithm, name, how it
 * was made and whether its custody allows signing. */
static int key_private_read(struct hsm *h, struct hsm_key *key, struct key_name *name)
{
        CK_ULONG type = 0;
        uint8_t params[EC_PARAMS_MAX];
        CK_BBOOL local, sensitive, never_extractable, is_private, now_sensitive, extractable;
        CK_BBOOL use[HSM_USES_COUNT], always_auth;
        CK_ATTRIBUTE a[] = {
                { CKA_KEY_TYPE, &type, sizeof(type) },
                { CKA_LABEL, name->label, HSM_LABEL_MAX },
                { CKA_ID, name->id, sizeof(name->id) },
                { CKA_LOCAL, &local, sizeof(local) },
                { CKA_ALWAYS_SENSITIVE, &sensitive, sizeof(sensitive) },
                { CKA_NEVER_EXTRACTABLE, &never_extractable, sizeof(never_extractable) },
                /* Only an EdDSA key has it (CKK_EC_EDWARDS is also Ed448). */
                { CKA_EC_PARAMS, params, sizeof(params) },
                /* Custody: what the key is now (CKA_ALWAYS_SENSITIVE and
                 * CKA_NEVER_EXTRACTABLE say what it always was). */
                { CKA_PRIVATE, &is_private, sizeof(is_private) },
                { CKA_SENSITIVE, &now_sensitive, sizeof(now_sensitive) },
                { CKA_EXTRACTABLE, &extractable, sizeof(extractable) },
                /* What it may be used for, in HSM_USE_* bit order, and
                 * whether it wants the PIN again for each use. */
                { CKA_SIGN, &use[0], sizeof(use[0]) },
                { CKA_DECRYPT, &use[1], sizeof(use[1]) },
                { CKA_SIGN_RECOVER, &use[2], sizeof(use[2]) },
                { CKA_UNWRAP, &use[3], sizeof(use[3]) },
                { CKA_DERIVE, &use[4], sizeof(use[4]) },
                { CKA_ALWAYS_AUTHENTICATE, &always_auth, sizeof(always_auth) },
        };
        int r = hsmi_attrs_read(h, key->priv, a, sizeof(a) / sizeof(a[0]));

        if (r < 0)
                return r;
        if (!hsmi_attr_present(&a[0]) || a[0].ulValueLen != sizeof(type))
                return DKIMSIGN_E_HSM;
        if (type == CKK_RSA)
                key->alg = HSM_ALG_RSA;
        else if (type == CKK_EC_EDWARDS && hsmi_attr_present(&a[6]) && ed25519_params(params, a[6].ulValueLen))
                key->alg = HSM_ALG_ED25519;
        else
                return DKIMSIGN_E_ALG;
        r = key_name_from(&a[1], &a[2], name);
        if (r == 0)
                r = hsmi_attr_got_bool(&a[3], &key->local);
        if (r == 0)
                r = hsmi_attr_got_bool(&a[4], &key->always_sensitive);
        if (r == 0)
                r = hsmi_attr_got_bool(&a[5], &key->never_extractable);
        if (r < 0)
                return r;
        key->refused = custody_refusal(&a[7], &a[8], &a[9]);
        /* Uses and CKA_ALWAYS_AUTHENTICATE: one a module does not report
         * is not set (PKCS#11's default for each is false). */
        for (unsigned i = 0; i < HSM_USES_COUNT; i++) {
                bool v;

                if (hsmi_attr_got_bool(&a[10 + i], &v) == 0 && v)
                        key->uses |= 1u << i;
        }
        if (hsmi_attr_got_bool(&a[15], &key->always_authenticate) < 0)
                key->always_authenticate = false;
        /* Every signature would fail, as a temporary error, for ever (no
         * context-specific login here yet: hsm.h). */
        if (!key->refused && key->always_authenticate)
                key->refused = "its private key is CKA_ALWAYS_AUTHENTICATE: the token wants the PIN again for "
                               "every signature, which dkimsign does not give";
        key->label = strdup(name->label);
        return key->label ? 0 : DKIMSIGN_E_NOMEM;
}

/* The key's public half and dates from d.  Only the public object carries
 * the dates (see hsm.h); an RSA key without one still has its modulus and
 * exponent as public attributes of the private key, an EdDSA private key
 * has no public point. */
static int key_public_set(struct hsm_key *key, const struct pub_data *d)
{
        if (key->pub != CK_INVALID_HANDLE) {
                memcpy(key->created, d->created, sizeof(key->created));
                memcpy(key->retired, d->retired, sizeof(key->retired));
        }
        if (key->alg == HSM_ALG_ED25519)
                return d->point ? ed25519_pubkey(d->point, d->point_len, key) : DKIMSIGN_E_FORMAT;
        if (!d->n || !d->e)
                return DKIMSIGN_E_FORMAT;
        return rsa_pubkey(d->n, d->n_len, d->e, d->e_len, &key->pubkey);
}

/* The public half and the dates, in one read of the public object (or of
 * the private key for an RSA key without one). */
static int key_public_read(struct hsm *h, struct hsm_key *key)
{
        bool from_pub = key->pub != CK_INVALID_HANDLE;
        CK_ATTRIBUTE a[PUB_ATTRS];
        struct pub_bufs b;
        struct pub_data d;
        CK_ULONG n;
        int r;

        if (!from_pub && key->alg == HSM_ALG_ED25519)
                return 0;
        n = pub_attrs(&b, a, from_pub);
        r = hsmi_attrs_read(h, from_pub ? key->pub : key->priv, a, n);
        if (r < 0)
                return r;
        pub_data_got(a, n, &d);
        return key_public_set(key, &d);
}

/* Describe the key pair around private key priv.  Its public object is pub
 * when the caller knows it (it just made the pair), else CK_INVALID_HANDLE:
 * then it is looked up in index, or searched for when index is NULL.
 * key->pubkey stays NULL only for an Ed25519 key whose public object is
 * missing. */
static int key_load(struct hsm *h, CK_OBJECT_HANDLE priv, CK_OBJECT_HANDLE pub, const struct obj_index *index,
                    struct hsm_key **ret)
{
        _cleanup_(hsm_key_freep) struct hsm_key *key = NULL;
        const struct pub_entry *entry = NULL;
        struct key_name name;
        int r;

        key = calloc(1, sizeof(*key));
        if (!key)
                return DKIMSIGN_E_NOMEM;
        key->priv = priv;
        key->generation = __atomic_load_n(&h->generation, __ATOMIC_ACQUIRE);
        key->priv_generation = key->generation;
        key->pub = pub;
        r = key_private_read(h, key, &name);
        if (r == 0 && pub == CK_INVALID_HANDLE)
                r = key_pub_find(h, index, &name, &key->pub, &entry);
        if (r == 0)
                r = entry && entry->read ? key_public_set(key, &entry->data) : key_public_read(h, key);
        if (r < 0)
                return r;
        if (key->alg == HSM_ALG_ED25519)
                key->bits = 256;
        else if (EVP_PKEY_get_bits(key->pubkey) > 0)
                key->bits = (unsigned) EVP_PKEY_get_bits(key->pubkey);
        else
                return DKIMSIGN_E_FORMAT;

        *ret = key;
        key = NULL;
        return 0;
}

int hsmi_key_load(struct hsm *h, CK_OBJECT_HANDLE priv, CK_OBJECT_HANDLE pub, struct hsm_key **ret)
{
        return key_load(h, priv, pub, NULL, ret);
}

static int key_cmp(const void *a, const void *b)
{
        const struct hsm_key *x = *(struct hsm_key *const *) a, *y = *(struct hsm_key *const *) b;
        int c = strcmp(x->label, y->label);

        return c != 0 ? c : (int) x->alg - (int) y->alg;
}

/* Why a key of this algorithm can't sign on a token that can do caps, or
 * NULL.  Only a mechanism the token leaves out of its list refuses a key:
 * a list it did not give refuses none (caps->known), and key sizes are
 * not held against a key already on the token (modules count them
 * differently; a size the token really can't sign with fails as a
 * temporary error, as before). */
static const char *mech_refusal(const struct hsm_caps *caps, enum hsm_alg alg)
{
        if (alg == HSM_ALG_ED25519 && !caps->ed_sign)
                return "this token has no Ed25519 signing (CKM_EDDSA is not in its mechanism list): the key can't "
                       "sign here; its domain signs with its RSA key, if it has one";
        if (alg == HSM_ALG_RSA && !caps->rsa_sign)
                return "this token has no RSA signing (CKM_RSA_PKCS is not in its mechanism list): the key can't "
                       "sign here; its domain signs with its Ed25519 key, if it has one";
        return NULL;
}

/* Every key pair in index, into keys (room for index->nprivs): keys the
 * daemon can't use (another algorithm, a malformed object) are left out;
 * those the token can't sign with (caps) are listed, refused. */
static int keys_load(struct hsm *h, const struct obj_index *index, const struct hsm_caps *caps,
                     struct hsm_key **keys, size_t *ret_count)
{
        size_t count = 0;

        for (size_t i = 0; i < index->nprivs; i++) {
                int r = key_load(h, index->privs[i], CK_INVALID_HANDLE, index, &keys[count]);

                if (r == DKIMSIGN_E_ALG || r == DKIMSIGN_E_FORMAT || r == DKIMSIGN_E_TOO_LARGE)
                        continue;
                if (r < 0) {
                        for (size_t j = 0; j < count; j++)
                                keys[j] = hsm_key_free(keys[j]);
                        return r;
                }
                if (!keys[count]->refused)
                        keys[count]->refused = mech_refusal(caps, keys[count]->alg);
                count++;
        }
        *ret_count = count;
        return 0;
}

/* What the token can do, for keys_load: when it can't say (a failed
 * C_GetTokenInfo), every mechanism counts as there, as when it gives no
 * list; that failure is not the listing's. */
static void caps_for_listing_locked(struct hsm *h, struct hsm_caps *ret)
{
        CK_RV saved = hsmi_last_ckr;

        if (hsmi_slot_caps(h->p11, h->slot, ret) < 0) {
                *ret = (struct hsm_caps) { .rsa_gen = true, .rsa_sign = true, .ed_gen = true, .ed_sign = true };
                hsmi_last_ckr = saved;
        }
}

int hsm_list(struct hsm *h, struct hsm_key ***ret, size_t *ret_count)
{
        struct obj_index index = { 0 };
        struct hsm_key **keys = NULL;
        struct hsm_caps caps;
        size_t count = 0;
        int r;

        hsmi_last_ckr = 0;
        if (!h || !ret || !ret_count)
                return DKIMSIGN_E_INTERNAL;

        pthread_mutex_lock(&h->lock);
        /* A new listing, a new key table: copies of keys no longer listed
         * (destroyed, or the old generation's) take no room. */
        hsmi_copies_reset_locked(h, true);
        r = obj_index_load(h, &index);
        /* After a token reset the admin session or the login may be gone. */
        if (r == DKIMSIGN_E_HSM && hsmi_session_lost(hsmi_last_ckr) && hsmi_login_restore_locked(h) == CKR_OK)
                r = obj_index_load(h, &index);
        if (r == 0) {
                caps_for_listing_locked(h, &caps);
                keys = calloc(index.nprivs ? index.nprivs : 1, sizeof(*keys));
                r = keys ? keys_load(h, &index, &caps, keys, &count) : DKIMSIGN_E_NOMEM;
        }
        pthread_mutex_unlock(&h->lock);
        obj_index_clear(&index);
        if (r < 0) {
                free(keys);
                return r;
        }
        qsort(keys, count, sizeof(*keys), key_cmp);
        *ret = keys;
        *ret_count = count;
        return 0;
}
