/* SPDX-License-Identifier: MIT */
/*
 * PKCS#11 token access.  The only module that includes pkcs11.h.
 *
 * It loads a PKCS#11 module by path, finds a token by its label or by a
 * PKCS#11 URI (RFC 7512, parsed with p11-kit's URI functions), logs in,
 * generates and imports DKIM keys as token objects, finds them again by
 * label, exports their public halves, and signs SHA-256 digests.  Private
 * keys never leave the token: generated keys are CKA_SENSITIVE and not
 * CKA_EXTRACTABLE, and nothing here ever asks for a private attribute.
 *
 * It never logs; every failure is a dkimsign_err code (hsm_last_ckr() gives
 * the PKCS#11 return value of the last failed call, for a log line).
 * The PIN is wiped from memory as soon as C_Login returns.
 */
#ifndef HSM_HSM_H
#define HSM_HSM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>

#include "util/cleanup.h"

enum hsm_alg {
        HSM_ALG_RSA = 1,     /* rsa-sha256: RSASSA-PKCS1-v1_5 over a SHA-256 digest */
        HSM_ALG_ED25519 = 2, /* ed25519-sha256: PureEdDSA over a SHA-256 digest (RFC 8463) */
};

#define HSM_RSA_MIN_BITS 1024
#define HSM_RSA_MAX_BITS 4096
#define HSM_RSA_DEFAULT_BITS 2048
#define HSM_SIG_MAX 512       /* a 4096-bit RSA signature */
#define HSM_LABEL_MAX 255
#define HSM_ED25519_PUB_LEN 32
#define HSM_DATE_LEN 8        /* YYYYMMDD, as in a CK_DATE */

/* What a private key may be used for (its CKA_SIGN, CKA_DECRYPT,
 * CKA_SIGN_RECOVER, CKA_UNWRAP, CKA_DERIVE), as read from the token: a
 * bit set, HSM_USE_* or'ed.  An attribute the module does not report
 * counts as not set. */
enum {
        HSM_USE_SIGN = 1 << 0,
        HSM_USE_DECRYPT = 1 << 1,
        HSM_USE_SIGN_RECOVER = 1 << 2,
        HSM_USE_UNWRAP = 1 << 3,
        HSM_USE_DERIVE = 1 << 4,
};
#define HSM_USES_COUNT 5
/* "sign", "decrypt", "sign_recover", "unwrap", "derive" for one HSM_USE_*
 * bit; NULL for anything else. */
const char *hsm_use_name(unsigned bit);
/* The uses as names joined by sep ("sign,decrypt"), "none" when empty,
 * into ret (size bytes, truncated to fit). */
const char *hsm_uses_format(unsigned uses, const char *sep, char *ret, size_t size);

/*
 * What the token says it can do (C_GetMechanismList, C_GetMechanismInfo,
 * C_GetTokenInfo), asked before acting.  A size of 0 means the token did
 * not say.  When the token does not answer C_GetMechanismList, known is
 * false and every mechanism counts as present (nothing is refused on a
 * guess).
 */
struct hsm_caps {
        bool known;
        bool rsa_gen, rsa_sign;          /* CKM_RSA_PKCS_KEY_PAIR_GEN, CKM_RSA_PKCS */
        bool ed_gen, ed_sign;            /* CKM_EC_EDWARDS_KEY_PAIR_GEN, CKM_EDDSA */
        unsigned long rsa_gen_min, rsa_gen_max;    /* bits */
        unsigned long rsa_sign_min, rsa_sign_max;  /* bits */
        unsigned long pin_min, pin_max;            /* ulMinPinLen, ulMaxPinLen */
};

struct hsm;          /* a loaded module, one token, logged in */
struct hsm_session;  /* one PKCS#11 session, for one thread at a time */

struct hsm_key {
        char *label;             /* owned, NUL-terminated CKA_LABEL */
        enum hsm_alg alg;
        unsigned bits;           /* RSA modulus bits; 256 for Ed25519 */
        unsigned long priv;      /* CK_OBJECT_HANDLE of the private key */
        /* The module's initialization (hsm_reinitialize) the handles come
         * from: pub's, and priv's until signing finds priv again in a
         * later one (priv_generation).  Handles of an older one are never
         * used: they may name other objects. */
        unsigned long generation;
        unsigned long priv_generation;
        unsigned long pub;       /* CK_OBJECT_HANDLE of the public key, 0 if none */
        EVP_PKEY *pubkey;        /* owned: the public half, for DNS and self-checks */
        uint8_t ed25519_pub[HSM_ED25519_PUB_LEN];   /* Ed25519: the same, raw (the per-signature check) */
        bool local;              /* CKA_LOCAL: generated on the token */
        bool always_sensitive;   /* CKA_ALWAYS_SENSITIVE */
        bool never_extractable;  /* CKA_NEVER_EXTRACTABLE */
        unsigned uses;           /* HSM_USE_* the private key allows */
        bool always_authenticate; /* CKA_ALWAYS_AUTHENTICATE: refused (below) */
        /* Why dkimsign never signs with this key, or NULL.  A key whose
         * private half is not CKA_PRIVATE (usable without a login), not
         * CKA_SENSITIVE or CKA_EXTRACTABLE (its secret can be read off the
         * token) is listed, with this sentence, but never signs: the
         * promise that a key never leaves the token does not hold for it.
         * A key that wants the PIN again for every signature
         * (CKA_ALWAYS_AUTHENTICATE) is refused too: every signature would
         * fail (CKR_USER_NOT_LOGGED_IN, CKR_OPERATION_ACTIVE), as a
         * temporary error, for ever.  (A context-specific login,
         * CKU_CONTEXT_SPECIFIC, before each C_Sign could use it instead;
         * not done yet.)  A key that may also decrypt is not refused here:
         * that is the configuration's call ([token] allow_decrypt_keys),
         * which keys/ makes from uses.  hsm_list also refuses a key whose
         * signing mechanism (CKM_EDDSA, CKM_RSA_PKCS) is missing from the
         * token's mechanism list: every signature would fail, as a
         * temporary error, for ever. */
        const char *refused;
        /* The key's life, kept on the token with the key: CKA_START_DATE
         * ("created", set by hsm_generate and hsm_import) and CKA_END_DATE
         * ("retired", set by hsm_retire) of the public key object, as
         * YYYYMMDD in UTC; "" when unset (or not 8 digits).  A key with a
         * retired date must not sign.  Only the public half carries them:
         * SoftHSM 2.6.1 stores dates on a private (CKA_PRIVATE) object but
         * then fails to read them back (CKR_GENERAL_ERROR, SoftHSMv2 issue
         * 655), which would break every tool that reads them.  A key whose
         * public object is missing has neither date. */
        char created[HSM_DATE_LEN + 1];
        char retired[HSM_DATE_LEN + 1];
};

/* Accepts NULL; returns NULL. */
struct hsm_key *hsm_key_free(struct hsm_key *key);
DEFINE_FREEP(struct hsm_key, hsm_key_free)

/* "rsa" / "ed25519" */
const char *hsm_alg_name(enum hsm_alg alg);
/* Parses "rsa" / "ed25519"; 0 or DKIMSIGN_E_ALG. */
int hsm_alg_from_string(const char *s, enum hsm_alg *ret);

/*
 * Load the module at module_path (dlopen), C_Initialize it (OS locking, so
 * several threads may use it), and find the token whose label is
 * token_label.  DKIMSIGN_E_SYSTEM: the module can't be loaded;
 * DKIMSIGN_E_CONFIG: the module's owner or mode, or a directory's above
 * it, is unsafe (hsm_last_why()); DKIMSIGN_E_NO_TOKEN: no such token;
 * DKIMSIGN_E_HSM: the module failed.
 */
int hsm_open(const char *module_path, const char *token_label, struct hsm **ret);

/*
 * A token chosen by a PKCS#11 URI (RFC 7512), e.g.
 * pkcs11:token=dkim;manufacturer=SoftHSM%20project?module-path=/usr/lib/softhsm/libsofthsm2.so
 * Its path may hold token=, manufacturer=, model=, serial= (matched against
 * the token's CK_TOKEN_INFO), slot-description=, slot-manufacturer= and
 * slot-id= (against its slot), each at most once, none empty; its query
 * only module-path= (an absolute path).  Refused, with the part named:
 * what selects objects (object=, id=, type=), the module's own attributes
 * (library-*), module-name= (p11-kit's configuration), and a PIN
 * (pin-value=, pin-source=): the PIN comes from a file.  At most
 * HSM_URI_MAX characters, printable ASCII (anything else percent-encoded).
 */
#define HSM_URI_MAX 1024

/* A token as it describes itself (CK_TOKEN_INFO): each field a C string
 * without its blank padding, a control character shown as '?'. */
struct hsm_token_id {
        char label[33];
        char manufacturer[33];
        char model[17];
        char serial[17];
};

/*
 * Check uri (above) without loading anything.  0, with its module-path
 * (percent-decoded; "" when it has none) in ret_module (module_size
 * bytes); DKIMSIGN_E_FORMAT with one sentence in why naming the part
 * refused, which never quotes a value of the URI (a pin-value must not
 * reach a log); DKIMSIGN_E_NOMEM.
 */
int hsm_uri_check(const char *uri, char *ret_module, size_t module_size, char *why, size_t whylen);

/*
 * As hsm_open, but the token is the one whose token and slot information
 * match every attribute of uri.  module_path NULL: the URI's module-path.
 * DKIMSIGN_E_NO_TOKEN: no token matches; DKIMSIGN_E_EXISTS: several do
 * (then h is not opened: the URI must name one, e.g. by serial=);
 * DKIMSIGN_E_FORMAT: uri is refused (hsm_uri_check), or its module-path
 * is not module_path.  For each of these hsm_last_why() has the sentence,
 * naming the URI (and, for several, how many and their serials).  After a
 * reinsertion the token is found again by the same URI, on any slot.
 */
int hsm_open_uri(const char *uri, const char *module_path, struct hsm **ret);

/* The token h was opened on, as it described itself then. */
void hsm_token_id(const struct hsm *h, struct hsm_token_id *ret);

/* Logs out, closes every session, C_Finalize, dlclose.  Accepts NULL. */
struct hsm *hsm_close(struct hsm *h);
DEFINE_FREEP(struct hsm, hsm_close)

/*
 * Log in as the user.  pin is wiped (overwritten with zeros) before
 * returning, whatever the outcome.  DKIMSIGN_E_PIN: wrong or locked PIN.
 */
int hsm_login(struct hsm *h, char *pin, size_t pin_len);

/* Read the PIN from a file (first line, trailing CR/LF/space stripped),
 * log in, and wipe it.  The PIN never appears in an error.
 * DKIMSIGN_E_CONFIG: the file's owner or mode is unsafe (hsm_last_why()). */
int hsm_login_pin_file(struct hsm *h, const char *path);

/*
 * Initialize a token on the first free slot of the module: sets label, the
 * SO PIN and the user PIN.  Both PINs are wiped before returning.
 * DKIMSIGN_E_EXISTS: a token with that label already exists.
 * DKIMSIGN_E_PIN: a PIN's length is outside the free slot's ulMinPinLen..
 * ulMaxPinLen (checked before anything is changed), or C_InitPIN failed
 * after C_InitToken succeeded: then the token is initialized, labelled
 * label, without a user PIN; hsm_last_why() says which, and how to
 * recover.  After C_InitToken the token is found again by its label (a
 * module may give it a new slot ID).
 */
int hsm_init_token(const char *module_path, const char *label, char *so_pin, size_t so_pin_len,
                   char *user_pin, size_t user_pin_len);

/*
 * hsm_init_token for a token chosen by uri (hsm_open_uri), which must have
 * token=: the label to give.  The token initialized is the first free one
 * (not yet initialized) of the module whose slot and token match every
 * other attribute of the URI (manufacturer=, model=, a serial= the free
 * token already shows, slot-*), and is found again afterwards by the whole
 * URI.  DKIMSIGN_E_EXISTS: a token matches uri already (nothing is
 * changed); DKIMSIGN_E_NO_TOKEN: no free token matches; DKIMSIGN_E_FORMAT:
 * uri is refused or has no token= (hsm_last_why() for these three).  PINs
 * and the other codes as hsm_init_token.  On success ret (may be NULL) is
 * the token as it describes itself now.
 */
int hsm_init_token_uri(const char *uri, const char *module_path, char *so_pin, size_t so_pin_len,
                       char *user_pin, size_t user_pin_len, struct hsm_token_id *ret);

/* Label of a DKIM key: "<selector>._domainkey.<domain>", into ret (size
 * bytes).  DKIMSIGN_E_TOO_LARGE if it does not fit. */
int hsm_key_label(const char *selector, const char *domain, char *ret, size_t size);

/*
 * What the token of h can do (struct hsm_caps).  DKIMSIGN_E_HSM: the token
 * failed (C_GetTokenInfo).
 */
int hsm_token_caps(struct hsm *h, struct hsm_caps *ret);

/*
 * Whether caps allow a key of alg (and bits, for RSA; 0 = the default) to
 * be generated (generate true) or imported and signed with: 0, or
 * DKIMSIGN_E_ALG with one sentence in why that names the limit and what
 * to do, e.g. "this token makes RSA keys of 1024 to 3072 bits; use --bits
 * 3072".  Pure.
 */
int hsm_caps_check(const struct hsm_caps *caps, enum hsm_alg alg, unsigned bits, bool generate, char *why,
                   size_t whylen);

/*
 * Whether keys that can do more than sign may be made on this token
 * (dkimsignctl sets it from [token] allow_decrypt_keys; default false).
 * See hsm_generate.
 */
void hsm_allow_decrypt_keys(struct hsm *h, bool allow);
/* Make the private keys of hsm_generate and hsm_import CKA_MODIFIABLE
 * false, so no PIN holder can relabel one onto another domain (dkimsignctl
 * sets it from [token] lock_keys; default false here).  SoftHSM then
 * refuses the session copies signing prefers (hsm_key_copies): such a key
 * signs with its token object. */
void hsm_lock_keys(struct hsm *h, bool lock);

/*
 * Generate a key pair on the token: CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE
 * true, CKA_EXTRACTABLE false, CKA_SIGN only; the public half gets today's
 * date (UTC) as CKA_START_DATE, unless the token refuses the attribute.
 * bits is used for RSA (HSM_RSA_MIN_BITS..HSM_RSA_MAX_BITS, 0 = default)
 * and ignored for Ed25519.
 * DKIMSIGN_E_EXISTS: a key with that label is already on the token.
 */
int hsm_generate(struct hsm *h, const char *label, enum hsm_alg alg, unsigned bits,
                 struct hsm_key **ret);

/*
 * Before changing anything, hsm_generate asks the token (hsm_token_caps,
 * hsm_caps_check): what it can't make is DKIMSIGN_E_ALG, with the sentence
 * in hsm_last_why().  The rule for modules whose attribute semantics
 * differ: the template above (every other use explicitly false) is tried
 * first.  A module that refuses it (CKR_GENERAL_ERROR,
 * CKR_TEMPLATE_INCONSISTENT, CKR_ATTRIBUTE_VALUE_INVALID: tpm2-pkcs11
 * makes RSA keys that sign through a TPM decrypt) gets a template without
 * the "false" uses only after hsm_allow_decrypt_keys(h, true); else
 * DKIMSIGN_E_ALG, hsm_last_why() naming the setting.  The key's real uses
 * are read back; one that may decrypt without that allowance is destroyed
 * and refused the same way.
 */

/* Import a private key (RSA or Ed25519) for migration: the same attributes
 * (and start date) as a generated key, so it is not readable afterwards;
 * CKA_LOCAL stays false, which is how imported keys are told apart.
 * pkey is borrowed; the copies of its secret parts made here are wiped.
 * DKIMSIGN_E_ALG: not RSA 1024..4096 or Ed25519; DKIMSIGN_E_EXISTS: the
 * label is taken.  On failure nothing is left on the token. */
int hsm_import(struct hsm *h, const char *label, EVP_PKEY *pkey, struct hsm_key **ret);

/* Find the key pair with this label.  DKIMSIGN_E_NO_KEY if absent. */
int hsm_find(struct hsm *h, const char *label, struct hsm_key **ret);

/* Every private key on the token with its public half, sorted by label.
 * ret is an owned array of owned keys; free with hsm_key_list_free(). */
int hsm_list(struct hsm *h, struct hsm_key ***ret, size_t *ret_count);
void hsm_key_list_free(struct hsm_key **keys, size_t count);

/* Destroy both halves of the key on the token.  DKIMSIGN_E_NO_KEY: the
 * handles no longer name this key (nothing is destroyed). */
int hsm_destroy(struct hsm *h, const struct hsm_key *key);

/*
 * Retire the key: set CKA_END_DATE to today (UTC) on its public half (see
 * struct hsm_key for why only there), and read it back.  key is not
 * updated; hsm_find() again to see the date.  DKIMSIGN_E_EXISTS: already
 * retired (the first date stays); DKIMSIGN_E_NO_KEY: the handles no longer
 * name this key; DKIMSIGN_E_FORMAT: no public key object to record it on;
 * DKIMSIGN_E_HSM: the token refused or did not keep the date.
 */
int hsm_retire(struct hsm *h, const struct hsm_key *key);

/*
 * A PIN read once and held for logins made later, by processes started
 * after the privileges to read the file are gone (dkimsignd with [token]
 * processes > 1): in a page of its own, locked in memory, left out of
 * core dumps, wiped by hsm_pin_free.  Errors as hsm_login_pin_file.
 */
struct hsm_pin;
int hsm_pin_read(const char *path, struct hsm_pin **ret);
/* Log in with a held PIN; it stays held.  As hsm_login. */
int hsm_login_pin(struct hsm *h, const struct hsm_pin *pin);
/* Wipe and free.  Accepts NULL; returns NULL. */
struct hsm_pin *hsm_pin_free(struct hsm_pin *p);

/*
 * Keep a copy of the PIN after the next hsm_login(), so signing can log in
 * again by itself when the token is reset or reinserted (a long-running
 * daemon that has dropped the privileges to read the PIN file).  The copy
 * lives in a page of its own, locked in memory and left out of core dumps,
 * and is wiped by hsm_close().  Short-lived tools don't call this.
 */
void hsm_keep_pin(struct hsm *h);

/*
 * Sign with session-object copies of the keys (C_CopyObject, CKA_TOKEN
 * false) rather than the token objects: SoftHSM checks a token object's
 * file on every signature, about 10% of an Ed25519 signature's cost.  At
 * most max keys get a copy (SoftHSM: about 8 KB each for Ed25519, 11 KB
 * for RSA-2048); the rest, and every key when the token refuses to copy,
 * sign with the token object.  A copy is as sensitive and unextractable as
 * its key, is seen only by this process, and is gone when it ends.  Copies
 * are made at a key's first signature and dropped by every hsm_list(), a
 * lost login, and hsm_destroy() of their key.  Call once, before any
 * signing; 0 (the default) signs with the token objects.
 * DKIMSIGN_E_INTERNAL: called twice, or max > HSM_KEY_COPIES_MAX.
 */
#define HSM_KEY_COPIES_MAX 65536
int hsm_key_copies(struct hsm *h, size_t max);
/* How many copies exist now (for a status line and tests). */
size_t hsm_key_copies_live(struct hsm *h);

/* A session for signing, one per thread.  Accepts NULL in _close.
 * DKIMSIGN_E_BUSY: the token opens no more sessions (CKR_SESSION_COUNT;
 * the admin session hsm_open keeps counts too). */
int hsm_session_open(struct hsm *h, struct hsm_session **ret);
struct hsm_session *hsm_session_close(struct hsm_session *s);

/*
 * Sign a SHA-256 digest with key: RSASSA-PKCS1-v1_5 (DigestInfo added here,
 * CKM_RSA_PKCS) or Ed25519 (CKM_EDDSA over the 32 digest octets, as RFC 8463
 * requires).  sig must hold HSM_SIG_MAX bytes; *ret_len gets the length.
 * DKIMSIGN_E_HSM: the token failed (temporary).
 *
 * When the token has lost the session or the login (reset, reinsertion:
 * CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED, CKR_DEVICE_REMOVED,
 * CKR_TOKEN_NOT_PRESENT, CKR_USER_NOT_LOGGED_IN), it opens a new session,
 * logs in again with the PIN kept by hsm_keep_pin(), and signs once more;
 * a key handle the token no longer knows is looked up again by label and
 * updated in key (atomically: workers share keys).  While recovery fails
 * it fails fast (DKIMSIGN_E_HSM) and tries again a little later.
 */
int hsm_sign(struct hsm_session *s, struct hsm_key *key, const uint8_t digest[32],
             uint8_t sig[HSM_SIG_MAX], size_t *ret_len);

/* How many times sessions or the login were brought back after a token
 * fault; cheap (no lock), for a log line when it changes. */
unsigned long hsm_recoveries(struct hsm *h);

/* The token's C_SignInit + C_Sign pairs made through h by this process
 * since hsm_open, and the CPU time (ns, the calling threads' own clocks)
 * spent inside them; cheap (no lock).  0 and 0 for NULL. */
void hsm_sign_cpu(struct hsm *h, uint64_t *ret_calls, uint64_t *ret_cpu_ns);

/*
 * Finalize and initialize the module again, log in again with the kept
 * PIN (hsm_keep_pin) and find the token again by its label or URI, so that this
 * process sees what other processes changed on the token since: keys
 * made, retired or destroyed by dkimsignctl.  Some modules (tpm2-pkcs11)
 * read the token's objects once per C_Initialize and never again.
 *
 * Waits, at most wait_ms, for the signatures in progress to finish;
 * signing waits meanwhile.  Every session and key copy of h is then gone:
 * sessions reopen on their next use, and a key loaded before (whose handle
 * belongs to the old initialization) is found again by label when it
 * next signs.  DKIMSIGN_E_BUSY (nothing changed) when a token call did
 * not return within wait_ms, or when another user in this process shares
 * the module; another error when the module would not initialize again
 * (then signing fails until a later call succeeds).  hsm_last_why() says
 * which.
 */
int hsm_reinitialize(struct hsm *h, unsigned wait_ms);
/* Whether the module is one known to show each process what other
 * processes changed on the token at every search (SoftHSM, opencryptoki:
 * by its C_GetInfo manufacturer), so that a reload needs no
 * re-initialization.  False for every other module. */
bool hsm_module_sees_changes(struct hsm *h);
/* Initializations since hsm_open (0: none). */
unsigned long hsm_reinitializations(struct hsm *h);

/* The CK_RV of the last failed PKCS#11 call in this thread, 0 if none. */
unsigned long hsm_last_ckr(void);
/*
 * After DKIMSIGN_E_ALG from hsm_generate or hsm_import, DKIMSIGN_E_PIN
 * from hsm_init_token (when not ""), a failed hsm_import whose private
 * object the token would not create: the sentence naming the limit and
 * what to do.
 * After a failed hsm_open_uri or hsm_init_token_uri: see there.
 * After DKIMSIGN_E_CONFIG from hsm_open, hsm_init_token, hsm_login_pin_file
 * or hsm_pin_read: the sentence saying which file was refused and why, for
 * the caller's message, e.g. "bad permissions on /etc/dkimsignd/pin (owner
 * uid 0, mode 0664): writable by its group (chmod g-w)".  The module, the
 * directories above it and the PIN file must be owned by root or the user
 * this runs as and writable by no one else (util/fileperm.h).  "" when no
 * file was refused.  Per thread; borrowed until the next call.
 */
const char *hsm_last_why(void);
/* A name such as "CKR_PIN_INCORRECT" for a CK_RV. */
const char *hsm_ckr_name(unsigned long rv);

#endif
