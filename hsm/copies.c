/* SPDX-License-Identifier: MIT */
/*
 * Session copies of the keys signing uses (hsm_key_copies).
 *
 * Signing with a token object costs SoftHSM a check of the object's file
 * (about 14 system calls) on every C_SignInit; a session object of the
 * same key does not.  So signing uses a copy of each key made with
 * C_CopyObject (CKA_TOKEN false; everything else is the key's own, and
 * PKCS#11 lets a copy be neither less sensitive nor extractable).  The
 * copies are made on the admin session, so they live as long as it, are
 * visible to every session of this process and to no other process, and
 * vanish with the process.  Their number is bounded; past it, and when a
 * copy fails, signing uses the token object as before.  Every search in
 * hsm/ asks for CKA_TOKEN true (hsmi_tmpl_class), so a copy is never
 * listed or found as a key of its own.
 *
 * Some tokens copy no private key at all: C_CopyObject is not there
 * (CKR_FUNCTION_NOT_SUPPORTED), or a policy of the token forbids it
 * (CKR_ACTION_PROHIBITED for a key whose CKA_COPYABLE does not).  Asking
 * again would only cost a failed call, a network round trip on such an
 * HSM, for every key after every listing: after the first such answer no
 * copy is asked for while h lives.  A key that is not CKA_COPYABLE is
 * refused for itself alone, until the next listing.
 *
 * It must never destroy an object that is not a session object of ours
 * (a stale handle must never take a key off the token), never make a copy
 * that is less sensitive or more extractable than its key (C_CopyObject
 * changes CKA_TOKEN only), never make a signer wait for the admin session
 * to make a copy (h->lock is only tried, with no lock held), and never
 * log.  The table has its own lock, copies->lock; see hsm-private.h for
 * its order against h->lock.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "hsm/hsm-private.h"

void hsmi_copies_free(struct key_copies *c)
{
        if (!c)
                return;
        pthread_mutex_destroy(&c->lock);
        free(c->slots);
        free(c);
}

static size_t copy_home(const struct key_copies *c, CK_OBJECT_HANDLE token)
{
        return (size_t) (((uint64_t) token * UINT64_C(0x9e3779b97f4a7c15)) >> 32) & c->mask;
}

/* The slot holding token, or the free slot where it belongs. */
static struct key_copy *copy_slot(struct key_copies *c, CK_OBJECT_HANDLE token)
{
        size_t i = copy_home(c, token);

        while (c->slots[i].token != CK_INVALID_HANDLE && c->slots[i].token != token)
                i = (i + 1) & c->mask;
        return &c->slots[i];
}

int hsm_key_copies(struct hsm *h, size_t max)
{
        struct key_copies *c;
        size_t slots = 1;

        if (!h || h->copies || max > HSM_KEY_COPIES_MAX)
                return DKIMSIGN_E_INTERNAL;
        if (max == 0)
                return 0;
        while (slots < max * COPY_FILL)
                slots *= 2;
        c = calloc(1, sizeof(*c));
        if (!c)
                return DKIMSIGN_E_NOMEM;
        c->slots = calloc(slots, sizeof(*c->slots));
        if (!c->slots) {
                free(c);
                return DKIMSIGN_E_NOMEM;
        }
        if (pthread_mutex_init(&c->lock, NULL) != 0)
                abort(); /* cannot fail with default attributes on Linux */
        c->mask = slots - 1;
        c->max = max;
        h->copies = c;
        return 0;
}

size_t hsm_key_copies_live(struct hsm *h)
{
        size_t n = 0;

        if (h && h->copies) {
                pthread_mutex_lock(&h->copies->lock);
                for (size_t i = 0; i <= h->copies->mask; i++)
                        n += h->copies->slots[i].copy != CK_INVALID_HANDLE;
                pthread_mutex_unlock(&h->copies->lock);
        }
        return n;
}

/* What a failed copy means for the next ones. */
enum copy_refusal {
        COPY_PAUSE,              /* a failure: no copies until the next listing or login */
        COPY_REFUSED_KEY,        /* this key won't be copied (CKA_COPYABLE false, or it is gone) */
        COPY_REFUSED_TOKEN,      /* the token copies no private key: never again */
};

/* Whether the token object key says yes to attribute type (CKA_COPYABLE,
 * CKA_MODIFIABLE): true unless it reads false (a module without the
 * attribute allows as it pleases).  h->lock held. */
static bool key_allows(struct hsm *h, CK_OBJECT_HANDLE key, CK_ATTRIBUTE_TYPE type)
{
        CK_BBOOL value = CK_TRUE;
        CK_ATTRIBUTE a = { type, &value, sizeof(value) };

        if (h->p11->C_GetAttributeValue(h->admin, key, &a, 1) != CKR_OK || a.ulValueLen != sizeof(value))
                return true;
        return value != CK_FALSE;
}

/* What rv, the failure of a copy of token, refuses.  h->lock held. */
static enum copy_refusal copy_refusal_locked(struct hsm *h, CK_OBJECT_HANDLE token, CK_RV rv)
{
        if (rv == CKR_FUNCTION_NOT_SUPPORTED)
                return COPY_REFUSED_TOKEN;
        /* A key that is itself CKA_COPYABLE false, or CKA_MODIFIABLE false
         * (hsm_lock_keys: SoftHSM won't change its CKA_TOKEN in a copy),
         * refuses for itself: the other keys still copy. */
        if (rv == CKR_ACTION_PROHIBITED || rv == CKR_ATTRIBUTE_READ_ONLY)
                return key_allows(h, token, CKA_COPYABLE) && key_allows(h, token, CKA_MODIFIABLE)
                       ? COPY_REFUSED_TOKEN : COPY_REFUSED_KEY;
        if (hsmi_handle_gone_obj(rv))
                return COPY_REFUSED_KEY;
        return COPY_PAUSE;
}

/* Is obj a session object of ours?  Only such a handle is ever destroyed
 * here: a stale number must never take a key off the token. */
static bool session_object(struct hsm *h, CK_OBJECT_HANDLE obj)
{
        CK_BBOOL token = CK_TRUE;
        CK_ATTRIBUTE a = { CKA_TOKEN, &token, sizeof(token) };

        return h->p11->C_GetAttributeValue(h->admin, obj, &a, 1) == CKR_OK && a.ulValueLen == sizeof(token) &&
               token == CK_FALSE;
}

/* Is a copy just made kept as its key: private, sensitive and not
 * extractable, as the token object was when it was listed (hsm.h,
 * refused)?  A module could copy a key into something weaker. */
static bool copy_custody_kept(struct hsm *h, CK_OBJECT_HANDLE obj)
{
        CK_BBOOL is_private = CK_FALSE, sensitive = CK_FALSE, extractable = CK_TRUE;
        CK_ATTRIBUTE a[] = {
                { CKA_PRIVATE, &is_private, sizeof(is_private) },
                { CKA_SENSITIVE, &sensitive, sizeof(sensitive) },
                { CKA_EXTRACTABLE, &extractable, sizeof(extractable) },
        };

        if (h->p11->C_GetAttributeValue(h->admin, obj, a, 3) != CKR_OK)
                return false;
        for (size_t i = 0; i < 3; i++)
                if (a[i].ulValueLen != sizeof(CK_BBOOL))
                        return false;
        return is_private && sensitive && !extractable;
}

/* A session copy of token, or CK_INVALID_HANDLE and what the failure
 * refuses in *ret_refusal.  h->lock held. */
static CK_OBJECT_HANDLE copy_make_locked(struct hsm *h, CK_OBJECT_HANDLE token, enum copy_refusal *ret_refusal)
{
        CK_ATTRIBUTE not_token = { CKA_TOKEN, (void *) &ck_false, sizeof(ck_false) };
        CK_OBJECT_HANDLE made = CK_INVALID_HANDLE;
        CK_RV rv = h->p11->C_CopyObject(h->admin, token, &not_token, 1, &made);

        /* A module that ignored CKA_TOKEN false made a token object, one
         * more on every reload: it was made just now, so it goes. */
        if (rv == CKR_OK && made != CK_INVALID_HANDLE && !session_object(h, made)) {
                h->p11->C_DestroyObject(h->admin, made);
                made = CK_INVALID_HANDLE;
        }
        /* A copy weaker than its key goes too, and the key signs as the
         * token object (a refusal for this key). */
        if (rv == CKR_OK && made != CK_INVALID_HANDLE && !copy_custody_kept(h, made)) {
                h->p11->C_DestroyObject(h->admin, made);
                made = CK_INVALID_HANDLE;
        }
        if (rv == CKR_OK && made == CK_INVALID_HANDLE)
                rv = CKR_TEMPLATE_INCONSISTENT;
        if (rv != CKR_OK)
                *ret_refusal = copy_refusal_locked(h, token, rv);
        return made;
}

/* A slot for token in e, taking room in the table when it is new: false
 * when the table is full. */
static bool copy_claim(struct key_copies *c, struct key_copy *e, CK_OBJECT_HANDLE token)
{
        if (e->token == token)
                return true;
        if (c->used >= c->max)
                return false;
        *e = (struct key_copy) { .token = token };
        c->used++;
        return true;
}

/* The handle to sign with for the token key token: its copy, made now if
 * there is none yet and room for one.  The copy is made outside c->lock,
 * which every signature takes, with the slot marked so no other thread
 * makes one too; and only when the admin session is free (trylock): a
 * listing in progress must not stall signing, which then uses the token
 * object this once. */
CK_OBJECT_HANDLE hsmi_copy_for_signing(struct hsm *h, CK_OBJECT_HANDLE token)
{
        struct key_copies *c = h->copies;
        CK_OBJECT_HANDLE use, made = CK_INVALID_HANDLE;
        enum copy_refusal refusal = COPY_PAUSE;
        struct key_copy *e;
        bool make, tried = false;

        if (!c || token == CK_INVALID_HANDLE)
                return token;
        pthread_mutex_lock(&c->lock);
        e = copy_slot(c, token);
        use = e->copy;
        make = use == CK_INVALID_HANDLE && !e->making && !e->refused && !c->paused && !c->never &&
               copy_claim(c, e, token);
        if (make)
                e->making = true;
        pthread_mutex_unlock(&c->lock);
        if (!make)
                return use != CK_INVALID_HANDLE ? use : token;

        /* Busy (a listing): no copy this time, and no pause. */
        if (pthread_mutex_trylock(&h->lock) == 0) {
                made = copy_make_locked(h, token, &refusal);
                pthread_mutex_unlock(&h->lock);
                tried = true;
        }

        pthread_mutex_lock(&c->lock);
        /* A reset meanwhile emptied the table (and the mark): the slot is
         * claimed anew, unless another thread's copy is in it by now. */
        e = copy_slot(c, token);
        if (e->token == token)
                e->making = false;
        if (made != CK_INVALID_HANDLE && e->copy == CK_INVALID_HANDLE && copy_claim(c, e, token)) {
                e->copy = made;
                use = made;
                made = CK_INVALID_HANDLE;
        } else if (made != CK_INVALID_HANDLE) {
                use = e->token == token ? e->copy : CK_INVALID_HANDLE;
        } else if (tried) {
                if (refusal == COPY_REFUSED_TOKEN)
                        c->never = true;
                else if (refusal == COPY_PAUSE)
                        c->paused = true;
                else if (copy_claim(c, e, token))
                        e->refused = true;
        }
        pthread_mutex_unlock(&c->lock);
        /* Made, but not needed (another copy, or a reset filled the
         * table meanwhile): ours goes. */
        if (made != CK_INVALID_HANDLE) {
                pthread_mutex_lock(&h->lock);
                h->p11->C_DestroyObject(h->admin, made);
                pthread_mutex_unlock(&h->lock);
        }
        return use != CK_INVALID_HANDLE ? use : token;
}

/* Signing found copy gone (the admin session or the login went): forget
 * it, unless it was replaced meanwhile; the next signature makes another. */
void hsmi_copy_gone(struct hsm *h, CK_OBJECT_HANDLE token, CK_OBJECT_HANDLE copy)
{
        struct key_copies *c = h->copies;
        struct key_copy *e;

        pthread_mutex_lock(&c->lock);
        e = copy_slot(c, token);
        if (e->token == token && e->copy == copy)
                e->copy = CK_INVALID_HANDLE;
        pthread_mutex_unlock(&c->lock);
}

/* Destroy the copies in slots (session objects only).  h->lock held. */
static void copies_destroy_locked(struct hsm *h, const struct key_copy *slots, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (slots[i].copy != CK_INVALID_HANDLE && session_object(h, slots[i].copy))
                        h->p11->C_DestroyObject(h->admin, slots[i].copy);
}

/* Drop every copy: destroyed when they are still alive (a new listing of
 * the keys: the table starts afresh and keys gone from the token take no
 * room), or only forgotten when the login or the admin session went with
 * them.  A token that copies no key (never) stays so.  The table is
 * swapped for an empty one under c->lock, and the old copies destroyed
 * after it, so signing goes on meanwhile (with the token objects: no copy
 * can be made while h->lock is held).  h->lock held. */
void hsmi_copies_reset_locked(struct hsm *h, bool destroy)
{
        struct key_copies *c = h->copies;
        struct key_copy *old = NULL, *fresh;
        size_t slots;

        if (!c)
                return;
        slots = c->mask + 1;
        fresh = destroy ? calloc(slots, sizeof(*fresh)) : NULL;
        pthread_mutex_lock(&c->lock);
        if (fresh) {
                old = c->slots;
                c->slots = fresh;
        } else {
                if (destroy)  /* no memory for a new table: destroy in place */
                        copies_destroy_locked(h, c->slots, slots);
                memset(c->slots, 0, slots * sizeof(*c->slots));
        }
        c->used = 0;
        c->paused = false;
        pthread_mutex_unlock(&c->lock);
        if (old)
                copies_destroy_locked(h, old, slots);
        free(old);
}

/* The copy of one key that is being destroyed on the token. h->lock held. */
void hsmi_copy_destroy_locked(struct hsm *h, CK_OBJECT_HANDLE token)
{
        struct key_copies *c = h->copies;
        struct key_copy *e;

        if (!c)
                return;
        pthread_mutex_lock(&c->lock);
        e = copy_slot(c, token);
        if (e->token == token) {
                copies_destroy_locked(h, e, 1);
                e->copy = CK_INVALID_HANDLE;
        }
        pthread_mutex_unlock(&c->lock);
}
