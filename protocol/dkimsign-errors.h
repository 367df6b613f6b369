/* SPDX-License-Identifier: MIT */
/*
 * The one error enum of dkimsign, shared by every module, the daemon, the
 * client library and its users.  0 is success, every failure is negative.
 * This header is installed with dkimsign.h, so it must stay self-contained.
 */
#ifndef PROTOCOL_DKIMSIGN_ERRORS_H
#define PROTOCOL_DKIMSIGN_ERRORS_H

#ifdef __cplusplus
extern "C" {
#endif

enum dkimsign_err {
        DKIMSIGN_OK = 0,
        DKIMSIGN_E_INTERNAL = -1,     /* an invariant broke: a bug */
        DKIMSIGN_E_NOMEM = -2,        /* out of memory */
        DKIMSIGN_E_INCOMPLETE = -3,   /* more bytes are needed */
        DKIMSIGN_E_FORMAT = -4,       /* malformed input */
        DKIMSIGN_E_TOO_LARGE = -5,    /* input over a configured limit */
        DKIMSIGN_E_TRAILING = -6,     /* unread bytes after a complete decode */
        DKIMSIGN_E_NOSPACE = -7,      /* a buffer reached its maximum */
        DKIMSIGN_E_SYSTEM = -8,       /* a system call failed; errno saved */
        DKIMSIGN_E_DENIED = -9,       /* the peer may not sign for this domain */
        DKIMSIGN_E_NO_KEY = -10,      /* no key for this domain or selector */
        DKIMSIGN_E_ALG = -11,         /* unsupported algorithm or key size */
        DKIMSIGN_E_HSM = -12,         /* the token failed (temporary) */
        DKIMSIGN_E_CLOSED = -13,      /* the peer closed the connection */
        DKIMSIGN_E_TIMEOUT = -14,     /* an operation took too long */
        DKIMSIGN_E_NO_FROM = -15,     /* the message has no From field */
        DKIMSIGN_E_MULTI_FROM = -16,  /* more than one From field or address */
        DKIMSIGN_E_VERSION = -17,     /* no protocol version in common */
        DKIMSIGN_E_BUSY = -18,        /* the daemon is at its limit; retry */
        DKIMSIGN_E_PIN = -19,         /* the token refused the PIN */
        DKIMSIGN_E_NO_TOKEN = -20,    /* no token with that label */
        DKIMSIGN_E_EXISTS = -21,      /* the object already exists */
        DKIMSIGN_E_CONFIG = -22,      /* invalid configuration */
        DKIMSIGN_E_VERIFY = -23,      /* a signature failed its self-check */
        DKIMSIGN_E_UNAVAILABLE = -24, /* the daemon could not be reached */
        DKIMSIGN_E_PROTOCOL = -25,    /* the peer broke the protocol */
        DKIMSIGN_E_HEADER = -26,      /* the message's header block is malformed */
        DKIMSIGN_E_DNS_NOT_FOUND = -27, /* DNS: no such name, or no record of that type */
        DKIMSIGN_E_DNS_TEMPORARY = -28, /* DNS: no answer now (timeout, SERVFAIL, refused) */
        DKIMSIGN_E_STATE = -29,       /* a persisted state file is unreadable or corrupt */
        DKIMSIGN_E_QUOTA = -30,       /* over a signing quota; retry later */
        DKIMSIGN_E_IDN = -31,         /* a domain is no valid internationalized domain name */
        DKIMSIGN_E_DNS_BOGUS = -32,   /* DNS: the answer failed DNSSEC validation */
        DKIMSIGN_E_ERR_MIN_ = -32,
};

/* A short, static, human-readable description of r; never NULL. */
const char *dkimsign_strerror(int r);

/* Non-zero when a failure with code r may succeed if retried later. */
int dkimsign_err_is_temporary(int r);

#ifdef __cplusplus
}
#endif

#endif
