/* SPDX-License-Identifier: MIT */
/*
 * The decoding of DNS answer messages: a bounded walk of the wire format
 * (RFC 1035 section 4), the CNAME chain the answer section gives, and the
 * record data of TXT, A/AAAA and MX.  See resolve.h (dns_*_from_answer).
 *
 * The message comes from the network: every length is checked against the
 * message, name compression pointers may only point backwards (so a loop
 * can't form), at most 128 of them in a name, and a name is at most 255
 * octets.  It never sends a query to
 * follow a CNAME: a resolver that does not give the chain is not trusted
 * to.  No I/O, no logging.
 */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/dkimsign-errors.h"
#include "dns/resolve.h"

#define HEADER_LEN 12
#define WIRE_NAME_MAX 255         /* octets of a name in wire form, the root label included */
#define ANSWER_MAX 65535          /* the largest DNS message (TCP length is 16 bits) */
/* Compression pointers followed in one name: each one a name needs moves
 * on by at least one label (two octets of the 255), so a name has no use
 * for more; more is a chain of pointers to pointers, that would be walked
 * again at every read of a name pointing at its end. */
#define POINTERS_MAX (WIRE_NAME_MAX / 2 + 1)
#define CLASS_IN 1
#define TYPE_CNAME 5

/* A name in uncompressed wire form (length-prefixed labels, ending in 0). */
struct wire_name {
        uint8_t o[WIRE_NAME_MAX];
        size_t len;
};

/* One resource record of the answer section: owner, type, class and where
 * its data lies in the message. */
struct rr {
        struct wire_name owner;
        uint16_t type, class;
        size_t rdata, rdlen;      /* offset and length in the message */
};

struct msg {
        const uint8_t *p;
        size_t len;
};

static uint16_t get16(const uint8_t *p)
{
        return (uint16_t) ((p[0] << 8) | p[1]);
}

/*
 * Read the name at *pos into out (may be NULL: only skip it) and move *pos
 * past it in the message.  A compression pointer must point before the
 * place it was read at, which bounds the work and rules out loops.
 */
static int read_name(const struct msg *m, size_t *pos, struct wire_name *out)
{
        struct wire_name tmp;
        struct wire_name *n = out ? out : &tmp;
        size_t at = *pos, end = 0, lowest = *pos, jumps = 0;
        bool jumped = false;

        n->len = 0;
        for (;;) {
                uint8_t c;

                if (at >= m->len)
                        return DKIMSIGN_E_FORMAT;
                c = m->p[at];
                if ((c & 0xc0) == 0xc0) {
                        size_t target;

                        if (m->len - at < 2)
                                return DKIMSIGN_E_FORMAT;
                        target = (size_t) (get16(m->p + at) & 0x3fff);
                        if (target >= lowest)
                                return DKIMSIGN_E_FORMAT;   /* forwards or onto itself: a loop */
                        if (++jumps > POINTERS_MAX)
                                return DKIMSIGN_E_FORMAT;
                        if (!jumped)
                                end = at + 2;
                        jumped = true;
                        lowest = target;
                        at = target;
                        continue;
                }
                if (c & 0xc0)
                        return DKIMSIGN_E_FORMAT;           /* the extended label types are obsolete */
                if (c > m->len - at - 1 || n->len + 1 + c > WIRE_NAME_MAX)
                        return DKIMSIGN_E_FORMAT;
                memcpy(n->o + n->len, m->p + at, (size_t) c + 1);
                n->len += (size_t) c + 1;
                at += (size_t) c + 1;
                if (c == 0)
                        break;
        }
        *pos = jumped ? end : at;
        return 0;
}

static uint8_t lower(uint8_t c)
{
        return c >= 'A' && c <= 'Z' ? (uint8_t) (c + 32) : c;
}

/* Owner-name comparison: ASCII letters without regard to case (RFC 4343). */
static bool name_equal(const struct wire_name *a, const struct wire_name *b)
{
        if (a->len != b->len)
                return false;
        for (size_t i = 0; i < a->len; i++)
                if (lower(a->o[i]) != lower(b->o[i]))
                        return false;
        return true;
}

/* A presentation-form name (a final dot optional, no escapes: the lookups
 * refuse names with a backslash) in wire form. */
static int name_from_text(const char *s, struct wire_name *ret)
{
        size_t len = strlen(s), label_at = 0;

        if (len > 0 && s[len - 1] == '.')
                len--;
        if (len == 0 || len > DNS_NAME_MAX)
                return DKIMSIGN_E_FORMAT;
        ret->len = 1;
        for (size_t i = 0; i <= len; i++) {
                if (i == len || s[i] == '.') {
                        size_t l = ret->len - label_at - 1;

                        if (l == 0 || l > 63)
                                return DKIMSIGN_E_FORMAT;
                        ret->o[label_at] = (uint8_t) l;
                        label_at = ret->len++;
                        continue;
                }
                ret->o[ret->len++] = (uint8_t) s[i];
        }
        ret->o[label_at] = 0;
        ret->len = label_at + 1;
        return 0;
}

/* A wire name in presentation form, without the final dot ("" for the
 * root), with the escapes of RFC 4343 for octets that are not plain.  out
 * has room for the worst case: 4 octets per octet of the name. */
#define NAME_TEXT_MAX (WIRE_NAME_MAX * 4 + 1)
static void name_to_text(const struct wire_name *n, char out[NAME_TEXT_MAX])
{
        size_t o = 0;

        for (size_t i = 0; n->o[i] != 0; i += (size_t) n->o[i] + 1) {
                if (o > 0)
                        out[o++] = '.';
                for (size_t j = 1; j <= n->o[i]; j++) {
                        uint8_t c = n->o[i + j];

                        if (c <= 0x20 || c >= 0x7f) {
                                out[o++] = '\\';
                                out[o++] = (char) ('0' + c / 100);
                                out[o++] = (char) ('0' + c / 10 % 10);
                                out[o++] = (char) ('0' + c % 10);
                        } else {
                                if (strchr(".\\\";()@$", c))
                                        out[o++] = '\\';
                                out[o++] = (char) c;
                        }
                }
        }
        out[o] = '\0';
}

/* The header, and the question section skipped: *ret_pos is where the
 * answer section starts, *ret_count how many records it has. */
static int skip_to_answers(const struct msg *m, size_t *ret_pos, size_t *ret_count)
{
        size_t pos = HEADER_LEN;
        unsigned qd;

        if (m->len < HEADER_LEN)
                return DKIMSIGN_E_FORMAT;
        qd = get16(m->p + 4);
        for (unsigned i = 0; i < qd; i++) {
                int r = read_name(m, &pos, NULL);

                if (r < 0)
                        return r;
                if (m->len - pos < 4)
                        return DKIMSIGN_E_FORMAT;
                pos += 4;
        }
        *ret_pos = pos;
        *ret_count = get16(m->p + 6);
        return 0;
}

/* The record at *pos; *pos moves past it. */
static int read_rr(const struct msg *m, size_t *pos, struct rr *ret)
{
        int r = read_name(m, pos, &ret->owner);

        if (r < 0)
                return r;
        if (m->len - *pos < 10)
                return DKIMSIGN_E_FORMAT;
        ret->type = get16(m->p + *pos);
        ret->class = get16(m->p + *pos + 2);
        ret->rdlen = get16(m->p + *pos + 8);
        ret->rdata = *pos + 10;
        if (ret->rdlen > m->len - ret->rdata)
                return DKIMSIGN_E_FORMAT;
        *pos = ret->rdata + ret->rdlen;
        return 0;
}

/* A name that must fill the record data from offset to its end exactly. */
static int rdata_name(const struct msg *m, const struct rr *rr, size_t offset, struct wire_name *ret)
{
        size_t pos = rr->rdata + offset;
        int r;

        if (rr->rdlen <= offset)
                return DKIMSIGN_E_FORMAT;
        r = read_name(m, &pos, ret);
        if (r == 0 && pos != rr->rdata + rr->rdlen)
                r = DKIMSIGN_E_FORMAT;
        return r;
}

typedef int (*rdata_fn)(void *userdata, const struct msg *m, const struct rr *rr);

/*
 * Walk the answer for name: follow the CNAME chain the answer section
 * holds, at most DNS_CNAME_MAX hops, then hand every record of type at the
 * final owner name to fn.  DKIMSIGN_E_DNS_NOT_FOUND when there is none
 * (NODATA).  Every record is read whole first, so a malformed one anywhere
 * is a malformed answer.
 */
static int walk_answer(const uint8_t *answer, size_t len, const char *name, uint16_t type, rdata_fn fn,
                       void *userdata)
{
        struct msg m = { .p = answer, .len = len };
        struct wire_name owner;
        size_t start = 0, pos, count = 0, found = 0;
        struct rr rr;
        int hops, r;

        if (len < HEADER_LEN || len > ANSWER_MAX)
                return DKIMSIGN_E_FORMAT;
        r = name_from_text(name, &owner);
        if (r == 0)
                r = skip_to_answers(&m, &start, &count);
        pos = start;
        for (size_t i = 0; r == 0 && i < count; i++)
                r = read_rr(&m, &pos, &rr);
        if (r < 0)
                return r;

        for (hops = 0; hops <= DNS_CNAME_MAX; hops++) {
                bool moved = false;

                pos = start;
                for (size_t i = 0; i < count && !moved; i++) {
                        (void) read_rr(&m, &pos, &rr);   /* read whole above */
                        if (rr.class != CLASS_IN || rr.type != TYPE_CNAME || !name_equal(&rr.owner, &owner))
                                continue;
                        r = rdata_name(&m, &rr, 0, &owner);
                        if (r < 0)
                                return r;
                        moved = true;
                }
                if (!moved)
                        break;
        }
        if (hops > DNS_CNAME_MAX)
                return DKIMSIGN_E_FORMAT;   /* a CNAME loop, or a chain too long */

        pos = start;
        for (size_t i = 0; i < count; i++) {
                (void) read_rr(&m, &pos, &rr);
                if (rr.class != CLASS_IN || rr.type != type || !name_equal(&rr.owner, &owner))
                        continue;
                r = fn(userdata, &m, &rr);
                if (r < 0)
                        return r;
                found++;
        }
        return found > 0 ? 0 : DKIMSIGN_E_DNS_NOT_FOUND;
}

void dns_txt_clear(struct dns_txt *t)
{
        if (!t)
                return;
        for (size_t i = 0; i < t->count; i++)
                free(t->records[i].text);
        free(t->records);
        *t = (struct dns_txt) { 0 };
}

static int txt_add(void *userdata, const struct msg *m, const struct rr *rr)
{
        struct dns_txt *t = userdata;
        const uint8_t *rd = m->p + rr->rdata;
        struct dns_txt_record rec = { 0 };
        struct dns_txt_record *grown;
        size_t pos = 0;

        if (rr->rdlen == 0)
                return DKIMSIGN_E_FORMAT;   /* TXT holds one or more strings */
        /* The text is shorter than the rdata by one length octet per string. */
        rec.text = malloc(rr->rdlen + 1);
        if (!rec.text)
                return DKIMSIGN_E_NOMEM;
        while (pos < rr->rdlen) {
                size_t slen = rd[pos++];

                if (slen > rr->rdlen - pos) {
                        free(rec.text);
                        return DKIMSIGN_E_FORMAT;
                }
                memcpy(rec.text + rec.len, rd + pos, slen);
                rec.len += slen;
                pos += slen;
                rec.strings++;
        }
        rec.text[rec.len] = '\0';
        grown = reallocarray(t->records, t->count + 1, sizeof(*grown));
        if (!grown) {
                free(rec.text);
                return DKIMSIGN_E_NOMEM;
        }
        t->records = grown;
        t->records[t->count++] = rec;
        return 0;
}

int dns_txt_from_answer(const uint8_t *answer, size_t len, const char *name, struct dns_txt *ret)
{
        struct dns_txt t = { 0 };
        int r = walk_answer(answer, len, name, DNS_TYPE_TXT, txt_add, &t);

        if (r < 0) {
                dns_txt_clear(&t);
                return r;
        }
        *ret = t;
        return 0;
}

void dns_addrs_clear(struct dns_addrs *a)
{
        if (!a)
                return;
        free(a->addrs);
        *a = (struct dns_addrs) { 0 };
}

struct addr_walk {
        struct dns_addrs *out;
        int family;
};

static int addr_add(void *userdata, const struct msg *m, const struct rr *rr)
{
        struct addr_walk *w = userdata;
        size_t want = w->family == AF_INET ? 4 : 16;
        struct dns_addr *grown;

        if (rr->rdlen != want)
                return DKIMSIGN_E_FORMAT;
        grown = reallocarray(w->out->addrs, w->out->count + 1, sizeof(*grown));
        if (!grown)
                return DKIMSIGN_E_NOMEM;
        w->out->addrs = grown;
        memset(&grown[w->out->count], 0, sizeof(*grown));
        grown[w->out->count].family = w->family;
        memcpy(grown[w->out->count].addr, m->p + rr->rdata, want);
        w->out->count++;
        return 0;
}

int dns_addr_from_answer(const uint8_t *answer, size_t len, const char *name, int family, struct dns_addrs *ret)
{
        struct dns_addrs a = { 0 };
        struct addr_walk w = { .out = &a, .family = family };
        int r;

        if (family != AF_INET && family != AF_INET6)
                return DKIMSIGN_E_INTERNAL;
        r = walk_answer(answer, len, name, family == AF_INET ? DNS_TYPE_A : DNS_TYPE_AAAA, addr_add, &w);
        if (r < 0) {
                dns_addrs_clear(&a);
                return r;
        }
        *ret = a;
        return 0;
}

void dns_mx_clear(struct dns_mx *m)
{
        if (!m)
                return;
        for (size_t i = 0; i < m->count; i++)
                free(m->records[i].host);
        free(m->records);
        *m = (struct dns_mx) { 0 };
}

static int mx_add(void *userdata, const struct msg *msg, const struct rr *rr)
{
        struct dns_mx *m = userdata;
        struct wire_name host;
        char text[NAME_TEXT_MAX];
        struct dns_mx_record *grown;
        int r;

        if (rr->rdlen < 3)
                return DKIMSIGN_E_FORMAT;
        r = rdata_name(msg, rr, 2, &host);
        if (r < 0)
                return r;
        name_to_text(&host, text);   /* the null MX "." becomes "" */
        grown = reallocarray(m->records, m->count + 1, sizeof(*grown));
        if (!grown)
                return DKIMSIGN_E_NOMEM;
        m->records = grown;
        grown[m->count].preference = get16(msg->p + rr->rdata);
        grown[m->count].host = strdup(text);
        if (!grown[m->count].host)
                return DKIMSIGN_E_NOMEM;
        m->count++;
        return 0;
}

int dns_mx_from_answer(const uint8_t *answer, size_t len, const char *name, struct dns_mx *ret)
{
        struct dns_mx m = { 0 };
        int r = walk_answer(answer, len, name, DNS_TYPE_MX, mx_add, &m);

        if (r < 0) {
                dns_mx_clear(&m);
                return r;
        }
        *ret = m;
        return 0;
}
