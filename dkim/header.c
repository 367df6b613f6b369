/* SPDX-License-Identifier: MIT */
/*
 * Header block parser and From-domain extraction.
 *
 * The daemon runs this on untrusted bytes from the socket: every loop is
 * bounded by the block length, every line by limits->max_line and the field
 * table by limits->max_fields.  Anything outside RFC 5322 (plus 8-bit octets,
 * RFC 6532) is refused rather than repaired: the signer must never sign a
 * From domain it had to guess.  It must never read past the block, recurse
 * on input, do I/O or log.
 */
#include "dkim/header.h"
#include "dkim/idn.h"

#include <stdlib.h>
#include <string.h>

#include "protocol/dkimsign-errors.h"

static bool is_wsp(uint8_t c)
{
        return c == ' ' || c == '\t';
}

static uint8_t ascii_lower(uint8_t c)
{
        return (c >= 'A' && c <= 'Z') ? (uint8_t)(c - 'A' + 'a') : c;
}

/* ---- splitting the block into fields ---- */

/* RFC 5322 ftext: printable ASCII except the colon. */
static bool is_ftext(uint8_t c)
{
        return c >= 33 && c <= 126 && c != ':';
}

static int fields_push(struct dkim_headers *h, size_t *cap, size_t max_fields,
                       const struct dkim_field *f)
{
        if (h->count >= max_fields)
                return DKIMSIGN_E_TOO_LARGE;
        if (h->count == *cap) {
                size_t n = *cap ? *cap * 2 : 16;
                if (n > max_fields)
                        n = max_fields;
                if (n > SIZE_MAX / sizeof(*h->fields))
                        return DKIMSIGN_E_NOMEM;
                struct dkim_field *p = realloc(h->fields, n * sizeof(*h->fields));
                if (!p)
                        return DKIMSIGN_E_NOMEM;
                h->fields = p;
                *cap = n;
        }
        h->fields[h->count++] = *f;
        return 0;
}

/*
 * Find the end of the line starting at pos: sets *ret_len to the length of
 * the line without its CRLF.  Looks no further than max_line + CRLF, so an
 * endless line costs at most one limit's worth of scanning.
 */
static int line_next(const uint8_t *b, size_t len, size_t pos, size_t max_line, size_t *ret_len)
{
        size_t rem = len - pos;
        size_t window = rem;
        bool capped = false;

        if (max_line <= SIZE_MAX - 2 && rem > max_line + 2) {
                window = max_line + 2;
                capped = true;
        }
        const uint8_t *lf = memchr(b + pos, '\n', window);
        if (!lf)
                return capped ? DKIMSIGN_E_TOO_LARGE : DKIMSIGN_E_FORMAT;
        size_t n = (size_t)(lf - (b + pos));
        if (n == 0 || b[pos + n - 1] != '\r')
                return DKIMSIGN_E_FORMAT;       /* bare LF */
        n--;
        if (n > max_line)
                return DKIMSIGN_E_TOO_LARGE;
        /* A CR inside the line is a bare CR; NUL is never allowed. */
        if (memchr(b + pos, '\r', n) || memchr(b + pos, '\0', n))
                return DKIMSIGN_E_FORMAT;
        *ret_len = n;
        return 0;
}

/* A line that starts a field: "name *WSP : value".  Sets the name length. */
static int field_start(const uint8_t *line, size_t n, size_t *ret_name_len)
{
        const uint8_t *colon = memchr(line, ':', n);
        if (!colon)
                return DKIMSIGN_E_FORMAT;
        size_t name_len = (size_t)(colon - line);
        while (name_len > 0 && is_wsp(line[name_len - 1]))
                name_len--;
        if (name_len == 0)
                return DKIMSIGN_E_FORMAT;
        for (size_t i = 0; i < name_len; i++)
                if (!is_ftext(line[i]))
                        return DKIMSIGN_E_FORMAT;
        *ret_name_len = name_len;
        return 0;
}

static int parse_lines(const uint8_t *block, size_t len, const struct dkim_header_limits *limits,
                       struct dkim_headers *h)
{
        size_t cap = 0, pos = 0;
        int r;

        while (pos < len) {
                size_t n;
                r = line_next(block, len, pos, limits->max_line, &n);
                if (r < 0)
                        return r;
                if (n == 0)
                        return DKIMSIGN_E_FORMAT;       /* empty line */
                if (is_wsp(block[pos])) {
                        if (h->count == 0)
                                return DKIMSIGN_E_FORMAT;
                        struct dkim_field *f = &h->fields[h->count - 1];
                        f->len = (uint32_t)(pos + n - f->off);
                } else {
                        size_t name_len;
                        r = field_start(block + pos, n, &name_len);
                        if (r < 0)
                                return r;
                        struct dkim_field f = {
                                .off = (uint32_t)pos,
                                .len = (uint32_t)n,
                                .name_len = (uint32_t)name_len,
                        };
                        r = fields_push(h, &cap, limits->max_fields, &f);
                        if (r < 0)
                                return r;
                }
                pos += n + 2;
        }
        return 0;
}

int dkim_headers_parse(const uint8_t *block, size_t len, const struct dkim_header_limits *limits,
                       struct dkim_headers *ret)
{
        struct dkim_headers h = { .block = block, .block_len = len };
        int r;

        memset(ret, 0, sizeof(*ret));
        if (!block || len == 0)
                return DKIMSIGN_E_FORMAT;
        /* Field offsets are 32-bit. */
        if (len > UINT32_MAX)
                return DKIMSIGN_E_TOO_LARGE;
        r = parse_lines(block, len, limits, &h);
        if (r < 0) {
                dkim_headers_deinit(&h);
                return r;
        }
        *ret = h;
        return 0;
}

void dkim_headers_deinit(struct dkim_headers *h)
{
        if (!h)
                return;
        free(h->fields);
        memset(h, 0, sizeof(*h));
}

bool dkim_field_name_is(const struct dkim_headers *h, size_t i, const char *name)
{
        if (i >= h->count)
                return false;
        const struct dkim_field *f = &h->fields[i];
        size_t n = strlen(name);
        if (n != f->name_len)
                return false;
        const uint8_t *p = h->block + f->off;
        for (size_t k = 0; k < n; k++)
                if (ascii_lower(p[k]) != ascii_lower((uint8_t)name[k]))
                        return false;
        return true;
}

size_t dkim_headers_count(const struct dkim_headers *h, const char *name)
{
        size_t n = 0;

        for (size_t i = 0; i < h->count; i++)
                if (dkim_field_name_is(h, i, name))
                        n++;
        return n;
}

/* ---- the address in the From field ---- */

/*
 * A lexer over the From value, following RFC 5322 3.2-3.4: CFWS (folding
 * whitespace and nested comments) is skipped, quoted strings and atoms are
 * single tokens, specials are tokens of their own.
 */
enum tok {
        TOK_END,
        TOK_ATOM,
        TOK_QSTRING,
        TOK_DOT,
        TOK_LT,
        TOK_GT,
        TOK_AT,
        TOK_COMMA,
        TOK_COLON,
        TOK_SEMI,
};

struct lexer {
        const uint8_t *s;
        size_t len;
        size_t pos;
};

struct token {
        enum tok type;
        size_t off;
        size_t len;
};

/* RFC 5322 atext, plus every 8-bit octet (RFC 6532 UTF8-non-ascii). */
static bool is_atext(uint8_t c)
{
        if (c >= 0x80)
                return true;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
                return true;
        return c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* Inside quotes and comments: printable, WSP or 8-bit; folds were checked
 * by the block parser, so a CRLF here is always followed by WSP. */
static bool is_quoted_ok(uint8_t c)
{
        return c >= 0x20 || c == '\t' || c == '\r' || c == '\n';
}

static int skip_comment(struct lexer *lx)
{
        size_t depth = 0;

        while (lx->pos < lx->len) {
                uint8_t c = lx->s[lx->pos++];
                if (c == '\\') {
                        if (lx->pos >= lx->len || !is_quoted_ok(lx->s[lx->pos]))
                                return DKIMSIGN_E_FORMAT;
                        lx->pos++;
                } else if (c == '(') {
                        depth++;
                } else if (c == ')') {
                        if (--depth == 0)
                                return 0;
                } else if (!is_quoted_ok(c) || c == 0x7f) {
                        return DKIMSIGN_E_FORMAT;
                }
        }
        return DKIMSIGN_E_FORMAT;       /* unterminated */
}

static int skip_cfws(struct lexer *lx)
{
        while (lx->pos < lx->len) {
                uint8_t c = lx->s[lx->pos];
                if (is_wsp(c) || c == '\r' || c == '\n') {
                        lx->pos++;
                } else if (c == '(') {
                        int r = skip_comment(lx);
                        if (r < 0)
                                return r;
                } else {
                        break;
                }
        }
        return 0;
}

static int lex_qstring(struct lexer *lx)
{
        lx->pos++;      /* opening quote */
        while (lx->pos < lx->len) {
                uint8_t c = lx->s[lx->pos++];
                if (c == '"')
                        return 0;
                if (c == '\\') {
                        if (lx->pos >= lx->len || !is_quoted_ok(lx->s[lx->pos]))
                                return DKIMSIGN_E_FORMAT;
                        lx->pos++;
                } else if (!is_quoted_ok(c) || c == 0x7f) {
                        return DKIMSIGN_E_FORMAT;
                }
        }
        return DKIMSIGN_E_FORMAT;       /* unterminated */
}

static int lex_next(struct lexer *lx, struct token *ret)
{
        static const struct {
                uint8_t c;
                enum tok type;
        } specials[] = {
                { '.', TOK_DOT }, { '<', TOK_LT }, { '>', TOK_GT }, { '@', TOK_AT },
                { ',', TOK_COMMA }, { ':', TOK_COLON }, { ';', TOK_SEMI },
        };
        int r = skip_cfws(lx);
        if (r < 0)
                return r;

        struct token t = { .type = TOK_END, .off = lx->pos, .len = 0 };
        if (lx->pos < lx->len) {
                uint8_t c = lx->s[lx->pos];
                if (c == '"') {
                        r = lex_qstring(lx);
                        if (r < 0)
                                return r;
                        t.type = TOK_QSTRING;
                } else if (is_atext(c)) {
                        while (lx->pos < lx->len && is_atext(lx->s[lx->pos]))
                                lx->pos++;
                        t.type = TOK_ATOM;
                } else {
                        /* '[' (domain literal), ')', ']', '\\' and controls
                         * land here when no special matches. */
                        r = DKIMSIGN_E_FORMAT;
                        for (size_t i = 0; i < sizeof(specials) / sizeof(specials[0]); i++)
                                if (specials[i].c == c) {
                                        t.type = specials[i].type;
                                        r = 0;
                                }
                        if (r < 0)
                                return r;
                        lx->pos++;
                }
        }
        t.len = lx->pos - t.off;
        *ret = t;
        return 0;
}

/* Several addresses are a policy question (which author?), not a syntax
 * one: look for a comma outside quotes, comments and angle brackets before
 * parsing anything. */
static int check_single(const uint8_t *v, size_t n)
{
        struct lexer lx = { .s = v, .len = n, .pos = 0 };
        size_t angle = 0;

        for (;;) {
                struct token t;
                int r = lex_next(&lx, &t);
                if (r < 0)
                        return r;
                switch (t.type) {
                case TOK_END:
                        return 0;
                case TOK_LT:
                        angle++;
                        break;
                case TOK_GT:
                        if (angle > 0)
                                angle--;
                        break;
                case TOK_COMMA:
                        if (angle == 0)
                                return DKIMSIGN_E_MULTI_FROM;
                        break;
                default:
                        break;
                }
        }
}

static bool is_word(enum tok t)
{
        return t == TOK_ATOM || t == TOK_QSTRING;
}

/* local-part = word *("." word), the first token already read into *t.
 * Leaves the token after it in *t. */
static int parse_local_part(struct lexer *lx, struct token *t)
{
        for (;;) {
                if (!is_word(t->type))
                        return DKIMSIGN_E_FORMAT;
                int r = lex_next(lx, t);
                if (r < 0)
                        return r;
                if (t->type != TOK_DOT)
                        return 0;
                r = lex_next(lx, t);
                if (r < 0)
                        return r;
        }
}

/* domain = atom *("." atom), collected without its CFWS into dom
 * (DKIM_IDN_INPUT_MAX octets at most: U-labels, RFC 6532, are longer in
 * UTF-8 than many A-labels).  A trailing dot leaves a DOT that is not
 * followed by an atom, and is refused. */
static int parse_domain(struct lexer *lx, struct token *t, char dom[DKIM_IDN_INPUT_MAX], size_t *ret_len)
{
        size_t n = 0;
        int r;

        for (;;) {
                r = lex_next(lx, t);
                if (r < 0)
                        return r;
                if (t->type != TOK_ATOM)
                        return DKIMSIGN_E_FORMAT;
                if (t->len > DKIM_IDN_INPUT_MAX - n)
                        return DKIMSIGN_E_FORMAT;
                for (size_t i = 0; i < t->len; i++)
                        dom[n++] = (char)ascii_lower(lx->s[t->off + i]);
                r = lex_next(lx, t);
                if (r < 0)
                        return r;
                if (t->type != TOK_DOT)
                        break;
                if (n >= DKIM_IDN_INPUT_MAX)
                        return DKIMSIGN_E_FORMAT;
                dom[n++] = '.';
        }
        *ret_len = n;
        return 0;
}

/*
 * mailbox = [display-name] "<" addr-spec ">" / addr-spec, alone in the
 * value.  Words are read until "<" or "@" says which form it is.
 */
static int parse_mailbox(const uint8_t *v, size_t n, char dom[DKIM_IDN_INPUT_MAX], size_t *ret_len)
{
        struct lexer lx = { .s = v, .len = n, .pos = 0 };
        struct token first, t;
        size_t words = 0;
        int r;

        r = lex_next(&lx, &first);
        if (r < 0)
                return r;
        t = first;
        while (is_word(t.type) || t.type == TOK_DOT) {
                words++;
                r = lex_next(&lx, &t);
                if (r < 0)
                        return r;
        }

        bool angle = t.type == TOK_LT;
        if (angle) {
                /* The words were a display name; the address follows. */
                r = lex_next(&lx, &t);
                if (r < 0)
                        return r;
        } else if (t.type == TOK_AT && words > 0) {
                /* The words were the local part: parse them again. */
                lx.pos = first.off;
                t = first;
                r = lex_next(&lx, &t);
                if (r < 0)
                        return r;
        } else {
                /* No address, a group ("name:"), or a stray special. */
                return DKIMSIGN_E_FORMAT;
        }

        r = parse_local_part(&lx, &t);
        if (r < 0)
                return r;
        if (t.type != TOK_AT)
                return DKIMSIGN_E_FORMAT;
        r = parse_domain(&lx, &t, dom, ret_len);
        if (r < 0)
                return r;
        if (angle) {
                if (t.type != TOK_GT)
                        return DKIMSIGN_E_FORMAT;
                r = lex_next(&lx, &t);
                if (r < 0)
                        return r;
        }
        return t.type == TOK_END ? 0 : DKIMSIGN_E_FORMAT;
}

/* The value of field i: the octets after the colon. */
static void field_value(const struct dkim_headers *h, size_t i, const uint8_t **ret_v, size_t *ret_n)
{
        const struct dkim_field *f = &h->fields[i];
        const uint8_t *p = h->block + f->off;
        const uint8_t *colon = memchr(p + f->name_len, ':', f->len - f->name_len);
        /* The parser guarantees the colon; an empty value is refused later. */
        size_t skip = colon ? (size_t)(colon - p) + 1 : f->len;

        *ret_v = p + skip;
        *ret_n = f->len - skip;
}

int dkim_headers_from_domain(const struct dkim_headers *h, char ret_domain[DKIM_DOMAIN_SIZE], const char **ret_why)
{
        size_t from = SIZE_MAX;
        char dom[DKIM_IDN_INPUT_MAX];
        size_t len = 0;
        int r;

        for (size_t i = 0; i < h->count; i++) {
                if (!dkim_field_name_is(h, i, "From"))
                        continue;
                if (from != SIZE_MAX)
                        return DKIMSIGN_E_MULTI_FROM;
                from = i;
        }
        if (from == SIZE_MAX)
                return DKIMSIGN_E_NO_FROM;

        const uint8_t *v;
        size_t n;
        field_value(h, from, &v, &n);
        r = check_single(v, n);
        if (r < 0)
                return r;
        r = parse_mailbox(v, n, dom, &len);
        if (r < 0)
                return r;
        /* RFC 8616: d= and the key's DNS name are the A-label form. */
        return dkim_domain_to_ascii(dom, len, ret_domain, ret_why);
}

/* ---- domain syntax ---- */

static bool is_let_dig(uint8_t c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

bool dkim_domain_is_valid(const char *s, size_t len)
{
        size_t label = 0;

        if (!s || len == 0 || len > DKIM_DOMAIN_MAX)
                return false;
        for (size_t i = 0; i < len; i++) {
                uint8_t c = (uint8_t)s[i];
                if (c == '.') {
                        /* Labels neither empty nor ending in a hyphen. */
                        if (label == 0 || s[i - 1] == '-')
                                return false;
                        label = 0;
                        continue;
                }
                if (!is_let_dig(c) && !(c == '-' && label > 0))
                        return false;
                if (++label > 63)
                        return false;
        }
        return label > 0 && s[len - 1] != '-';
}
