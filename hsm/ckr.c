/* SPDX-License-Identifier: MIT */
/*
 * What a CK_RV means: the mapping of PKCS#11 return values to dkimsign_err
 * codes (the one place it is done), the CK_RV of the last failed call per
 * thread for the caller's log line (hsm_last_ckr), the predicates that
 * tell a gone object, session or login apart, and the CKR names.
 *
 * It makes no PKCS#11 call and never logs: a name is returned, never
 * printed.
 */
#include "hsm/hsm-private.h"

_Thread_local CK_RV hsmi_last_ckr;

/* Remember rv for hsm_last_ckr() and map it to the error the caller can act on. */
int hsmi_ckr_fail(CK_RV rv)
{
        hsmi_last_ckr = rv;
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

/* Signing failures are temporary (E_HSM) unless the key itself is gone.
 * A key listed as one that signs but now "not permitted" or "of another
 * type" is a handle that names another object after a token reset (the
 * key was looked up again and still failed): temporary too, never a
 * permanent refusal that would bounce mail. */
int hsmi_sign_fail(CK_RV rv)
{
        hsmi_last_ckr = rv;
        switch (rv) {
        case CKR_KEY_HANDLE_INVALID:
        case CKR_OBJECT_HANDLE_INVALID:
                return DKIMSIGN_E_NO_KEY;
        default:
                return DKIMSIGN_E_HSM;
        }
}

/* The object named by a handle is gone (destroyed meanwhile). */
bool hsmi_handle_gone_obj(CK_RV rv)
{
        return rv == CKR_OBJECT_HANDLE_INVALID || rv == CKR_KEY_HANDLE_INVALID;
}

/* The handle may name something else now: gone, or (after a token reset
 * that numbered the objects anew) another object, which can't sign this
 * way.  Signing looks the key up again by name. */
bool hsmi_handle_stale(CK_RV rv)
{
        return hsmi_handle_gone_obj(rv) || rv == CKR_KEY_FUNCTION_NOT_PERMITTED || rv == CKR_KEY_TYPE_INCONSISTENT;
}

/* The handle no longer names a session: never close it (the module may
 * already have given its number to a new session). */
bool hsmi_handle_gone(CK_RV rv)
{
        return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED || rv == CKR_DEVICE_REMOVED ||
               rv == CKR_TOKEN_NOT_PRESENT;
}

/* Failures after which the session, or the login, is gone: the token was
 * reset, removed and reinserted, or logged out under us.  A new session
 * (and login) makes signing work again, so the request is retried once. */
bool hsmi_session_lost(CK_RV rv)
{
        return hsmi_handle_gone(rv) || rv == CKR_TOKEN_NOT_RECOGNIZED || rv == CKR_USER_NOT_LOGGED_IN;
}

unsigned long hsm_last_ckr(void)
{
        return hsmi_last_ckr;
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
