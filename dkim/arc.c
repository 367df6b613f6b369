/* SPDX-License-Identifier: MIT */
/*
 * ARC field assembly and chain structure.  See arc.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/evp.h>

#include "protocol/dkimsign-errors.h"
#include "dkim/arc.h"
#include "dkim/sign.h"
#include "dkim/taglist.h"

#define FOLD_WIDTH 76

static const char *const kind_names[] = { "ARC-Authentication-Results", "ARC-Message-Signature", "ARC-Seal" };
static const char *const cv_names[] = { "none", "pass", "fail" };

const char *arc_kind_name(enum arc_kind k)
{
        return kind_names[k];
}

const char *arc_cv_name(enum arc_cv cv)
{
        return cv_names[cv];
}

/* Where a field's value begins: after its colon. */
static size_t value_start(const uint8_t *field, size_t len)
{
        const uint8_t *colon = memchr(field, ':', len);

        return colon ? (size_t) (colon - field) + 1 : len;
}

/* The tag named name of a tag-list field; *ret_off and *ret_len locate
 * its value in the field. */
static int find_tag(const uint8_t *field, size_t len, const char *name, size_t *ret_off, size_t *ret_len)
{
        const char *text = (const char *) field;
        size_t pos = value_start(field, len);
        struct taglist_tag t;
        int r;

        while ((r = taglist_next(text, len, &pos, &t, NULL, 0)) == 1) {
                if (strcmp(t.name, name) == 0) {
                        *ret_off = (size_t) (t.value - text);
                        *ret_len = t.value_len;
                        return 0;
                }
        }
        return r < 0 ? r : DKIMSIGN_E_NO_KEY;
}

int arc_field_tag(const uint8_t *field, size_t len, const char *name, const char **ret, size_t *ret_len)
{
        size_t off = 0, n = 0;
        int r = find_tag(field, len, name, &off, &n);

        if (r < 0)
                return r;
        *ret = (const char *) field + off;
        *ret_len = n;
        return 0;
}

/* 1 to ARC_INSTANCE_MAX from decimal digits, else 0. */
static unsigned parse_instance(const char *s, size_t len)
{
        unsigned v = 0;

        if (len == 0 || len > 2)
                return 0;
        for (size_t i = 0; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return 0;
                v = v * 10 + (unsigned) (s[i] - '0');
        }
        return v <= ARC_INSTANCE_MAX ? v : 0;
}

/* An ARC-Authentication-Results starts "i=N;" (RFC 8617 4.1.1); the rest
 * is RFC 8601's syntax, which is no tag-list. */
static unsigned aar_instance(const uint8_t *field, size_t len)
{
        size_t p = value_start(field, len), start;

        while (p < len && taglist_is_wsp((char) field[p]))
                p++;
        if (p >= len || (field[p] != 'i' && field[p] != 'I'))
                return 0;
        for (p++; p < len && taglist_is_wsp((char) field[p]); p++)
                ;
        if (p >= len || field[p] != '=')
                return 0;
        for (p++; p < len && taglist_is_wsp((char) field[p]); p++)
                ;
        for (start = p; p < len && field[p] >= '0' && field[p] <= '9'; p++)
                ;
        {
                unsigned v = parse_instance((const char *) field + start, p - start);

                while (p < len && taglist_is_wsp((char) field[p]))
                        p++;
                return p < len && field[p] == ';' ? v : 0;
        }
}

static unsigned tag_instance(const uint8_t *field, size_t len)
{
        const char *v;
        size_t n;

        return arc_field_tag(field, len, "i", &v, &n) == 0 ? parse_instance(v, n) : 0;
}

static int seal_cv(const uint8_t *field, size_t len, enum arc_cv *ret)
{
        const char *v;
        size_t n;

        if (arc_field_tag(field, len, "cv", &v, &n) < 0)
                return DKIMSIGN_E_FORMAT;
        for (int k = ARC_CV_NONE; k <= ARC_CV_FAIL; k++)
                if (n == strlen(cv_names[k]) && strncasecmp(v, cv_names[k], n) == 0) {
                        *ret = (enum arc_cv) k;
                        return 0;
                }
        return DKIMSIGN_E_FORMAT;
}

int arc_chain_parse(const struct dkim_headers *h, struct arc_chain *ret, char *why, size_t whylen)
{
        struct arc_chain c = { 0 };
        bool seen[ARC_INSTANCE_MAX][3] = { { false } };

        for (size_t i = 0; i < h->count; i++) {
                const uint8_t *f = h->block + h->fields[i].off;
                size_t len = h->fields[i].len;
                unsigned inst;
                int k;

                for (k = 0; k < 3 && !dkim_field_name_is(h, i, kind_names[k]); k++)
                        ;
                if (k == 3)
                        continue;
                inst = k == ARC_AAR ? aar_instance(f, len) : tag_instance(f, len);
                if (inst == 0) {
                        dkim_reason(why, whylen, "an %s field has no valid i= (1 to %d)", kind_names[k],
                                    ARC_INSTANCE_MAX);
                        return DKIMSIGN_E_FORMAT;
                }
                if (seen[inst - 1][k]) {
                        dkim_reason(why, whylen, "two %s fields have i=%u", kind_names[k], inst);
                        return DKIMSIGN_E_FORMAT;
                }
                if (k == ARC_AS && seal_cv(f, len, &c.cv[inst - 1]) < 0) {
                        dkim_reason(why, whylen, "the ARC-Seal i=%u has no valid cv=", inst);
                        return DKIMSIGN_E_FORMAT;
                }
                seen[inst - 1][k] = true;
                c.idx[inst - 1][k] = i;
                if (inst > c.count)
                        c.count = inst;
        }
        for (size_t n = 0; n < c.count; n++)
                for (int k = 0; k < 3; k++)
                        if (!seen[n][k]) {
                                dkim_reason(why, whylen, "the ARC set i=%zu has no %s field", n + 1, kind_names[k]);
                                return DKIMSIGN_E_FORMAT;
                        }
        *ret = c;
        return 0;
}

size_t arc_highest_instance(const struct dkim_headers *h)
{
        size_t top = 0;

        for (size_t i = 0; i < h->count; i++)
                for (int k = 0; k < 3; k++) {
                        const uint8_t *f = h->block + h->fields[i].off;
                        unsigned inst;

                        if (!dkim_field_name_is(h, i, kind_names[k]))
                                continue;
                        inst = k == ARC_AAR ? aar_instance(f, h->fields[i].len) : tag_instance(f, h->fields[i].len);
                        if (inst > top)
                                top = inst;
                }
        return top;
}

int arc_aar_build(unsigned instance, const char *authserv_id, size_t authserv_len, const char *results,
                  size_t results_len, struct buf *out)
{
        size_t start = out->len, col;
        char head[64];
        int n = snprintf(head, sizeof(head), "ARC-Authentication-Results: i=%u; ", instance);
        int r;

        r = buf_put(out, head, (size_t) n);
        if (r == 0)
                r = buf_put(out, authserv_id, authserv_len);
        if (r == 0)
                r = buf_put(out, ";", 1);
        col = (size_t) n + authserv_len + 1;
        if (results_len == 0) {
                results = "none";
                results_len = 4;
        }
        /* Fold at the spaces of the results, which are FWS in RFC 8601's
         * grammar: a fold keeps lines short and changes nothing a relaxed
         * canonicalization sees. */
        for (size_t i = 0; r == 0 && i < results_len;) {
                size_t w = i;

                while (w < results_len && results[w] != ' ')
                        w++;
                if (w == i) {
                        i++;
                        continue;
                }
                if (col + 1 + (w - i) > FOLD_WIDTH && col > 1) {
                        r = buf_put(out, "\r\n\t", 3);
                        col = 1;
                } else {
                        r = buf_put(out, " ", 1);
                        col++;
                }
                if (r == 0)
                        r = buf_put(out, results + i, w - i);
                col += w - i;
                i = w + 1;
        }
        if (r < 0)
                out->len = start;
        return r;
}

int arc_seal_begin(const struct arc_seal_spec *spec, struct buf *out)
{
        char tmp[512];
        int n;

        if (spec->instance == 0 || spec->instance > ARC_INSTANCE_MAX || !spec->domain || !spec->selector)
                return DKIMSIGN_E_INTERNAL;
        n = snprintf(tmp, sizeof(tmp), "ARC-Seal: i=%u; a=%s; t=%llu; cv=%s;\r\n\td=%s; s=%s; b=", spec->instance,
                     spec->alg, (unsigned long long) spec->timestamp, cv_names[spec->cv], spec->domain,
                     spec->selector);
        if (n < 0 || (size_t) n >= sizeof(tmp))
                return DKIMSIGN_E_TOO_LARGE;
        return buf_put(out, tmp, (size_t) n);
}

int arc_seal_digest(const struct dkim_headers *h, const struct arc_chain *chain, size_t before,
                    const uint8_t *aar, size_t aar_len, const uint8_t *ams, size_t ams_len,
                    const uint8_t *as, size_t as_len, uint8_t ret_digest[DKIM_SHA256_LEN])
{
        struct dkim_hash_sink sink = { .md = EVP_MD_CTX_new() };
        unsigned int dlen = 0;
        int r = 0;

        if (before > chain->count)
                r = DKIMSIGN_E_INTERNAL;
        else if (!sink.md || !EVP_DigestInit_ex(sink.md, EVP_sha256(), NULL))
                r = DKIMSIGN_E_NOMEM;
        for (size_t n = 0; r == 0 && n < before; n++)
                for (int k = 0; k < 3; k++) {
                        const struct dkim_field *f = &h->fields[chain->idx[n][k]];

                        dkim_header_canon(DKIM_CANON_RELAXED, h->block + f->off, f->len, true, dkim_hash_sink, &sink);
                }
        if (r == 0) {
                dkim_header_canon(DKIM_CANON_RELAXED, aar, aar_len, true, dkim_hash_sink, &sink);
                dkim_header_canon(DKIM_CANON_RELAXED, ams, ams_len, true, dkim_hash_sink, &sink);
                dkim_header_canon(DKIM_CANON_RELAXED, as, as_len, false, dkim_hash_sink, &sink);
                if (sink.failed || !EVP_DigestFinal_ex(sink.md, ret_digest, &dlen) || dlen != DKIM_SHA256_LEN)
                        r = DKIMSIGN_E_INTERNAL;
        }
        EVP_MD_CTX_free(sink.md);
        return r;
}

int arc_strip_b(const uint8_t *field, size_t len, struct buf *out)
{
        size_t off = 0, n = 0, start = out->len;
        int r = find_tag(field, len, "b", &off, &n);

        if (r < 0)
                return DKIMSIGN_E_FORMAT;
        r = buf_put(out, field, off);
        if (r == 0)
                r = buf_put(out, field + off + n, len - off - n);
        if (r < 0)
                out->len = start;
        return r;
}
