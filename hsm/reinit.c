/* SPDX-License-Identifier: MIT */
/*
 * hsm_reinitialize: the module finalized and initialized again, so this
 * process sees what other processes changed on the token.
 *
 * Why: PKCS#11 says nothing about when a module reads the token's
 * objects.  SoftHSM and opencryptoki look at the token on every search;
 * tpm2-pkcs11 reads its store once per C_Initialize, so a key made by
 * dkimsignctl stays unseen and a destroyed one keeps signing in a daemon
 * that only searches again.  A new initialization is the one thing every
 * module must answer with the token as it is now.
 *
 * What goes with the old initialization: every session (a signing
 * session remembers its generation, so hsm_sign opens a new one, never
 * closing a handle the module no longer knows), the admin session, the login, the
 * key copies and every object handle.  Handles of keys loaded before are
 * told apart by their generation (struct hsm_key) and found again by
 * label on their next signature: after C_Initialize a module may hand out
 * the same numbers for other objects, so an old handle must never be used.
 *
 * Never logs (hsm/ rules); says why in hsm_last_why().
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "hsm/hsm-private.h"
#include "util/clock.h"

#define REINIT_ATTEMPTS 5
#define REINIT_RETRY_MS 20   /* doubled each time: 20 to 160 ms */

/* The write side of h->init_lock within wait_ms: no signature is inside
 * the module once it is held, and new ones wait. */
static int init_lock_wait(struct hsm *h, unsigned wait_ms)
{
        struct timespec until = clock_deadline(CLOCK_MONOTONIC, wait_ms);
        int e;

        do
                e = pthread_rwlock_clockwrlock(&h->init_lock, CLOCK_MONOTONIC, &until);
        while (e == EINTR);
        if (e == 0)
                return 0;
        hsmi_why("a token call did not return within %u ms", wait_ms);
        return DKIMSIGN_E_BUSY;
}

int hsm_reinitialize(struct hsm *h, unsigned wait_ms)
{
        CK_SLOT_ID slot;
        CK_RV rv;
        int r;

        hsmi_last_ckr = 0;
        hsmi_last_why[0] = '\0';
        if (!h)
                return DKIMSIGN_E_INTERNAL;
        r = init_lock_wait(h, wait_ms);
        if (r < 0)
                return r;
        pthread_mutex_lock(&h->lock);
        if (!h->pin.page) {
                hsmi_why("no PIN is kept to log in again");
                r = DKIMSIGN_E_INTERNAL;
                goto out;
        }
        if (hsmi_module_shared(h->mod)) {
                hsmi_why("the module is shared with another user in this process");
                r = DKIMSIGN_E_BUSY;
                goto out;
        }
        /* Before C_Finalize closes them: from now on no one closes the
         * sessions of the old generation (their numbers will name new
         * sessions), and signing opens new ones. */
        pthread_mutex_lock(&h->sessions_lock);
        __atomic_add_fetch(&h->generation, 1, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&h->sessions_lock);
        h->admin_open = false;
        hsmi_copies_reset_locked(h, false);
        /* The slot list is new too: the token may have another slot ID.
         * A module that reads its token files at C_Initialize can miss a
         * token another process holds locked at that moment (SoftHSM does,
         * when several signers reload at once): initialize again, a few
         * times, before giving up. */
        for (unsigned attempt = 0;; attempt++) {
                r = hsmi_module_reinit(h->mod);
                /* A module that failed to initialize may do so a moment
                 * later (a daemon it talks to restarting): tried again
                 * too, and at every later reload. */
                if (r < 0 && r != DKIMSIGN_E_BUSY && attempt + 1 < REINIT_ATTEMPTS) {
                        nanosleep(&(struct timespec) { .tv_nsec = (long) (REINIT_RETRY_MS << attempt) * 1000000L },
                                  NULL);
                        continue;
                }
                if (r < 0)
                        goto out;
                r = hsmi_token_find(h, &slot);
                if (r != DKIMSIGN_E_NO_TOKEN || attempt + 1 >= REINIT_ATTEMPTS)
                        break;
                nanosleep(&(struct timespec) { .tv_nsec = (long) (REINIT_RETRY_MS << attempt) * 1000000L }, NULL);
        }
        if (r == DKIMSIGN_E_EXISTS) {
                hsmi_why("token '%s': several tokens match its uri after C_Initialize; add serial= to the uri",
                         h->id.label);
                goto out;
        }
        if (r < 0) {
                hsmi_why("token '%s' not found after C_Initialize (%u attempts)", h->id.label, REINIT_ATTEMPTS);
                goto out;
        }
        h->slot = slot;
        h->recover_failed_ms = 0;
        rv = hsmi_login_restore_locked(h);
        if (rv != CKR_OK) {
                hsmi_why("logging in again after C_Initialize");
                r = hsmi_ckr_fail(rv);
        }
out:
        pthread_mutex_unlock(&h->lock);
        pthread_rwlock_unlock(&h->init_lock);
        return r;
}

/* Modules read here to search the token's objects anew at every
 * C_FindObjectsInit, by C_GetInfo's manufacturerID (blank padded). */
static const char *const sees_changes[] = {
        "SoftHSM",   /* SoftHSM 2: its object store re-reads changed token files */
        "IBM",       /* opencryptoki: its shared memory segment holds the token's objects */
};

bool hsm_module_sees_changes(struct hsm *h)
{
        CK_INFO info;

        if (!h || h->p11->C_GetInfo(&info) != CKR_OK)
                return false;
        for (size_t i = 0; i < sizeof(sees_changes) / sizeof(sees_changes[0]); i++) {
                size_t n = strlen(sees_changes[i]);

                /* The whole field: the name, then blanks only. */
                if (memcmp(info.manufacturerID, sees_changes[i], n) != 0)
                        continue;
                for (; n < sizeof(info.manufacturerID) && info.manufacturerID[n] == ' '; n++)
                        ;
                if (n == sizeof(info.manufacturerID))
                        return true;
        }
        return false;
}

unsigned long hsm_reinitializations(struct hsm *h)
{
        return h ? __atomic_load_n(&h->generation, __ATOMIC_ACQUIRE) : 0;
}
