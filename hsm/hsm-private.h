/* SPDX-License-Identifier: MIT */
/*
 * What the files of hsm/ share, and nothing else: the structures behind
 * the handles of hsm.h, the limits, the template and cleanup helpers, and
 * the internal functions one file calls in another.  Only hsm/ includes
 * it (it includes pkcs11.h, which only hsm/ gets on its include path; the
 * #error below catches the rest).
 *
 * Naming: every internal function or variable with external linkage is
 * hsmi_<name> ("hsm internal"), so it can never clash with hsm_ (the
 * public API in hsm.h) or with anything else linked into the program.
 * What a single file uses stays static in it, under its old name.  The
 * constant values below are static (internal linkage) and keep theirs.
 *
 * Rules for every file here: never ask the token for a private attribute,
 * never log (return dkimsign_err codes; hsmi_ckr_fail() remembers the
 * failed CK_RV for hsm_last_ckr()), never trust a length the module
 * reports.
 *
 * LOCKS, what each guards, and the only order in which they nest:
 *
 *   modules_lock (module.c, process-wide): the list of loaded modules and
 *     their reference counts.  A leaf: none of ours is taken under it
 *     (only the module's own, in C_Initialize and C_Finalize).  It is
 *     taken with none of the locks below held, except by
 *     hsm_reinitialize, which holds h->init_lock and h->lock around it.
 *
 *   h->lock: the admin session (h->admin, h->admin_open) and every PKCS#11
 *     call made on it, h->slot once sessions exist, the kept PIN (h->pin),
 *     h->recover_failed_ms.  Functions named *_locked expect it held.
 *
 *   h->sessions_lock: the list of signing sessions (h->sessions, s->prev,
 *     s->next, s->h), and s->handle and s->broken where recovery replaces
 *     them and hsm_close() reads them to close the handles it detaches.
 *     A session's own thread marks it broken without it (sign_call).
 *
 *   copies->lock (h->copies, copies.c): the key copy table (slots, used,
 *     paused, never, each slot's making/refused marks).  Held only for table
 *     work, and for destroying session copies on the admin session when
 *     h->lock is held already.
 *
 *   h->init_lock (a read-write lock, writers first): the module's
 *     initialization.  Every signature holds it for reading;
 *     hsm_reinitialize holds it for writing while it finalizes and
 *     initializes the module, so no call is inside the module then.  The
 *     outermost of all.
 *
 *   Order:  h->init_lock  ->  h->lock  (and on as below)
 *           h->lock  ->  h->sessions_lock
 *           h->lock  ->  copies->lock
 *   h->sessions_lock and copies->lock never nest with each other, and
 *   h->lock is never taken, nor even tried, while copies->lock is held.
 *   Signing (hsmi_copy_for_signing) takes copies->lock, drops it, then
 *   only *tries* h->lock to make a copy (pthread_mutex_trylock, no other
 *   lock held: a signature does not wait behind a listing for a copy, it
 *   signs with the token object this once), and takes copies->lock again
 *   after releasing h->lock.  The PKCS#11 module's own locks
 *   (CKF_OS_LOCKING_OK) are innermost.  Lock-free: h->recoveries, the
 *   signing CPU counters (h->sign_calls, h->sign_cpu_ns) and a
 *   key's priv handle (hsm_sign refreshes it), both with __atomic builtins.
 */
#ifndef HSM_HSM_PRIVATE_H
#define HSM_HSM_PRIVATE_H

#ifndef DKIMSIGN_HSM_INTERNAL
#error "hsm-private.h is for the files of hsm/ only: include hsm.h"
#endif

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <openssl/bn.h>

#include <p11-kit/pkcs11.h>
#include <p11-kit/uri.h>

#include "protocol/dkimsign-errors.h"
#include "hsm/hsm.h"

#include "util/cleanup.h"

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

/* RFC 8410 id-Ed25519, the CKA_EC_PARAMS written first; PKCS#11 3.0 also
 * allows the curve name as a PrintableString, accepted when read
 * (keys-load.c). */
static const uint8_t ed25519_oid[] = { 0x06, 0x03, 0x2b, 0x65, 0x70 };
/* The same curve by name (PKCS#11 3.0: a PrintableString), which some
 * modules take instead of the OID (YubiHSM's): tried when the OID is
 * refused (keys-create.c). */
static const uint8_t ed25519_name[] = { 0x13, 0x0c, 'e', 'd', 'w', 'a', 'r', 'd', 's', '2', '5', '5', '1', '9' };

static const CK_BBOOL ck_true = CK_TRUE;
static const CK_BBOOL ck_false = CK_FALSE;
static const CK_OBJECT_CLASS class_private = CKO_PRIVATE_KEY;
static const CK_OBJECT_CLASS class_public = CKO_PUBLIC_KEY;

/* One dlopen()ed, C_Initialize()d module, shared by every struct hsm (and
 * hsm_init_token) that names it: the last user finalizes it.  Guarded by
 * modules_lock (module.c). */
struct module {
        struct module *next;
        void *dl;
        CK_FUNCTION_LIST *p11;
        unsigned refs;
        bool owner;              /* we initialized it first: ours to finalize and initialize again */
        bool initialized;        /* initialized now (a re-initialization may have failed) */
};

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
        /* Which token: its label, or a URI's attributes; the slot is found
         * again by them after a reinsertion (hsmi_token_find).  Set by
         * hsm_open*, only read after (no lock). */
        P11KitUri *match;
        bool match_only;         /* a URI: it must match one token only; a label: the first */
        struct hsm_token_id id;  /* the token opened, as it described itself then */
        CK_SLOT_ID slot;         /* guarded by lock once sessions exist */
        pthread_mutex_t lock;    /* guards admin, slot, pin and every call made on admin */
        CK_SESSION_HANDLE admin;
        bool admin_open;
        bool keep_pin;
        bool allow_decrypt_keys;     /* hsm_allow_decrypt_keys; read under lock by hsm_generate */
        bool lock_keys;              /* hsm_lock_keys: private keys made CKA_MODIFIABLE false */
        struct kept_pin pin;
        CK_RV pin_refused;           /* the token refused the kept PIN (it is forgotten): why; else 0 */
        uint64_t recover_failed_ms;  /* when the last recovery failed, 0 if it did not */
        unsigned long recoveries;    /* sessions reopened or logins redone (atomic) */
        uint64_t sign_calls;         /* C_SignInit + C_Sign pairs made (atomic) */
        uint64_t sign_cpu_ns;        /* this process's CPU inside them, thread clocks (atomic) */
        pthread_rwlock_t init_lock;  /* readers: signatures; the writer: hsm_reinitialize */
        unsigned long generation;    /* initializations since hsm_open (atomic; written under init_lock) */
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
        pthread_mutex_t lock;    /* guards the rest; h->lock is never taken under it (above) */
        struct key_copy *slots;
        size_t mask;             /* slots - 1, a power of two minus one */
        size_t max;              /* slots that may hold a token handle */
        size_t used;
        bool paused;             /* copying failed: none until the next hsm_list() or login */
        bool never;              /* the token copies no private key: none for the life of h */
};

struct hsm_session {
        struct hsm *h;           /* NULL once hsm_close() has closed the handle */
        CK_SESSION_HANDLE handle;
        bool broken;             /* the handle is dead: reopen before use */
        unsigned long generation; /* the module's initialization it was opened in: an
                                     older one is dead too (hsm_reinitialize) */
        struct hsm_session *prev, *next;
};

/* A template whose values are borrowed: modules only read them. */
struct tmpl {
        CK_ATTRIBUTE a[TMPL_MAX];
        CK_ULONG n;
};

/* ---- cleanup helpers (for _cleanup_) ---- */

static inline void bn_clear_freep(BIGNUM **p)
{
        BN_clear_free(*p);
}

/* ---- ckr.c: what a CK_RV means ---- */

/* The CK_RV of the last failed call in this thread (hsm_last_ckr());
 * each public entry point clears it. */
extern _Thread_local CK_RV hsmi_last_ckr;
/* Remember rv and map it to the error the caller can act on. */
int hsmi_ckr_fail(CK_RV rv);
/* The same for signing: temporary (E_HSM) unless the key is gone or unusable. */
int hsmi_sign_fail(CK_RV rv);
/* The object named by a handle is gone (destroyed meanwhile). */
bool hsmi_handle_gone_obj(CK_RV rv);
/* ... or may name another object now (a reset renumbered them). */
bool hsmi_handle_stale(CK_RV rv);
/* s's handle names a live session of ours (not broken, not from before
 * the module was initialized again): the one kind to C_CloseSession.
 * h->sessions_lock held. */
bool hsmi_session_closable(const struct hsm *h, const struct hsm_session *s);
/* The session handle no longer names a session: never close it. */
bool hsmi_handle_gone(CK_RV rv);
/* The session or the login is gone (reset, reinsertion, logout). */
bool hsmi_session_lost(CK_RV rv);

/* ---- module.c: modules, slots ---- */

/* Why the last file was refused in this thread (bad permissions on the
 * module or the PIN file), for hsm_last_why(); "" when none. */
extern _Thread_local char hsmi_last_why[512];

/* A reference on the module at path, loaded and initialized on first use. */
int hsmi_module_get(const char *path, struct module **ret);
/* Drop a reference; the last one finalizes and unloads.  Accepts NULL. */
void hsmi_module_put(struct module *m);
/* C_Finalize and C_Initialize m again: only when this is its one user
 * and we initialized it (DKIMSIGN_E_BUSY otherwise, nothing done). */
int hsmi_module_reinit(struct module *m);
/* The module has another user in this process (another handle, or its
 * owner who initialized it): it must not be finalized under them. */
bool hsmi_module_shared(struct module *m);
/* Which slot hsmi_slot_find looks for: the first initialized token that
 * matches, the only one (several: DKIMSIGN_E_EXISTS), or the first
 * uninitialized token that matches in all but the label (hsmi_uri_match). */
enum hsmi_find { HSMI_FIND_FIRST, HSMI_FIND_ONLY, HSMI_FIND_FREE };
/* What hsmi_slot_find saw: how many tokens matched, the first one's slot
 * and information, and the serial numbers of the first few (", "
 * separated), for the sentence that asks for serial=. */
struct hsmi_found {
        CK_SLOT_ID slot;
        CK_TOKEN_INFO info;
        unsigned count;
        char serials[80];
};
/* The slot of the token matching m, as how says.  DKIMSIGN_E_NO_TOKEN if
 * none; DKIMSIGN_E_EXISTS if several (HSMI_FIND_ONLY).  ret (may be NULL)
 * is filled on success and on DKIMSIGN_E_EXISTS. */
int hsmi_slot_find(CK_FUNCTION_LIST *p11, P11KitUri *m, enum hsmi_find how, struct hsmi_found *ret);
/* The slot of h's token now, by h->match: the slot it was opened on, or
 * the one it moved to.  h->lock held, or h not shared yet. */
int hsmi_token_find(struct hsm *h, CK_SLOT_ID *ret);
/* What the token in slot can do (hsm_token_caps). */
int hsmi_slot_caps(CK_FUNCTION_LIST *p11, CK_SLOT_ID slot, struct hsm_caps *ret);
/* Say why in hsm_last_why() (printf-like). */
void hsmi_why(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- uri.c: which token ---- */

/* Check and parse a URI as hsm_uri_check, into owned criteria (free with
 * p11_kit_uri_free) and its module-path; a refusal's sentence goes to
 * hsm_last_why(). */
int hsmi_uri_parse(const char *text, P11KitUri **ret, char *ret_module, size_t module_size);
/* Criteria that match a token labelled label, nothing else; NULL: no memory. */
P11KitUri *hsmi_uri_for_label(const char *label);
/* Whether the token in slot (its information, info) and the slot match
 * m; ignore_label: in everything but the label (a free token, to be
 * labelled).  Asks C_GetSlotInfo when m has slot attributes. */
bool hsmi_uri_match(P11KitUri *m, CK_FUNCTION_LIST *p11, CK_SLOT_ID slot, const CK_TOKEN_INFO *info,
                    bool ignore_label);
/* info's fields as C strings. */
void hsmi_token_id(const CK_TOKEN_INFO *info, struct hsm_token_id *ret);

/* ---- login.c: sessions and the login ---- */

bool hsmi_logged_in(const CK_SESSION_INFO *info);
/* Open a session, finding the token's slot again if it moved.  h->lock held. */
CK_RV hsmi_session_open_locked(struct hsm *h, CK_FLAGS flags, CK_SESSION_HANDLE *ret);
/* A live admin session, logged in (again, with the kept PIN, if the login
 * went).  h->lock held; takes copies->lock. */
CK_RV hsmi_login_restore_locked(struct hsm *h);
/* Whether the admin session is open and logged in.  h->lock held. */
bool hsmi_admin_logged_in_locked(struct hsm *h);
/* Log in on session s itself with the kept PIN, for tokens whose login is
 * per session; CKR_USER_ALREADY_LOGGED_IN (a login per application) is
 * CKR_OK.  A PIN the token refuses is forgotten, never offered again (see
 * login.c).  h->lock held. */
CK_RV hsmi_session_login_locked(struct hsm *h, CK_SESSION_HANDLE s);

/* ---- attrs.c: templates, attributes, dates, object searches ---- */

void hsmi_tmpl_add(struct tmpl *t, CK_ATTRIBUTE_TYPE type, const void *value, size_t len);
/* CKA_CLASS cls and CKA_TOKEN true: searches name token objects only,
 * never the session copies of keys that signing makes. */
void hsmi_tmpl_class(struct tmpl *t, const CK_OBJECT_CLASS *cls);

/* Reads on the admin session: h->lock held. */
int hsmi_attr_ulong(struct hsm *h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type, CK_ULONG *ret);
/* CKA_LABEL as an owned C string. */
int hsmi_attr_label(struct hsm *h, CK_OBJECT_HANDLE obj, char **ret);
#define ATTRS_MAX 16  /* attributes one hsmi_attrs_read asks for */
/* Up to ATTRS_MAX attributes in one call, each into its caller-sized
 * buffer (a[i].ulValueLen = its capacity); an absent or sensitive one
 * comes back with CK_UNAVAILABLE_INFORMATION (see hsmi_attr_present). */
int hsmi_attrs_read(struct hsm *h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE *a, CK_ULONG n);
bool hsmi_attr_present(const CK_ATTRIBUTE *a);
int hsmi_attr_got_bool(const CK_ATTRIBUTE *a, bool *ret);
void hsmi_attr_got_date(const CK_ATTRIBUTE *a, char ret[HSM_DATE_LEN + 1]);
int hsmi_attr_date(struct hsm *h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type, char ret[HSM_DATE_LEN + 1]);

/* Today in UTC as a CK_DATE. */
void hsmi_date_today(CK_DATE *ret);
/* The token would not take a date attribute (a template's last: n--). */
bool hsmi_date_refused(CK_RV rv);

/* Searches and destruction on the admin session: h->lock held. */
int hsmi_objects_find(struct hsm *h, struct tmpl *t, CK_OBJECT_HANDLE *out, CK_ULONG max, CK_ULONG *ret_count);
/* Every match, at most max, in an owned array. */
int hsmi_objects_find_all(struct hsm *h, struct tmpl *t, CK_OBJECT_HANDLE **ret, size_t *ret_count,
                          size_t max);
/* Either may be CK_INVALID_HANDLE. */
void hsmi_objects_destroy(struct hsm *h, CK_OBJECT_HANDLE priv, CK_OBJECT_HANDLE pub);

/* ---- keys.c, keys-load.c ---- */

/* 0, or why label can't name a key. */
int hsmi_label_check(const char *label);
/* Describe the key pair around private key priv (its public object pub
 * when known, else CK_INVALID_HANDLE: searched for).  h->lock held. */
int hsmi_key_load(struct hsm *h, CK_OBJECT_HANDLE priv, CK_OBJECT_HANDLE pub, struct hsm_key **ret);

/* ---- copies.c: session copies of keys ---- */

/* Accepts NULL. */
void hsmi_copies_free(struct key_copies *c);
/* The handle to sign token with: its copy (made now if possible), else
 * token.  Takes copies->lock; tries h->lock with no lock held. */
CK_OBJECT_HANDLE hsmi_copy_for_signing(struct hsm *h, CK_OBJECT_HANDLE token);
/* Signing found copy gone: forget it.  Takes copies->lock. */
void hsmi_copy_gone(struct hsm *h, CK_OBJECT_HANDLE token, CK_OBJECT_HANDLE copy);
/* Drop every copy, destroying them (destroy) or only forgetting them.
 * h->lock held; takes copies->lock. */
void hsmi_copies_reset_locked(struct hsm *h, bool destroy);
/* Destroy the copy of token.  h->lock held; takes copies->lock. */
void hsmi_copy_destroy_locked(struct hsm *h, CK_OBJECT_HANDLE token);

#endif
