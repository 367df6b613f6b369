/* SPDX-License-Identifier: MIT */
/*
 * PKCS#11 token access: load a module by path, find a token by label, log
 * in, generate, import, find, list, retire and destroy DKIM key pairs, and
 * sign SHA-256 digests in per-thread sessions.  A key's created and retired
 * dates are CKA_START_DATE and CKA_END_DATE of its public half (hsm.h says
 * why not of the private half).
 *
 * It must never ask the token for a private attribute, never create a
 * private key that is extractable or not sensitive, never keep a PIN in
 * memory after C_Login, never trust a length the module reports (every
 * attribute read is capped) and never log: it returns dkimsign_err codes and
 * remembers the last failed CK_RV per thread for the caller's log line.
 *
 * Locking: the admin session (login, generation, import, find, list,
 * destroy) is serialized by hsm.lock; signing sessions belong to one thread
 * each and only their list is guarded, by hsm.sessions_lock.  Loaded modules
 * are shared and reference-counted process-wide, because PKCS#11 state
 * (initialization, login) is per process, not per handle.
 */
#include <assert.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>

#include <p11-kit/pkcs11.h>

#include "dkimsign-errors.h"
#include "hsm.h"

#ifndef _cleanup_
#define _cleanup_(f) __attribute__((cleanup(f)))
#endif

#define TOKEN_LABEL_LEN 32        /* CK_TOKEN_INFO.label: blank padded, not NUL terminated */
#define SLOTS_MAX 1024
#define OBJECTS_MAX 262144        /* token objects hsm_list() will look at (keys: two each) */
#define KEY_ID_LEN 16             /* CKA_ID of the keys made here */
#define KEY_ID_MAX 256            /* CKA_ID accepted from the token */
#define RSA_MOD_MAX (HSM_RSA_MAX_BITS / 8)
#define RSA_EXP_MAX 16
#define EC_PARAMS_MAX 64
#define EC_POINT_MAX 64
#define ED25519_LEN 32
#define ED25519_SIG_LEN 64
#define PIN_FILE_MAX 256
#define TMPL_MAX 24
#define RECOVER_BACKOFF_MS 200    /* after a failed recovery, fail fast for this long */
#define COPY_FILL 2               /* the key copy table keeps at most 1 / COPY_FILL of its slots in use */

/* RFC 8410 id-Ed25519, the only CKA_EC_PARAMS written; PKCS#11 3.0 also
 * allows the curve name as a PrintableString, accepted when read. */
static const uint8_t ed25519_oid[] = { 0x06, 0x03, 0x2b, 0x65, 0x70 };
static const uint8_t ed25519_name[] = { 0x13, 0x0c, 'e', 'd', 'w', 'a', 'r', 'd', 's', '2', '5', '5', '1', '9' };

/* DER DigestInfo header for SHA-256 (RFC 8017 section 9.2, note 1):
 * CKM_RSA_PKCS pads but does not hash or wrap. */
static const uint8_t sha256_info[] = {
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
        0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20,
};

static const uint8_t rsa_e65537[] = { 0x01, 0x00, 0x01 };
static const CK_BBOOL ck_true = CK_TRUE;
static const CK_BBOOL ck_false = CK_FALSE;
static const CK_OBJECT_CLASS class_private = CKO_PRIVATE_KEY;
static const CK_OBJECT_CLASS class_public = CKO_PUBLIC_KEY;
static const CK_KEY_TYPE type_rsa = CKK_RSA;
static const CK_KEY_TYPE type_eddsa = CKK_EC_EDWARDS;

static _Thread_local CK_RV last_ckr;

/* One dlopen()ed, C_Initialize()d module, shared by every struct hsm (and
 * hsm_init_token) that names it: the last user finalizes it. */
struct module {
        struct module *next;
        void *dl;
        CK_FUNCTION_LIST *p11;
        unsigned refs;
        bool finalize;           /* we initialized it, so we finalize it */
};

static pthread_mutex_t modules_lock = PTHREAD_MUTEX_INITIALIZER;
static struct module *modules;

/* A copy of the PIN for logging in again after the token was reset, in a
 * page of its own: locked (never swapped), left out of core dumps, wiped
 * and unmapped by hsm_close(). */
struct kept_pin {
        char *page;
        size_t page_size;
        size_t len;
};

struct hsm {
        struct module *mod;
        CK_FUNCTION_LIST *p11;   /* borrowed from mod */
        char *token_label;       /* to find the slot again after a reinsertion */
        CK_SLOT_ID slot;         /* guarded by lock once sessions exist */
        pthread_mutex_t lock;    /* guards admin, slot, pin and every call made on admin */
        CK_SESSION_HANDLE admin;
        bool admin_open;
        bool keep_pin;
        struct kept_pin pin;
        uint64_t recover_failed_ms;  /* when the last recovery failed, 0 if it did not */
        unsigned long recoveries;    /* sessions reopened or logins redone (atomic) */
        pthread_mutex_t sessions_lock;
        struct hsm_session *sessions;
        struct key_copies *copies;   /* NULL: sign with the token objects (hsm_key_copies) */
};

/* A private key's session-object copy, made on the admin session. */
struct key_copy {
        CK_OBJECT_HANDLE token;  /* the token object; CK_INVALID_HANDLE: a free slot */
        CK_OBJECT_HANDLE copy;   /* CK_INVALID_HANDLE: none now (it failed or vanished) */
        bool making;             /* a thread is making it: the others sign with the token object */
        bool refused;            /* the token won't copy this key: sign with the token object */
};

/* The copies signing uses, by token handle: open addressing, linear
 * probing, never more than max slots taken, so a probe always ends. */
struct key_copies {
        pthread_mutex_t lock;    /* guards the rest; h->lock is only ever tried under it */
        struct key_copy *slots;
        size_t mask;             /* slots - 1, a power of two minus one */
        size_t max;              /* slots that may hold a token handle */
        size_t used;
        bool paused;             /* copying failed: none until the next hsm_list() or login */
};

static void copies_free(struct key_copies *c)
{
        if (!c)
                return;
        pthread_mutex_destroy(&c->lock);
        free(c->slots);
        free(c);
}

struct hsm_session {
        struct hsm *h;           /* NULL once hsm_close() has closed the handle */
        CK_SESSION_HANDLE handle;
        bool broken;             /* the handle is dead: reopen before use */
        struct hsm_session *prev, *next;
};

/* A template whose values are borrowed: modules only read them. */
struct tmpl {
        CK_ATTRIBUTE a[TMPL_MAX];
        CK_ULONG n;
};

static void tmpl_add(struct tmpl *t, CK_ATTRIBUTE_TYPE type, const void *value, size_t len)
{
        assert(t->n < TMPL_MAX);
        t->a[t->n++] = (CK_ATTRIBUTE) { .type = type, .pValue = (void *) value, .ulValueLen = len };
}

/* Searches name token objects only: never the session copies of keys
 * that signing makes (see hsm_key_copies). */
static void tmpl_class(struct tmpl *t, const CK_OBJECT_CLASS *cls)
{
        tmpl_add(t, CKA_CLASS, cls, sizeof(*cls));
        tmpl_add(t, CKA_TOKEN, &ck_true, sizeof(ck_true));
}

static void freep(void *p)
{
        free(*(void **) p);
}

static void bn_clear_freep(BIGNUM **p)
{
        BN_clear_free(*p);
}

static void hsm_key_freep(struct hsm_key **p)
{
        hsm_key_free(*p);
}

static void hsm_closep(struct hsm **p)
{
        hsm_close(*p);
}

/* Remember rv for hsm_last_ckr() and map it to the error the caller can act on. */
static int ckr_fail(CK_RV rv)
{
        last_ckr = rv;
        switch (rv) {
        case CKR_HOST_MEMORY:
                return DKIMSIGN_E_NOMEM;
        case CKR_PIN_INCORRECT:
        case CKR_PIN_INVALID:
        case CKR_PIN_LEN_RANGE:
        case CKR_PIN_EXPIRED:
        case CKR_PIN_LOCKED:
        case CKR_USER_PIN_NOT_INITIALIZED:
                return DKIMSIGN_E_PIN;
        case CKR_KEY_HANDLE_INVALID:
        case CKR_OBJECT_HANDLE_INVALID:
                return DKIMSIGN_E_NO_KEY;
        case CKR_MECHANISM_INVALID:
        case CKR_MECHANISM_PARAM_INVALID:
        case CKR_KEY_SIZE_RANGE:
        case CKR_CURVE_NOT_SUPPORTED:
        case CKR_DOMAIN_PARAMS_INVALID:
                return DKIMSIGN_E_ALG;
        default:
                return DKIMSIGN_E_HSM;
        }
}

/* Signing failures are temporary (E_HSM) unless the key itself is gone or unusable. */
static int sign_fail(CK_RV rv)
{
        last_ckr = rv;
        switch (rv) {
        case CKR_KEY_HANDLE_INVALID:
        case CKR_OBJECT_HANDLE_INVALID:
        case CKR_KEY_TYPE_INCONSISTENT:
        case CKR_KEY_FUNCTION_NOT_PERMITTED:
                return DKIMSIGN_E_NO_KEY;
        default:
                return DKIMSIGN_E_HSM;
        }
}

/* ---- modules ---- */

static int module_load(const char *path, void **ret_dl, CK_FUNCTION_LIST **ret_p11)
{
        CK_C_GetFunctionList get_list;
        CK_FUNCTION_LIST *p11 = NULL;
        struct stat st;
        void *dl;
        CK_RV rv;

        /* A bare name would make dlopen() search the library path. */
        if (!path || !strchr(path, '/')) {
                errno = EINVAL;
                return DKIMSIGN_E_SYSTEM;
        }
        if (stat(path, &st) < 0)
                return DKIMSIGN_E_SYSTEM;
        if (!S_ISREG(st.st_mode)) {
                errno = ENOEXEC;
                return DKIMSIGN_E_SYSTEM;
        }
        /* RTLD_NODELETE: some modules leave threads or atexit handlers
         * behind after C_Finalize, so their code must stay mapped; it also
         * keeps the module's symbols for leak reports at exit. */
        dl = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
        if (!dl) {
                errno = ELIBBAD;
                return DKIMSIGN_E_SYSTEM;
        }
        get_list = (CK_C_GetFunctionList) dlsym(dl, "C_GetFunctionList");
        if (!get_list) {
                dlclose(dl);
                errno = ELIBBAD;
                return DKIMSIGN_E_SYSTEM;
        }
        rv = get_list(&p11);
        if (rv != CKR_OK || !p11 || p11->version.major < 2) {
                dlclose(dl);
                return ckr_fail(rv != CKR_OK ? rv : CKR_GENERAL_ERROR);
        }
        *ret_dl = dl;
        *ret_p11 = p11;
        return 0;
}

static int module_get(const char *path, struct module **ret)
{
        CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };
        CK_FUNCTION_LIST *p11 = NULL;
        struct module *m;
        void *dl = NULL;
        CK_RV rv;
        int r;

        r = module_load(path, &dl, &p11);
        if (r < 0)
                return r;

        pthread_mutex_lock(&modules_lock);
        for (m = modules; m; m = m->next)
                if (m->dl == dl)
                        break;
        if (m) {
                m->refs++;
                dlclose(dl); /* m holds a reference already */
                goto out;
        }
        m = calloc(1, sizeof(*m));
        if (!m) {
                dlclose(dl);
                r = DKIMSIGN_E_NOMEM;
                goto out;
        }
        rv = p11->C_Initialize(&args);
        /* Already initialized by someone else in this process (libp11, a
         * test): use it, but leave C_Finalize to its owner. */
        if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
                free(m);
                dlclose(dl);
                r = ckr_fail(rv);
                m = NULL;
                goto out;
        }
        m->dl = dl;
        m->p11 = p11;
        m->refs = 1;
        m->finalize = rv == CKR_OK;
        m->next = modules;
        modules = m;
out:
        pthread_mutex_unlock(&modules_lock);
        if (r < 0)
                return r;
        *ret = m;
        return 0;
}

static void module_put(struct module *m)
{
        struct module **p;

        if (!m)
                return;
        pthread_mutex_lock(&modules_lock);
        if (--m->refs == 0) {
                for (p = &modules; *p; p = &(*p)->next)
                        if (*p == m) {
                                *p = m->next;
                                break;
                        }
                if (m->finalize)
                        m->p11->C_Finalize(NULL);
                dlclose(m->dl);
                free(m);
        }
        pthread_mutex_unlock(&modules_lock);
}

/* ---- slots and tokens ---- */

static int slots_get(CK_FUNCTION_LIST *p11, CK_SLOT_ID **ret, CK_ULONG *ret_count)
{
        /* The list may grow between the two calls (SoftHSM adds a free
         * slot after C_InitToken): retry a few times. */
        for (int attempt = 0; attempt < 4; attempt++) {
                CK_SLOT_ID *slots;
                CK_ULONG n = 0, got;
                CK_RV rv;

                rv = p11->C_GetSlotList(CK_TRUE, NULL, &n);
                if (rv != CKR_OK)
                        return ckr_fail(rv);
                if (n > SLOTS_MAX)
                        return DKIMSIGN_E_TOO_LARGE;
                slots = calloc(n ? n : 1, sizeof(*slots));
                if (!slots)
                        return DKIMSIGN_E_NOMEM;
                got = n;
                rv = p11->C_GetSlotList(CK_TRUE, slots, &got);
                if (rv == CKR_BUFFER_TOO_SMALL) {
                        free(slots);
                        continue;
                }
                if (rv != CKR_OK || got > n) {
                        free(slots);
                        return ckr_fail(rv != CKR_OK ? rv : CKR_GENERAL_ERROR);
                }
                *ret = slots;
                *ret_count = got;
                return 0;
        }
        return DKIMSIGN_E_HSM;
}

static bool token_label_eq(const CK_UTF8CHAR field[TOKEN_LABEL_LEN], const char *label)
{
        size_t n = strlen(label);

        if (n > TOKEN_LABEL_LEN || memcmp(field, label, n) != 0)
                return false;
        /* Blank padded by the standard; some modules pad with NULs. */
        for (size_t i = n; i < TOKEN_LABEL_LEN; i++)
                if (field[i] != ' ' && field[i] != '\0')
                        return false;
        return true;
}

/* The first slot with an initialized token labelled label (want_free false),
 * or with an uninitialized token (want_free true).  DKIMSIGN_E_NO_TOKEN if none. */
static int slot_find(CK_FUNCTION_LIST *p11, const char *label, bool want_free, CK_SLOT_ID *ret)
{
        _cleanup_(freep) CK_SLOT_ID *slots = NULL;
        CK_ULONG n = 0;
        int r;

        r = slots_get(p11, &slots, &n);
        if (r < 0)
                return r;
        for (CK_ULONG i = 0; i < n; i++) {
                CK_TOKEN_INFO info;
                bool initialized;

                /* A slot whose token is gone or broken is simply not a match. */
                if (p11->C_GetTokenInfo(slots[i], &info) != CKR_OK)
                        continue;
                initialized = info.flags & CKF_TOKEN_INITIALIZED;
                if (want_free ? initialized : !initialized || !token_label_eq(info.label, label))
                        continue;
                *ret = slots[i];
                return 0;
        }
        return DKIMSIGN_E_NO_TOKEN;
}

/* ---- opening, login ---- */

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

int hsm_open(const char *module_path, const char *token_label, struct hsm **ret)
{
        _cleanup_(hsm_closep) struct hsm *h = NULL;
        CK_RV rv;
        int r;

        last_ckr = 0;
        if (!token_label || !ret)
                return DKIMSIGN_E_INTERNAL;
        h = calloc(1, sizeof(*h));
        if (!h)
                return DKIMSIGN_E_NOMEM;
        if (pthread_mutex_init(&h->lock, NULL) != 0 || pthread_mutex_init(&h->sessions_lock, NULL) != 0)
                abort(); /* cannot fail with default attributes on Linux */

        h->token_label = strdup(token_label);
        if (!h->token_label)
                return DKIMSIGN_E_NOMEM;
        r = module_get(module_path, &h->mod);
        if (r < 0)
                return r;
        h->p11 = h->mod->p11;
        r = slot_find(h->p11, token_label, false, &h->slot);
        if (r < 0)
                return r;

        /* Generation needs a read-write session; a write-protected token can still sign. */
        rv = h->p11->C_OpenSession(h->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &h->admin);
        if (rv == CKR_TOKEN_WRITE_PROTECTED)
                rv = h->p11->C_OpenSession(h->slot, CKF_SERIAL_SESSION, NULL, NULL, &h->admin);
        if (rv != CKR_OK)
                return ckr_fail(rv);
        h->admin_open = true;

        *ret = h;
        h = NULL;
        return 0;
}

struct hsm *hsm_close(struct hsm *h)
{
        if (!h)
                return NULL;
        if (h->mod) {
                /* Detach the sessions the caller still holds; it frees them. */
                pthread_mutex_lock(&h->sessions_lock);
                for (struct hsm_session *s = h->sessions; s; s = s->next) {
                        if (!s->broken)
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
                module_put(h->mod);
        }
        copies_free(h->copies);
        pin_forget(&h->pin);
        free(h->token_label);
        pthread_mutex_destroy(&h->sessions_lock);
        pthread_mutex_destroy(&h->lock);
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

        last_ckr = 0;
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
        return ckr_fail(rv);
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

        /* Not stdio: its buffer would keep a copy of the PIN we can't wipe. */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return DKIMSIGN_E_SYSTEM;
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

        last_ckr = 0;
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

        last_ckr = 0;
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

/* ---- session copies of the keys signing uses ----
 *
 * Signing with a token object costs SoftHSM a check of the object's file
 * (about 14 system calls) on every C_SignInit; a session object of the
 * same key does not.  So signing uses a copy of each key made with
 * C_CopyObject (CKA_TOKEN false; everything else is the key's own, and
 * PKCS#11 lets a copy be neither less sensitive nor extractable).  The
 * copies are made on the admin session, so they live as long as it, are
 * visible to every session of this process and to no other process, and
 * vanish with the process.  Their number is bounded; past it, and when a
 * copy fails, signing uses the token object as before.  Every search here
 * asks for CKA_TOKEN true (tmpl_class), so a copy is never listed or
 * found as a key of its own. */

/* The object named by a handle is gone (destroyed meanwhile). */
static bool handle_gone_obj(CK_RV rv)
{
        return rv == CKR_OBJECT_HANDLE_INVALID || rv == CKR_KEY_HANDLE_INVALID;
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

/* Refusals that concern one key (CKA_COPYABLE false, or the key is
 * gone): that key signs with its token object.  Any other refusal pauses
 * copying. */
static bool copy_refused_for_key(CK_RV rv)
{
        return rv == CKR_ACTION_PROHIBITED || handle_gone_obj(rv);
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

/* A session copy of token, or CK_INVALID_HANDLE and why in *ret_rv.
 * h->lock held. */
static CK_OBJECT_HANDLE copy_make_locked(struct hsm *h, CK_OBJECT_HANDLE token, CK_RV *ret_rv)
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
        if (rv == CKR_OK && made == CK_INVALID_HANDLE)
                rv = CKR_TEMPLATE_INCONSISTENT;
        *ret_rv = rv;
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
static CK_OBJECT_HANDLE copy_for_signing(struct hsm *h, CK_OBJECT_HANDLE token)
{
        struct key_copies *c = h->copies;
        CK_OBJECT_HANDLE use, made = CK_INVALID_HANDLE;
        struct key_copy *e;
        bool make, tried = false;
        CK_RV rv = CKR_OK;

        if (!c || token == CK_INVALID_HANDLE)
                return token;
        pthread_mutex_lock(&c->lock);
        e = copy_slot(c, token);
        use = e->copy;
        make = use == CK_INVALID_HANDLE && !e->making && !e->refused && !c->paused && copy_claim(c, e, token);
        if (make)
                e->making = true;
        pthread_mutex_unlock(&c->lock);
        if (!make)
                return use != CK_INVALID_HANDLE ? use : token;

        /* Busy (a listing): no copy this time, and no pause. */
        if (pthread_mutex_trylock(&h->lock) == 0) {
                made = copy_make_locked(h, token, &rv);
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
                if (copy_refused_for_key(rv) && copy_claim(c, e, token))
                        e->refused = true;
                else if (!copy_refused_for_key(rv))
                        c->paused = true;
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
static void copy_gone(struct hsm *h, CK_OBJECT_HANDLE token, CK_OBJECT_HANDLE copy)
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
 * them.  The table is swapped for an empty one under c->lock, and the old
 * copies destroyed after it, so signing goes on meanwhile (with the token
 * objects: no copy can be made while h->lock is held).  h->lock held. */
static void copies_reset_locked(struct hsm *h, bool destroy)
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
static void copy_destroy_locked(struct hsm *h, CK_OBJECT_HANDLE token)
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

/* ---- recovery after a token fault ---- */

static uint64_t now_ms(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

/* The handle no longer names a session: never close it (the module may
 * already have given its number to a new session). */
static bool handle_gone(CK_RV rv)
{
        return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED || rv == CKR_DEVICE_REMOVED ||
               rv == CKR_TOKEN_NOT_PRESENT;
}

/* Failures after which the session, or the login, is gone: the token was
 * reset, removed and reinserted, or logged out under us.  A new session
 * (and login) makes signing work again, so the request is retried once. */
static bool session_lost(CK_RV rv)
{
        return handle_gone(rv) || rv == CKR_TOKEN_NOT_RECOGNIZED || rv == CKR_USER_NOT_LOGGED_IN;
}

static bool logged_in(const CK_SESSION_INFO *info)
{
        return info->state == CKS_RO_USER_FUNCTIONS || info->state == CKS_RW_USER_FUNCTIONS;
}

/* Open a session, finding the token's slot again if it moved on
 * reinsertion.  h->lock held. */
static CK_RV session_open_locked(struct hsm *h, CK_FLAGS flags, CK_SESSION_HANDLE *ret)
{
        CK_RV rv = h->p11->C_OpenSession(h->slot, flags, NULL, NULL, ret);
        CK_SLOT_ID slot;

        if (rv != CKR_SLOT_ID_INVALID && rv != CKR_TOKEN_NOT_PRESENT && rv != CKR_DEVICE_REMOVED &&
            rv != CKR_TOKEN_NOT_RECOGNIZED)
                return rv;
        if (slot_find(h->p11, h->token_label, false, &slot) < 0 || slot == h->slot)
                return rv;
        h->slot = slot;
        return h->p11->C_OpenSession(h->slot, flags, NULL, NULL, ret);
}

/* Make sure the application is logged in, with a live admin session;
 * log in again with the kept PIN when the login is gone.  h->lock held. */
static CK_RV login_restore_locked(struct hsm *h)
{
        CK_SESSION_HANDLE n;
        CK_SESSION_INFO info;
        CK_RV rv;

        rv = h->p11->C_GetSessionInfo(h->admin, &info);
        if (rv == CKR_OK && logged_in(&info))
                return CKR_OK;
        /* The key copies went with the admin session or with the login
         * (private session objects end at logout). */
        copies_reset_locked(h, false);
        if (rv != CKR_OK) {
                if (h->admin_open && !handle_gone(rv))
                        h->p11->C_CloseSession(h->admin);
                h->admin_open = false;
                rv = session_open_locked(h, CKF_SERIAL_SESSION | CKF_RW_SESSION, &n);
                if (rv == CKR_TOKEN_WRITE_PROTECTED)
                        rv = session_open_locked(h, CKF_SERIAL_SESSION, &n);
                if (rv != CKR_OK)
                        return rv;
                h->admin = n;
                h->admin_open = true;
                /* Another session of ours may still hold the login. */
                if (h->p11->C_GetSessionInfo(h->admin, &info) == CKR_OK && logged_in(&info))
                        return CKR_OK;
        }
        if (!h->pin.page)
                return CKR_USER_NOT_LOGGED_IN;
        rv = h->p11->C_Login(h->admin, CKU_USER, (CK_UTF8CHAR *) h->pin.page, h->pin.len);
        return rv == CKR_USER_ALREADY_LOGGED_IN ? CKR_OK : rv;
}

/* ---- token initialization ---- */

static int token_init(CK_FUNCTION_LIST *p11, CK_SLOT_ID slot, const char *label, char *so_pin,
                      size_t so_pin_len, char *user_pin, size_t user_pin_len)
{
        CK_UTF8CHAR padded[TOKEN_LABEL_LEN];
        CK_SESSION_HANDLE s;
        CK_RV rv;

        memset(padded, ' ', sizeof(padded));
        memcpy(padded, label, strlen(label));
        rv = p11->C_InitToken(slot, (CK_UTF8CHAR *) so_pin, so_pin_len, padded);
        if (rv != CKR_OK)
                return ckr_fail(rv);
        rv = p11->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
        if (rv != CKR_OK)
                return ckr_fail(rv);
        rv = p11->C_Login(s, CKU_SO, (CK_UTF8CHAR *) so_pin, so_pin_len);
        if (rv == CKR_OK) {
                rv = p11->C_InitPIN(s, (CK_UTF8CHAR *) user_pin, user_pin_len);
                p11->C_Logout(s);
        }
        p11->C_CloseSession(s);
        return rv == CKR_OK ? 0 : ckr_fail(rv);
}

int hsm_init_token(const char *module_path, const char *label, char *so_pin, size_t so_pin_len,
                   char *user_pin, size_t user_pin_len)
{
        struct module *m = NULL;
        CK_SLOT_ID slot;
        int r;

        last_ckr = 0;
        if (!label || !so_pin || !user_pin) {
                r = DKIMSIGN_E_INTERNAL;
                goto out;
        }
        if (strlen(label) > TOKEN_LABEL_LEN) {
                r = DKIMSIGN_E_TOO_LARGE;
                goto out;
        }
        r = module_get(module_path, &m);
        if (r < 0)
                goto out;
        r = slot_find(m->p11, label, false, &slot);
        if (r == 0)
                r = DKIMSIGN_E_EXISTS;
        if (r != DKIMSIGN_E_NO_TOKEN)
                goto out;
        r = slot_find(m->p11, NULL, true, &slot);
        if (r < 0)
                goto out;
        r = token_init(m->p11, slot, label, so_pin, so_pin_len, user_pin, user_pin_len);
out:
        if (so_pin)
                OPENSSL_cleanse(so_pin, so_pin_len);
        if (user_pin)
                OPENSSL_cleanse(user_pin, user_pin_len);
        module_put(m);
        return r;
}

/* ---- names ---- */

struct hsm_key *hsm_key_free(struct hsm_key *key)
{
        if (!key)
                return NULL;
        free(key->label);
        EVP_PKEY_free(key->pubkey);
        free(key);
        return NULL;
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

static int label_check(const char *label)
{
        if (!label)
                return DKIMSIGN_E_INTERNAL;
        if (label[0] == '\0')
                return DKIMSIGN_E_FORMAT;
        if (strnlen(label, HSM_LABEL_MAX + 1) > HSM_LABEL_MAX)
                return DKIMSIGN_E_TOO_LARGE;
        return 0;
}

/* ---- dates ---- */

/* Today in UTC as a CK_DATE (ASCII digits, no NUL). */
static void date_today(CK_DATE *ret)
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
static bool date_refused(CK_RV rv)
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
                return ckr_fail(rv);
        if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen > cap)
                return DKIMSIGN_E_TOO_LARGE;
        want = a.ulValueLen;
        a.pValue = buf;
        rv = h->p11->C_GetAttributeValue(h->admin, obj, &a, 1);
        if (rv != CKR_OK)
                return ckr_fail(rv);
        if (a.ulValueLen > want)
                return DKIMSIGN_E_HSM;
        *ret_len = a.ulValueLen;
        return 0;
}

static int attr_ulong(struct hsm *h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type, CK_ULONG *ret)
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
static int attr_label(struct hsm *h, CK_OBJECT_HANDLE obj, char **ret)
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

/*
 * Several attributes of obj in one call, each into its caller-sized buffer
 * (a[i].pValue, a[i].ulValueLen = its capacity): a token with many keys
 * answers a key's description in two or three calls instead of twenty.
 * An attribute the object does not have, or keeps sensitive, comes back
 * with ulValueLen CK_UNAVAILABLE_INFORMATION (PKCS#11 2.40 5.7: the others
 * are still filled); one larger than its buffer is DKIMSIGN_E_TOO_LARGE.
 */
#define ATTRS_MAX 8   /* attributes one attrs_read asks for */

static bool attr_present(const CK_ATTRIBUTE *a)
{
        return a->ulValueLen != CK_UNAVAILABLE_INFORMATION;
}

static int attrs_read(struct hsm *h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE *a, CK_ULONG n)
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
                r = ckr_fail(rv);
        /* A module that says it wrote more than the buffer holds is broken:
         * no length from it is used past what was given. */
        for (CK_ULONG i = 0; r == 0 && i < n; i++)
                if (attr_present(&a[i]) && a[i].ulValueLen > cap[i])
                        r = DKIMSIGN_E_HSM;
        /* After a failure the lengths are the module's, not the buffers':
         * put the capacities back, so a read again of a is bounded too. */
        for (CK_ULONG i = 0; r < 0 && i < n; i++)
                a[i].ulValueLen = cap[i];
        return r;
}

/* A CK_BBOOL read by attrs_read; a missing or odd-sized one is malformed. */
static int attr_got_bool(const CK_ATTRIBUTE *a, bool *ret)
{
        if (!attr_present(a) || a->ulValueLen != sizeof(CK_BBOOL))
                return DKIMSIGN_E_HSM;
        *ret = *(const CK_BBOOL *) a->pValue != CK_FALSE;
        return 0;
}

/* A date read by attrs_read as "YYYYMMDD" into ret; "" when missing, all
 * zeros or not digits (nothing a date can be read from). */
static void attr_got_date(const CK_ATTRIBUTE *a, char ret[HSM_DATE_LEN + 1])
{
        const char *d = a->pValue;
        bool digits = true, zero = true;

        static_assert(sizeof(CK_DATE) == HSM_DATE_LEN, "CK_DATE is YYYYMMDD");
        static_assert(ED25519_LEN == HSM_ED25519_PUB_LEN, "an Ed25519 public key is 32 octets");
        ret[0] = '\0';
        if (!attr_present(a) || a->ulValueLen != HSM_DATE_LEN)
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
static int attr_date(struct hsm *h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type, char ret[HSM_DATE_LEN + 1])
{
        uint8_t buf[16];
        CK_ATTRIBUTE a = { type, buf, sizeof(buf) };
        int r = attrs_read(h, obj, &a, 1);

        ret[0] = '\0';
        if (r == DKIMSIGN_E_TOO_LARGE)
                return 0;
        if (r == 0)
                attr_got_date(&a, ret);
        return r;
}

/* ---- objects (admin session, h->lock held) ---- */

/* Up to max handles matching t; the search is always finalized. */
static int objects_find(struct hsm *h, struct tmpl *t, CK_OBJECT_HANDLE *out, CK_ULONG max, CK_ULONG *ret_count)
{
        CK_ULONG count = 0;
        CK_RV rv;

        rv = h->p11->C_FindObjectsInit(h->admin, t->a, t->n);
        if (rv != CKR_OK)
                return ckr_fail(rv);
        rv = h->p11->C_FindObjects(h->admin, out, max, &count);
        h->p11->C_FindObjectsFinal(h->admin);
        if (rv != CKR_OK)
                return ckr_fail(rv);
        if (count > max)
                return DKIMSIGN_E_HSM;
        *ret_count = count;
        return 0;
}

/* Every handle matching t, at most max, in an owned array. */
static int objects_find_all(struct hsm *h, struct tmpl *t, CK_OBJECT_HANDLE **ret, size_t *ret_count, size_t max)
{
        _cleanup_(freep) CK_OBJECT_HANDLE *all = NULL;
        size_t count = 0, size = 0;
        CK_RV rv;
        int r = 0;

        rv = h->p11->C_FindObjectsInit(h->admin, t->a, t->n);
        if (rv != CKR_OK)
                return ckr_fail(rv);
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
                        r = ckr_fail(rv);
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

static void objects_destroy(struct hsm *h, CK_OBJECT_HANDLE priv, CK_OBJECT_HANDLE pub)
{
        if (priv != CK_INVALID_HANDLE)
                h->p11->C_DestroyObject(h->admin, priv);
        if (pub != CK_INVALID_HANDLE)
                h->p11->C_DestroyObject(h->admin, pub);
}

/* DKIMSIGN_E_EXISTS if a private key already carries label. */
static int label_unused(struct hsm *h, const char *label)
{
        struct tmpl t = { 0 };
        CK_OBJECT_HANDLE obj;
        CK_ULONG n;
        int r;

        tmpl_class(&t, &class_private);
        tmpl_add(&t, CKA_LABEL, label, strlen(label));
        r = objects_find(h, &t, &obj, 1, &n);
        if (r < 0)
                return r;
        return n > 0 ? DKIMSIGN_E_EXISTS : 0;
}

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

/* pub_data from what attrs_read left in the n attributes pub_attrs made. */
static void pub_data_got(const CK_ATTRIBUTE *a, CK_ULONG n, struct pub_data *p)
{
        const uint8_t **value[] = { &p->point, &p->n, &p->e };
        size_t *len[] = { &p->point_len, &p->n_len, &p->e_len };

        *p = (struct pub_data) { 0 };
        for (size_t i = 0; i < 3; i++)
                if (attr_present(&a[i])) {
                        *value[i] = a[i].pValue;
                        *len[i] = a[i].ulValueLen;
                }
        if (n == PUB_ATTRS) {
                attr_got_date(&a[3], p->created);
                attr_got_date(&a[4], p->retired);
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

/* Label (NUL-free) and CKA_ID as read by attrs_read into name. */
static int key_name_from(const CK_ATTRIBUTE *label, const CK_ATTRIBUTE *id, struct key_name *name)
{
        if (!attr_present(label) || label->ulValueLen > HSM_LABEL_MAX ||
            memchr(label->pValue, '\0', label->ulValueLen))
                return DKIMSIGN_E_FORMAT;
        name->label[label->ulValueLen] = '\0';
        /* CKA_ID defaults to empty. */
        name->id_len = attr_present(id) ? id->ulValueLen : 0;
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
        int r = attrs_read(h, obj, a, n);

        /* SoftHSM 2.6.1 fails every read of a private object that carries
         * dates (see hsm.h), which another tool may have set: then the
         * class and name alone. */
        if (r < 0 && r != DKIMSIGN_E_TOO_LARGE) {
                n = 3;
                r = attrs_read(h, obj, a, n);
        }
        /* Gone since the search (another process destroyed it), or too
         * large for any key of ours: not in the listing.  Any other
         * failure fails it, for a key left out by a passing token error
         * would stop signing for its domain. */
        if (r == DKIMSIGN_E_TOO_LARGE || (r < 0 && handle_gone_obj(last_ckr)))
                return 0;
        if (r < 0)
                return r;
        if (!attr_present(&a[0]) || a[0].ulValueLen != sizeof(cls))
                return 0;
        /* Every key has a CKA_ID, empty by default: one the module could
         * not give (too large, when it reports that as absent) would file
         * the key under the wrong name. */
        if (!attr_present(&a[2]))
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

        tmpl_add(&t, CKA_TOKEN, &ck_true, sizeof(ck_true));
        r = objects_find_all(h, &t, &objs, &n, OBJECTS_MAX);
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
        tmpl_class(&t, &class_public);
        tmpl_add(&t, CKA_LABEL, name->label, strlen(name->label));
        tmpl_add(&t, CKA_ID, name->id, name->id_len);
        r = objects_find(h, &t, &pub, 1, &n);
        if (r < 0)
                return r;
        *ret = n > 0 ? pub : CK_INVALID_HANDLE;
        return 0;
}

/* The private key's own attributes, in one read: algorithm, name and how
 * it was made. */
static int key_private_read(struct hsm *h, struct hsm_key *key, struct key_name *name)
{
        CK_ULONG type = 0;
        uint8_t params[EC_PARAMS_MAX];
        CK_BBOOL local, sensitive, never_extractable;
        CK_ATTRIBUTE a[] = {
                { CKA_KEY_TYPE, &type, sizeof(type) },
                { CKA_LABEL, name->label, HSM_LABEL_MAX },
                { CKA_ID, name->id, sizeof(name->id) },
                { CKA_LOCAL, &local, sizeof(local) },
                { CKA_ALWAYS_SENSITIVE, &sensitive, sizeof(sensitive) },
                { CKA_NEVER_EXTRACTABLE, &never_extractable, sizeof(never_extractable) },
                /* Only an EdDSA key has it (CKK_EC_EDWARDS is also Ed448). */
                { CKA_EC_PARAMS, params, sizeof(params) },
        };
        int r = attrs_read(h, key->priv, a, sizeof(a) / sizeof(a[0]));

        if (r < 0)
                return r;
        if (!attr_present(&a[0]) || a[0].ulValueLen != sizeof(type))
                return DKIMSIGN_E_HSM;
        if (type == CKK_RSA)
                key->alg = HSM_ALG_RSA;
        else if (type == CKK_EC_EDWARDS && attr_present(&a[6]) && ed25519_params(params, a[6].ulValueLen))
                key->alg = HSM_ALG_ED25519;
        else
                return DKIMSIGN_E_ALG;
        r = key_name_from(&a[1], &a[2], name);
        if (r == 0)
                r = attr_got_bool(&a[3], &key->local);
        if (r == 0)
                r = attr_got_bool(&a[4], &key->always_sensitive);
        if (r == 0)
                r = attr_got_bool(&a[5], &key->never_extractable);
        if (r < 0)
                return r;
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
        r = attrs_read(h, from_pub ? key->pub : key->priv, a, n);
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

/* The attributes of every private key made here: a token object that signs
 * and can never be read, unwrapped into or used for anything else. */
static void tmpl_private(struct tmpl *t, const char *label, const uint8_t id[KEY_ID_LEN])
{
        tmpl_add(t, CKA_TOKEN, &ck_true, sizeof(ck_true));
        tmpl_add(t, CKA_PRIVATE, &ck_true, sizeof(ck_true));
        tmpl_add(t, CKA_SENSITIVE, &ck_true, sizeof(ck_true));
        tmpl_add(t, CKA_EXTRACTABLE, &ck_false, sizeof(ck_false));
        tmpl_add(t, CKA_SIGN, &ck_true, sizeof(ck_true));
        tmpl_add(t, CKA_SIGN_RECOVER, &ck_false, sizeof(ck_false));
        tmpl_add(t, CKA_DECRYPT, &ck_false, sizeof(ck_false));
        tmpl_add(t, CKA_UNWRAP, &ck_false, sizeof(ck_false));
        tmpl_add(t, CKA_DERIVE, &ck_false, sizeof(ck_false));
        tmpl_add(t, CKA_LABEL, label, strlen(label));
        tmpl_add(t, CKA_ID, id, KEY_ID_LEN);
}

static void tmpl_public(struct tmpl *t, const char *label, const uint8_t id[KEY_ID_LEN])
{
        tmpl_add(t, CKA_TOKEN, &ck_true, sizeof(ck_true));
        tmpl_add(t, CKA_PRIVATE, &ck_false, sizeof(ck_false));
        tmpl_add(t, CKA_VERIFY, &ck_true, sizeof(ck_true));
        tmpl_add(t, CKA_VERIFY_RECOVER, &ck_false, sizeof(ck_false));
        tmpl_add(t, CKA_ENCRYPT, &ck_false, sizeof(ck_false));
        tmpl_add(t, CKA_WRAP, &ck_false, sizeof(ck_false));
        tmpl_add(t, CKA_DERIVE, &ck_false, sizeof(ck_false));
        tmpl_add(t, CKA_LABEL, label, strlen(label));
        tmpl_add(t, CKA_ID, id, KEY_ID_LEN);
}

static int keypair_generate(struct hsm *h, const char *label, enum hsm_alg alg, CK_ULONG bits,
                            const uint8_t id[KEY_ID_LEN], CK_OBJECT_HANDLE *ret_priv, CK_OBJECT_HANDLE *ret_pub)
{
        CK_MECHANISM mech = { 0 };
        struct tmpl pub = { 0 }, priv = { 0 };
        CK_OBJECT_HANDLE hpub, hpriv;
        CK_DATE today;
        CK_RV rv;

        tmpl_public(&pub, label, id);
        tmpl_private(&priv, label, id);
        if (alg == HSM_ALG_RSA) {
                mech.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
                tmpl_add(&pub, CKA_MODULUS_BITS, &bits, sizeof(bits));
                tmpl_add(&pub, CKA_PUBLIC_EXPONENT, rsa_e65537, sizeof(rsa_e65537));
        } else {
                mech.mechanism = CKM_EC_EDWARDS_KEY_PAIR_GEN;
                tmpl_add(&pub, CKA_EC_PARAMS, ed25519_oid, sizeof(ed25519_oid));
        }
        date_today(&today);
        tmpl_add(&pub, CKA_START_DATE, &today, sizeof(today));
        rv = h->p11->C_GenerateKeyPair(h->admin, &mech, pub.a, pub.n, priv.a, priv.n, &hpub, &hpriv);
        /* A token that keeps no dates still makes keys: without "created". */
        if (date_refused(rv)) {
                pub.n--;
                rv = h->p11->C_GenerateKeyPair(h->admin, &mech, pub.a, pub.n, priv.a, priv.n, &hpub, &hpriv);
        }
        if (rv != CKR_OK)
                return ckr_fail(rv);
        *ret_priv = hpriv;
        *ret_pub = hpub;
        return 0;
}

int hsm_generate(struct hsm *h, const char *label, enum hsm_alg alg, unsigned bits, struct hsm_key **ret)
{
        CK_OBJECT_HANDLE priv = CK_INVALID_HANDLE, pub = CK_INVALID_HANDLE;
        struct hsm_key *key = NULL;
        uint8_t id[KEY_ID_LEN];
        int r;

        last_ckr = 0;
        if (!h || !ret)
                return DKIMSIGN_E_INTERNAL;
        r = label_check(label);
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
        r = label_unused(h, label);
        if (r == 0)
                r = keypair_generate(h, label, alg, bits, id, &priv, &pub);
        if (r == 0) {
                r = key_load(h, priv, pub, NULL, &key);
                /* Leave nothing half made behind. */
                if (r < 0)
                        objects_destroy(h, priv, pub);
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
                return ckr_fail(rv);
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
        if (r < 0)
                return r;
        date_today(&today);
        tmpl_add(pub, CKA_START_DATE, &today, sizeof(today));
        r = object_create(h, pub, &hpub);
        if (r < 0 && date_refused(last_ckr)) {
                pub->n--;
                r = object_create(h, pub, &hpub);
        }
        if (r < 0) {
                objects_destroy(h, hpriv, CK_INVALID_HANDLE);
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
                tmpl_add(&priv, CKA_CLASS, &class_private, sizeof(class_private));
                tmpl_add(&priv, CKA_KEY_TYPE, &type_rsa, sizeof(type_rsa));
                tmpl_private(&priv, label, id);
                for (size_t i = 0; i < RSA_PARTS; i++)
                        tmpl_add(&priv, rsa_parts[i].type, b.v[i], b.len[i]);
                tmpl_add(&pub, CKA_CLASS, &class_public, sizeof(class_public));
                tmpl_add(&pub, CKA_KEY_TYPE, &type_rsa, sizeof(type_rsa));
                tmpl_public(&pub, label, id);
                tmpl_add(&pub, CKA_MODULUS, b.v[0], b.len[0]);
                tmpl_add(&pub, CKA_PUBLIC_EXPONENT, b.v[1], b.len[1]);
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
        struct tmpl priv = { 0 }, pub = { 0 };
        int r = DKIMSIGN_E_FORMAT;

        if (EVP_PKEY_get_raw_private_key(pkey, seed, &seed_len) != 1 || seed_len != ED25519_LEN ||
            EVP_PKEY_get_raw_public_key(pkey, point + 2, &pub_len) != 1 || pub_len != ED25519_LEN)
                goto out;
        tmpl_add(&priv, CKA_CLASS, &class_private, sizeof(class_private));
        tmpl_add(&priv, CKA_KEY_TYPE, &type_eddsa, sizeof(type_eddsa));
        tmpl_private(&priv, label, id);
        tmpl_add(&priv, CKA_EC_PARAMS, ed25519_oid, sizeof(ed25519_oid));
        tmpl_add(&priv, CKA_VALUE, seed, sizeof(seed));
        tmpl_add(&pub, CKA_CLASS, &class_public, sizeof(class_public));
        tmpl_add(&pub, CKA_KEY_TYPE, &type_eddsa, sizeof(type_eddsa));
        tmpl_public(&pub, label, id);
        tmpl_add(&pub, CKA_EC_PARAMS, ed25519_oid, sizeof(ed25519_oid));
        /* The DER OCTET STRING form, as SoftHSM and PKCS#11 2.40 write it. */
        tmpl_add(&pub, CKA_EC_POINT, point, sizeof(point));
        r = pair_create(h, &priv, &pub, ret_priv, ret_pub);
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

        last_ckr = 0;
        if (!h || !pkey || !ret)
                return DKIMSIGN_E_INTERNAL;
        r = label_check(label);
        if (r < 0)
                return r;
        r = import_alg(pkey, &alg);
        if (r < 0)
                return r;
        if (RAND_bytes(id, sizeof(id)) != 1)
                return DKIMSIGN_E_INTERNAL;

        pthread_mutex_lock(&h->lock);
        r = label_unused(h, label);
        if (r == 0)
                r = alg == HSM_ALG_RSA ? rsa_import(h, label, pkey, id, &priv, &pub)
                                       : ed25519_import(h, label, pkey, id, &priv, &pub);
        if (r == 0) {
                r = key_load(h, priv, pub, NULL, &key);
                if (r < 0)
                        objects_destroy(h, priv, pub);
        }
        pthread_mutex_unlock(&h->lock);
        if (r < 0)
                return r;
        *ret = key;
        return 0;
}

/* ---- find, list, destroy ---- */

int hsm_find(struct hsm *h, const char *label, struct hsm_key **ret)
{
        struct hsm_key *key = NULL;
        struct tmpl t = { 0 };
        CK_OBJECT_HANDLE objs[2];
        CK_ULONG n = 0;
        int r;

        last_ckr = 0;
        if (!h || !ret)
                return DKIMSIGN_E_INTERNAL;
        r = label_check(label);
        if (r < 0)
                return r;
        tmpl_class(&t, &class_private);
        tmpl_add(&t, CKA_LABEL, label, strlen(label));

        pthread_mutex_lock(&h->lock);
        r = objects_find(h, &t, objs, 2, &n);
        /* Two keys under one label: signing with either would be a guess. */
        if (r == 0 && n != 1)
                r = n == 0 ? DKIMSIGN_E_NO_KEY : DKIMSIGN_E_EXISTS;
        if (r == 0)
                r = key_load(h, objs[0], CK_INVALID_HANDLE, NULL, &key);
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

static int key_cmp(const void *a, const void *b)
{
        const struct hsm_key *x = *(struct hsm_key *const *) a, *y = *(struct hsm_key *const *) b;
        int c = strcmp(x->label, y->label);

        return c != 0 ? c : (int) x->alg - (int) y->alg;
}

/* Every key pair in index, into keys (room for index->nprivs): keys the
 * daemon can't use (another algorithm, a malformed object) are left out. */
static int keys_load(struct hsm *h, const struct obj_index *index, struct hsm_key **keys, size_t *ret_count)
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
                count++;
        }
        *ret_count = count;
        return 0;
}

int hsm_list(struct hsm *h, struct hsm_key ***ret, size_t *ret_count)
{
        struct obj_index index = { 0 };
        struct hsm_key **keys = NULL;
        size_t count = 0;
        int r;

        last_ckr = 0;
        if (!h || !ret || !ret_count)
                return DKIMSIGN_E_INTERNAL;

        pthread_mutex_lock(&h->lock);
        /* A new listing, a new key table: copies of keys no longer listed
         * (destroyed, or the old generation's) take no room. */
        copies_reset_locked(h, true);
        r = obj_index_load(h, &index);
        /* After a token reset the admin session or the login may be gone. */
        if (r == DKIMSIGN_E_HSM && session_lost(last_ckr) && login_restore_locked(h) == CKR_OK)
                r = obj_index_load(h, &index);
        if (r == 0) {
                keys = calloc(index.nprivs ? index.nprivs : 1, sizeof(*keys));
                r = keys ? keys_load(h, &index, keys, &count) : DKIMSIGN_E_NOMEM;
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

/* A handle may be stale: make sure it is still the object the caller means. */
static int handle_check(struct hsm *h, CK_OBJECT_HANDLE obj, CK_OBJECT_CLASS cls, const char *label)
{
        _cleanup_(freep) char *l = NULL;
        CK_ULONG c;
        int r;

        r = attr_ulong(h, obj, CKA_CLASS, &c);
        if (r == 0)
                r = attr_label(h, obj, &l);
        if (r == DKIMSIGN_E_NO_KEY || (r == 0 && (c != cls || strcmp(l, label) != 0)))
                return DKIMSIGN_E_NO_KEY;
        return r;
}

int hsm_destroy(struct hsm *h, const struct hsm_key *key)
{
        CK_RV rv;
        int r;

        last_ckr = 0;
        if (!h || !key || !key->label)
                return DKIMSIGN_E_INTERNAL;
        pthread_mutex_lock(&h->lock);
        r = handle_check(h, key->priv, CKO_PRIVATE_KEY, key->label);
        if (r == 0 && key->pub != CK_INVALID_HANDLE)
                r = handle_check(h, key->pub, CKO_PUBLIC_KEY, key->label);
        /* Private half first: once it is gone the key can't sign, whatever
         * follows; its copy goes too, or signing would go on with it. */
        if (r == 0) {
                copy_destroy_locked(h, key->priv);
                rv = h->p11->C_DestroyObject(h->admin, key->priv);
                if (rv != CKR_OK)
                        r = ckr_fail(rv);
        }
        if (r == 0 && key->pub != CK_INVALID_HANDLE) {
                rv = h->p11->C_DestroyObject(h->admin, key->pub);
                if (rv != CKR_OK)
                        r = ckr_fail(rv);
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

        last_ckr = 0;
        if (!h || !key || !key->label)
                return DKIMSIGN_E_INTERNAL;
        if (key->pub == CK_INVALID_HANDLE)
                return DKIMSIGN_E_FORMAT;
        date_today(&today);
        memcpy(end, &today, HSM_DATE_LEN);
        end[HSM_DATE_LEN] = '\0';
        pthread_mutex_lock(&h->lock);
        r = handle_check(h, key->priv, CKO_PRIVATE_KEY, key->label);
        if (r == 0)
                r = handle_check(h, key->pub, CKO_PUBLIC_KEY, key->label);
        if (r == 0)
                r = attr_date(h, key->pub, CKA_END_DATE, check);
        if (r == 0 && check[0])
                r = DKIMSIGN_E_EXISTS;
        if (r == 0) {
                rv = h->p11->C_SetAttributeValue(h->admin, key->pub, &a, 1);
                if (rv != CKR_OK)
                        r = ckr_fail(rv);
        }
        /* A token that takes the date but does not keep it would leave the
         * key signing while the admin thinks it retired. */
        if (r == 0)
                r = attr_date(h, key->pub, CKA_END_DATE, check);
        if (r == 0 && strcmp(check, end) != 0)
                r = DKIMSIGN_E_HSM;
        pthread_mutex_unlock(&h->lock);
        return r;
}

/* ---- signing sessions ---- */

int hsm_session_open(struct hsm *h, struct hsm_session **ret)
{
        struct hsm_session *s;
        CK_RV rv;

        last_ckr = 0;
        if (!h || !ret)
                return DKIMSIGN_E_INTERNAL;
        s = calloc(1, sizeof(*s));
        if (!s)
                return DKIMSIGN_E_NOMEM;
        /* Login state is per process and token: the new session is logged in already. */
        pthread_mutex_lock(&h->lock);
        rv = session_open_locked(h, CKF_SERIAL_SESSION, &s->handle);
        pthread_mutex_unlock(&h->lock);
        if (rv != CKR_OK) {
                free(s);
                return ckr_fail(rv);
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
                if (!s->broken)
                        h->p11->C_CloseSession(s->handle);
                pthread_mutex_unlock(&h->sessions_lock);
        }
        free(s);
        return NULL;
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
        CK_RV rv;

        pthread_mutex_lock(&h->lock);
        if (h->recover_failed_ms && now - h->recover_failed_ms < RECOVER_BACKOFF_MS) {
                pthread_mutex_unlock(&h->lock);
                return sign_fail(why);
        }
        if (why == CKR_USER_NOT_LOGGED_IN && !s->broken) {
                rv = login_restore_locked(h);
        } else {
                pthread_mutex_lock(&h->sessions_lock);
                if (!s->broken && !handle_gone(why))
                        h->p11->C_CloseSession(s->handle);
                s->broken = true;
                pthread_mutex_unlock(&h->sessions_lock);
                rv = session_open_locked(h, CKF_SERIAL_SESSION, &n);
                if (rv == CKR_OK) {
                        pthread_mutex_lock(&h->sessions_lock);
                        s->handle = n;
                        s->broken = false;
                        pthread_mutex_unlock(&h->sessions_lock);
                        rv = h->p11->C_GetSessionInfo(n, &info);
                        if (rv == CKR_OK && !logged_in(&info))
                                rv = login_restore_locked(h);
                }
        }
        if (rv == CKR_OK) {
                h->recover_failed_ms = 0;
                __atomic_add_fetch(&h->recoveries, 1, __ATOMIC_RELAXED);
        } else {
                h->recover_failed_ms = now ? now : 1;
        }
        pthread_mutex_unlock(&h->lock);
        return rv == CKR_OK ? 0 : sign_fail(rv);
}

/* The private key's handle may change when the token is logged in again
 * (SoftHSM renumbers private objects on login): find it by label. */
static CK_RV key_refind(struct hsm_session *s, const struct hsm_key *key, CK_OBJECT_HANDLE *ret)
{
        CK_OBJECT_HANDLE found[2];
        struct tmpl t = { 0 };
        CK_ULONG count = 0;
        CK_RV rv;

        tmpl_class(&t, &class_private);
        tmpl_add(&t, CKA_LABEL, key->label, strlen(key->label));
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

static CK_RV sign_call(struct hsm_session *s, CK_MECHANISM *mech, CK_OBJECT_HANDLE key, uint8_t *in,
                       CK_ULONG in_len, uint8_t sig[HSM_SIG_MAX], CK_ULONG *ret_len)
{
        CK_RV rv;

        *ret_len = HSM_SIG_MAX;
        rv = s->h->p11->C_SignInit(s->handle, mech, key);
        if (rv == CKR_OK)
                rv = s->h->p11->C_Sign(s->handle, in, in_len, sig, ret_len);
        /* A C_Sign that failed with CKR_BUFFER_TOO_SMALL leaves the
         * operation active, and PKCS#11 2.40 has no way to cancel it but a
         * new session: the next request gets one. */
        if (rv == CKR_BUFFER_TOO_SMALL || rv == CKR_OPERATION_ACTIVE)
                s->broken = true;
        return rv;
}

int hsm_sign(struct hsm_session *s, const struct hsm_key *key, const uint8_t digest[32],
             uint8_t sig[HSM_SIG_MAX], size_t *ret_len)
{
        uint8_t in[sizeof(sha256_info) + 32];
        CK_MECHANISM mech = { 0 };
        CK_OBJECT_HANDLE priv, use;
        CK_ULONG in_len, len = HSM_SIG_MAX;
        size_t want;
        CK_RV rv;
        int r;

        last_ckr = 0;
        if (!s || !key || !digest || !sig || !ret_len)
                return DKIMSIGN_E_INTERNAL;
        if (!s->h)
                return DKIMSIGN_E_HSM;
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

        if (s->broken) {
                r = session_recover(s, CKR_SESSION_HANDLE_INVALID);
                if (r < 0)
                        return r;
        }
        /* Workers share the key table; the handle is refreshed in place. */
        priv = __atomic_load_n(&key->priv, __ATOMIC_RELAXED);
        use = copy_for_signing(s->h, priv);
        rv = sign_call(s, &mech, use, in, in_len, sig, &len);
        /* The copy is gone (token reset, lost login, listing): the key itself. */
        if (use != priv && handle_gone_obj(rv)) {
                copy_gone(s->h, priv, use);
                rv = sign_call(s, &mech, priv, in, in_len, sig, &len);
        }
        /* Signing is idempotent: after a lost session or login, once more. */
        if (session_lost(rv)) {
                r = session_recover(s, rv);
                if (r < 0)
                        return r;
                rv = sign_call(s, &mech, priv, in, in_len, sig, &len);
        }
        /* A module that hides private objects from a session that is not
         * logged in (SoftHSM) says "no such key" rather than "not logged
         * in": log in again first, then look the key up. */
        if (handle_gone_obj(rv)) {
                CK_SESSION_INFO info;

                if (s->h->p11->C_GetSessionInfo(s->handle, &info) == CKR_OK && !logged_in(&info)) {
                        r = session_recover(s, CKR_USER_NOT_LOGGED_IN);
                        if (r < 0)
                                return r;
                }
                if (key_refind(s, key, &priv) == CKR_OK) {
                        __atomic_store_n((unsigned long *) &key->priv, priv, __ATOMIC_RELAXED);
                        rv = sign_call(s, &mech, priv, in, in_len, sig, &len);
                }
        }
        if (rv != CKR_OK)
                return sign_fail(rv);
        if (len != want)
                return DKIMSIGN_E_HSM;
        *ret_len = len;
        return 0;
}

unsigned long hsm_recoveries(struct hsm *h)
{
        return __atomic_load_n(&h->recoveries, __ATOMIC_RELAXED);
}

/* ---- diagnostics ---- */

unsigned long hsm_last_ckr(void)
{
        return last_ckr;
}

#define CKR_NAME(x) { x, #x }
static const struct {
        CK_RV rv;
        const char *name;
} ckr_names[] = {
        CKR_NAME(CKR_OK),
        CKR_NAME(CKR_CANCEL),
        CKR_NAME(CKR_HOST_MEMORY),
        CKR_NAME(CKR_SLOT_ID_INVALID),
        CKR_NAME(CKR_GENERAL_ERROR),
        CKR_NAME(CKR_FUNCTION_FAILED),
        CKR_NAME(CKR_ARGUMENTS_BAD),
        CKR_NAME(CKR_CANT_LOCK),
        CKR_NAME(CKR_ATTRIBUTE_READ_ONLY),
        CKR_NAME(CKR_ATTRIBUTE_SENSITIVE),
        CKR_NAME(CKR_ATTRIBUTE_TYPE_INVALID),
        CKR_NAME(CKR_ATTRIBUTE_VALUE_INVALID),
        CKR_NAME(CKR_DATA_INVALID),
        CKR_NAME(CKR_DATA_LEN_RANGE),
        CKR_NAME(CKR_DEVICE_ERROR),
        CKR_NAME(CKR_DEVICE_MEMORY),
        CKR_NAME(CKR_DEVICE_REMOVED),
        CKR_NAME(CKR_FUNCTION_CANCELED),
        CKR_NAME(CKR_FUNCTION_NOT_SUPPORTED),
        CKR_NAME(CKR_KEY_HANDLE_INVALID),
        CKR_NAME(CKR_KEY_SIZE_RANGE),
        CKR_NAME(CKR_KEY_TYPE_INCONSISTENT),
        CKR_NAME(CKR_KEY_FUNCTION_NOT_PERMITTED),
        CKR_NAME(CKR_KEY_UNEXTRACTABLE),
        CKR_NAME(CKR_MECHANISM_INVALID),
        CKR_NAME(CKR_MECHANISM_PARAM_INVALID),
        CKR_NAME(CKR_OBJECT_HANDLE_INVALID),
        CKR_NAME(CKR_OPERATION_ACTIVE),
        CKR_NAME(CKR_OPERATION_NOT_INITIALIZED),
        CKR_NAME(CKR_PIN_INCORRECT),
        CKR_NAME(CKR_PIN_INVALID),
        CKR_NAME(CKR_PIN_LEN_RANGE),
        CKR_NAME(CKR_PIN_EXPIRED),
        CKR_NAME(CKR_PIN_LOCKED),
        CKR_NAME(CKR_SESSION_CLOSED),
        CKR_NAME(CKR_SESSION_COUNT),
        CKR_NAME(CKR_SESSION_HANDLE_INVALID),
        CKR_NAME(CKR_SESSION_READ_ONLY),
        CKR_NAME(CKR_SESSION_EXISTS),
        CKR_NAME(CKR_SESSION_READ_ONLY_EXISTS),
        CKR_NAME(CKR_SESSION_READ_WRITE_SO_EXISTS),
        CKR_NAME(CKR_SIGNATURE_INVALID),
        CKR_NAME(CKR_SIGNATURE_LEN_RANGE),
        CKR_NAME(CKR_TEMPLATE_INCOMPLETE),
        CKR_NAME(CKR_TEMPLATE_INCONSISTENT),
        CKR_NAME(CKR_TOKEN_NOT_PRESENT),
        CKR_NAME(CKR_TOKEN_NOT_RECOGNIZED),
        CKR_NAME(CKR_TOKEN_WRITE_PROTECTED),
        CKR_NAME(CKR_USER_ALREADY_LOGGED_IN),
        CKR_NAME(CKR_USER_NOT_LOGGED_IN),
        CKR_NAME(CKR_USER_PIN_NOT_INITIALIZED),
        CKR_NAME(CKR_USER_TYPE_INVALID),
        CKR_NAME(CKR_USER_ANOTHER_ALREADY_LOGGED_IN),
        CKR_NAME(CKR_USER_TOO_MANY_TYPES),
        CKR_NAME(CKR_RANDOM_NO_RNG),
        CKR_NAME(CKR_DOMAIN_PARAMS_INVALID),
        CKR_NAME(CKR_CURVE_NOT_SUPPORTED),
        CKR_NAME(CKR_BUFFER_TOO_SMALL),
        CKR_NAME(CKR_CRYPTOKI_NOT_INITIALIZED),
        CKR_NAME(CKR_CRYPTOKI_ALREADY_INITIALIZED),
        CKR_NAME(CKR_FUNCTION_REJECTED),
};

const char *hsm_ckr_name(unsigned long rv)
{
        for (size_t i = 0; i < sizeof(ckr_names) / sizeof(ckr_names[0]); i++)
                if (ckr_names[i].rv == rv)
                        return ckr_names[i].name;
        return rv >= CKR_VENDOR_DEFINED ? "CKR_VENDOR_DEFINED" : "CKR_UNKNOWN";
}
