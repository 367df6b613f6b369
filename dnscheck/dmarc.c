/* SPDX-License-Identifier: MIT */
/*
 * DMARC record parsing.  See dmarc.h.
 *
 * The parser keeps what receivers would discard apart from what they would
 * merely ignore: a record that is not a tag-list starting with v=DMARC1 is
 * refused (receivers discard it), while a bad value is recorded for the
 * check (dmarccheck.c) to report with its fix.  The tag-list syntax is
 * dkim/taglist.c's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "protocol/dkimsign-errors.h"
#include "dnscheck/findings.h"
#include "util/memdup.h"
#include "dnscheck/dmarc.h"
#include "dkim/taglist.h"

static bool value_is(const struct taglist_tag *t, const char *word)
{
        return t->value_len == strlen(word) && strncasecmp(t->value, word, t->value_len) == 0;
}

const char *dmarc_policy_name(enum dmarc_policy p)
{
        switch (p) {
        case DMARC_POLICY_NONE: return "none";
        case DMARC_POLICY_QUARANTINE: return "quarantine";
        case DMARC_POLICY_REJECT: return "reject";
        case DMARC_POLICY_INVALID: return "invalid";
        default: return "absent";
        }
}

bool dmarc_is_record(const char *text, size_t len)
{
        struct taglist_tag t;
        size_t pos = 0;

        return taglist_next(text, len, &pos, &t, NULL, 0) == 1 && strcasecmp(t.name, "v") == 0 &&
               t.value_len == 6 && memcmp(t.value, "DMARC1", 6) == 0;
}

void dmarc_record_clear(struct dmarc_record *r)
{
        if (!r)
                return;
        free(r->fo);
        for (size_t i = 0; i < r->rua_count; i++) {
                free(r->rua[i].uri);
                free(r->rua[i].domain);
        }
        for (size_t i = 0; i < r->ruf_count; i++) {
                free(r->ruf[i].uri);
                free(r->ruf[i].domain);
        }
        memset(r, 0, sizeof(*r));
}

static enum dmarc_policy parse_policy(const struct taglist_tag *t)
{
        if (value_is(t, "none"))
                return DMARC_POLICY_NONE;
        if (value_is(t, "quarantine"))
                return DMARC_POLICY_QUARANTINE;
        if (value_is(t, "reject"))
                return DMARC_POLICY_REJECT;
        return DMARC_POLICY_INVALID;
}

static char parse_choice(const struct taglist_tag *t, const char *choices)
{
        if (t->value_len == 1 && strchr(choices, t->value[0] | 0x20))
                return (char) (t->value[0] | 0x20);
        return '?';
}

static int parse_pct(const struct taglist_tag *t)
{
        int v = 0;

        if (t->value_len == 0 || t->value_len > 3)
                return -2;
        for (size_t i = 0; i < t->value_len; i++) {
                if (t->value[i] < '0' || t->value[i] > '9')
                        return -2;
                v = v * 10 + (t->value[i] - '0');
        }
        return v <= 100 ? v : -2;
}

static bool fo_is_valid(const char *s, size_t len)
{
        size_t item = 0;

        for (size_t i = 0; i <= len; i++) {
                if (i == len || s[i] == ':') {
                        if (item != 1)
                                return false;
                        item = 0;
                        continue;
                }
                if (taglist_is_wsp(s[i]))
                        continue;
                if (!strchr("01ds", s[i] | 0x20) || ++item > 1)
                        return false;
        }
        return true;
}

/* A DNS name made of letters, digits and hyphens, labels of 1 to 63. */
static bool hostname_is_valid(const char *s, size_t len)
{
        size_t label = 0;

        if (len == 0 || len > 253)
                return false;
        for (size_t i = 0; i < len; i++) {
                char c = s[i];

                if (c == '.') {
                        if (label == 0 || s[i - 1] == '-')
                                return false;
                        label = 0;
                        continue;
                }
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'))
                        return false;
                if (label == 0 && c == '-')
                        return false;
                if (++label > 63)
                        return false;
        }
        return label > 0 && s[len - 1] != '-';
}

/* "mailto:local@domain[?...]" with an optional "!size" suffix. */
static int parse_uri(const char *s, size_t len, struct dmarc_uri *u)
{
        const char *bang = NULL, *at, *addr, *end;
        size_t ulen = len;

        for (size_t i = len; i > 0; i--)
                if (s[i - 1] == '!') {
                        bang = s + i - 1;
                        break;
                }
        if (bang) {
                const char *sz = bang + 1;
                size_t slen = len - (size_t) (sz - s), digits = 0;

                while (digits < slen && sz[digits] >= '0' && sz[digits] <= '9')
                        digits++;
                if (digits > 0 && (digits == slen || (digits + 1 == slen && strchr("kmgtKMGT", sz[digits])))) {
                        u->has_size = true;
                        ulen = (size_t) (bang - s);
                }
        }
        u->uri = dns_memdup_str(s, ulen);
        if (!u->uri)
                return DKIMSIGN_E_NOMEM;
        if (ulen < 8 || strncasecmp(s, "mailto:", 7) != 0)
                return 0;
        addr = s + 7;
        end = s + ulen;
        for (const char *q = addr; q < end; q++)
                if (*q == '?') {
                        end = q;
                        break;
                }
        at = NULL;
        for (const char *q = addr; q < end; q++) {
                if (*q == '@') {
                        if (at)
                                return 0;   /* two @ */
                        at = q;
                } else if ((unsigned char) *q <= 0x20 || (unsigned char) *q >= 0x7f || *q == ',' || *q == ';') {
                        return 0;
                }
        }
        if (!at || at == addr || !hostname_is_valid(at + 1, (size_t) (end - at - 1)))
                return 0;
        u->domain = dns_memdup_str(at + 1, (size_t) (end - at - 1));
        if (!u->domain)
                return DKIMSIGN_E_NOMEM;
        for (char *c = u->domain; *c; c++)
                if (*c >= 'A' && *c <= 'Z')
                        *c = (char) (*c + 32);
        u->valid = true;
        return 0;
}

static int parse_uris(const struct taglist_tag *t, struct dmarc_uri *uris, size_t *ret_count, char *why,
                      size_t whylen)
{
        size_t start = 0;
        int r;

        while (start <= t->value_len) {
                size_t end = start, a, b;

                while (end < t->value_len && t->value[end] != ',')
                        end++;
                a = start;
                b = end;
                while (a < b && taglist_is_wsp(t->value[a]))
                        a++;
                while (b > a && taglist_is_wsp(t->value[b - 1]))
                        b--;
                if (b > a) {
                        if (*ret_count == DMARC_URIS_MAX) {
                                dkim_reason(why, whylen, "%s= lists more than %d addresses.", t->name, DMARC_URIS_MAX);
                                return DKIMSIGN_E_TOO_LARGE;
                        }
                        r = parse_uri(t->value + a, b - a, &uris[*ret_count]);
                        (*ret_count)++;   /* even on failure: clear frees what it holds */
                        if (r < 0)
                                return r;
                }
                start = end + 1;
        }
        return 0;
}

static void note_unknown(struct dmarc_record *rec, const char *name)
{
        size_t used = strlen(rec->unknown);

        if (used + strlen(name) + 2 < sizeof(rec->unknown))
                snprintf(rec->unknown + used, sizeof(rec->unknown) - used, "%s%s", used ? " " : "", name);
}

static int apply_tag(struct dmarc_record *rec, const struct taglist_tag *t, char *why, size_t whylen)
{
        const char *n = t->name;

        if (strcasecmp(n, "p") == 0)
                rec->p = parse_policy(t);
        else if (strcasecmp(n, "sp") == 0)
                rec->sp = parse_policy(t);
        else if (strcasecmp(n, "np") == 0)
                rec->np = parse_policy(t);
        else if (strcasecmp(n, "adkim") == 0)
                rec->adkim = parse_choice(t, "rs");
        else if (strcasecmp(n, "aspf") == 0)
                rec->aspf = parse_choice(t, "rs");
        else if (strcasecmp(n, "pct") == 0)
                rec->pct = parse_pct(t);
        else if (strcasecmp(n, "t") == 0)
                rec->t = parse_choice(t, "yn");
        else if (strcasecmp(n, "psd") == 0)
                rec->psd = parse_choice(t, "ynu");
        else if (strcasecmp(n, "ri") == 0)
                rec->has_ri = true;
        else if (strcasecmp(n, "rf") == 0)
                rec->has_rf = true;
        else if (strcasecmp(n, "fo") == 0) {
                rec->fo = dns_memdup_str(t->value, t->value_len);
                if (!rec->fo)
                        return DKIMSIGN_E_NOMEM;
                rec->fo_valid = fo_is_valid(t->value, t->value_len);
        } else if (strcasecmp(n, "rua") == 0)
                return parse_uris(t, rec->rua, &rec->rua_count, why, whylen);
        else if (strcasecmp(n, "ruf") == 0)
                return parse_uris(t, rec->ruf, &rec->ruf_count, why, whylen);
        else
                note_unknown(rec, n);
        return 0;
}

int dmarc_parse(const char *text, size_t len, struct dmarc_record *ret, char *why, size_t whylen)
{
        struct dmarc_record rec = { .pct = -1 };
        char seen[32][TAGLIST_NAME_MAX + 1];
        size_t nseen = 0, pos = 0;
        struct taglist_tag t;
        int r;

        dkim_reason(why, whylen, "%s", "");
        if (len > DMARC_RECORD_MAX) {
                dkim_reason(why, whylen, "the record is longer than %d octets.", DMARC_RECORD_MAX);
                return DKIMSIGN_E_TOO_LARGE;
        }
        if (memchr(text, '\0', len)) {
                dkim_reason(why, whylen, "the record holds a NUL octet.");
                return DKIMSIGN_E_FORMAT;
        }
        while ((r = taglist_next(text, len, &pos, &t, why, whylen)) == 1) {
                if (nseen == 0 && (strcasecmp(t.name, "v") != 0 || t.value_len != 6 ||
                                   memcmp(t.value, "DMARC1", 6) != 0)) {
                        dkim_reason(why, whylen, "a DMARC record starts with exactly \"v=DMARC1\" (then \";\"), not "
                            "\"%s=%.*s\".", t.name, (int) (t.value_len > 30 ? 30 : t.value_len), t.value);
                        r = DKIMSIGN_E_FORMAT;
                        break;
                }
                for (size_t i = 0; i < nseen; i++)
                        if (strcasecmp(seen[i], t.name) == 0) {
                                dkim_reason(why, whylen, "the tag %s= appears more than once.", t.name);
                                r = DKIMSIGN_E_FORMAT;
                        }
                if (r < 0)
                        break;
                if (nseen == sizeof(seen) / sizeof(seen[0])) {
                        dkim_reason(why, whylen, "the record has more than %zu tags.", nseen);
                        r = DKIMSIGN_E_FORMAT;
                        break;
                }
                memcpy(seen[nseen++], t.name, sizeof(t.name));
                if (nseen == 2 && strcasecmp(t.name, "p") == 0)
                        rec.p_second = true;
                if (nseen > 1) {
                        r = apply_tag(&rec, &t, why, whylen);
                        if (r < 0)
                                break;
                }
        }
        if (r == 0 && nseen == 0) {
                dkim_reason(why, whylen, "the record is empty.");
                r = DKIMSIGN_E_FORMAT;
        }
        if (r < 0) {
                dmarc_record_clear(&rec);
                return r;
        }
        *ret = rec;
        return 0;
}
