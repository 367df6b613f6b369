/* SPDX-License-Identifier: MIT */
/*
 * Signing: per-thread signing sessions, recovery after a token fault (a
 * new session, a new login with the kept PIN, a key handle looked up again
 * by label), and hsm_sign.  On a token whose login is per session (some
 * network HSMs: a new session says CKR_USER_NOT_LOGGED_IN while the admin
 * session is logged in), the signing session logs in on itself, once: no
 * fault, so not counted as a recovery.
 *
 * It must never retry a signature more than the once a lost session or
 * login allows, never hammer a missing token (after a failed recovery it
 * fails fast for RECOVER_BACKOFF_MS), never close a session handle the
 * module no longer knows (its number may belong to a new session), and
 * never log.  A session belongs to one thread; recovery is serialized on
 * h->lock, and the session list is guarded by h->sessions_lock, taken
 * under h->lock (hsm-private.h).
 */
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "hsm/hsm-private.h"
#include "util/clock.h"

/* DER DigestInfo header for SHA-256 (RFC 8017 section 9.2, note 1):
 * CKM_RSA_PKCS pads but does not hash or wrap. */
static const uint8_t sha256_info[] = {
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
        0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20,
};

int hsm_session_open(struct hsm *h, struct hsm_session **ret)
{
        struct hsm_session *s;
        CK_RV rv;

        hsmi_last_ckr = 0;
        if (!h || !ret)
                return DKIMSIGN_E_INTERNAL;
        s = calloc(1, sizeof(*s));
        if (!s)
                return DKIMSIGN_E_NOMEM;
        /* Login state is per process and token: the new session is logged in already. */
        pthread_mutex_lock(&h->lock);
        rv = hsmi_session_open_locked(h, CKF_SERIAL_SESSION, &s->handle);
        /* Under h->lock, which hsm_reinitialize holds throughout. */
        s->generation = __atomic_load_n(&h->generation, __ATOMIC_RELAXED);
        pthread_mutex_unlock(&h->lock);
        if (rv != CKR_OK) {
                free(s);
                /* A limit, not a failure: the caller can do with fewer. */
                if (rv == CKR_SESSION_COUNT) {
                        hsmi_last_ckr = rv;
                        return DKIMSIGN_E_BUSY;
                }
                return hsmi_ckr_fail(rv);
        }
        s->h = h;
        pthread_mutex_lock(&h->sessions_lock);
        s->next = h->sessions;
        if (s->next)
                s->next->prev = s;
        h->sessions = s;
        pthread_mutex_unlock(&h->sessions_lock);
        *ret = s;
        return 0;
}

struct hsm_session *hsm_session_close(struct hsm_session *s)
{
        struct hsm *h;

        if (!s)
                return NULL;
        h = s->h;
        if (h) {
                pthread_mutex_lock(&h->sessions_lock);
                if (s->prev)
                        s->prev->next = s->next;
                else
                        h->sessions = s->next;
                if (s->next)
                        s->next->prev = s->prev;
                if (hsmi_session_closable(h, s))
                        h->p11->C_CloseSession(s->handle);
                pthread_mutex_unlock(&h->sessions_lock);
        }
        free(s);
        return NULL;
}

bool hsmi_session_closable(const struct hsm *h, const struct hsm_session *s)
{
        return !s->broken && s->generation == __atomic_load_n(&h->generation, __ATOMIC_RELAXED);
}

/*
 * s was opened before the module was initialized again (hsm_reinitialize),
 * which ended it: open a new one.  Not a token fault, so not counted in
 * recoveries; a failure leaves s broken, for session_recover and its
 * back-off.
 */
static int session_renew(struct hsm_session *s, unsigned long gen)
{
        struct hsm *h = s->h;
        CK_SESSION_HANDLE n;
        CK_RV rv;

        pthread_mutex_lock(&h->lock);
        rv = hsmi_session_open_locked(h, CKF_SERIAL_SESSION, &n);
        pthread_mutex_lock(&h->sessions_lock);
        s->generation = gen;
        s->broken = rv != CKR_OK;
        if (rv == CKR_OK)
                s->handle = n;
        pthread_mutex_unlock(&h->sessions_lock);
        pthread_mutex_unlock(&h->lock);
        return rv == CKR_OK ? 0 : hsmi_sign_fail(rv);
}

/*
 * Bring s back after the token lost it (why: the failure that said so): a
 * new session, and a new login if the login went with it.  Serialized on
 * h->lock, so one worker logs in while the others wait; after a failure it
 * fails fast for RECOVER_BACKOFF_MS, so a missing token costs a request
 * one quick error rather than a pile of calls into the module.
 */
static int session_recover(struct hsm_session *s, CK_RV why)
{
        struct hsm *h = s->h;
        uint64_t now = now_ms();
        CK_SESSION_INFO info;
        CK_SESSION_HANDLE n;
        bool fault = true;
        CK_RV rv;

        pthread_mutex_lock(&h->lock);
        if (h->recover_failed_ms && now - h->recover_failed_ms < RECOVER_BACKOFF_MS) {
                pthread_mutex_unlock(&h->lock);
                return hsmi_sign_fail(why);
        }
        if (why == CKR_USER_NOT_LOGGED_IN && !s->broken) {
                /* The application is still logged in: this session is
                 * not, on a token that logs in per session (or another
                 * worker has just logged in again). */
                fault = !hsmi_admin_logged_in_locked(h);
                rv = fault ? hsmi_login_restore_locked(h) : CKR_OK;
                if (rv == CKR_OK)
                        rv = hsmi_session_login_locked(h, s->handle);
        } else {
                pthread_mutex_lock(&h->sessions_lock);
                if (hsmi_session_closable(h, s) && !hsmi_handle_gone(why))
                        h->p11->C_CloseSession(s->handle);
                s->broken = true;
                pthread_mutex_unlock(&h->sessions_lock);
                rv = hsmi_session_open_locked(h, CKF_SERIAL_SESSION, &n);
                if (rv == CKR_OK) {
                        pthread_mutex_lock(&h->sessions_lock);
                        s->handle = n;
                        s->broken = false;
                        s->generation = __atomic_load_n(&h->generation, __ATOMIC_RELAXED);
                        pthread_mutex_unlock(&h->sessions_lock);
                        rv = h->p11->C_GetSessionInfo(n, &info);
                        if (rv == CKR_OK && !hsmi_logged_in(&info)) {
                                rv = hsmi_login_restore_locked(h);
                                /* Still not, with the application logged
                                 * in: a login per session. */
                                if (rv == CKR_OK && h->p11->C_GetSessionInfo(n, &info) == CKR_OK &&
                                    !hsmi_logged_in(&info))
                                        rv = hsmi_session_login_locked(h, n);
                        }
                }
        }
        if (rv == CKR_OK) {
                h->recover_failed_ms = 0;
                if (fault)
                        __atomic_add_fetch(&h->recoveries, 1, __ATOMIC_RELAXED);
        } else {
                h->recover_failed_ms = now ? now : 1;
        }
        pthread_mutex_unlock(&h->lock);
        return rv == CKR_OK ? 0 : hsmi_sign_fail(rv);
}

/* The private key's handle may change when the token is logged in again
 * (SoftHSM renumbers private objects on login): find it by label. */
static CK_RV key_refind(struct hsm_session *s, const struct hsm_key *key, CK_OBJECT_HANDLE *ret)
{
        CK_OBJECT_HANDLE found[2];
        struct tmpl t = { 0 };
        CK_ULONG count = 0;
        CK_RV rv;

        hsmi_tmpl_class(&t, &class_private);
        hsmi_tmpl_add(&t, CKA_LABEL, key->label, strlen(key->label));
        rv = s->h->p11->C_FindObjectsInit(s->handle, t.a, t.n);
        if (rv != CKR_OK)
                return rv;
        rv = s->h->p11->C_FindObjects(s->handle, found, 2, &count);
        s->h->p11->C_FindObjectsFinal(s->handle);
        if (rv != CKR_OK)
                return rv;
        if (count != 1)
                return CKR_KEY_HANDLE_INVALID;
        *ret = found[0];
        return CKR_OK;
}

static uint64_t thread_cpu_ns(void)
{
        struct timespec ts;

        if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) < 0)
                return 0;
        return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

/*
 * The calling thread's CPU inside the token's C_SignInit and C_Sign is
 * added to h->sign_cpu_ns: what the daemon's process spends that is the
 * token's, so that the rest can be told apart (hsm_sign_cpu).  A thread
 * clock counts only this thread's running time, not the time it waits for
 * the token or the cores, and costs two clock reads (0.25 us of CPU
 * each, measured here) against the 50 us to 1 ms of a signature.  For a network HSM it is the
 * module's client side only.
 */
static CK_RV sign_call(struct hsm_session *s, CK_MECHANISM *mech, CK_OBJECT_HANDLE key, uint8_t *in,
                       CK_ULONG in_len, uint8_t sig[HSM_SIG_MAX], CK_ULONG *ret_len)
{
        uint64_t cpu0 = thread_cpu_ns(), cpu1;
        CK_RV rv;

        *ret_len = HSM_SIG_MAX;
        rv = s->h->p11->C_SignInit(s->handle, mech, key);
        if (rv == CKR_OK)
                rv = s->h->p11->C_Sign(s->handle, in, in_len, sig, ret_len);
        cpu1 = thread_cpu_ns();
        __atomic_add_fetch(&s->h->sign_calls, 1, __ATOMIC_RELAXED);
        if (cpu1 > cpu0)
                __atomic_add_fetch(&s->h->sign_cpu_ns, cpu1 - cpu0, __ATOMIC_RELAXED);
        /* A C_Sign that failed with CKR_BUFFER_TOO_SMALL leaves the
         * operation active, and PKCS#11 2.40 has no way to cancel it but a
         * new session: the next request gets one. */
        if (rv == CKR_BUFFER_TOO_SMALL || rv == CKR_OPERATION_ACTIVE)
                s->broken = true;
        return rv;
}

/*
 * key is not const, because signing writes it: when the token renumbered
 * the private key (SoftHSM does on a new login), the handle found again by
 * label is stored in key->priv, so every worker sharing the key signs with
 * it from then on and hsm_destroy()/hsm_retire() name the live object.
 * The other way, keeping refreshed handles in the struct hsm by old
 * handle, would put a second lookup (and a lock) on every signature and
 * leave key->priv stale for the caller; a const parameter written through
 * a cast only hid the write.  The store is atomic because workers share
 * keys: they read key->priv with __atomic_load_n.
 */
static int sign_initialized(struct hsm_session *s, struct hsm_key *key, const uint8_t digest[32],
                            uint8_t sig[HSM_SIG_MAX], size_t *ret_len)
{
        uint8_t in[sizeof(sha256_info) + 32];
        CK_MECHANISM mech = { 0 };
        CK_OBJECT_HANDLE priv, use;
        CK_ULONG in_len, len = HSM_SIG_MAX;
        unsigned long gen;
        size_t want;
        CK_RV rv;
        int r;

        if (key->alg == HSM_ALG_RSA) {
                /* Keeps the signature within HSM_SIG_MAX. */
                if (key->bits == 0 || key->bits > HSM_RSA_MAX_BITS)
                        return DKIMSIGN_E_ALG;
                mech.mechanism = CKM_RSA_PKCS;
                memcpy(in, sha256_info, sizeof(sha256_info));
                memcpy(in + sizeof(sha256_info), digest, 32);
                in_len = sizeof(in);
                want = (key->bits + 7) / 8;
        } else if (key->alg == HSM_ALG_ED25519) {
                /* RFC 8463: PureEdDSA over the SHA-256 digest itself. */
                mech.mechanism = CKM_EDDSA;
                memcpy(in, digest, 32);
                in_len = 32;
                want = ED25519_SIG_LEN;
        } else
                return DKIMSIGN_E_ALG;

        /* Stable here: hsm_reinitialize changes it only with init_lock
         * held for writing, and this thread holds it for reading. */
        gen = __atomic_load_n(&s->h->generation, __ATOMIC_ACQUIRE);
        if (!s->broken && s->generation != gen) {
                r = session_renew(s, gen);
                if (r < 0)
                        return r;
        }
        if (s->broken) {
                r = session_recover(s, CKR_SESSION_HANDLE_INVALID);
                if (r < 0)
                        return r;
        }
        /* Workers share the key table; the handle is refreshed in place. */
        if (__atomic_load_n(&key->priv_generation, __ATOMIC_ACQUIRE) != gen) {
                /* Loaded before the module was initialized again: its
                 * handle may name another object now.  Never use it. */
                rv = key_refind(s, key, &priv);
                if (rv != CKR_OK)
                        return hsmi_sign_fail(hsmi_handle_stale(rv) ? CKR_KEY_HANDLE_INVALID : rv);
                __atomic_store_n(&key->priv, priv, __ATOMIC_RELAXED);
                __atomic_store_n(&key->priv_generation, gen, __ATOMIC_RELEASE);
        }
        priv = __atomic_load_n(&key->priv, __ATOMIC_RELAXED);
        use = hsmi_copy_for_signing(s->h, priv);
        rv = sign_call(s, &mech, use, in, in_len, sig, &len);
        /* The copy is gone (token reset, lost login, listing): the key itself. */
        if (use != priv && hsmi_handle_stale(rv)) {
                hsmi_copy_gone(s->h, priv, use);
                rv = sign_call(s, &mech, priv, in, in_len, sig, &len);
        }
        /* Signing is idempotent: after a lost session or login, once more. */
        if (hsmi_session_lost(rv)) {
                r = session_recover(s, rv);
                if (r < 0)
                        return r;
                rv = sign_call(s, &mech, priv, in, in_len, sig, &len);
        }
        /* A module that hides private objects from a session that is not
         * logged in (SoftHSM) says "no such key" rather than "not logged
         * in": log in again first, then look the key up. */
        if (hsmi_handle_stale(rv)) {
                CK_SESSION_INFO info;

                if (s->h->p11->C_GetSessionInfo(s->handle, &info) == CKR_OK && !hsmi_logged_in(&info)) {
                        r = session_recover(s, CKR_USER_NOT_LOGGED_IN);
                        if (r < 0)
                                return r;
                }
                if (key_refind(s, key, &priv) == CKR_OK) {
                        __atomic_store_n(&key->priv, priv, __ATOMIC_RELAXED);
                        rv = sign_call(s, &mech, priv, in, in_len, sig, &len);
                }
        }
        if (rv != CKR_OK)
                return hsmi_sign_fail(rv);
        if (len != want)
                return DKIMSIGN_E_HSM;
        *ret_len = len;
        return 0;
}

int hsm_sign(struct hsm_session *s, struct hsm_key *key, const uint8_t digest[32],
             uint8_t sig[HSM_SIG_MAX], size_t *ret_len)
{
        int r;

        hsmi_last_ckr = 0;
        if (!s || !key || !digest || !sig || !ret_len)
                return DKIMSIGN_E_INTERNAL;
        if (!s->h)
                return DKIMSIGN_E_HSM;
        /* Not while hsm_reinitialize finalizes the module under us. */
        pthread_rwlock_rdlock(&s->h->init_lock);
        r = sign_initialized(s, key, digest, sig, ret_len);
        pthread_rwlock_unlock(&s->h->init_lock);
        return r;
}

unsigned long hsm_recoveries(struct hsm *h)
{
        return __atomic_load_n(&h->recoveries, __ATOMIC_RELAXED);
}

void hsm_sign_cpu(struct hsm *h, uint64_t *ret_calls, uint64_t *ret_cpu_ns)
{
        *ret_calls = h ? __atomic_load_n(&h->sign_calls, __ATOMIC_RELAXED) : 0;
        *ret_cpu_ns = h ? __atomic_load_n(&h->sign_cpu_ns, __ATOMIC_RELAXED) : 0;
}
