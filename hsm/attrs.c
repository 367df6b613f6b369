/* SPDX-License-Identifier: MIT */
/*
 * Templates, attribute reads, dates, and searches and destruction of
 * objects, all on the admin session with h->lock held by the caller.
 *
 * It must never ask the token for a private attribute (only what the
 * caller names, which is never a secret), never trust a length the module
 * reports (every read is capped by its buffer, and an answer longer than
 * announced is refused), never search anything but token objects when it
 * searches for keys (hsmi_tmpl_class: the session copies of keys stay
 * out of every listing), and never log.
 */
#include <assert.h>
#include <string.h>
#include <time.h>

#include "hsm/hsm-private.h"

void hsmi_tmpl_add(struct tmpl *t, CK_ATTRIBUTE_TYPE type, const void *value, size_t len)
{
        assert(t->n < TMPL_MAX);
        t->a[t->n++] = (CK_ATTRIBUTE) { .type = type, .pValue = (void *) value, .ulValueLen = len };
}

/* Searches name token objects only: never the session copies of keys
 * that signing makes (see hsm_key_copies). */
void hsmi_tmpl_class(struct tmpl *t, const CK_OBJECT_CLASS *cls)
{
        hsmi_tmpl_add(t, CKA_CLASS, cls, sizeof(*cls));
        hsmi_tmpl_add(t, CKA_TOKEN, &ck_true, sizeof(ck_true));
}

/* ---- dates ---- */

/* Today in UTC as a CK_DATE (ASCII digits, no NUL). */
void hsmi_date_today(CK_DATE *ret)
{
        char buf[16];
        struct tm tm;
        time_t now = time(NULL);

        if (!gmtime_r(&now, &tm) || strftime(buf, sizeof(buf), "%Y%m%d", &tm) != HSM_DATE_LEN)
                abort(); /* cannot fail for a time() value */
        memcpy(ret->year, buf, 4);
        memcpy(ret->month, buf + 4, 2);
        memcpy(ret->day, buf + 6, 2);
}

/* The token would not take a date attribute.  The date is always a
 * template's last attribute, so the retry drops it with n--. */
bool hsmi_date_refused(CK_RV rv)
{
        return rv == CKR_ATTRIBUTE_TYPE_INVALID || rv == CKR_ATTRIBUTE_VALUE_INVALID ||
               rv == CKR_ATTRIBUTE_READ_ONLY || rv == CKR_TEMPLATE_INCONSISTENT;
}

/* ---- attributes (admin session, h->lock held) ---- */

/*
 * Read one attribute into buf: ask for its length first, refuse more than
 * cap, and refuse an answer longer than the length announced.
 */
static int attr_read(struct hsm *h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type, void *buf, size_t cap,
                     size_t *ret_len)
{
        CK_ATTRIBUTE a = { .type = type };
        CK_ULONG want;
        CK_RV rv;

        rv = h->p11->C_GetAttributeValue(h->admin, obj, &a, 1);
        if (rv != CKR_OK)
                return hsmi_ckr_fail(rv);
        if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen > cap)
                return DKIMSIGN_E_TOO_LARGE;
        want = a.ulValueLen;
        a.pValue = buf;
        rv = h->p11->C_GetAttributeValue(h->admin, obj, &a, 1);
        if (rv != CKR_OK)
                return hsmi_ckr_fail(rv);
        if (a.ulValueLen > want)
                return DKIMSIGN_E_HSM;
        *ret_len = a.ulValueLen;
        return 0;
}

int hsmi_attr_ulong(struct hsm *h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type, CK_ULONG *ret)
{
        CK_ULONG v;
        size_t len;
        int r;

        r = attr_read(h, obj, type, &v, sizeof(v), &len);
        if (r < 0)
                return r;
        if (len != sizeof(v))
                return DKIMSIGN_E_HSM;
        *ret = v;
        return 0;
}

/* CKA_LABEL as an owned C string; a NUL inside it is malformed. */
int hsmi_attr_label(struct hsm *h, CK_OBJECT_HANDLE obj, char **ret)
{
        char buf[HSM_LABEL_MAX + 1];
        size_t len;
        char *s;
        int r;

        r = attr_read(h, obj, CKA_LABEL, buf, HSM_LABEL_MAX, &len);
        if (r < 0)
                return r;
        if (memchr(buf, '\0', len))
                return DKIMSIGN_E_FORMAT;
        buf[len] = '\0';
        s = strdup(buf);
        if (!s)
                return DKIMSIGN_E_NOMEM;
        *ret = s;
        return 0;
}

/* Whether hsmi_attrs_read got a value for a. */
bool hsmi_attr_present(const CK_ATTRIBUTE *a)
{
        return a->ulValueLen != CK_UNAVAILABLE_INFORMATION;
}

/*
 * Several attributes of obj in one call, each into its caller-sized buffer
 * (a[i].pValue, a[i].ulValueLen = its capacity): a token with many keys
 * answers a key's description in two or three calls instead of twenty.
 * An attribute the object does not have, or keeps sensitive, comes back
 * with ulValueLen CK_UNAVAILABLE_INFORMATION (PKCS#11 2.40 5.7: the others
 * are still filled); one larger than its buffer is DKIMSIGN_E_TOO_LARGE.
 */
int hsmi_attrs_read(struct hsm *h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE *a, CK_ULONG n)
{
        CK_ULONG cap[ATTRS_MAX];
        CK_RV rv;
        int r = 0;

        assert(n <= ATTRS_MAX);
        for (CK_ULONG i = 0; i < n; i++)
                cap[i] = a[i].ulValueLen;
        rv = h->p11->C_GetAttributeValue(h->admin, obj, a, n);
        if (rv == CKR_BUFFER_TOO_SMALL)
                r = DKIMSIGN_E_TOO_LARGE;
        else if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID && rv != CKR_ATTRIBUTE_SENSITIVE)
                r = hsmi_ckr_fail(rv);
        /* A module that says it wrote more than the buffer holds is broken:
         * no length from it is used past what was given. */
        for (CK_ULONG i = 0; r == 0 && i < n; i++)
                if (hsmi_attr_present(&a[i]) && a[i].ulValueLen > cap[i])
                        r = DKIMSIGN_E_HSM;
        /* After a failure the lengths are the module's, not the buffers':
         * put the capacities back, so a read again of a is bounded too. */
        for (CK_ULONG i = 0; r < 0 && i < n; i++)
                a[i].ulValueLen = cap[i];
        return r;
}

/* A CK_BBOOL read by hsmi_attrs_read; a missing or odd-sized one is malformed. */
int hsmi_attr_got_bool(const CK_ATTRIBUTE *a, bool *ret)
{
        if (!hsmi_attr_present(a) || a->ulValueLen != sizeof(CK_BBOOL))
                return DKIMSIGN_E_HSM;
        *ret = *(const CK_BBOOL *) a->pValue != CK_FALSE;
        return 0;
}

/* A date read by hsmi_attrs_read as "YYYYMMDD" into ret; "" when missing, all
 * zeros or not digits (nothing a date can be read from). */
void hsmi_attr_got_date(const CK_ATTRIBUTE *a, char ret[HSM_DATE_LEN + 1])
{
        const char *d = a->pValue;
        bool digits = true, zero = true;

        static_assert(sizeof(CK_DATE) == HSM_DATE_LEN, "CK_DATE is YYYYMMDD");
        static_assert(ED25519_LEN == HSM_ED25519_PUB_LEN, "an Ed25519 public key is 32 octets");
        ret[0] = '\0';
        if (!hsmi_attr_present(a) || a->ulValueLen != HSM_DATE_LEN)
                return;
        for (size_t i = 0; i < HSM_DATE_LEN; i++) {
                digits = digits && d[i] >= '0' && d[i] <= '9';
                zero = zero && d[i] == '0';
        }
        if (digits && !zero) {
                memcpy(ret, d, HSM_DATE_LEN);
                ret[HSM_DATE_LEN] = '\0';
        }
}

/* A date attribute as "YYYYMMDD" into ret, "" when empty, unsupported by
 * the token or not a date. */
int hsmi_attr_date(struct hsm *h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type, char ret[HSM_DATE_LEN + 1])
{
        uint8_t buf[16];
        CK_ATTRIBUTE a = { type, buf, sizeof(buf) };
        int r = hsmi_attrs_read(h, obj, &a, 1);

        ret[0] = '\0';
        if (r == DKIMSIGN_E_TOO_LARGE)
                return 0;
        if (r == 0)
                hsmi_attr_got_date(&a, ret);
        return r;
}

/* ---- objects (admin session, h->lock held) ---- */

/* Up to max handles matching t; the search is always finalized. */
int hsmi_objects_find(struct hsm *h, struct tmpl *t, CK_OBJECT_HANDLE *out, CK_ULONG max, CK_ULONG *ret_count)
{
        CK_ULONG count = 0;
        CK_RV rv;

        rv = h->p11->C_FindObjectsInit(h->admin, t->a, t->n);
        if (rv != CKR_OK)
                return hsmi_ckr_fail(rv);
        rv = h->p11->C_FindObjects(h->admin, out, max, &count);
        h->p11->C_FindObjectsFinal(h->admin);
        if (rv != CKR_OK)
                return hsmi_ckr_fail(rv);
        if (count > max)
                return DKIMSIGN_E_HSM;
        *ret_count = count;
        return 0;
}

/* Every handle matching t, at most max, in an owned array. */
int hsmi_objects_find_all(struct hsm *h, struct tmpl *t, CK_OBJECT_HANDLE **ret, size_t *ret_count, size_t max)
{
        _cleanup_(freep) CK_OBJECT_HANDLE *all = NULL;
        size_t count = 0, size = 0;
        CK_RV rv;
        int r = 0;

        rv = h->p11->C_FindObjectsInit(h->admin, t->a, t->n);
        if (rv != CKR_OK)
                return hsmi_ckr_fail(rv);
        for (;;) {
                CK_ULONG got = 0;

                if (count == size) {
                        CK_OBJECT_HANDLE *n;

                        if (size >= max) {
                                r = DKIMSIGN_E_TOO_LARGE;
                                break;
                        }
                        size = size ? size * 2 : 64;
                        n = realloc(all, size * sizeof(*all));
                        if (!n) {
                                r = DKIMSIGN_E_NOMEM;
                                break;
                        }
                        all = n;
                }
                rv = h->p11->C_FindObjects(h->admin, all + count, size - count, &got);
                if (rv != CKR_OK) {
                        r = hsmi_ckr_fail(rv);
                        break;
                }
                if (got > size - count) {
                        r = DKIMSIGN_E_HSM;
                        break;
                }
                if (got == 0)
                        break;
                count += got;
        }
        h->p11->C_FindObjectsFinal(h->admin);
        if (r < 0)
                return r;
        *ret = all;
        all = NULL;
        *ret_count = count;
        return 0;
}

void hsmi_objects_destroy(struct hsm *h, CK_OBJECT_HANDLE priv, CK_OBJECT_HANDLE pub)
{
        if (priv != CK_INVALID_HANDLE)
                h->p11->C_DestroyObject(h->admin, priv);
        if (pub != CK_INVALID_HANDLE)
                h->p11->C_DestroyObject(h->admin, pub);
}
