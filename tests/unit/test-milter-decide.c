/* SPDX-License-Identifier: MIT */
/*
 * client/milter-decide: which mail dkimsign-milter signs (issue 19,
 * finding 2: it signed any From for anyone local or authenticated).  A
 * table of connections, daemons and logins with the verdict and the
 * reason; a table of logins and From domains against a login map; the
 * map's parser on good and bad files; the origin of a connection from its
 * address; and the MTA's macros refused when they are too long or carry a
 * control character.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include <cmocka.h>

#include "client/milter-decide.h"

/* ---- the decision ---- */

enum { LOCAL = MILTER_ORIGIN_LOCAL, INTERNAL = MILTER_ORIGIN_INTERNAL, EXTERNAL = MILTER_ORIGIN_EXTERNAL };
/* Policies: the defaults; submission on ORIGINATING and port 587; that
 * and sign_local; sign_authenticated = no with submission. */
enum { DEFAULTS, SUBMISSION, SIGN_LOCAL, NO_AUTH };

static const struct decide_case {
        int policy;
        int origin;
        const char *daemon_name, *daemon_port, *login;
        enum milter_verdict verdict;
        const char *why;
} decide_cases[] = {
        /* The finding: loopback, local and any login were signed. */
        { DEFAULTS, LOCAL, "mx.example", "0", NULL, MILTER_NOT_LOCAL, "local submission, sign_local = no" },
        { DEFAULTS, EXTERNAL, "mx.example", "25", NULL, MILTER_NOT_EXTERNAL, "external client, not authenticated" },
        { DEFAULTS, EXTERNAL, NULL, NULL, "alice@a.example", MILTER_CHECK_LOGIN, "authenticated as alice@a.example" },
        { DEFAULTS, LOCAL, NULL, NULL, "alice@a.example", MILTER_CHECK_LOGIN, "authenticated as alice@a.example" },
        /* "" is no login (Postfix sends none; another MTA may send it empty). */
        { DEFAULTS, EXTERNAL, NULL, NULL, "", MILTER_NOT_EXTERNAL, "external client, not authenticated" },
        /* No submission daemons by default, whatever the MTA calls itself. */
        { DEFAULTS, EXTERNAL, "ORIGINATING", "587", NULL, MILTER_NOT_EXTERNAL, "external client" },
        /* internal_networks: as before, for any From. */
        { DEFAULTS, INTERNAL, NULL, NULL, NULL, MILTER_SIGN, "client in internal_networks" },
        /* Submission by name or by port; unauthenticated mail there is the
         * MTA's to admit. */
        { SUBMISSION, EXTERNAL, "ORIGINATING", NULL, NULL, MILTER_SIGN, "submission daemon ORIGINATING" },
        { SUBMISSION, EXTERNAL, "mx.example", "587", NULL, MILTER_SIGN, "submission port 587" },
        { SUBMISSION, EXTERNAL, "originating", "25", NULL, MILTER_NOT_EXTERNAL, "external client" },
        { SUBMISSION, EXTERNAL, "ORIGINATING ", "0587", NULL, MILTER_NOT_EXTERNAL, "external client" },
        { SUBMISSION, EXTERNAL, "ORIGINATING\n", "587\n", NULL, MILTER_NOT_EXTERNAL, "external client" },
        { SUBMISSION, EXTERNAL, NULL, "99999", NULL, MILTER_NOT_EXTERNAL, "external client" },
        /* A login there is still checked. */
        { SUBMISSION, EXTERNAL, "ORIGINATING", NULL, "alice@a.example", MILTER_CHECK_LOGIN, "authenticated as" },
        /* Local mail is local, whatever daemon name the MTA gives it. */
        { SUBMISSION, LOCAL, "ORIGINATING", "0", NULL, MILTER_NOT_LOCAL, "local submission, sign_local = no" },
        { SIGN_LOCAL, LOCAL, "mx.example", "0", NULL, MILTER_SIGN, "local submission, sign_local = yes" },
        { SIGN_LOCAL, EXTERNAL, "mx.example", "25", NULL, MILTER_NOT_EXTERNAL, "external client" },
        /* sign_authenticated = no: a login decides on submission only. */
        { NO_AUTH, EXTERNAL, "mx.example", "25", "alice@a.example", MILTER_NOT_EXTERNAL,
          "authenticated as alice@a.example, sign_authenticated = no" },
        { NO_AUTH, EXTERNAL, "ORIGINATING", NULL, "alice@a.example", MILTER_CHECK_LOGIN, "authenticated as" },
        { NO_AUTH, INTERNAL, NULL, NULL, "alice@a.example", MILTER_SIGN, "client in internal_networks" },
        /* A login that can't be one. */
        { DEFAULTS, EXTERNAL, NULL, NULL, "alice\r\nX-Injected: 1", MILTER_NOT_MALFORMED, "malformed {auth_authen}" },
        { DEFAULTS, EXTERNAL, NULL, NULL, "\x1b[31malice", MILTER_NOT_MALFORMED, "malformed" },
        { DEFAULTS, EXTERNAL, NULL, NULL, "alice\x7f", MILTER_NOT_MALFORMED, "malformed" },
};

static void policy_init(int which, struct milter_policy *p)
{
        *p = (struct milter_policy) { .sign_authenticated = true, .login_owns_domain = true };
        if (which != DEFAULTS) {
                assert_int_equal(milter_parse_daemons(p, "MSA, ORIGINATING"), 0);
                assert_int_equal(milter_parse_ports(p, "465,587"), 0);
        }
        p->sign_local = which == SIGN_LOCAL;
        p->sign_authenticated = which != NO_AUTH;
}

static void test_decide(void **state)
{
        (void) state;
        for (size_t i = 0; i < sizeof(decide_cases) / sizeof(decide_cases[0]); i++) {
                const struct decide_case *t = &decide_cases[i];
                struct milter_facts f = { .origin = (enum milter_origin) t->origin, .daemon_name = t->daemon_name,
                                          .daemon_port = t->daemon_port, .login = t->login };
                struct milter_policy p;
                char why[200] = "";

                policy_init(t->policy, &p);
                if (milter_decide(&p, &f, why, sizeof(why)) != t->verdict || !strstr(why, t->why)) {
                        print_error("case %zu: verdict %d, \"%s\"; expected %d, \"%s\"\n", i,
                                    milter_decide(&p, &f, why, sizeof(why)), why, t->verdict, t->why);
                        fail();
                }
                milter_policy_deinit(&p);
        }
        /* A login of MILTER_LOGIN_MAX octets is one; one more is not. */
        char login[MILTER_LOGIN_MAX + 2];
        struct milter_policy p;
        struct milter_facts f = { .origin = MILTER_ORIGIN_EXTERNAL, .login = login };

        policy_init(DEFAULTS, &p);
        memset(login, 'a', sizeof(login) - 1);
        login[sizeof(login) - 1] = 0;
        assert_int_equal(milter_decide(&p, &f, NULL, 0), MILTER_NOT_MALFORMED);
        login[sizeof(login) - 2] = 0;
        assert_int_equal(milter_decide(&p, &f, NULL, 0), MILTER_CHECK_LOGIN);
}

/* ---- logins ---- */

static const char map_text[] =
        "# login or @login-domain   domains it may sign\n"
        "carol@a.example   b.example\n"
        "\n"
        "  webapp          c.example, *.c.example   # the application host\n"
        "@ops.example      ops.example,ops.test\r\n"
        "@a.example        a-news.example\n"
        "CAROL@A.EXAMPLE   D.Example\n"
        "@wild.example     *.wild.example\n"
        /* Internationalized domains, U-labels or A-labels: kept as A-labels. */
        "@b\xc3\xbc" "cher.example  *.b\xc3\xbc" "cher.example, xn--fa-hia.de\n"
        "shop              xn--bcher-kva.example\n";

static const struct login_case {
        bool owns;              /* login_owns_domain */
        const char *login, *domain;
        bool may;
        const char *why;
} login_cases[] = {
        /* login@domain owns domain, and only it: not its subdomains, nor
         * its parent. */
        { true, "alice@a.example", "a.example", true, "owns the From domain" },
        { true, "alice@A.Example", "a.example", true, "owns" },
        { true, "alice@a.example", "b.example", false, "login alice@a.example may not sign for this domain" },
        { true, "alice@a.example", "sub.a.example", false, "may not sign" },
        { true, "alice@sub.a.example", "a.example", false, "may not sign" },
        { false, "alice@a.example", "a.example", false, "may not sign" },
        /* The map: a login (any letter case), its @domain, wildcards. */
        { true, "carol@a.example", "b.example", true, "login_map line 2 (carol@a.example b.example)" },
        { true, "Carol@A.example", "d.example", true, "line 7" },
        { true, "carol@a.example", "a-news.example", true, "line 6 (@a.example a-news.example)" },
        { true, "alice@a.example", "a-news.example", true, "line 6" },
        { true, "alice@a.example", "d.example", false, "may not sign" },
        { true, "webapp", "c.example", true, "line 4" },
        { true, "webapp", "www.c.example", true, "line 4 (webapp *.c.example)" },
        { true, "webapp", "xc.example", false, "may not sign" },
        { true, "webapp@evil.example", "c.example", false, "may not sign" },
        { true, "x@wild.example", "wild.example", true, "owns" },
        { false, "x@wild.example", "wild.example", false, "may not sign" },
        { false, "x@wild.example", "a.wild.example", true, "line 8" },
        { true, "bob@ops.example", "ops.test", true, "line 5" },
        /* A login shaped like a map key is not one. */
        { true, "@a.example", "a-news.example", false, "may not sign" },
        { true, "@ops.example", "ops.example", false, "may not sign" },
        { true, "mallory@x.ops.example", "ops.test", false, "may not sign" },
        { true, "ops.example", "ops.test", false, "may not sign" },
        /* The From domain comes in A-label form (dkimsign_message_from_domain);
         * a login's and the map's domains match it in either form. */
        { true, "j\xc3\xb6rg@b\xc3\xbc" "cher.example", "xn--bcher-kva.example", true, "owns the From domain" },
        { true, "j\xc3\xb6rg@B\xc3\x9c" "CHER.example", "xn--bcher-kva.example", true, "owns" },
        { true, "joe@xn--bcher-kva.example", "xn--bcher-kva.example", true, "owns" },
        { false, "j\xc3\xb6rg@b\xc3\xbc" "cher.example", "post.xn--bcher-kva.example", true,
          "line 9 (@xn--bcher-kva.example *.xn--bcher-kva.example)" },
        { false, "joe@xn--bcher-kva.example", "xn--fa-hia.de", true, "line 9" },
        { false, "j\xc3\xb6rg@b\xc3\xbc" "cher.example", "xn--bcher-kva.example", false, "may not sign" },
        { false, "shop", "xn--bcher-kva.example", true, "line 10" },
        { true, "joe@a\xe2\x80\x8d" "b.example", "xn--bcher-kva.example", false, "may not sign" },
};

static void test_login_may_sign(void **state)
{
        struct login_map *m = NULL;
        char why[300];

        (void) state;
        assert_int_equal(login_map_parse(map_text, strlen(map_text), &m, why, sizeof(why)), 0);
        assert_int_equal(m->n, 11);
        for (size_t i = 0; i < sizeof(login_cases) / sizeof(login_cases[0]); i++) {
                const struct login_case *t = &login_cases[i];
                struct milter_policy p = { .login_owns_domain = t->owns, .logins = m };

                why[0] = 0;
                if (milter_login_may_sign(&p, t->login, t->domain, why, sizeof(why)) != t->may ||
                    !strstr(why, t->why)) {
                        print_error("case %zu: %s for %s: \"%s\", expected %s \"%s\"\n", i, t->login, t->domain,
                                    why, t->may ? "yes" : "no", t->why);
                        fail();
                }
        }
        /* No map: the login's own domain only. */
        struct milter_policy p = { .login_owns_domain = true };
        assert_true(milter_login_may_sign(&p, "alice@a.example", "a.example", why, sizeof(why)));
        assert_false(milter_login_may_sign(&p, "carol@a.example", "b.example", why, sizeof(why)));
        login_map_free(m);
}

static const struct {
        const char *text;
        const char *error;      /* NULL: parses */
} map_files[] = {
        { "", NULL },
        { "# only a comment\n\n   \n", NULL },
        { "alice b.example", NULL },                    /* no final line end */
        { "alice\tb.example,\t c.example \t\n", NULL },
        { "alice\n", "line 1: no domain after the login" },
        { "alice # b.example\n", "line 1: no domain" },
        { "ok a.example\nalice b..example\n", "line 2: \"b..example\" is no domain" },
        { "alice -b.example\n", "is no domain" },
        { "alice b.example.\n", "is no domain" },
        { "alice *.\n", "is no domain" },
        { "alice *b.example\n", "is no domain" },
        { "alice b.*.example\n", "is no domain" },
        { "alice b_x.example\n", "is no domain" },
        { "@ b.example\n", "line 1: \"@\" is no @domain" },
        { "@a..example b.example\n", "is no @domain" },
        { "alice a\xe2\x80\x8d" "b.example\n", "line 1: \"a\xe2\x80\x8d" "b.example\" is no domain" },
        { "@xn--zz.example b.example\n", "is no @domain" },
        { "alice b.example\x01\n", "line 1: a control character or NUL" },
        { "x y.example\nalice b.example\0c.example\n", "line 2: a control character or NUL" },
        { "alice b.example\r\r\n", "line 1: a control character" },
};

static void test_map_parse(void **state)
{
        (void) state;
        for (size_t i = 0; i < sizeof(map_files) / sizeof(map_files[0]); i++) {
                /* Every text's length: one case has a NUL inside. */
                size_t len = strlen(map_files[i].text);
                struct login_map *m = NULL;
                char why[300] = "";
                int r;

                if (i == 18)
                        len = sizeof("x y.example\nalice b.example\0c.example\n") - 1;
                r = login_map_parse(map_files[i].text, len, &m, why, sizeof(why));
                if (map_files[i].error ? r != -1 || m || !strstr(why, map_files[i].error) : r != 0 || !m) {
                        print_error("file %zu: r %d, \"%s\"\n", i, r, why);
                        fail();
                }
                login_map_free(m);
        }
}

/* The bounds: a long line, a long login, a long domain, too many rules. */
static void test_map_bounds(void **state)
{
        size_t big = LOGIN_MAP_MAX_RULES + 1, len = 0;
        char *text = malloc(big * 24 + LOGIN_MAP_MAX_LINE + 16), why[300];
        struct login_map *m = NULL;

        (void) state;
        assert_non_null(text);
        memset(text, 'a', LOGIN_MAP_MAX_LINE + 1);
        memcpy(text, "x b.example ", 12);
        assert_int_equal(login_map_parse(text, LOGIN_MAP_MAX_LINE + 1, &m, why, sizeof(why)), -1);
        assert_non_null(strstr(why, "line 1: longer than 4096 octets"));
        /* A login one octet over its limit. */
        memset(text, 'l', MILTER_LOGIN_MAX + 1);
        memcpy(text + MILTER_LOGIN_MAX + 1, " b.example\n", 11);
        assert_int_equal(login_map_parse(text, MILTER_LOGIN_MAX + 12, &m, why, sizeof(why)), -1);
        assert_non_null(strstr(why, "a login longer than"));
        assert_int_equal(login_map_parse(text + 1, MILTER_LOGIN_MAX + 11, &m, why, sizeof(why)), 0);
        m = login_map_free(m);
        /* A domain of 253 octets, then 254; a label of 64. */
        static const char label[] = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
        len = (size_t) sprintf(text, "x %.63s.%.63s.%.63s.%.61s\n", label, label, label, label);
        assert_int_equal(login_map_parse(text, len, &m, why, sizeof(why)), 0);
        m = login_map_free(m);
        len = (size_t) sprintf(text, "x %.63s.%.63s.%.63s.%.62s\n", label, label, label, label);
        assert_int_equal(login_map_parse(text, len, &m, why, sizeof(why)), -1);
        assert_non_null(strstr(why, "is no domain"));
        len = (size_t) sprintf(text, "x %.64s.example\n", label);
        assert_int_equal(login_map_parse(text, len, &m, why, sizeof(why)), -1);
        /* One rule more than a map holds. */
        len = 0;
        for (size_t i = 0; i < big; i++)
                len += (size_t) sprintf(text + len, "u%zu a.example\n", i);
        assert_int_equal(login_map_parse(text, len, &m, why, sizeof(why)), -1);
        assert_non_null(strstr(why, "more rules than the map may hold"));
        assert_int_equal(login_map_parse(text, len - strlen("u100000 a.example\n"), &m, why, sizeof(why)), 0);
        assert_int_equal(m->n, LOGIN_MAP_MAX_RULES);
        /* The last rule of a full map is found. */
        struct milter_policy p = { .logins = m };
        assert_true(milter_login_may_sign(&p, "u99999", "a.example", why, sizeof(why)));
        assert_true(milter_login_may_sign(&p, "u0", "a.example", why, sizeof(why)));
        assert_false(milter_login_may_sign(&p, "u100000", "a.example", why, sizeof(why)));
        login_map_free(m);
        free(text);
}

/* ---- where a connection comes from ---- */

static void test_origin(void **state)
{
        struct milter_policy p = { 0 };
        struct sockaddr_in in = { .sin_family = AF_INET };
        struct sockaddr_in6 in6 = { .sin6_family = AF_INET6 };
        struct sockaddr_un un = { .sun_family = AF_UNIX };
        const struct sockaddr *sa4 = (const struct sockaddr *) &in, *sa6 = (const struct sockaddr *) &in6;

        (void) state;
        /* No address, AF_UNIX: local. */
        assert_int_equal(milter_origin(&p, NULL), MILTER_ORIGIN_LOCAL);
        assert_int_equal(milter_origin(&p, (const struct sockaddr *) &un), MILTER_ORIGIN_LOCAL);
        /* Postfix's non_smtpd_milters: 127.0.0.1, port 0. */
        inet_pton(AF_INET, "127.0.0.1", &in.sin_addr);
        assert_int_equal(milter_origin(&p, sa4), MILTER_ORIGIN_LOCAL);
        /* A loopback SMTP client (a list manager re-injecting) is not. */
        in.sin_port = htons(41234);
        assert_int_equal(milter_origin(&p, sa4), MILTER_ORIGIN_EXTERNAL);
        /* Nor port 0 from elsewhere. */
        in.sin_port = 0;
        inet_pton(AF_INET, "192.0.2.1", &in.sin_addr);
        assert_int_equal(milter_origin(&p, sa4), MILTER_ORIGIN_EXTERNAL);
        inet_pton(AF_INET6, "::1", &in6.sin6_addr);
        assert_int_equal(milter_origin(&p, sa6), MILTER_ORIGIN_LOCAL);
        in6.sin6_port = htons(41234);
        assert_int_equal(milter_origin(&p, sa6), MILTER_ORIGIN_EXTERNAL);
        inet_pton(AF_INET6, "::ffff:127.0.0.1", &in6.sin6_addr);
        in6.sin6_port = 0;
        assert_int_equal(milter_origin(&p, sa6), MILTER_ORIGIN_LOCAL);

        /* internal_networks: nothing by default; CIDR, v4 and v6, v4-mapped. */
        assert_int_equal(milter_parse_networks(&p, "192.0.2.0/25, 2001:db8::/32 10.1.2.3"), 0);
        assert_int_equal(p.n_networks, 3);
        in.sin_port = htons(25);
        inet_pton(AF_INET, "192.0.2.127", &in.sin_addr);
        assert_int_equal(milter_origin(&p, sa4), MILTER_ORIGIN_INTERNAL);
        inet_pton(AF_INET, "192.0.2.128", &in.sin_addr);
        assert_int_equal(milter_origin(&p, sa4), MILTER_ORIGIN_EXTERNAL);
        inet_pton(AF_INET, "10.1.2.3", &in.sin_addr);
        assert_int_equal(milter_origin(&p, sa4), MILTER_ORIGIN_INTERNAL);
        in6.sin6_port = htons(25);
        inet_pton(AF_INET6, "2001:db8:ffff::1", &in6.sin6_addr);
        assert_int_equal(milter_origin(&p, sa6), MILTER_ORIGIN_INTERNAL);
        inet_pton(AF_INET6, "::ffff:192.0.2.5", &in6.sin6_addr);
        assert_int_equal(milter_origin(&p, sa6), MILTER_ORIGIN_INTERNAL);
        /* Even listed, loopback port 0 stays local (sign_local decides). */
        assert_int_equal(milter_parse_networks(&p, "127.0.0.0/8"), 0);
        in.sin_port = 0;
        inet_pton(AF_INET, "127.0.0.1", &in.sin_addr);
        assert_int_equal(milter_origin(&p, sa4), MILTER_ORIGIN_LOCAL);
        /* Bad values leave the list as it was. */
        assert_int_equal(milter_parse_networks(&p, "192.0.2.0/33"), -1);
        assert_int_equal(milter_parse_networks(&p, "192.0.2.0/-1"), -1);
        assert_int_equal(milter_parse_networks(&p, "example.com"), -1);
        assert_int_equal(p.n_networks, 1);
        assert_int_equal(milter_parse_networks(&p, ""), 0);
        assert_int_equal(p.n_networks, 0);
}

static void test_parse_lists(void **state)
{
        struct milter_policy p = { 0 };

        (void) state;
        assert_int_equal(milter_parse_ports(&p, "587, 465"), 0);
        assert_int_equal(p.n_ports, 2);
        assert_int_equal(milter_parse_ports(&p, "0"), -1);
        assert_int_equal(milter_parse_ports(&p, "65536"), -1);
        assert_int_equal(milter_parse_ports(&p, "587x"), -1);
        assert_int_equal(milter_parse_ports(&p, "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17"), -1);
        assert_int_equal(p.n_ports, 2);
        assert_int_equal(milter_parse_daemons(&p, "ORIGINATING,MSA"), 0);
        assert_int_equal(p.n_daemons, 2);
        assert_int_equal(milter_parse_daemons(&p, "ORIG\x01"), -1);
        assert_int_equal(p.n_daemons, 2);
        assert_int_equal(milter_parse_daemons(&p, ""), 0);
        assert_int_equal(p.n_daemons, 0);
        milter_policy_deinit(&p);
}

static void test_macro_ok(void **state)
{
        (void) state;
        assert_true(milter_macro_ok("alice@a.example", 15));
        assert_false(milter_macro_ok("alice@a.example", 14));
        assert_true(milter_macro_ok("", 0));
        assert_true(milter_macro_ok("\xc3\xa9l\xc3\xa8ve", 32));     /* UTF-8 */
        assert_false(milter_macro_ok("a\tb", 32));
        assert_false(milter_macro_ok("a\nb", 32));
        assert_false(milter_macro_ok(NULL, 32));
}

/* Which mail is sealed: by {daemon_name} as given, by recipient domain in
 * any letter case, never for a macro that is no name. */
static void test_arc_selection(void **state)
{
        struct milter_arc a = { 0 };

        assert_int_equal(milter_arc_parse_daemons(&a, "LISTOUT, FWD"), 0);
        assert_int_equal(milter_arc_parse_domains(&a, "Lists.Example.org forward.example"), 0);
        assert_true(milter_arc_daemon(&a, "LISTOUT"));
        assert_false(milter_arc_daemon(&a, "listout"));
        assert_false(milter_arc_daemon(&a, NULL));
        assert_false(milter_arc_daemon(&a, "LIST\x01OUT"));
        assert_true(milter_arc_recipient(&a, "<bob@lists.example.org>"));
        assert_true(milter_arc_recipient(&a, "<BOB@LISTS.EXAMPLE.ORG>"));
        assert_true(milter_arc_recipient(&a, "carol@forward.example"));
        assert_false(milter_arc_recipient(&a, "<bob@sub.lists.example.org>"));
        assert_false(milter_arc_recipient(&a, "<bob@lists.example.org.evil>"));
        assert_false(milter_arc_recipient(&a, "<postmaster>"));
        assert_false(milter_arc_recipient(&a, NULL));
        assert_int_equal(milter_arc_parse_domains(&a, "bad\x01name"), -1);
        /* Internationalized domains compare as A-labels, written either way. */
        assert_int_equal(milter_arc_parse_domains(&a, "b\xc3\xbc" "cher.example, xn--mnchen-3ya.example"), 0);
        assert_true(milter_arc_recipient(&a, "<j\xc3\xb6rg@B\xc3\x9c" "CHER.example>"));
        assert_true(milter_arc_recipient(&a, "<jorg@xn--bcher-kva.example>"));
        assert_true(milter_arc_recipient(&a, "<x@m\xc3\xbc" "nchen.example>"));
        assert_false(milter_arc_recipient(&a, "<x@lists.example.org>"));
        assert_false(milter_arc_recipient(&a, "<x@[192.0.2.1]>"));
        assert_int_equal(a.n_domains, 2);      /* a refused list leaves the last one */
        milter_arc_deinit(&a);
        assert_int_equal(a.n_daemons + a.n_domains, 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_decide),
                cmocka_unit_test(test_login_may_sign),
                cmocka_unit_test(test_map_parse),
                cmocka_unit_test(test_map_bounds),
                cmocka_unit_test(test_origin),
                cmocka_unit_test(test_parse_lists),
                cmocka_unit_test(test_arc_selection),
                cmocka_unit_test(test_macro_ok),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
