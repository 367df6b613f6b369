/* SPDX-License-Identifier: MIT */
/*
 * SPF record parsing.  See spf.h.
 *
 * The parser follows RFC 7208's ABNF (section 12) term by term; every term
 * is copied into a bounded struct, so the checker (spfcheck.c) never
 * re-reads the text.
 */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "protocol/dkimsign-errors.h"
#include "dnscheck/findings.h"
#include "util/memdup.h"
#include "dnscheck/spf.h"

static bool is_alpha(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
        return c >= '0' && c <= '9';
}

static bool is_alnum(char c)
{
        return is_alpha(c) || is_digit(c);
}

bool spf_is_record(const char *text, size_t len)
{
        return len >= 6 && strncasecmp(text, "v=spf1", 6) == 0 && (len == 6 || text[6] == ' ');
}

void spf_record_clear(struct spf_record *r)
{
        if (!r)
                return;
        for (size_t i = 0; i < r->count; i++) {
                free(r->terms[i].text);
                free(r->terms[i].domain);
        }
        free(r->terms);
        memset(r, 0, sizeof(*r));
}

/* ---- macro-string and domain-spec (RFC 7208 7.1) ---- */

static bool is_delimiter(char c)
{
        return c != '\0' && strchr(".-+,/_=", c) != NULL;
}

/*
 * A macro-string of len octets.  exp: the c, r and t macro letters are
 * allowed (only in exp= explanations).  *ret_ends_macro: the string ends
 * with a macro-expand (so a domain-spec needs no literal top label).
 */
static int check_macro_string(const char *s, size_t len, bool exp, bool *ret_has_macro,
                              bool *ret_ends_macro, char *why, size_t whylen)
{
        bool has_macro = false, ends_macro = false;
        size_t i = 0;

        while (i < len) {
                char c = s[i];

                if (c != '%') {
                        if ((unsigned char) c < 0x21 || (unsigned char) c > 0x7e) {
                                dkim_reason(why, whylen, "it holds a character that is not printable ASCII");
                                return DKIMSIGN_E_FORMAT;
                        }
                        ends_macro = false;
                        i++;
                        continue;
                }
                if (i + 1 >= len) {
                        dkim_reason(why, whylen, "a \"%%\" ends it (write %%%% for a percent sign)");
                        return DKIMSIGN_E_FORMAT;
                }
                c = s[i + 1];
                if (c == '%' || c == '_' || c == '-') {
                        has_macro = true;   /* needs expansion, like %{...} */
                        ends_macro = true;
                        i += 2;
                        continue;
                }
                if (c != '{') {
                        dkim_reason(why, whylen, "\"%%%c\" is not a macro (use %%{letter}, %%%%, %%_ or %%-)", c);
                        return DKIMSIGN_E_FORMAT;
                }
                i += 2;
                if (i >= len || !strchr("slodiphcrtvSLODIPHCRTV", s[i])) {
                        dkim_reason(why, whylen, "a macro needs one of the letters s l o d i p h c r t v after \"%%{\"");
                        return DKIMSIGN_E_FORMAT;
                }
                if (!exp && strchr("crtCRT", s[i])) {
                        dkim_reason(why, whylen, "the macro letter '%c' is only allowed in explanation text", s[i]);
                        return DKIMSIGN_E_FORMAT;
                }
                i++;
                if (i < len && is_digit(s[i])) {
                        unsigned digits = 0;

                        if (s[i] == '0') {
                                dkim_reason(why, whylen, "a macro's part count must not be 0");
                                return DKIMSIGN_E_FORMAT;
                        }
                        while (i < len && is_digit(s[i])) {
                                if (++digits > 3) {
                                        dkim_reason(why, whylen, "a macro's part count is too large");
                                        return DKIMSIGN_E_FORMAT;
                                }
                                i++;
                        }
                }
                if (i < len && (s[i] == 'r' || s[i] == 'R'))
                        i++;
                while (i < len && is_delimiter(s[i]))
                        i++;
                if (i >= len || s[i] != '}') {
                        dkim_reason(why, whylen, "a macro is not closed by \"}\"");
                        return DKIMSIGN_E_FORMAT;
                }
                i++;
                has_macro = true;
                ends_macro = true;
        }
        *ret_has_macro = has_macro;
        *ret_ends_macro = ends_macro;
        return 0;
}

/* toplabel = (*alphanum ALPHA *alphanum) / (1*alphanum "-" *(alphanum / "-") alphanum) */
static bool is_toplabel(const char *s, size_t len)
{
        bool alpha = false, hyphen = false;

        if (len == 0 || len > 63 || !is_alnum(s[0]) || !is_alnum(s[len - 1]))
                return false;
        for (size_t i = 0; i < len; i++) {
                if (is_alpha(s[i]))
                        alpha = true;
                else if (s[i] == '-')
                        hyphen = true;
                else if (!is_digit(s[i]))
                        return false;
        }
        return alpha || hyphen;
}

/* Labels of 1 to 63 octets and 253 octets in all, once macros are ruled out. */
static bool literal_name_fits(const char *s, size_t len)
{
        size_t label = 0;

        if (len > 0 && s[len - 1] == '.')
                len--;
        if (len == 0 || len > 253)
                return false;
        for (size_t i = 0; i < len; i++) {
                if (s[i] == '.') {
                        if (label == 0)
                                return false;
                        label = 0;
                } else if (++label > 63) {
                        return false;
                }
        }
        return label > 0;
}

/* domain-spec = macro-string domain-end; domain-end = ("." toplabel ["."]) / macro-expand */
static int check_domain_spec(const char *s, size_t len, bool *ret_has_macro, char *why, size_t whylen)
{
        bool has_macro, ends_macro;
        size_t end = len, dot;
        int r;

        if (len == 0) {
                dkim_reason(why, whylen, "the domain is empty");
                return DKIMSIGN_E_FORMAT;
        }
        r = check_macro_string(s, len, false, &has_macro, &ends_macro, why, whylen);
        if (r < 0)
                return r;
        *ret_has_macro = has_macro;
        if (ends_macro)
                return 0;
        if (s[end - 1] == '.')
                end--;
        for (dot = end; dot > 0 && s[dot - 1] != '.'; dot--)
                ;
        if (dot == 0 || !is_toplabel(s + dot, end - dot)) {
                dkim_reason(why, whylen, "\"%.*s\" does not end in a top-level label (like .com)", (int) len, s);
                return DKIMSIGN_E_FORMAT;
        }
        if (!has_macro && !literal_name_fits(s, len)) {
                dkim_reason(why, whylen, "\"%.*s\" is not a valid domain name (empty or over-long label)", (int) len, s);
                return DKIMSIGN_E_FORMAT;
        }
        return 0;
}

/* ---- terms ---- */

/* "/" ("0" / %x31-39 0*N DIGIT) with value <= max, as the whole of s. */
static int parse_cidr(const char *s, size_t len, int max, int *ret)
{
        int v = 0;

        if (len == 0 || len > 3 || (s[0] == '0' && len > 1))
                return DKIMSIGN_E_FORMAT;
        for (size_t i = 0; i < len; i++) {
                if (!is_digit(s[i]))
                        return DKIMSIGN_E_FORMAT;
                v = v * 10 + (s[i] - '0');
        }
        if (v > max)
                return DKIMSIGN_E_FORMAT;
        *ret = v;
        return 0;
}

static bool all_digits(const char *s, size_t len)
{
        if (len == 0)
                return false;
        for (size_t i = 0; i < len; i++)
                if (!is_digit(s[i]))
                        return false;
        return true;
}

/* [":" domain-spec] [dual-cidr-length] of a and mx: the CIDR part is taken
 * from the end, since "/" may appear in a macro-string. */
static int parse_a_mx(struct spf_term *t, const char *rest, size_t len, char *why, size_t whylen)
{
        size_t dlen = len;
        int r;

        for (size_t i = len; i >= 2; i--) {
                if (rest[i - 1] == '/' && rest[i - 2] == '/') {
                        if (!all_digits(rest + i, len - i))
                                break;
                        if (parse_cidr(rest + i, len - i, 128, &t->cidr6) < 0) {
                                dkim_reason(why, whylen, "the IPv6 prefix length must be 0 to 128");
                                return DKIMSIGN_E_FORMAT;
                        }
                        dlen = i - 2;
                        break;
                }
        }
        for (size_t i = dlen; i >= 1; i--) {
                if (rest[i - 1] == '/') {
                        if (!all_digits(rest + i, dlen - i))
                                break;
                        if (parse_cidr(rest + i, dlen - i, 32, &t->cidr4) < 0) {
                                dkim_reason(why, whylen, "the IPv4 prefix length must be 0 to 32");
                                return DKIMSIGN_E_FORMAT;
                        }
                        dlen = i - 1;
                        break;
                }
        }
        if (dlen == 0)
                return 0;
        if (rest[0] != ':') {
                dkim_reason(why, whylen, "expected \":domain\" or \"/prefix\" after the mechanism name");
                return DKIMSIGN_E_FORMAT;
        }
        r = check_domain_spec(rest + 1, dlen - 1, &t->has_macro, why, whylen);
        if (r == 0) {
                t->domain = dns_memdup_str(rest + 1, dlen - 1);
                if (!t->domain)
                        r = DKIMSIGN_E_NOMEM;
        }
        return r;
}

/* ":" domain-spec, required (include, exists) or optional (ptr). */
static int parse_colon_domain(struct spf_term *t, const char *rest, size_t len, bool required, char *why,
                              size_t whylen)
{
        int r;

        if (len == 0 && !required)
                return 0;
        if (len == 0 || rest[0] != ':') {
                dkim_reason(why, whylen, "it needs \":domain\"");
                return DKIMSIGN_E_FORMAT;
        }
        r = check_domain_spec(rest + 1, len - 1, &t->has_macro, why, whylen);
        if (r == 0) {
                t->domain = dns_memdup_str(rest + 1, len - 1);
                if (!t->domain)
                        r = DKIMSIGN_E_NOMEM;
        }
        return r;
}

static int parse_ip(struct spf_term *t, const char *rest, size_t len, int family, char *why, size_t whylen)
{
        char addr[INET6_ADDRSTRLEN + 1];
        const char *slash;
        size_t alen;
        int max = family == AF_INET ? 32 : 128;

        if (len == 0 || rest[0] != ':') {
                dkim_reason(why, whylen, "it needs \":address\"");
                return DKIMSIGN_E_FORMAT;
        }
        rest++;
        len--;
        slash = memchr(rest, '/', len);
        alen = slash ? (size_t) (slash - rest) : len;
        if (alen == 0 || alen >= sizeof(addr)) {
                dkim_reason(why, whylen, "the address is missing or too long");
                return DKIMSIGN_E_FORMAT;
        }
        memcpy(addr, rest, alen);
        addr[alen] = '\0';
        if (inet_pton(family, addr, t->addr) != 1) {
                dkim_reason(why, whylen, "\"%s\" is not an %s address", addr, family == AF_INET ? "IPv4" : "IPv6");
                return DKIMSIGN_E_FORMAT;
        }
        if (slash) {
                int *slot = family == AF_INET ? &t->cidr4 : &t->cidr6;

                if (parse_cidr(slash + 1, len - alen - 1, max, slot) < 0) {
                        dkim_reason(why, whylen, "the prefix length must be 0 to %d, without leading zeros", max);
                        return DKIMSIGN_E_FORMAT;
                }
        }
        return 0;
}

static const struct {
        const char *name;
        enum spf_kind kind;
} mechanisms[] = {
        { "all", SPF_ALL },
        { "include", SPF_INCLUDE },
        { "a", SPF_A },
        { "mx", SPF_MX },
        { "ptr", SPF_PTR },
        { "ip4", SPF_IP4 },
        { "ip6", SPF_IP6 },
        { "exists", SPF_EXISTS },
};

static int parse_mechanism(struct spf_term *t, const char *s, size_t len, char *why, size_t whylen)
{
        size_t nlen = 0;

        if (len > 0 && strchr("+-~?", s[0])) {
                t->qualifier = s[0];
                s++;
                len--;
        }
        while (nlen < len && (is_alnum(s[nlen]) || s[nlen] == '-' || s[nlen] == '_' || s[nlen] == '.'))
                nlen++;
        for (size_t i = 0; i < sizeof(mechanisms) / sizeof(mechanisms[0]); i++) {
                if (strlen(mechanisms[i].name) != nlen || strncasecmp(s, mechanisms[i].name, nlen) != 0)
                        continue;
                t->kind = mechanisms[i].kind;
                switch (t->kind) {
                case SPF_ALL:
                        if (nlen != len) {
                                dkim_reason(why, whylen, "\"all\" takes no argument");
                                return DKIMSIGN_E_FORMAT;
                        }
                        return 0;
                case SPF_INCLUDE:
                case SPF_EXISTS:
                        return parse_colon_domain(t, s + nlen, len - nlen, true, why, whylen);
                case SPF_PTR:
                        return parse_colon_domain(t, s + nlen, len - nlen, false, why, whylen);
                case SPF_A:
                case SPF_MX:
                        return parse_a_mx(t, s + nlen, len - nlen, why, whylen);
                case SPF_IP4:
                        return parse_ip(t, s + nlen, len - nlen, AF_INET, why, whylen);
                case SPF_IP6:
                        return parse_ip(t, s + nlen, len - nlen, AF_INET6, why, whylen);
                default:
                        return DKIMSIGN_E_INTERNAL;
                }
        }
        dkim_reason(why, whylen, "\"%.*s\" is not an SPF mechanism (all, include, a, mx, ptr, ip4, ip6, exists)",
            (int) (nlen ? nlen : len), s);
        return DKIMSIGN_E_FORMAT;
}

/* name "=" macro-string; name = ALPHA *(ALPHA / DIGIT / "-" / "_" / ".") */
static int parse_modifier(struct spf_term *t, const char *s, size_t nlen, size_t len, char *why, size_t whylen)
{
        const char *value = s + nlen + 1;
        size_t vlen = len - nlen - 1;
        bool has_macro, ends_macro;

        if (nlen == 8 && strncasecmp(s, "redirect", 8) == 0) {
                t->kind = SPF_REDIRECT;
        } else if (nlen == 3 && strncasecmp(s, "exp", 3) == 0) {
                t->kind = SPF_EXP;
        } else {
                t->kind = SPF_UNKNOWN_MODIFIER;
                return check_macro_string(value, vlen, false, &has_macro, &ends_macro, why, whylen);
        }
        if (check_domain_spec(value, vlen, &t->has_macro, why, whylen) < 0)
                return DKIMSIGN_E_FORMAT;
        t->domain = dns_memdup_str(value, vlen);
        return t->domain ? 0 : DKIMSIGN_E_NOMEM;
}

static int parse_term(struct spf_term *t, const char *s, size_t len, char *why, size_t whylen)
{
        size_t nlen = 0;

        t->qualifier = '+';
        t->cidr4 = t->cidr6 = -1;
        t->text = dns_memdup_str(s, len);
        if (!t->text)
                return DKIMSIGN_E_NOMEM;
        if (is_alpha(s[0])) {
                while (nlen < len && (is_alnum(s[nlen]) || s[nlen] == '-' || s[nlen] == '_' || s[nlen] == '.'))
                        nlen++;
                if (nlen < len && s[nlen] == '=')
                        return parse_modifier(t, s, nlen, len, why, whylen);
        }
        return parse_mechanism(t, s, len, why, whylen);
}

int spf_parse(const char *text, size_t len, struct spf_record *ret, char *why, size_t whylen)
{
        struct spf_record rec = { .all_index = -1, .redirect_index = -1 };
        size_t pos = 6;
        bool exp_seen = false;
        int r = 0;

        dkim_reason(why, whylen, "%s", "");
        if (len > SPF_RECORD_MAX) {
                dkim_reason(why, whylen, "the record is longer than %d octets", SPF_RECORD_MAX);
                return DKIMSIGN_E_TOO_LARGE;
        }
        if (!spf_is_record(text, len)) {
                dkim_reason(why, whylen, "an SPF record starts with \"v=spf1\" and a space");
                return DKIMSIGN_E_FORMAT;
        }
        for (size_t i = 0; i < len; i++) {
                if ((unsigned char) text[i] < 0x20 || (unsigned char) text[i] > 0x7e) {
                        dkim_reason(why, whylen, "the record holds a character that is not printable ASCII (or a "
                            "tab) at offset %zu", i);
                        return DKIMSIGN_E_FORMAT;
                }
        }
        while (r == 0 && pos < len) {
                char term_why[200];
                size_t end;
                struct spf_term *grown;

                if (text[pos] == ' ') {
                        pos++;
                        continue;
                }
                for (end = pos; end < len && text[end] != ' '; end++)
                        ;
                if (rec.count == SPF_TERMS_MAX) {
                        dkim_reason(why, whylen, "the record has more than %d terms", SPF_TERMS_MAX);
                        r = DKIMSIGN_E_TOO_LARGE;
                        break;
                }
                grown = reallocarray(rec.terms, rec.count + 1, sizeof(*grown));
                if (!grown) {
                        r = DKIMSIGN_E_NOMEM;
                        break;
                }
                rec.terms = grown;
                memset(&grown[rec.count], 0, sizeof(*grown));
                term_why[0] = '\0';
                r = parse_term(&grown[rec.count], text + pos, end - pos, term_why, sizeof(term_why));
                rec.count++;   /* even on failure: clear frees what the term holds */
                if (r == DKIMSIGN_E_FORMAT) {
                        dkim_reason(why, whylen, "the term \"%.*s\" is invalid: %s", (int) (end - pos > 80 ? 80 : end - pos),
                            text + pos, term_why);
                        break;
                }
                if (r < 0)
                        break;
                if (grown[rec.count - 1].kind == SPF_ALL && rec.all_index < 0)
                        rec.all_index = (int) rec.count - 1;
                if (grown[rec.count - 1].kind == SPF_REDIRECT) {
                        if (rec.redirect_index >= 0) {
                                dkim_reason(why, whylen, "redirect= appears more than once");
                                r = DKIMSIGN_E_FORMAT;
                        }
                        rec.redirect_index = (int) rec.count - 1;
                }
                if (grown[rec.count - 1].kind == SPF_EXP) {
                        if (exp_seen) {
                                dkim_reason(why, whylen, "exp= appears more than once");
                                r = DKIMSIGN_E_FORMAT;
                        }
                        exp_seen = true;
                }
                pos = end;
        }
        if (r < 0) {
                spf_record_clear(&rec);
                return r;
        }
        *ret = rec;
        return 0;
}
