/* SPDX-License-Identifier: MIT */
/*
 * Names and classes of the dkimsign error codes.  Static strings only: no
 * allocation, no formatting, so it is safe anywhere, signal handlers included.
 */
#include "protocol/dkimsign-errors.h"

const char *dkimsign_strerror(int r)
{
        switch (r) {
        case DKIMSIGN_OK: return "success";
        case DKIMSIGN_E_INTERNAL: return "internal error";
        case DKIMSIGN_E_NOMEM: return "out of memory";
        case DKIMSIGN_E_INCOMPLETE: return "incomplete data";
        case DKIMSIGN_E_FORMAT: return "malformed data";
        case DKIMSIGN_E_TOO_LARGE: return "over a size limit";
        case DKIMSIGN_E_TRAILING: return "unexpected data after the end";
        case DKIMSIGN_E_NOSPACE: return "buffer full";
        case DKIMSIGN_E_SYSTEM: return "system call failed";
        case DKIMSIGN_E_DENIED: return "not authorized for this domain";
        case DKIMSIGN_E_NO_KEY: return "no signing key for this domain";
        case DKIMSIGN_E_ALG: return "unsupported algorithm or key size";
        case DKIMSIGN_E_HSM: return "the token failed";
        case DKIMSIGN_E_CLOSED: return "connection closed";
        case DKIMSIGN_E_TIMEOUT: return "timed out";
        case DKIMSIGN_E_NO_FROM: return "the message has no From header field";
        case DKIMSIGN_E_MULTI_FROM: return "the message has more than one From header field or address";
        case DKIMSIGN_E_VERSION: return "no protocol version in common";
        case DKIMSIGN_E_BUSY: return "the signing daemon is busy";
        case DKIMSIGN_E_PIN: return "the token refused the PIN";
        case DKIMSIGN_E_NO_TOKEN: return "no token with that label";
        case DKIMSIGN_E_EXISTS: return "already exists";
        case DKIMSIGN_E_CONFIG: return "invalid configuration";
        case DKIMSIGN_E_VERIFY: return "a signature failed its self-check";
        case DKIMSIGN_E_UNAVAILABLE: return "the signing daemon cannot be reached";
        case DKIMSIGN_E_PROTOCOL: return "protocol violation";
        case DKIMSIGN_E_HEADER: return "the message's header block is malformed";
        case DKIMSIGN_E_DNS_NOT_FOUND: return "no such DNS name or record";
        case DKIMSIGN_E_DNS_TEMPORARY: return "DNS lookup failed for now";
        case DKIMSIGN_E_STATE: return "the state file is unreadable or corrupt";
        case DKIMSIGN_E_QUOTA: return "over a signing quota; try again later";
        case DKIMSIGN_E_IDN: return "the domain is not a valid internationalized domain name (IDNA2008)";
        case DKIMSIGN_E_DNS_BOGUS: return "the DNS answer failed DNSSEC validation";
        default: return "unknown error";
        }
}

int dkimsign_err_is_temporary(int r)
{
        switch (r) {
        case DKIMSIGN_E_NOMEM:
        case DKIMSIGN_E_SYSTEM:
        case DKIMSIGN_E_HSM:
        case DKIMSIGN_E_CLOSED:
        case DKIMSIGN_E_TIMEOUT:
        case DKIMSIGN_E_BUSY:
        case DKIMSIGN_E_VERIFY:
        case DKIMSIGN_E_UNAVAILABLE:
        case DKIMSIGN_E_INTERNAL:
        case DKIMSIGN_E_DNS_TEMPORARY:
        case DKIMSIGN_E_QUOTA:
                return 1;
        default:
                return 0;
        }
}
