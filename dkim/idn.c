/* SPDX-License-Identifier: MIT */
/*
 * Domains to A-labels and back, through libidn2.  See idn.h.
 *
 * Processing: IDNA2008 (RFC 5890-5893) with the UTS #46 mapping,
 * non-transitional (IDN2_NONTRANSITIONAL): "faß.de" stays xn--fa-hia.de,
 * as browsers and the registries of .de and others register it, where
 * transitional processing would sign for fass.de, another domain.  The
 * mapping also lowercases and NFC-normalizes (IDN2_NFC_INPUT says so for
 * libidn2 versions that do not imply it), so "BÜCHER.example" and a
 * decomposed "u" + U+0308 name the one domain their owner registered.
 *
 * IDN2_USE_STD3_ASCII_RULES is not used: libidn2 2.3 then drops a '_'
 * instead of refusing it ("a_b" became "ab": a different domain).  The
 * A-label form is checked as a host name (dkim_domain_is_valid) instead.
 *
 * The sentences are ours rather than idn2_strerror()'s, which goes through
 * gettext: they stay the same whatever the locale, and gettext may read
 * catalogs from disk, which dkim/ never does.  Never logs.
 */
#include "dkim/idn.h"

#include <string.h>
#include <strings.h>
#include <idn2.h>

#include "protocol/dkimsign-errors.h"

static const char *idn_why(int rc)
{
        switch (rc) {
        case IDN2_ENCODING_ERROR:
                return "it is not valid UTF-8";
        case IDN2_PUNYCODE_BAD_INPUT:
        case IDN2_PUNYCODE_BIG_OUTPUT:
        case IDN2_PUNYCODE_OVERFLOW:
        case IDN2_INVALID_ALABEL:
        case IDN2_ALABEL_ROUNDTRIP_FAILED:
                return "an xn-- label is not a valid A-label (bad Punycode)";
        case IDN2_TOO_BIG_DOMAIN:
                return "it is longer than 253 octets in A-label form";
        case IDN2_TOO_BIG_LABEL:
                return "a label is longer than 63 octets in A-label form";
        case IDN2_HYPHEN_STARTEND:
                return "a label starts or ends with a hyphen";
        case IDN2_2HYPHEN:
                return "a label has hyphens in its third and fourth places without being an A-label";
        case IDN2_LEADING_COMBINING:
                return "a label starts with a combining mark";
        case IDN2_DISALLOWED:
        case IDN2_INVALID_TRANSITIONAL:
        case IDN2_INVALID_NONTRANSITIONAL:
                return "it contains a character IDNA2008 does not allow in domain names";
        case IDN2_CONTEXTJ:
        case IDN2_CONTEXTJ_NO_RULE:
                return "it contains a joiner (U+200C or U+200D) where IDNA2008 does not allow one";
        case IDN2_CONTEXTO:
        case IDN2_CONTEXTO_NO_RULE:
                return "it contains a character IDNA2008 allows only in a context it is not in";
        case IDN2_UNASSIGNED:
                return "it contains a code point Unicode has not assigned";
        case IDN2_BIDI:
                return "it mixes right-to-left and left-to-right text as the Bidi rule (RFC 5893) forbids";
        case IDN2_DOT_IN_LABEL:
                return "a label contains a dot";
        default:
                return "IDNA2008 refuses it";
        }
}

static bool has_alabel(const char *s, size_t len)
{
        for (size_t i = 0; i + 4 <= len; i++)
                if ((i == 0 || s[i - 1] == '.') && strncasecmp(s + i, "xn--", 4) == 0)
                        return true;
        return false;
}

static bool is_ascii(const char *s, size_t len)
{
        for (size_t i = 0; i < len; i++)
                if ((unsigned char) s[i] >= 0x80)
                        return false;
        return true;
}

static int refuse(int r, const char *why, const char **ret_why)
{
        if (ret_why)
                *ret_why = why;
        return r;
}

int dkim_domain_to_ascii(const char *s, size_t len, char ret[DKIM_DOMAIN_SIZE], const char **ret_why)
{
        char in[DKIM_IDN_INPUT_MAX + 1];
        char *out = NULL;
        int rc;

        if (!s || len == 0 || memchr(s, '\0', len))
                return refuse(DKIMSIGN_E_FORMAT, "it is empty or contains a NUL", ret_why);
        /* The common case, and the one libidn2 would refuse for no good
         * reason ("ab--cd" labels exist): LDH ASCII stays as it is. */
        if (is_ascii(s, len) && !has_alabel(s, len)) {
                if (!dkim_domain_is_valid(s, len))
                        return refuse(DKIMSIGN_E_FORMAT, "labels are letters, digits and inner hyphens, "
                                      "1 to 63 octets each, between dots", ret_why);
                for (size_t i = 0; i < len; i++)
                        ret[i] = (char) (s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]);
                ret[len] = '\0';
                return 0;
        }
        if (len > DKIM_IDN_INPUT_MAX)
                return refuse(DKIMSIGN_E_IDN, "it is longer than 253 octets in A-label form", ret_why);
        memcpy(in, s, len);
        in[len] = '\0';
        rc = idn2_to_ascii_8z(in, &out, IDN2_NONTRANSITIONAL | IDN2_NFC_INPUT);
        if (rc == IDN2_MALLOC)
                return refuse(DKIMSIGN_E_NOMEM, "out of memory", ret_why);
        if (rc != IDN2_OK)
                return refuse(DKIMSIGN_E_IDN, idn_why(rc), ret_why);
        size_t n = strlen(out);
        if (n > DKIM_DOMAIN_MAX) {
                idn2_free(out);
                return refuse(DKIMSIGN_E_IDN, "it is longer than 253 octets in A-label form", ret_why);
        }
        if (!dkim_domain_is_valid(out, n)) {
                idn2_free(out);
                return refuse(DKIMSIGN_E_IDN, "its A-label form is not a host name (an empty label, or a "
                              "character other than a letter, digit or hyphen)", ret_why);
        }
        memcpy(ret, out, n + 1);
        idn2_free(out);
        return 0;
}

bool dkim_domain_to_unicode(const char *ascii, char *ret, size_t size)
{
        char lower[DKIM_DOMAIN_SIZE], back[DKIM_DOMAIN_SIZE];
        char *u = NULL;
        bool ok;

        /* Lowercase first: libidn2 keeps the case of ASCII letters. */
        if (!ascii || !has_alabel(ascii, strlen(ascii)) ||
            dkim_domain_to_ascii(ascii, strlen(ascii), lower, NULL) < 0)
                return false;
        if (idn2_to_unicode_8z8z(lower, &u, 0) != IDN2_OK)
                return false;
        /* An A-label that decodes but is not what IDNA2008 would make of
         * its U-label is shown as it is, never as a name it is not. */
        ok = strlen(u) < size && dkim_domain_to_ascii(u, strlen(u), back, NULL) == 0 && strcmp(back, lower) == 0;
        if (ok)
                memcpy(ret, u, strlen(u) + 1);
        idn2_free(u);
        return ok;
}
