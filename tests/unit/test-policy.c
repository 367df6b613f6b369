/* SPDX-License-Identifier: MIT */
/*
 * daemon/policy: who may get a signature, for every combination of the
 * domain asked for, the From domain, key_domain, subdomain sections and
 * allow lists (issue 19).  Each case states the outcome; every allowed
 * case is also checked against the rule itself: the peer is allowed by
 * the list of d='s section and, when d= aligns with From (same
 * organizational domain), by the list of From's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "daemon/policy.h"
#include "dns/orgdomain.h"

#define ALICE 1001
#define BOB 1002
#define GRP_MAIL 2001

/* uid 1001 (alice) may sign b.com and its subdomains; uid 1002 (bob)
 * only sub.b.com; a.com signs with b.com's key and has no list of its
 * own; list.b.com inherits b.com's list; c.co.uk is a domain under a
 * public suffix of two labels; [daemon] allow admits the group 2001. */
static const char config_text[] =
        "[daemon]\n"
        "allow = group:2001\n"
        "[token]\n"
        "module = /usr/lib/softhsm/libsofthsm2.so\n"
        "label = t\n"
        "[domain b.com]\n"
        "allow = user:1001\n"
        "[domain sub.b.com]\n"
        "allow = user:1002\n"
        "[domain list.b.com]\n"
        "[domain a.com]\n"
        "key_domain = b.com\n"
        "[domain c.co.uk]\n"
        "allow = user:1002\n"
        "[domain d.co.uk]\n"
        "allow = user:1001\n"
        "[domain esp.net]\n"
        "allow = user:1002, user:1001\n";

struct policy_case {
        uid_t uid;
        gid_t gid;
        const char *requested, *d, *from;
        bool allowed;
        const char *why;         /* a part of the refusal's sentence */
};

static const struct policy_case cases[] = {
        /* The first finding: a.com's key_domain gives d=b.com,
         * which bob may not sign, on From b.com: a.com's list ([daemon]
         * allow) lets him ask, d='s refuses. */
        { BOB, GRP_MAIL, "a.com", "b.com", "b.com", false, "d=b.com (the key domain of a.com)" },
        /* ... and on From a.com (d=b.com does not align with a.com): still d='s list. */
        { BOB, GRP_MAIL, "a.com", "b.com", "a.com", false, "d=b.com" },
        { BOB, 100, "a.com", "b.com", "b.com", false, "for domain a.com" },
        /* alice may sign b.com: through a.com too (a.com has no list: [daemon] allow,
         * which alice is not in). */
        { ALICE, 100, "a.com", "b.com", "b.com", false, "for domain a.com" },
        { ALICE, GRP_MAIL, "a.com", "b.com", "b.com", true, NULL },
        { ALICE, 100, "b.com", "b.com", "b.com", true, NULL },
        /* The second: bob, allowed for sub.b.com only, on From b.com: d=sub.b.com
         * aligns with b.com under relaxed DMARC, so b.com's list decides. */
        { BOB, 100, "sub.b.com", "sub.b.com", "b.com", false, "From domain b.com" },
        { BOB, 100, "sub.b.com", "sub.b.com", "sub.b.com", true, NULL },
        /* ... and on From x.sub.b.com (no section: inherits sub.b.com's list). */
        { BOB, 100, "sub.b.com", "sub.b.com", "x.sub.b.com", true, NULL },
        /* alice, on sub.b.com: not in its list. */
        { ALICE, 100, "sub.b.com", "sub.b.com", "sub.b.com", false, "for domain sub.b.com" },
        /* The third: list.b.com has a section without allow: b.com's list, not [daemon]'s. */
        { BOB, GRP_MAIL, "list.b.com", "list.b.com", "list.b.com", false, "for domain list.b.com" },
        { ALICE, 100, "list.b.com", "list.b.com", "list.b.com", true, NULL },
        /* A subdomain with no section at all inherits too. */
        { BOB, GRP_MAIL, "deep.list.b.com", "deep.list.b.com", "deep.list.b.com", false, "deep.list.b.com" },
        /* Not aligned (another organizational domain): From's list is not asked. */
        { BOB, 100, "esp.net", "esp.net", "b.com", true, NULL },
        { ALICE, 100, "esp.net", "esp.net", "c.co.uk", true, NULL },
        /* co.uk is a public suffix: c.co.uk and d.co.uk are two organizations,
         * so d=c.co.uk does not align with From d.co.uk (last-two-labels would say it does). */
        { BOB, 100, "c.co.uk", "c.co.uk", "d.co.uk", true, NULL },
        { ALICE, 100, "c.co.uk", "c.co.uk", "x.c.co.uk", false, "for domain c.co.uk" },
        /* A From in the same organization with no section: [daemon] allow. */
        { BOB, 100, "sub.b.com", "sub.b.com", "other.b.com", false, "From domain other.b.com" },
        { BOB, GRP_MAIL, "esp.net", "esp.net", "mail.esp.net", true, NULL },
        /* A domain nobody configured: [daemon] allow only. */
        { BOB, 100, "z.org", "z.org", "z.org", false, "for domain z.org" },
        { BOB, GRP_MAIL, "z.org", "z.org", "z.org", true, NULL },
};

static struct config *load(void)
{
        struct config *c = NULL;
        char err[512];

        if (config_parse(config_text, strlen(config_text), &c, err, sizeof(err)) != 0)
                fail_msg("config: %s", err);
        if (config_resolve(c, err, sizeof(err)) != 0)
                fail_msg("config: %s", err);
        return c;
}

static void test_cases(void **state)
{
        struct config *c = load();

        (void) state;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                const struct policy_case *k = &cases[i];
                struct peer p = { .uid = k->uid, .gid = k->gid };
                char why[256] = "";
                bool got = pol_may_sign(c, k->requested, k->d, k->from, &p, why, sizeof(why));

                if (got != k->allowed)
                        fail_msg("case %zu (uid %u, requested %s, d=%s, From %s): %s, expected %s (%s)", i,
                                 (unsigned) k->uid, k->requested, k->d, k->from, got ? "allowed" : "refused",
                                 k->allowed ? "allowed" : "refused", why);
                if (!got && !strstr(why, k->why))
                        fail_msg("case %zu: refusal \"%s\" does not say \"%s\"", i, why, k->why);
                /* The rule, checked apart from the code's own order of checks. */
                if (got) {
                        assert_true(pol_allowed(c, k->d, &p));
                        if (dns_same_org(k->d, k->from))
                                assert_true(pol_allowed(c, k->from, &p));
                }
        }
        config_free(c);
}

static void test_org_domains(void **state)
{
        (void) state;
        assert_string_equal(dns_org_domain("mail.example.com"), "example.com");
        assert_string_equal(dns_org_domain("example.com"), "example.com");
        assert_string_equal(dns_org_domain("a.b.example.co.uk"), "example.co.uk");
        /* A public suffix is its own organizational domain. */
        assert_string_equal(dns_org_domain("co.uk"), "co.uk");
        assert_true(dns_same_org("a.example.com", "example.com"));
        assert_false(dns_same_org("c.co.uk", "d.co.uk"));
        /* Domains are compared in A-label form (an EAI From domain is
         * converted): the list's internationalized suffixes still count,
         * 公司.cn being one. */
        assert_string_equal(dns_org_domain("mail.shop.xn--55qx5d.cn"), "shop.xn--55qx5d.cn");
        assert_false(dns_same_org("a.xn--55qx5d.cn", "b.xn--55qx5d.cn"));
        assert_true(dns_same_org("post.xn--bcher-kva.example", "xn--bcher-kva.example"));
}

static int teardown(void **state)
{
        (void) state;
        dns_org_domain_free();
        return 0;
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_cases),
                cmocka_unit_test(test_org_domains),
        };

        return cmocka_run_group_tests(tests, NULL, teardown);
}
