/* SPDX-License-Identifier: MIT */
/*
 * Key management on the admin session: key names and labels, and finding,
 * destroying and retiring a key pair.  A key's created and retired dates
 * are CKA_START_DATE and CKA_END_DATE of its public half (hsm.h says why
 * not of the private half).  Reading a key pair is keys-load.c; making one
 * is keys-create.c.
 *
 * It must never act on a handle without checking first that it still
 * names the object the caller means (handle_check: a stale number must
 * never destroy another key), never leave a destroyed key's session copy
 * signing, and never log.  Every call on the token holds h->lock.
 */
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "hsm/hsm-private.h"

struct hsm_key *hsm_key_free(struct hsm_key *key)
{
        if (!key)
                return NULL;
        free(key->label);
        EVP_PKEY_free(key->pubkey);
        free(key);
        return NULL;
}

static const char *const use_names[HSM_USES_COUNT] = {
        "sign", "decrypt", "sign_recover", "unwrap", "derive",
};

const char *hsm_use_name(unsigned bit)
{
        for (unsigned i = 0; i < HSM_USES_COUNT; i++)
                if (bit == 1u << i)
                        return use_names[i];
        return NULL;
}

const char *hsm_uses_format(unsigned uses, const char *sep, char *ret, size_t size)
{
        size_t len = 0;

        if (size == 0)
                return ret;
        ret[0] = '\0';
        for (unsigned i = 0; i < HSM_USES_COUNT; i++) {
                int n;

                if (!(uses & (1u << i)))
                        continue;
                n = snprintf(ret + len, size - len, "%s%s", len ? sep : "", use_names[i]);
                if (n < 0 || (size_t) n >= size - len)
                        break;
                len += (size_t) n;
        }
        if (!ret[0])
                snprintf(ret, size, "none");
        return ret;
}

const char *hsm_alg_name(enum hsm_alg alg)
{
        switch (alg) {
        case HSM_ALG_RSA:
                return "rsa";
        case HSM_ALG_ED25519:
                return "ed25519";
        }
        return "unknown";
}

int hsm_alg_from_string(const char *s, enum hsm_alg *ret)
{
        enum hsm_alg alg;

        if (!s || !ret)
                return DKIMSIGN_E_INTERNAL;
        if (strcmp(s, "rsa") == 0)
                alg = HSM_ALG_RSA;
        else if (strcmp(s, "ed25519") == 0)
                alg = HSM_ALG_ED25519;
        else
                return DKIMSIGN_E_ALG;
        *ret = alg;
        return 0;
}

/* ASCII only: tolower() would follow the locale. */
static void copy_lower(char *dst, const char *src, size_t n)
{
        for (size_t i = 0; i < n; i++)
                dst[i] = (char) (src[i] >= 'A' && src[i] <= 'Z' ? src[i] - 'A' + 'a' : src[i]);
}

int hsm_key_label(const char *selector, const char *domain, char *ret, size_t size)
{
        static const char mid[] = "._domainkey.";
        size_t sl, dl, need;

        if (!selector || !domain || !ret)
                return DKIMSIGN_E_INTERNAL;
        sl = strnlen(selector, HSM_LABEL_MAX + 1);
        dl = strnlen(domain, HSM_LABEL_MAX + 1);
        if (sl == 0 || dl == 0)
                return DKIMSIGN_E_FORMAT;
        need = sl + (sizeof(mid) - 1) + dl; /* each term <= HSM_LABEL_MAX + 1: no overflow */
        if (need > HSM_LABEL_MAX || need >= size)
                return DKIMSIGN_E_TOO_LARGE;
        /* Labels are matched byte for byte but DNS names are not case
         * sensitive: one spelling per key, lower case. */
        for (size_t i = 0; i < sl + dl; i++) {
                unsigned char c = (unsigned char) (i < sl ? selector[i] : domain[i - sl]);

                if (c <= ' ' || c >= 0x7f)
                        return DKIMSIGN_E_FORMAT;
        }
        copy_lower(ret, selector, sl);
        memcpy(ret + sl, mid, sizeof(mid) - 1);
        copy_lower(ret + sl + sizeof(mid) - 1, domain, dl);
        ret[need] = '\0';
        return 0;
}

int hsmi_label_check(const char *label)
{
        if (!label)
                return DKIMSIGN_E_INTERNAL;
        if (label[0] == '\0')
                return DKIMSIGN_E_FORMAT;
        if (strnlen(label, HSM_LABEL_MAX + 1) > HSM_LABEL_MAX)
                return DKIMSIGN_E_TOO_LARGE;
        return 0;
}

/* ---- find, destroy, retire ---- */

int hsm_find(struct hsm *h, const char *label, struct hsm_key **ret)
{
        struct hsm_key *key = NULL;
        struct tmpl t = { 0 };
        CK_OBJECT_HANDLE objs[2];
        CK_ULONG n = 0;
        int r;

        hsmi_last_ckr = 0;
        if (!h || !ret)
                return DKIMSIGN_E_INTERNAL;
        r = hsmi_label_check(label);
        if (r < 0)
                return r;
        hsmi_tmpl_class(&t, &class_private);
        hsmi_tmpl_add(&t, CKA_LABEL, label, strlen(label));

        pthread_mutex_lock(&h->lock);
        r = hsmi_objects_find(h, &t, objs, 2, &n);
        /* Two keys under one label: signing with either would be a guess. */
        if (r == 0 && n != 1)
                r = n == 0 ? DKIMSIGN_E_NO_KEY : DKIMSIGN_E_EXISTS;
        if (r == 0)
                r = hsmi_key_load(h, objs[0], CK_INVALID_HANDLE, &key);
        pthread_mutex_unlock(&h->lock);
        if (r < 0)
                return r;
        if (!key->pubkey) {
                /* Without its public half a key can't be checked or published. */
                hsm_key_free(key);
                return DKIMSIGN_E_NO_KEY;
        }
        *ret = key;
        return 0;
}

void hsm_key_list_free(struct hsm_key **keys, size_t count)
{
        if (!keys)
                return;
        for (size_t i = 0; i < count; i++)
                hsm_key_free(keys[i]);
        free(keys);
}

/* A key loaded before the module was initialized again (hsm_reinitialize):
 * its handles may name other objects now, so they are never used. */
static int key_generation_check(struct hsm *h, const struct hsm_key *key)
{
        if (__atomic_load_n(&key->generation, __ATOMIC_ACQUIRE) == __atomic_load_n(&h->generation, __ATOMIC_ACQUIRE))
                return 0;
        hsmi_why("key %s was loaded before the module was initialized again: find it again", key->label);
        return DKIMSIGN_E_NO_KEY;
}

/* A handle may be stale: make sure it is still the object the caller means. */
static int handle_check(struct hsm *h, CK_OBJECT_HANDLE obj, CK_OBJECT_CLASS cls, const char *label)
{
        _cleanup_(freep) char *l = NULL;
        CK_ULONG c;
        int r;

        r = hsmi_attr_ulong(h, obj, CKA_CLASS, &c);
        if (r == 0)
                r = hsmi_attr_label(h, obj, &l);
        if (r == DKIMSIGN_E_NO_KEY || (r == 0 && (c != cls || strcmp(l, label) != 0)))
                return DKIMSIGN_E_NO_KEY;
        return r;
}

int hsm_destroy(struct hsm *h, const struct hsm_key *key)
{
        CK_RV rv;
        int r;

        hsmi_last_ckr = 0;
        if (!h || !key || !key->label)
                return DKIMSIGN_E_INTERNAL;
        pthread_mutex_lock(&h->lock);
        r = key_generation_check(h, key);
        if (r == 0)
                r = handle_check(h, key->priv, CKO_PRIVATE_KEY, key->label);
        if (r == 0 && key->pub != CK_INVALID_HANDLE)
                r = handle_check(h, key->pub, CKO_PUBLIC_KEY, key->label);
        /* Private half first: once it is gone the key can't sign, whatever
         * follows; its copy goes too, or signing would go on with it. */
        if (r == 0) {
                hsmi_copy_destroy_locked(h, key->priv);
                rv = h->p11->C_DestroyObject(h->admin, key->priv);
                if (rv != CKR_OK)
                        r = hsmi_ckr_fail(rv);
        }
        if (r == 0 && key->pub != CK_INVALID_HANDLE) {
                rv = h->p11->C_DestroyObject(h->admin, key->pub);
                if (rv != CKR_OK)
                        r = hsmi_ckr_fail(rv);
        }
        pthread_mutex_unlock(&h->lock);
        return r;
}

int hsm_retire(struct hsm *h, const struct hsm_key *key)
{
        char end[HSM_DATE_LEN + 1], check[HSM_DATE_LEN + 1];
        CK_DATE today;
        CK_ATTRIBUTE a = { .type = CKA_END_DATE, .pValue = &today, .ulValueLen = sizeof(today) };
        CK_RV rv;
        int r;

        hsmi_last_ckr = 0;
        if (!h || !key || !key->label)
                return DKIMSIGN_E_INTERNAL;
        if (key->pub == CK_INVALID_HANDLE)
                return DKIMSIGN_E_FORMAT;
        hsmi_date_today(&today);
        memcpy(end, &today, HSM_DATE_LEN);
        end[HSM_DATE_LEN] = '\0';
        pthread_mutex_lock(&h->lock);
        r = key_generation_check(h, key);
        if (r == 0)
                r = handle_check(h, key->priv, CKO_PRIVATE_KEY, key->label);
        if (r == 0)
                r = handle_check(h, key->pub, CKO_PUBLIC_KEY, key->label);
        if (r == 0)
                r = hsmi_attr_date(h, key->pub, CKA_END_DATE, check);
        if (r == 0 && check[0])
                r = DKIMSIGN_E_EXISTS;
        if (r == 0) {
                rv = h->p11->C_SetAttributeValue(h->admin, key->pub, &a, 1);
                if (rv != CKR_OK)
                        r = hsmi_ckr_fail(rv);
        }
        /* A token that takes the date but does not keep it would leave the
         * key signing while the admin thinks it retired. */
        if (r == 0)
                r = hsmi_attr_date(h, key->pub, CKA_END_DATE, check);
        if (r == 0 && strcmp(check, end) != 0)
                r = DKIMSIGN_E_HSM;
        pthread_mutex_unlock(&h->lock);
        return r;
}
