/* SPDX-License-Identifier: MIT */
/*
 * Opening and closing a struct hsm, logging in, PIN files, the PIN kept
 * for logging in again (hsm_keep_pin, hsm_pin_read), and the admin
 * session's recovery: a session reopened (on the token's new slot after a
 * reinsertion) and a login redone with the kept PIN.  PKCS#11 logs an
 * application in once, for all its sessions; some tokens (network HSMs)
 * log in each session alone, so signing logs a session in with the kept
 * PIN when the token says it is not (hsmi_session_login_locked).
 *
 * It must never keep a PIN in memory after C_Login, except the kept PIN
 * asked for, in a page of its own (locked, left out of core dumps, wiped
 * and unmapped when forgotten); never read a PIN through stdio (its buffer
 * would keep a copy we can't wipe); never put a PIN in an error; never
 * C_Logout (login state is per process and token, shared by other handles),
 * never read a PIN file that anyone but root or this user could have
 * written (util/fileperm.h), and never log.  The admin session and the kept PIN are guarded by
 * h->lock; the session list by h->sessions_lock (hsm-private.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "hsm/hsm-private.h"
#include "util/fileperm.h"

static void pin_forget(struct kept_pin *p)
{
        if (!p->page)
                return;
        OPENSSL_cleanse(p->page, p->page_size);
        munlock(p->page, p->page_size);
        munmap(p->page, p->page_size);
        *p = (struct kept_pin) { 0 };
}

static int pin_keep(struct kept_pin *p, const char *pin, size_t len)
{
        long page = sysconf(_SC_PAGESIZE);
        size_t size = page > 0 ? (size_t) page : 4096;
        void *m;

        pin_forget(p);
        if (len > size)
                return DKIMSIGN_E_TOO_LARGE;
        m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
                return DKIMSIGN_E_NOMEM;
        /* Best effort: RLIMIT_MEMLOCK may refuse; the page still stays out of dumps. */
        (void) mlock(m, size);
        (void) madvise(m, size, MADV_DONTDUMP);
        memcpy(m, pin, len);
        *p = (struct kept_pin) { .page = m, .page_size = size, .len = len };
        return 0;
}

/* Writers first: a re-initialization waits for the signatures in progress,
 * not for every one that arrives meanwhile. */
static int init_lock_new(pthread_rwlock_t *l)
{
        pthread_rwlockattr_t a;
        int e;

        pthread_rwlockattr_init(&a);
        pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
        e = pthread_rwlock_init(l, &a);
        pthread_rwlockattr_destroy(&a);
        return e;
}

/* Open the token that matches m (taken: freed on failure too); only: it
 * must be the only one; uri (NULL for a bare label) names m in the
 * sentences. */
static int open_matching(const char *module_path, P11KitUri *m, bool only, const char *uri, struct hsm **ret)
{
        _cleanup_(hsm_closep) struct hsm *h = NULL;
        struct hsmi_found found;
        CK_RV rv;
        int r;

        h = calloc(1, sizeof(*h));
        if (!h) {
                p11_kit_uri_free(m);
                return DKIMSIGN_E_NOMEM;
        }
        if (pthread_mutex_init(&h->lock, NULL) != 0 || pthread_mutex_init(&h->sessions_lock, NULL) != 0 ||
            init_lock_new(&h->init_lock) != 0)
                abort(); /* cannot fail with these attributes on Linux */
        h->match = m;   /* transferred */
        h->match_only = only;
        r = hsmi_module_get(module_path, &h->mod);
        if (r < 0)
                return r;
        h->p11 = h->mod->p11;
        r = hsmi_slot_find(h->p11, h->match, only ? HSMI_FIND_ONLY : HSMI_FIND_FIRST, &found);
        if (r == DKIMSIGN_E_NO_TOKEN && uri)
                hsmi_why("no token of %s matches %s", module_path, uri);
        else if (r == DKIMSIGN_E_EXISTS && uri)
                hsmi_why("%u tokens of %s match %s (serials %s): add serial= to the uri to choose one", found.count,
                         module_path, uri, found.serials);
        if (r < 0)
                return r;
        h->slot = found.slot;
        hsmi_token_id(&found.info, &h->id);

        /* Generation needs a read-write session; a write-protected token can still sign. */
        rv = h->p11->C_OpenSession(h->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h->admin);
        if (rv == CKR_TOKEN_WRITE_PROTECTED)
                rv = h->p11->C_OpenSession(h->slot, CKF_SERIAL_SESSION, NULL, NULL, &h->admin);
        if (rv != CKR_OK)
                return hsmi_ckr_fail(rv);
        h->admin_open = true;

        *ret = h;
        h = NULL;
        return 0;
}

int hsm_open(const char *module_path, const char *token_label, struct hsm **ret)
{
        P11KitUri *m;

        hsmi_last_ckr = 0;
        if (!token_label || !ret)
                return DKIMSIGN_E_INTERNAL;
        m = hsmi_uri_for_label(token_label);
        if (!m)
                return DKIMSIGN_E_NOMEM;
        return open_matching(module_path, m, false, NULL, ret);
}

int hsm_open_uri(const char *uri, const char *module_path, struct hsm **ret)
{
        char module[HSM_URI_MAX + 1];
        P11KitUri *m = NULL;
        int r;

        hsmi_last_ckr = 0;
        if (!uri || !ret)
                return DKIMSIGN_E_INTERNAL;
        r = hsmi_uri_parse(uri, &m, module, sizeof(module));
        if (r < 0)
                return r;
        if (!module_path && !module[0])
                hsmi_why("%s has no module-path, and no module is given", uri);
        else if (module_path && module[0] && strcmp(module, module_path) != 0)
                hsmi_why("the module-path of %s is not the module %s", uri, module_path);
        else
                return open_matching(module_path ? module_path : module, m, true, uri, ret);
        p11_kit_uri_free(m);
        return DKIMSIGN_E_FORMAT;
}

void hsm_token_id(const struct hsm *h, struct hsm_token_id *ret)
{
        *ret = h->id;
}

struct hsm *hsm_close(struct hsm *h)
{
        if (!h)
                return NULL;
        if (h->mod) {
                /* Detach the sessions the caller still holds; it frees them. */
                pthread_mutex_lock(&h->sessions_lock);
                for (struct hsm_session *s = h->sessions; s; s = s->next) {
                        if (hsmi_session_closable(h, s))
                                h->p11->C_CloseSession(s->handle);
                        s->h = NULL;
                }
                h->sessions = NULL;
                pthread_mutex_unlock(&h->sessions_lock);
                /* No C_Logout: login state is per process and token, and
                 * another struct hsm may share it.  Closing the last
                 * session logs out (PKCS#11 2.40, C_CloseSession). */
                if (h->admin_open)
                        h->p11->C_CloseSession(h->admin);
                hsmi_module_put(h->mod);
        }
        hsmi_copies_free(h->copies);
        pin_forget(&h->pin);
        p11_kit_uri_free(h->match);
        pthread_mutex_destroy(&h->sessions_lock);
        pthread_mutex_destroy(&h->lock);
        pthread_rwlock_destroy(&h->init_lock);
        free(h);
        return NULL;
}

void hsm_keep_pin(struct hsm *h)
{
        if (h)
                h->keep_pin = true;
}

int hsm_login(struct hsm *h, char *pin, size_t pin_len)
{
        CK_RV rv;
        int r = 0;

        hsmi_last_ckr = 0;
        if (!h || !pin) {
                if (pin)
                        OPENSSL_cleanse(pin, pin_len);
                return DKIMSIGN_E_INTERNAL;
        }
        pthread_mutex_lock(&h->lock);
        rv = h->p11->C_Login(h->admin, CKU_USER, (CK_UTF8CHAR *) pin, pin_len);
        if ((rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN) && h->keep_pin)
                r = pin_keep(&h->pin, pin, pin_len);
        OPENSSL_cleanse(pin, pin_len);
        pthread_mutex_unlock(&h->lock);

        if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN)
                return r;
        return hsmi_ckr_fail(rv);
}

/* Read the first line of fd into buf; *ret_len excludes the newline. */
static int pin_read_line(int fd, char *buf, size_t size, size_t *ret_len)
{
        size_t len = 0;
        char *nl;

        while (len < size) {
                ssize_t n = read(fd, buf + len, size - len);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return DKIMSIGN_E_SYSTEM;
                if (n == 0)
                        break;
                len += (size_t) n;
                if (memchr(buf + len - (size_t) n, '\n', (size_t) n))
                        break;
        }
        nl = memchr(buf, '\n', len);
        if (nl)
                len = (size_t) (nl - buf);
        else if (len == size)
                return DKIMSIGN_E_TOO_LARGE;
        while (len > 0 && (buf[len - 1] == '\r' || buf[len - 1] == ' '))
                len--;
        *ret_len = len;
        return 0;
}

/* The PIN in the first line of the file at path, into buf (wiped by the
 * caller). */
static int pin_file_read(const char *path, char buf[PIN_FILE_MAX], size_t *ret_len)
{
        int fd, r, saved_errno;

        hsmi_last_why[0] = '\0';
        /* Not stdio: its buffer would keep a copy of the PIN we can't wipe.
         * A link is followed (secret stores link their files into place);
         * what is checked is the file opened. */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return DKIMSIGN_E_SYSTEM;
        r = fileperm_check_fd(fd, path, FILEPERM_NO_UID, hsmi_last_why, sizeof(hsmi_last_why));
        if (r < 0) {
                saved_errno = errno;
                if (r != DKIMSIGN_E_CONFIG)
                        hsmi_last_why[0] = '\0';
                close(fd);
                errno = saved_errno;
                return r;
        }
        r = pin_read_line(fd, buf, PIN_FILE_MAX, ret_len);
        saved_errno = errno;
        close(fd);
        errno = saved_errno;
        if (r == 0 && *ret_len == 0)
                r = DKIMSIGN_E_FORMAT;
        return r;
}

int hsm_login_pin_file(struct hsm *h, const char *path)
{
        char buf[PIN_FILE_MAX];
        size_t len = 0;
        int r;

        hsmi_last_ckr = 0;
        if (!h || !path)
                return DKIMSIGN_E_INTERNAL;
        r = pin_file_read(path, buf, &len);
        if (r == 0)
                r = hsm_login(h, buf, len);
        OPENSSL_cleanse(buf, sizeof(buf));
        return r;
}

struct hsm_pin {
        struct kept_pin kept;
};

int hsm_pin_read(const char *path, struct hsm_pin **ret)
{
        char buf[PIN_FILE_MAX];
        struct hsm_pin *p;
        size_t len = 0;
        int r;

        if (!path || !ret)
                return DKIMSIGN_E_INTERNAL;
        p = calloc(1, sizeof(*p));
        if (!p)
                return DKIMSIGN_E_NOMEM;
        r = pin_file_read(path, buf, &len);
        if (r == 0)
                r = pin_keep(&p->kept, buf, len);
        OPENSSL_cleanse(buf, sizeof(buf));
        if (r < 0) {
                free(p);
                return r;
        }
        *ret = p;
        return 0;
}

int hsm_login_pin(struct hsm *h, const struct hsm_pin *pin)
{
        char buf[PIN_FILE_MAX];

        hsmi_last_ckr = 0;
        if (!h || !pin || !pin->kept.page || pin->kept.len > sizeof(buf))
                return DKIMSIGN_E_INTERNAL;
        /* hsm_login wipes what it is given: a copy, so the held PIN stays. */
        memcpy(buf, pin->kept.page, pin->kept.len);
        return hsm_login(h, buf, pin->kept.len);
}

struct hsm_pin *hsm_pin_free(struct hsm_pin *p)
{
        if (p) {
                pin_forget(&p->kept);
                free(p);
        }
        return NULL;
}

/* ---- recovery of the admin session and the login (h->lock held) ---- */

bool hsmi_logged_in(const CK_SESSION_INFO *info)
{
        return info->state == CKS_RO_USER_FUNCTIONS || info->state == CKS_RW_USER_FUNCTIONS;
}

/* Open a session, finding the token's slot again if it moved on
 * reinsertion.  h->lock held. */
CK_RV hsmi_session_open_locked(struct hsm *h, CK_FLAGS flags, CK_SESSION_HANDLE *ret)
{
        CK_RV rv = h->p11->C_OpenSession(h->slot, flags, NULL, NULL, ret);
        CK_SLOT_ID slot;

        if (rv != CKR_SLOT_ID_INVALID && rv != CKR_TOKEN_NOT_PRESENT && rv != CKR_DEVICE_REMOVED &&
            rv != CKR_TOKEN_NOT_RECOGNIZED)
                return rv;
        if (hsmi_token_find(h, &slot) < 0 || slot == h->slot)
                return rv;
        h->slot = slot;
        return h->p11->C_OpenSession(h->slot, flags, NULL, NULL, ret);
}

bool hsmi_admin_logged_in_locked(struct hsm *h)
{
        CK_SESSION_INFO info;

        return h->admin_open && h->p11->C_GetSessionInfo(h->admin, &info) == CKR_OK && hsmi_logged_in(&info);
}

/*
 * Log in on s with the kept PIN.  A PIN the token refuses is forgotten and
 * never offered again: a token counts wrong PINs and locks its user out
 * after a few (3 to 10 on HSMs), and a daemon retrying it at each recovery
 * would lock the token within a second, taking every other application's
 * signing with it.  From then on the login fails with the token's own
 * refusal (CKR_PIN_INCORRECT, ...: the error the daemon logs) until a
 * restart reads the PIN anew.  h->lock held.
 */
CK_RV hsmi_session_login_locked(struct hsm *h, CK_SESSION_HANDLE s)
{
        CK_RV rv;

        if (!h->pin.page)
                return h->pin_refused ? h->pin_refused : CKR_USER_NOT_LOGGED_IN;
        rv = h->p11->C_Login(s, CKU_USER, (CK_UTF8CHAR *) h->pin.page, h->pin.len);
        switch (rv) {
        case CKR_PIN_INCORRECT:
        case CKR_PIN_INVALID:
        case CKR_PIN_LEN_RANGE:
        case CKR_PIN_EXPIRED:
        case CKR_PIN_LOCKED:
                pin_forget(&h->pin);
                h->pin_refused = rv;
                return rv;
        case CKR_USER_ALREADY_LOGGED_IN:
                return CKR_OK;
        default:
                return rv;
        }
}

/* Make sure the application is logged in, with a live admin session;
 * log in again with the kept PIN when the login is gone.  h->lock held. */
CK_RV hsmi_login_restore_locked(struct hsm *h)
{
        CK_SESSION_HANDLE n;
        CK_SESSION_INFO info;
        CK_RV rv;

        /* A closed admin session's number may name another session now:
         * never ask about it. */
        rv = h->admin_open ? h->p11->C_GetSessionInfo(h->admin, &info) : CKR_SESSION_HANDLE_INVALID;
        if (rv == CKR_OK && hsmi_logged_in(&info))
                return CKR_OK;
        /* The key copies went with the admin session or with the login
         * (private session objects end at logout). */
        hsmi_copies_reset_locked(h, false);
        if (rv != CKR_OK) {
                if (h->admin_open && !hsmi_handle_gone(rv))
                        h->p11->C_CloseSession(h->admin);
                h->admin_open = false;
                rv = hsmi_session_open_locked(h, CKF_SERIAL_SESSION | CKF_RW_SESSION, &n);
                if (rv == CKR_TOKEN_WRITE_PROTECTED)
                        rv = hsmi_session_open_locked(h, CKF_SERIAL_SESSION, &n);
                if (rv != CKR_OK)
                        return rv;
                h->admin = n;
                h->admin_open = true;
                /* Another session of ours may still hold the login. */
                if (h->p11->C_GetSessionInfo(h->admin, &info) == CKR_OK && hsmi_logged_in(&info))
                        return CKR_OK;
        }
        return hsmi_session_login_locked(h, h->admin);
}
