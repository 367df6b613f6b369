/* SPDX-License-Identifier: MIT */
/*
 * Modules, slots and tokens: load a PKCS#11 module by path (dlopen,
 * C_Initialize with OS locking), shared and reference-counted
 * process-wide, because PKCS#11 state (initialization, login) is per
 * process, not per handle; find a slot by its token's label or a URI's
 * attributes (uri.c); initialize a new token (hsm_init_token*).
 *
 * It must never dlopen() a bare name (that would search the library path)
 * nor a file that anyone but root or this user could have replaced (it
 * runs with our privileges, often root's), never C_Finalize a module it did not initialize, never keep the SO or
 * user PIN after hsm_init_token returns (both are wiped, whatever the
 * outcome) and never log.  modules_lock is a leaf lock (hsm-private.h).
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/crypto.h>

#include "hsm/hsm-private.h"
#include "util/fileperm.h"

_Thread_local char hsmi_last_why[512];

const char *hsm_last_why(void)
{
        return hsmi_last_why;
}

void hsmi_why(const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(hsmi_last_why, sizeof(hsmi_last_why), fmt, ap);
        va_end(ap);
}

static pthread_mutex_t modules_lock = PTHREAD_MUTEX_INITIALIZER;
static struct module *modules;

static int module_load(const char *path, void **ret_dl, CK_FUNCTION_LIST **ret_p11)
{
        CK_C_GetFunctionList get_list;
        CK_FUNCTION_LIST *p11 = NULL;
        char real[PATH_MAX];
        struct stat st;
        void *dl;
        CK_RV rv;
        int r;

        hsmi_last_why[0] = '\0';
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
        /* Its links resolved, and it and every directory above it writable
         * by root or this user only: then no one else can put another
         * file where dlopen() looks, which opens real, not path. */
        r = fileperm_check_path(path, real, sizeof(real), hsmi_last_why, sizeof(hsmi_last_why));
        if (r < 0) {
                if (r != DKIMSIGN_E_CONFIG)
                        hsmi_last_why[0] = '\0';
                return r;
        }
        /* RTLD_NODELETE: some modules leave threads or atexit handlers
         * behind after C_Finalize, so their code must stay mapped; it also
         * keeps the module's symbols for leak reports at exit. */
        dl = dlopen(real, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
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
                return hsmi_ckr_fail(rv != CKR_OK ? rv : CKR_GENERAL_ERROR);
        }
        *ret_dl = dl;
        *ret_p11 = p11;
        return 0;
}

/* Our threads call the module concurrently: it locks with the OS's own primitives. */
static CK_RV module_initialize(CK_FUNCTION_LIST *p11)
{
        CK_C_INITIALIZE_ARGS args = { .flags = CKF_OS_LOCKING_OK };

        return p11->C_Initialize(&args);
}

int hsmi_module_get(const char *path, struct module **ret)
{
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
        rv = module_initialize(p11);
        /* Already initialized by someone else in this process (libp11, a
         * test): use it, but leave C_Finalize to its owner. */
        if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
                free(m);
                dlclose(dl);
                r = hsmi_ckr_fail(rv);
                m = NULL;
                goto out;
        }
        m->dl = dl;
        m->p11 = p11;
        m->refs = 1;
        m->owner = rv == CKR_OK;
        m->initialized = true;
        m->next = modules;
        modules = m;
out:
        pthread_mutex_unlock(&modules_lock);
        if (r < 0)
                return r;
        *ret = m;
        return 0;
}

void hsmi_module_put(struct module *m)
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
                if (m->owner && m->initialized)
                        m->p11->C_Finalize(NULL);
                dlclose(m->dl);
                free(m);
        }
        pthread_mutex_unlock(&modules_lock);
}

bool hsmi_module_shared(struct module *m)
{
        bool shared;

        pthread_mutex_lock(&modules_lock);
        /* Another handle in this process, or the module's other owner,
         * would lose its sessions and login under a C_Finalize. */
        shared = m->refs != 1 || !m->owner;
        pthread_mutex_unlock(&modules_lock);
        return shared;
}

int hsmi_module_reinit(struct module *m)
{
        CK_RV rv;
        int r = 0;

        pthread_mutex_lock(&modules_lock);
        if (m->refs != 1 || !m->owner) {
                hsmi_why("the module is shared with another user in this process");
                r = DKIMSIGN_E_BUSY;
        } else {
                /* After a failed initialization there is nothing to finalize:
                 * only C_Initialize is tried again. */
                if (m->initialized)
                        m->p11->C_Finalize(NULL);
                rv = module_initialize(m->p11);
                m->initialized = rv == CKR_OK;
                if (rv != CKR_OK) {
                        hsmi_why("C_Initialize failed after C_Finalize");
                        r = hsmi_ckr_fail(rv);
                }
        }
        pthread_mutex_unlock(&modules_lock);
        return r;
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
                        return hsmi_ckr_fail(rv);
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
                        return hsmi_ckr_fail(rv != CKR_OK ? rv : CKR_GENERAL_ERROR);
                }
                *ret = slots;
                *ret_count = got;
                return 0;
        }
        return DKIMSIGN_E_HSM;
}

/* Add the serial of a matching token to found's list, while it fits. */
static void serial_note(struct hsmi_found *found, const CK_TOKEN_INFO *info)
{
        struct hsm_token_id id;
        size_t len = strlen(found->serials);

        hsmi_token_id(info, &id);
        if (len + strlen(id.serial) + 8 < sizeof(found->serials))
                snprintf(found->serials + len, sizeof(found->serials) - len, "%s%s", len ? ", " : "",
                         id.serial[0] ? id.serial : "(none)");
        else if (!strstr(found->serials, "..."))
                snprintf(found->serials + len, sizeof(found->serials) - len, ", ...");
}

int hsmi_slot_find(CK_FUNCTION_LIST *p11, P11KitUri *m, enum hsmi_find how, struct hsmi_found *ret)
{
        _cleanup_(freep) CK_SLOT_ID *slots = NULL;
        struct hsmi_found found = { 0 };
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
                if (initialized == (how == HSMI_FIND_FREE) ||
                    !hsmi_uri_match(m, p11, slots[i], &info, how == HSMI_FIND_FREE))
                        continue;
                if (found.count++ == 0) {
                        found.slot = slots[i];
                        found.info = info;
                }
                if (how != HSMI_FIND_ONLY)
                        break;
                serial_note(&found, &info);
        }
        if (found.count == 0)
                return DKIMSIGN_E_NO_TOKEN;
        if (ret)
                *ret = found;
        return found.count > 1 ? DKIMSIGN_E_EXISTS : 0;
}

int hsmi_token_find(struct hsm *h, CK_SLOT_ID *ret)
{
        struct hsmi_found found;
        int r = hsmi_slot_find(h->p11, h->match, h->match_only ? HSMI_FIND_ONLY : HSMI_FIND_FIRST, &found);

        if (r == 0)
                *ret = found.slot;
        return r;
}

/* ---- what a token can do ---- */

/* Whether mech is in the list, and its key sizes (0: not said). */
static bool mech_info(CK_FUNCTION_LIST *p11, CK_SLOT_ID slot, const CK_MECHANISM_TYPE *list, CK_ULONG n,
                      CK_MECHANISM_TYPE mech, unsigned long *ret_min, unsigned long *ret_max)
{
        CK_MECHANISM_INFO info = { 0 };
        bool found = false;

        for (CK_ULONG i = 0; i < n && !found; i++)
                found = list[i] == mech;
        if (!found)
                return false;
        /* Listed but not described: present, sizes unknown. */
        if (p11->C_GetMechanismInfo(slot, mech, &info) == CKR_OK && info.ulMinKeySize <= info.ulMaxKeySize) {
                *ret_min = info.ulMinKeySize;
                *ret_max = info.ulMaxKeySize;
        }
        return true;
}

int hsmi_slot_caps(CK_FUNCTION_LIST *p11, CK_SLOT_ID slot, struct hsm_caps *ret)
{
        _cleanup_(freep) CK_MECHANISM_TYPE *list = NULL;
        struct hsm_caps caps = { 0 };
        CK_TOKEN_INFO info;
        CK_ULONG n = 0;
        unsigned long dummy_min = 0, dummy_max = 0;
        CK_RV rv;

        rv = p11->C_GetTokenInfo(slot, &info);
        if (rv != CKR_OK)
                return hsmi_ckr_fail(rv);
        /* CK_EFFECTIVELY_INFINITE (0) and CK_UNAVAILABLE_INFORMATION: not said. */
        if (info.ulMaxPinLen != CK_UNAVAILABLE_INFORMATION && info.ulMinPinLen <= info.ulMaxPinLen) {
                caps.pin_min = info.ulMinPinLen;
                caps.pin_max = info.ulMaxPinLen;
        }
        rv = p11->C_GetMechanismList(slot, NULL, &n);
        if (rv == CKR_OK && n > 0 && n <= 4096) {
                list = calloc(n, sizeof(*list));
                if (!list)
                        return DKIMSIGN_E_NOMEM;
                rv = p11->C_GetMechanismList(slot, list, &n);
        }
        if (rv != CKR_OK || !list) {
                /* Not answered: nothing is refused on a guess. */
                caps.rsa_gen = caps.rsa_sign = caps.ed_gen = caps.ed_sign = true;
                *ret = caps;
                return 0;
        }
        caps.known = true;
        caps.rsa_gen = mech_info(p11, slot, list, n, CKM_RSA_PKCS_KEY_PAIR_GEN, &caps.rsa_gen_min, &caps.rsa_gen_max);
        caps.rsa_sign = mech_info(p11, slot, list, n, CKM_RSA_PKCS, &caps.rsa_sign_min, &caps.rsa_sign_max);
        /* Edwards sizes differ between modules (bits, bytes, 255 or 256): not used. */
        caps.ed_gen = mech_info(p11, slot, list, n, CKM_EC_EDWARDS_KEY_PAIR_GEN, &dummy_min, &dummy_max);
        caps.ed_sign = mech_info(p11, slot, list, n, CKM_EDDSA, &dummy_min, &dummy_max);
        *ret = caps;
        return 0;
}

/* ---- token initialization ---- */

/* 0, or DKIMSIGN_E_PIN with why when a PIN's length is outside what the
 * token in the free slot takes.  Nothing is changed. */
static int pin_lengths_check(CK_FUNCTION_LIST *p11, CK_SLOT_ID slot, size_t so_pin_len, size_t user_pin_len)
{
        CK_TOKEN_INFO info;
        CK_RV rv = p11->C_GetTokenInfo(slot, &info);

        if (rv != CKR_OK)
                return hsmi_ckr_fail(rv);
        if (info.ulMaxPinLen == CK_UNAVAILABLE_INFORMATION || info.ulMinPinLen > info.ulMaxPinLen)
                return 0;
        if (user_pin_len < info.ulMinPinLen || user_pin_len > info.ulMaxPinLen) {
                hsmi_why("this token takes PINs of %lu to %lu characters; the user PIN has %zu",
                         (unsigned long) info.ulMinPinLen, (unsigned long) info.ulMaxPinLen, user_pin_len);
                return DKIMSIGN_E_PIN;
        }
        if (so_pin_len < info.ulMinPinLen || so_pin_len > info.ulMaxPinLen) {
                hsmi_why("this token takes PINs of %lu to %lu characters; the SO PIN has %zu",
                         (unsigned long) info.ulMinPinLen, (unsigned long) info.ulMaxPinLen, so_pin_len);
                return DKIMSIGN_E_PIN;
        }
        return 0;
}

/* Initialize the token in slot, labelled label, then find it again by m
 * (how) into ret.  PINs are the caller's to wipe. */
static int token_init(CK_FUNCTION_LIST *p11, CK_SLOT_ID slot, const char *label, P11KitUri *m,
                      enum hsmi_find how, char *so_pin, size_t so_pin_len, char *user_pin, size_t user_pin_len,
                      struct hsmi_found *ret)
{
        CK_UTF8CHAR padded[TOKEN_LABEL_LEN];
        CK_SESSION_HANDLE s;
        CK_RV rv;
        int r;

        memset(padded, ' ', sizeof(padded));
        memcpy(padded, label, strlen(label));
        rv = p11->C_InitToken(slot, (CK_UTF8CHAR *) so_pin, so_pin_len, padded);
        if (rv != CKR_OK)
                return hsmi_ckr_fail(rv);
        /* The token is initialized now: whatever fails below leaves it so,
         * without a user PIN, and says how to recover.  A module may show
         * it under a new slot ID (tpm2-pkcs11 does): found by label, or
         * by the whole URI. */
        r = hsmi_slot_find(p11, m, how, ret);
        if (r < 0) {
                rv = hsmi_last_ckr ? hsmi_last_ckr : CKR_TOKEN_NOT_PRESENT;
                goto no_user_pin;
        }
        rv = p11->C_OpenSession(ret->slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
        if (rv != CKR_OK)
                goto no_user_pin;
        rv = p11->C_Login(s, CKU_SO, (CK_UTF8CHAR *) so_pin, so_pin_len);
        if (rv == CKR_OK) {
                rv = p11->C_InitPIN(s, (CK_UTF8CHAR *) user_pin, user_pin_len);
                p11->C_Logout(s);
        }
        p11->C_CloseSession(s);
        if (rv == CKR_OK)
                return 0;
no_user_pin:
        hsmi_ckr_fail(rv);
        hsmi_why("setting the user PIN failed (%s) after the token was initialized: it is initialized, "
                 "labelled '%s', without a user PIN; set the user PIN with the SO PIN through the module's "
                 "own tool (e.g. pkcs11-tool --token-label '%s' --login --login-type so --init-pin), or "
                 "initialize the token again (softhsm2-util --delete-token, or the module's tool), then run "
                 "init-token again", hsm_ckr_name(rv), label, label);
        return DKIMSIGN_E_PIN;
}

/* hsm_init_token and hsm_init_token_uri: label the first free token that
 * matches m in all but the label; uri (NULL for a bare label) names m in
 * the sentences. */
static int init_matching(const char *module_path, P11KitUri *m, const char *uri, const char *label,
                         char *so_pin, size_t so_pin_len, char *user_pin, size_t user_pin_len,
                         struct hsm_token_id *ret)
{
        struct hsmi_found found;
        struct module *mod = NULL;
        int r;

        r = hsmi_module_get(module_path, &mod);
        if (r < 0)
                goto out;
        r = hsmi_slot_find(mod->p11, m, HSMI_FIND_FIRST, &found);
        if (r == 0) {
                r = DKIMSIGN_E_EXISTS;
                if (uri) {
                        struct hsm_token_id id;

                        hsmi_token_id(&found.info, &id);
                        hsmi_why("a token of %s matches %s already (label '%s', serial %s): init-token makes a "
                                 "new one", module_path, uri, id.label, id.serial);
                }
        }
        if (r != DKIMSIGN_E_NO_TOKEN)
                goto out;
        r = hsmi_slot_find(mod->p11, m, HSMI_FIND_FREE, &found);
        if (r == DKIMSIGN_E_NO_TOKEN && uri)
                hsmi_why("no free token of %s matches %s (its attributes but token=, which is the label to give)",
                         module_path, uri);
        if (r < 0)
                goto out;
        r = pin_lengths_check(mod->p11, found.slot, so_pin_len, user_pin_len);
        if (r < 0)
                goto out;
        r = token_init(mod->p11, found.slot, label, m, uri ? HSMI_FIND_ONLY : HSMI_FIND_FIRST, so_pin, so_pin_len,
                       user_pin, user_pin_len, &found);
        if (r == 0 && ret)
                hsmi_token_id(&found.info, ret);
out:
        hsmi_module_put(mod);
        return r;
}

int hsm_init_token(const char *module_path, const char *label, char *so_pin, size_t so_pin_len,
                   char *user_pin, size_t user_pin_len)
{
        P11KitUri *m = NULL;
        int r;

        hsmi_last_ckr = 0;
        hsmi_last_why[0] = '\0';
        if (!label || !so_pin || !user_pin)
                r = DKIMSIGN_E_INTERNAL;
        else if (strlen(label) > TOKEN_LABEL_LEN)
                r = DKIMSIGN_E_TOO_LARGE;
        else if (!(m = hsmi_uri_for_label(label)))
                r = DKIMSIGN_E_NOMEM;
        else
                r = init_matching(module_path, m, NULL, label, so_pin, so_pin_len, user_pin, user_pin_len, NULL);
        if (so_pin)
                OPENSSL_cleanse(so_pin, so_pin_len);
        if (user_pin)
                OPENSSL_cleanse(user_pin, user_pin_len);
        p11_kit_uri_free(m);
        return r;
}

int hsm_init_token_uri(const char *uri, const char *module_path, char *so_pin, size_t so_pin_len,
                       char *user_pin, size_t user_pin_len, struct hsm_token_id *ret)
{
        char module[HSM_URI_MAX + 1];
        struct hsm_token_id want;
        P11KitUri *m = NULL;
        int r;

        hsmi_last_ckr = 0;
        hsmi_last_why[0] = '\0';
        if (!uri || !so_pin || !user_pin) {
                r = DKIMSIGN_E_INTERNAL;
                goto out;
        }
        r = hsmi_uri_parse(uri, &m, module, sizeof(module));
        if (r < 0)
                goto out;
        r = DKIMSIGN_E_FORMAT;
        hsmi_token_id(p11_kit_uri_get_token_info(m), &want);
        if (!p11_kit_uri_get_token_info(m)->label[0])
                hsmi_why("%s has no token=: init-token gives the new token that label", uri);
        else if (module_path && module[0] && strcmp(module, module_path) != 0)
                hsmi_why("the module-path of %s is not the module %s", uri, module_path);
        else if (!module_path && !module[0])
                hsmi_why("%s has no module-path, and no module is given", uri);
        else
                r = init_matching(module_path ? module_path : module, m, uri, want.label, so_pin, so_pin_len,
                                  user_pin, user_pin_len, ret);
out:
        if (so_pin)
                OPENSSL_cleanse(so_pin, so_pin_len);
        if (user_pin)
                OPENSSL_cleanse(user_pin, user_pin_len);
        p11_kit_uri_free(m);
        return r;
}
