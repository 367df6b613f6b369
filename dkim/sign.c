/* SPDX-License-Identifier: MIT */
/*
 * DKIM-Signature assembly.  See sign.h.  The field is built so that what is
 * hashed (b= empty) and what is sent differ only by the b= value appended
 * at the very end, which is what RFC 6376 3.7 makes a verifier strip.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/evp.h>

#include "protocol/dkimsign-errors.h"
#include "dkim/identity.h"
#include "dkim/sign.h"

/* Folding keeps lines under 78 octets (RFC 5322 2.1.1's recommendation). */
#define FOLD_WIDTH 76
#define FOLD "\r\n\t"

const struct dkim_hpolicy dkim_default_hpolicy[] = {
        { "from", DKIM_OVERSIGN_ALWAYS },
        { "reply-to", DKIM_OVERSIGN_ALWAYS },
        { "subject", DKIM_OVERSIGN_ALWAYS },
        { "date", DKIM_OVERSIGN_ALWAYS },
        { "to", DKIM_OVERSIGN_ALWAYS },
        { "cc", DKIM_OVERSIGN_ALWAYS },
        { "message-id", DKIM_OVERSIGN_ALWAYS },
        { "mime-version", DKIM_OVERSIGN_ALWAYS },
        { "content-type", DKIM_OVERSIGN_ALWAYS },
        { "content-transfer-encoding", DKIM_OVERSIGN_NO },
        { "content-id", DKIM_OVERSIGN_NO },
        { "content-description", DKIM_OVERSIGN_NO },
        { "in-reply-to", DKIM_OVERSIGN_NO },
        { "references", DKIM_OVERSIGN_NO },
        { "resent-date", DKIM_OVERSIGN_NO },
        { "resent-from", DKIM_OVERSIGN_NO },
        { "resent-sender", DKIM_OVERSIGN_NO },
        { "resent-to", DKIM_OVERSIGN_NO },
        { "resent-cc", DKIM_OVERSIGN_NO },
        { "resent-message-id", DKIM_OVERSIGN_NO },
        { "list-id", DKIM_OVERSIGN_NO },
        { "list-help", DKIM_OVERSIGN_NO },
        { "list-unsubscribe", DKIM_OVERSIGN_NO },
        { "list-unsubscribe-post", DKIM_OVERSIGN_NO },
        { "list-subscribe", DKIM_OVERSIGN_NO },
        { "list-post", DKIM_OVERSIGN_NO },
        { "list-owner", DKIM_OVERSIGN_NO },
        { "list-archive", DKIM_OVERSIGN_NO },
        { "sender", DKIM_OVERSIGN_NO },
};
const size_t dkim_default_hpolicy_len = sizeof(dkim_default_hpolicy) / sizeof(dkim_default_hpolicy[0]);

int dkim_select_headers(const struct dkim_headers *h, const struct dkim_hpolicy *policy,
                        size_t policy_len, const char **ret_names, size_t max, size_t *ret_count)
{
        size_t n = 0, chars = 0;   /* chars: each entry with its colon, the last's too */
        bool has_from = false;

        for (size_t i = 0; i < policy_len; i++) {
                size_t present = dkim_headers_count(h, policy[i].name);
                size_t times = present + (policy[i].oversign == DKIM_OVERSIGN_ALWAYS ||
                                          (policy[i].oversign == DKIM_OVERSIGN_IF_PRESENT && present) ? 1 : 0);
                size_t each = strlen(policy[i].name) + 1;

                if (strcasecmp(policy[i].name, "from") == 0)
                        has_from = true;
                if (times > max - n || (times && each > (DKIM_HLIST_MAX + 1 - chars) / times))
                        return DKIMSIGN_E_TOO_LARGE;
                chars += each * times;
                for (size_t k = 0; k < times; k++)
                        ret_names[n++] = policy[i].name;
        }
        if (!has_from)
                return DKIMSIGN_E_CONFIG;
        *ret_count = n;
        return 0;
}

/* A writer that tracks the current line's length to fold between tokens. */
struct folder {
        struct buf *out;
        size_t col;
        int r;
};

static void fold_put(struct folder *f, const char *s, size_t len)
{
        if (f->r == 0)
                f->r = buf_put(f->out, s, len);
        f->col += len;
}

/* Put a token, folding first if it would not fit on the current line. */
static void fold_token(struct folder *f, const char *sep, const char *s, size_t len)
{
        size_t seplen = strlen(sep);

        if (f->col + seplen + len > FOLD_WIDTH && f->col > 1) {
                /* The separator's trailing space is replaced by the fold. */
                size_t keep = seplen && sep[seplen - 1] == ' ' ? seplen - 1 : seplen;

                fold_put(f, sep, keep);
                fold_put(f, FOLD, 3);
                f->col = 1;
        } else
                fold_put(f, sep, seplen);
        fold_put(f, s, len);
}

static void fold_tag(struct folder *f, const char *tag, const char *value)
{
        char tmp[DKIM_IDENTITY_SIZE + 32];
        int n = snprintf(tmp, sizeof(tmp), "%s=%s", tag, value);

        if (n < 0 || (size_t) n >= sizeof(tmp)) {
                f->r = DKIMSIGN_E_TOO_LARGE;
                return;
        }
        fold_token(f, "; ", tmp, (size_t) n);
}

int dkim_base64_put(struct buf *out, const uint8_t *data, size_t len)
{
        uint8_t *p;
        size_t n = 4 * ((len + 2) / 3);
        int r;

        if (len > (SIZE_MAX / 4) - 3)
                return DKIMSIGN_E_TOO_LARGE;
        r = buf_reserve(out, n + 1, &p);
        if (r < 0)
                return r;
        EVP_EncodeBlock(p, data, (int) len);
        out->len--;  /* EVP_EncodeBlock writes a NUL */
        return 0;
}

/* Base64 folded into pieces that fit the line. */
static void fold_base64(struct folder *f, const uint8_t *data, size_t len)
{
        struct buf tmp;
        size_t off = 0;

        buf_init(&tmp, 4 * ((len + 2) / 3) + 1);
        if (f->r == 0)
                f->r = dkim_base64_put(&tmp, data, len);
        while (f->r == 0 && off < tmp.len) {
                size_t room = f->col < FOLD_WIDTH ? FOLD_WIDTH - f->col : 0;
                size_t take = tmp.len - off < room ? tmp.len - off : room;

                if (take == 0) {
                        fold_put(f, FOLD, 3);
                        f->col = 1;
                        continue;
                }
                fold_put(f, (const char *) tmp.data + off, take);
                off += take;
        }
        buf_deinit(&tmp);
}

int dkim_sig_field_begin(const struct dkim_sig_spec *spec, struct buf *out)
{
        size_t start = out->len;
        struct folder f = { .out = out };
        char c[32], num[24];

        if (spec->hcount == 0 || !spec->domain || !spec->selector)
                return DKIMSIGN_E_INTERNAL;
        {
                const char *head = spec->head ? spec->head : "DKIM-Signature: v=1";

                fold_put(&f, head, strlen(head));
        }
        fold_tag(&f, "a", spec->alg);
        snprintf(c, sizeof(c), "%s/%s", dkim_canon_to_string(spec->header_canon),
                 dkim_canon_to_string(spec->body_canon));
        fold_tag(&f, "c", c);
        fold_tag(&f, "d", spec->domain);
        if (spec->identity)
                fold_tag(&f, "i", spec->identity);
        fold_tag(&f, "s", spec->selector);
        snprintf(num, sizeof(num), "%llu", (unsigned long long) spec->timestamp);
        fold_tag(&f, "t", num);
        if (spec->expire) {
                snprintf(num, sizeof(num), "%llu", (unsigned long long) spec->expire);
                fold_tag(&f, "x", num);
        }
        /* h= may fold around its colons (RFC 6376 3.5, "h=" FWS). */
        for (size_t i = 0; i < spec->hcount; i++) {
                char tmp[80];
                int n = snprintf(tmp, sizeof(tmp), "%s%s", i == 0 ? "h=" : "", spec->hnames[i]);

                if (n < 0 || (size_t) n >= sizeof(tmp)) {
                        f.r = DKIMSIGN_E_TOO_LARGE;
                        break;
                }
                fold_token(&f, i == 0 ? "; " : ":", tmp, (size_t) n);
        }
        /* bh= whole on one line: it is short, and easier to compare by eye. */
        {
                char bh[3 + 44 + 1] = "bh=";

                EVP_EncodeBlock((unsigned char *) bh + 3, spec->body_hash, DKIM_SHA256_LEN);
                fold_token(&f, "; ", bh, strlen(bh));
        }
        fold_token(&f, "; ", "b=", 2);
        if (f.r < 0)
                out->len = start;
        return f.r;
}

int dkim_sig_field_finish(struct buf *out, const uint8_t *sig, size_t sig_len)
{
        /* Continue the field's last line: find where it began. */
        size_t start = out->len;
        size_t line = start;
        struct folder f = { .out = out };

        while (line > out->off && out->data[line - 1] != '\n')
                line--;
        f.col = start - line;

        fold_base64(&f, sig, sig_len);
        if (f.r < 0)
                out->len = start;
        return f.r;
}

void dkim_hash_sink(void *userdata, const uint8_t *data, size_t len)
{
        struct dkim_hash_sink *s = userdata;

        if (len && !EVP_DigestUpdate(s->md, data, len))
                s->failed = 1;
}

int dkim_sig_digest(const struct dkim_headers *h, const struct dkim_sig_spec *spec,
                    const uint8_t *field, size_t field_len, uint8_t ret_digest[DKIM_SHA256_LEN])
{
        struct dkim_hash_sink sink = { .md = EVP_MD_CTX_new() };
        bool *used = calloc(h->count ? h->count : 1, sizeof(bool));
        unsigned int dlen = 0;
        int r = 0;

        if (!sink.md || !used) {
                r = DKIMSIGN_E_NOMEM;
                goto out;
        }
        if (!EVP_DigestInit_ex(sink.md, EVP_sha256(), NULL)) {
                r = DKIMSIGN_E_INTERNAL;
                goto out;
        }
        for (size_t i = 0; i < spec->hcount; i++) {
                /* RFC 6376 5.4.2: instances are taken from the bottom up. */
                for (size_t k = h->count; k-- > 0;) {
                        if (used[k] || !dkim_field_name_is(h, k, spec->hnames[i]))
                                continue;
                        used[k] = true;
                        dkim_header_canon(spec->header_canon, h->block + h->fields[k].off,
                                          h->fields[k].len, true, dkim_hash_sink, &sink);
                        break;
                }
        }
        dkim_header_canon(spec->header_canon, field, field_len, false, dkim_hash_sink, &sink);
        if (sink.failed || !EVP_DigestFinal_ex(sink.md, ret_digest, &dlen) || dlen != DKIM_SHA256_LEN)
                r = DKIMSIGN_E_INTERNAL;
out:
        free(used);
        EVP_MD_CTX_free(sink.md);
        return r;
}
