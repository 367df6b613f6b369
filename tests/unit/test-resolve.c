/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for dns/resolve.c and dns/answer.c without a network:
 * resolver address strings and DNSSEC settings, and the decoding of
 * hand-built DNS answer messages (several character-strings, CNAME chains
 * and loops, lengths that overrun, NODATA, compression loops and forward
 * pointers, MX, A and AAAA).  Real lookups against a real server are in
 * tests/integration/test-dns-check.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "protocol/dkimsign-errors.h"
#include "dns/resolve.h"

static void test_server_strings(void **state)
{
        static const struct {
                const char *server;
                int r;
        } cases[] = {
                { NULL, 0 }, { "", 0 }, { "system", 0 }, { "recursive", 0 }, { "127.0.0.1", 0 }, { "127.0.0.1:5353", 0 }, { "[::1]:53", 0 },
                { "[::1]", 0 }, { "::1", 0 }, { "2001:db8::1", 0 },
                { "localhost", DKIMSIGN_E_CONFIG }, { "127.0.0.1:", DKIMSIGN_E_CONFIG },
                { "127.0.0.1:0", DKIMSIGN_E_CONFIG }, { "127.0.0.1:65536", DKIMSIGN_E_CONFIG },
                { "127.0.0.1:53x", DKIMSIGN_E_CONFIG }, { "[::1", DKIMSIGN_E_CONFIG },
                { "[::1]53", DKIMSIGN_E_CONFIG }, { "[127.0.0.1]:53", DKIMSIGN_E_CONFIG },
                { "1.2.3.4.5", DKIMSIGN_E_CONFIG }, { "[]:53", DKIMSIGN_E_CONFIG },
        };

        (void) state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct dns_resolver_options o = { .server = cases[i].server, .timeout_ms = 1000 };
                struct dns_resolver *r = NULL;
                char why[256] = "";
                int rc = dns_resolver_new(&o, &r, why, sizeof(why));

                if (rc != cases[i].r)
                        fail_msg("\"%s\": %d, expected %d", cases[i].server ? cases[i].server : "(null)", rc,
                                 cases[i].r);
                dns_resolver_free(r);
        }
        assert_null(dns_resolver_free(NULL));
}

/* ---- a small DNS message builder ---- */

struct msg {
        uint8_t data[2048];
        size_t len;
        size_t ancount_at;
};

static void put(struct msg *m, const void *p, size_t n)
{
        assert_true(m->len + n <= sizeof(m->data));
        memcpy(m->data + m->len, p, n);
        m->len += n;
}

static void put16(struct msg *m, uint16_t v)
{
        uint8_t b[2] = { (uint8_t) (v >> 8), (uint8_t) v };

        put(m, b, 2);
}

static void put_name(struct msg *m, const char *name)
{
        while (*name) {
                const char *dot = strchr(name, '.');
                size_t len = dot ? (size_t) (dot - name) : strlen(name);
                uint8_t l = (uint8_t) len;

                put(m, &l, 1);
                put(m, name, len);
                name += len + (dot ? 1 : 0);
        }
        put(m, "", 1);
}

static void begin(struct msg *m, const char *qname, uint16_t qtype, uint16_t ancount)
{
        m->len = 0;
        put16(m, 0x1234);
        put16(m, 0x8180);
        put16(m, 1);
        put16(m, ancount);
        put16(m, 0);
        put16(m, 0);
        put_name(m, qname);
        put16(m, qtype);
        put16(m, 1);
}

/* An RR with rdata given as bytes. */
static void rr(struct msg *m, const char *owner, uint16_t type, const void *rdata, size_t rdlen)
{
        put_name(m, owner);
        put16(m, type);
        put16(m, 1);
        put16(m, 0);
        put16(m, 300);
        put16(m, (uint16_t) rdlen);
        put(m, rdata, rdlen);
}

static size_t name_wire(const char *name, uint8_t *out)
{
        struct msg tmp = { .len = 0 };

        put_name(&tmp, name);
        memcpy(out, tmp.data, tmp.len);
        return tmp.len;
}

#define TXT 16
#define CNAME 5
#define MX 15
#define QNAME "sel._domainkey.example.com"

static void test_txt_strings(void **state)
{
        static const uint8_t rdata[] = "\x08v=DKIM1;\x06 k=rsa\x00\x05; p=A";
        struct dns_txt t;
        struct msg m;

        (void) state;
        begin(&m, QNAME, TXT, 2);
        rr(&m, QNAME, TXT, rdata, sizeof(rdata) - 1);
        rr(&m, "SEL._DomainKey.Example.COM", TXT, "\x02hi", 3);   /* owner names match in any case */
        assert_int_equal(dns_txt_from_answer(m.data, m.len, QNAME, &t), 0);
        assert_int_equal(t.count, 2);
        assert_int_equal(t.records[0].strings, 4);
        assert_int_equal(t.records[0].len, 8 + 6 + 0 + 5);
        assert_memory_equal(t.records[0].text, "v=DKIM1; k=rsa; p=A", 19);
        assert_string_equal(t.records[1].text, "hi");
        dns_txt_clear(&t);
        dns_txt_clear(&t);
        /* The query name may end with a dot. */
        assert_int_equal(dns_txt_from_answer(m.data, m.len, QNAME ".", &t), 0);
        dns_txt_clear(&t);
}

static void test_txt_malformed(void **state)
{
        struct dns_txt t;
        struct msg m;

        (void) state;
        /* A string length past the end of the rdata. */
        begin(&m, QNAME, TXT, 1);
        rr(&m, QNAME, TXT, "\x09v=DKIM1", 8);
        assert_int_equal(dns_txt_from_answer(m.data, m.len, QNAME, &t), DKIMSIGN_E_FORMAT);
        /* No strings at all. */
        begin(&m, QNAME, TXT, 1);
        rr(&m, QNAME, TXT, "", 0);
        assert_int_equal(dns_txt_from_answer(m.data, m.len, QNAME, &t), DKIMSIGN_E_FORMAT);
        /* An rdlength past the end of the message. */
        begin(&m, QNAME, TXT, 1);
        rr(&m, QNAME, TXT, "\x02hi", 3);
        m.data[m.len - 4] = 0x40;
        assert_int_equal(dns_txt_from_answer(m.data, m.len, QNAME, &t), DKIMSIGN_E_FORMAT);
        /* More answers announced than present. */
        begin(&m, QNAME, TXT, 3);
        rr(&m, QNAME, TXT, "\x02hi", 3);
        assert_int_equal(dns_txt_from_answer(m.data, m.len, QNAME, &t), DKIMSIGN_E_FORMAT);
        /* Too short to be a message. */
        assert_int_equal(dns_txt_from_answer(m.data, 11, QNAME, &t), DKIMSIGN_E_FORMAT);
}

static void test_nodata(void **state)
{
        struct dns_txt t;
        struct msg m;
        uint8_t target[64];
        size_t tlen = name_wire("other.example.com", target);

        (void) state;
        begin(&m, QNAME, TXT, 0);
        assert_int_equal(dns_txt_from_answer(m.data, m.len, QNAME, &t), DKIMSIGN_E_DNS_NOT_FOUND);
        /* A TXT of another owner is not ours. */
        begin(&m, QNAME, TXT, 1);
        rr(&m, "x.example.com", TXT, "\x02hi", 3);
        assert_int_equal(dns_txt_from_answer(m.data, m.len, QNAME, &t), DKIMSIGN_E_DNS_NOT_FOUND);
        /* A CNAME whose target has no TXT in the answer: NODATA, and no second query. */
        begin(&m, QNAME, TXT, 1);
        rr(&m, QNAME, CNAME, target, tlen);
        assert_int_equal(dns_txt_from_answer(m.data, m.len, QNAME, &t), DKIMSIGN_E_DNS_NOT_FOUND);
}

static void test_cname(void **state)
{
        uint8_t a[64], b[64];
        size_t alen = name_wire("a.provider.net", a), blen = name_wire("b.provider.net", b);
        struct dns_txt t;
        struct msg m;

        (void) state;
        /* A chain of two, given out of order, and a TXT at the old owner that no longer counts. */
        begin(&m, QNAME, TXT, 4);
        rr(&m, "a.provider.net", CNAME, b, blen);
        rr(&m, QNAME, TXT, "\x05stale", 6);
        rr(&m, "b.provider.net", TXT, "\x04real", 5);
        rr(&m, QNAME, CNAME, a, alen);
        assert_int_equal(dns_txt_from_answer(m.data, m.len, QNAME, &t), 0);
        assert_int_equal(t.count, 1);
        assert_string_equal(t.records[0].text, "real");
        dns_txt_clear(&t);
        /* A loop. */
        begin(&m, QNAME, TXT, 2);
        rr(&m, QNAME, CNAME, a, alen);
        alen = name_wire(QNAME, a);
        rr(&m, "a.provider.net", CNAME, a, alen);
        assert_int_equal(dns_txt_from_answer(m.data, m.len, QNAME, &t), DKIMSIGN_E_FORMAT);
        /* A CNAME whose name overruns its rdata. */
        begin(&m, QNAME, TXT, 1);
        rr(&m, QNAME, CNAME, b, blen - 3);
        assert_int_equal(dns_txt_from_answer(m.data, m.len, QNAME, &t), DKIMSIGN_E_FORMAT);
}

/* A TXT record whose owner is a pointer to the last of hops pointers,
 * each to the one before, the first to the question's name: a chain the
 * decoder would walk for every read of the owner. */
static int pointer_chain(size_t hops)
{
        struct dns_txt t;
        struct msg m;
        size_t chain, last = 12;
        int r;

        begin(&m, QNAME, TXT, 2);
        /* Record 1, of a type nobody asks for, holds the chain. */
        put16(&m, 0xc00c);
        put16(&m, 10);
        put16(&m, 1);
        put16(&m, 0);
        put16(&m, 300);
        put16(&m, (uint16_t) (2 * hops));
        chain = m.len;
        for (size_t i = 0; i < hops; i++) {
                put16(&m, (uint16_t) (0xc000 | last));
                last = chain + 2 * i;
        }
        put16(&m, (uint16_t) (0xc000 | last));
        put16(&m, TXT);
        put16(&m, 1);
        put16(&m, 0);
        put16(&m, 300);
        put16(&m, 3);
        put(&m, "\x02ok", 3);
        r = dns_txt_from_answer(m.data, m.len, QNAME, &t);
        if (r == 0) {
                assert_int_equal(t.count, 1);
                assert_string_equal(t.records[0].text, "ok");
                dns_txt_clear(&t);
        }
        return r;
}

static void test_pointer_chains(void **state)
{
        (void) state;
        /* A pointer to a pointer is legal, if odd. */
        assert_int_equal(pointer_chain(3), 0);
        /* Hundreds are not a name: each read of it would walk them all,
         * and a 64 KiB answer can hold thousands of names pointing at
         * the end of a chain of 15,000 (0.2 s of CPU per decode of one
         * such answer, measured, more with CNAME hops to follow). */
        assert_int_equal(pointer_chain(400), DKIMSIGN_E_FORMAT);
}

static void test_mx(void **state)
{
        uint8_t rd[80];
        struct dns_mx mx;
        struct msg m;
        size_t n;

        (void) state;
        begin(&m, "example.com", MX, 3);
        rd[0] = 0;
        rd[1] = 10;
        n = name_wire("mail.example.com", rd + 2);
        rr(&m, "example.com", MX, rd, n + 2);
        rd[1] = 0;
        rd[2] = 0;   /* the null MX "." */
        rr(&m, "example.com", MX, rd, 3);
        /* A compression pointer back to the question name. */
        rd[0] = 0;
        rd[1] = 20;
        rd[2] = 0xc0;
        rd[3] = 12;
        rr(&m, "example.com", MX, rd, 4);
        assert_int_equal(dns_mx_from_answer(m.data, m.len, "example.com", &mx), 0);
        assert_int_equal(mx.count, 3);
        assert_int_equal(mx.records[0].preference, 10);
        assert_string_equal(mx.records[0].host, "mail.example.com");
        assert_string_equal(mx.records[1].host, "");
        assert_int_equal(mx.records[2].preference, 20);
        assert_string_equal(mx.records[2].host, "example.com");
        dns_mx_clear(&mx);
        /* A compression pointer to itself. */
        begin(&m, "example.com", MX, 1);
        rd[0] = 0;
        rd[1] = 10;
        rd[2] = 0xc0;
        rd[3] = (uint8_t) (m.len + 2 + 2 + 2 + 4 + 2 + 1 + 12);
        rr(&m, "example.com", MX, rd, 4);
        assert_int_equal(dns_mx_from_answer(m.data, m.len, "example.com", &mx), DKIMSIGN_E_FORMAT);
        /* Too short. */
        begin(&m, "example.com", MX, 1);
        rr(&m, "example.com", MX, "\x00", 1);
        assert_int_equal(dns_mx_from_answer(m.data, m.len, "example.com", &mx), DKIMSIGN_E_FORMAT);
}

static void test_dnssec_settings(void **state)
{
        struct dns_resolver_options o = { .server = "127.0.0.1", .dnssec = DNS_DNSSEC_YES,
                                          .trust_anchor = "/nonexistent/anchor" };
        struct dns_resolver *r = NULL;
        char why[256] = "";
        char anchor[] = "/tmp/test-resolve-anchor-XXXXXX";
        int fd;

        (void) state;
        /* yes insists on a trust anchor, and says which. */
        assert_int_equal(dns_resolver_new(&o, &r, why, sizeof(why)), DKIMSIGN_E_CONFIG);
        assert_non_null(strstr(why, "/nonexistent/anchor"));
        /* auto goes without: nothing is validated. */
        o.dnssec = DNS_DNSSEC_AUTO;
        assert_int_equal(dns_resolver_new(&o, &r, why, sizeof(why)), 0);
        assert_false(dns_resolver_validates(r));
        r = dns_resolver_free(r);
        /* A readable anchor (read by libunbound at the first lookup). */
        fd = mkstemp(anchor);
        assert_true(fd >= 0);
        close(fd);
        o.trust_anchor = anchor;
        for (int d = DNS_DNSSEC_AUTO; d <= DNS_DNSSEC_YES; d++) {
                o.dnssec = (enum dns_dnssec) d;
                assert_int_equal(dns_resolver_new(&o, &r, why, sizeof(why)), 0);
                assert_true(dns_resolver_validates(r));
                r = dns_resolver_free(r);
        }
        o.dnssec = DNS_DNSSEC_NO;
        assert_int_equal(dns_resolver_new(&o, &r, why, sizeof(why)), 0);
        assert_false(dns_resolver_validates(r));
        dns_resolver_free(r);
        unlink(anchor);
        assert_string_equal(dns_security_name(DNS_SEC_BOGUS), "bogus");
        assert_string_equal(dns_security_name(DNS_SEC_UNCHECKED), "unchecked");
}

static void test_addr_and_odd_names(void **state)
{
        static const uint8_t v4[4] = { 192, 0, 2, 1 };
        static const uint8_t v6[16] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 1 };
        struct dns_addrs a;
        struct dns_mx mx;
        uint8_t rd[80];
        struct msg m;
        size_t n;

        (void) state;
        begin(&m, "example.com", 1, 2);
        rr(&m, "example.com", 1, v4, 4);
        rr(&m, "example.com", 28, v6, 16);   /* another type: not an A record */
        assert_int_equal(dns_addr_from_answer(m.data, m.len, "example.com", AF_INET, &a), 0);
        assert_int_equal(a.count, 1);
        assert_memory_equal(a.addrs[0].addr, v4, 4);
        dns_addrs_clear(&a);
        assert_int_equal(dns_addr_from_answer(m.data, m.len, "example.com", AF_INET6, &a), 0);
        assert_int_equal(a.count, 1);
        assert_memory_equal(a.addrs[0].addr, v6, 16);
        dns_addrs_clear(&a);
        /* An A record of the wrong length is a malformed answer. */
        begin(&m, "example.com", 1, 1);
        rr(&m, "example.com", 1, v6, 16);
        assert_int_equal(dns_addr_from_answer(m.data, m.len, "example.com", AF_INET, &a), DKIMSIGN_E_FORMAT);

        /* A host label with a dot and a space in it comes out escaped. */
        begin(&m, "example.com", MX, 1);
        rd[0] = 0;
        rd[1] = 5;
        memcpy(rd + 2, "\x04" "a.b " "\x03" "com" "\x00", 10);
        n = 10;
        rr(&m, "example.com", MX, rd, n + 2);
        assert_int_equal(dns_mx_from_answer(m.data, m.len, "example.com", &mx), 0);
        assert_string_equal(mx.records[0].host, "a\\.b\\032.com");
        dns_mx_clear(&mx);

        /* A compression pointer forwards (past where it is read) is refused:
         * only backward pointers, so no loop can form. */
        begin(&m, "example.com", MX, 1);
        rd[0] = 0;
        rd[1] = 10;
        rd[2] = 0xc0;
        rd[3] = (uint8_t) (m.len + 13 + 10 + 4);   /* owner, type to rdlength, this rdata: the name after */
        rr(&m, "example.com", MX, rd, 4);
        assert_int_equal(m.len, rd[3]);
        put_name(&m, "mail.example.com");
        assert_int_equal(dns_mx_from_answer(m.data, m.len, "example.com", &mx), DKIMSIGN_E_FORMAT);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_server_strings),
                cmocka_unit_test(test_txt_strings),
                cmocka_unit_test(test_txt_malformed),
                cmocka_unit_test(test_nodata),
                cmocka_unit_test(test_cname),
                cmocka_unit_test(test_mx),
                cmocka_unit_test(test_pointer_chains),
                cmocka_unit_test(test_dnssec_settings),
                cmocka_unit_test(test_addr_and_odd_names),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
