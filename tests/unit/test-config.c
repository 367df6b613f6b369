/* SPDX-License-Identifier: MIT */
/* Unit tests for daemon/config.c: defaults, the shipped example, and every
 * refusal naming its line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "config.h"
#include "dkimsign-build.h"
#include "dkimsign-errors.h"

#define TOKEN "[token]\nmodule = /usr/lib/softhsm/libsofthsm2.so\nlabel = t\n"

static struct config *parse_ok(const char *text)
{
        struct config *c = NULL;
        char err[512];
        int r = config_parse(text, strlen(text), &c, err, sizeof(err));

        if (r != 0)
                fail_msg("unexpected refusal: %s", err);
        return c;
}

static void test_defaults(void **state)
{
        struct config *c = parse_ok(TOKEN);

        assert_string_equal(c->socket_path, "/run/dkimsignd/dkimsignd.sock");
        assert_int_equal(c->socket_mode, 0660);
        assert_int_equal(c->sessions, 4);
        assert_int_equal(c->processes, 1);
        assert_int_equal(c->key_copies, 1024);
        assert_int_equal(c->limits.max_frame, 1024 * 1024);
        assert_int_equal(c->limits.read_timeout_ms, 10000);
        assert_int_equal(c->expire, 0);
        assert_true(c->hpolicy_len > 9);
        assert_string_equal(c->hpolicy[0].name, "from");
        assert_true(c->hpolicy[0].oversign);
        config_free(c);
}

static void test_shipped_example_parses(void **state)
{
        const char *src = getenv("DKIMSIGN_SOURCE");
        struct config *c = NULL;
        char path[4096], err[512];

        assert_non_null(src);
        snprintf(path, sizeof(path), "%s/packaging/dkimsignd.conf", src);
        if (config_load(path, &c, err, sizeof(err)) != 0)
                fail_msg("%s", err);
        assert_string_equal(c->token_label, "dkimsign");
        config_free(c);
}

static void test_values(void **state)
{
        struct config *c = parse_ok(TOKEN "processes = 2\nkey_copies = 0\n"
                "[daemon]\nsocket = /tmp/x.sock\nsocket_mode = 0600\nlog_level = debug\n"
                "[limits]\nmax_frame = 65536\nmax_header_block = 32768\nread_timeout = 2s\nidle_timeout = 1m\n"
                "[signing]\nheaders = From, Subject\n  Date\noversign = subject\nexpire = 7d\n"
                "[domain Sub.Example.COM]\nkey_domain = example.com\nselectors = a, b\n"
                "[domain example.com]\nheaders = from\n");

        assert_string_equal(c->socket_path, "/tmp/x.sock");
        assert_int_equal(c->socket_mode, 0600);
        assert_int_equal(c->processes, 2);
        assert_int_equal(c->key_copies, 0);
        assert_int_equal(c->limits.read_timeout_ms, 2000);
        assert_int_equal(c->limits.idle_timeout_ms, 60000);
        assert_int_equal(c->expire, 7 * 86400);
        /* The list replaced the default and continued on an indented line. */
        assert_int_equal(c->hpolicy_len, 3);
        assert_false(c->hpolicy[0].oversign);
        assert_true(c->hpolicy[1].oversign);
        assert_int_equal(c->ndomains, 2);
        assert_non_null(config_find_domain(c, "sub.example.com"));
        assert_string_equal(config_find_domain(c, "sub.example.com")->key_domain, "example.com");
        assert_int_equal(config_find_domain(c, "sub.example.com")->nselectors, 2);
        assert_null(config_find_domain(c, "other.example"));
        config_free(c);
}

static void test_allow_lists(void **state)
{
        struct config *c = parse_ok(TOKEN "[daemon]\nallow = user:root, group:0\n  user:4242\n"
                                    "[domain a.example]\nallow = *\n[domain b.example]\nselectors = x\n");
        const struct config_domain *a = config_find_domain(c, "a.example");
        const struct config_domain *b = config_find_domain(c, "b.example");

        /* An explicit list replaces the default "*". */
        assert_false(c->allow.any);
        assert_int_equal(c->allow.nuids, 2);
        assert_int_equal(c->allow.uids[0], 0);
        assert_int_equal(c->allow.uids[1], 4242);
        assert_int_equal(c->allow.ngids, 1);
        assert_true(a->allow.set && a->allow.any);
        assert_false(b->allow.set);
        config_free(c);
        c = parse_ok(TOKEN);
        assert_true(c->allow.any);
        config_free(c);
}

/* The key lifecycle's settings: defaults, values, per-domain overrides. */
static void test_lifecycle(void **state)
{
        struct config *c = parse_ok(TOKEN);

        assert_string_equal(c->state_dir, DKIMSIGN_DEFAULT_STATEDIR);
        assert_null(c->dns_resolver);
        assert_int_equal(c->dns_timeout_ms, 5000);
        assert_int_equal(c->check_interval, 600);
        assert_int_equal(c->publish_wait, 48 * 3600);
        assert_int_equal(c->retire_grace, 7 * 86400);
        assert_int_equal(c->unpublished, CONFIG_UNPUBLISHED_REFUSE);
        assert_int_equal(config_unpublished(c, "example.com"), CONFIG_UNPUBLISHED_REFUSE);
        config_free(c);

        c = parse_ok(TOKEN "[daemon]\nstate_dir = /tmp/st\n"
                     "[dns]\nresolver = 127.0.0.1:5353\ntimeout = 2s\ncheck_interval = 1s\npublish_wait = 0\n"
                     "retire_grace = 30s\n[signing]\nunpublished = sign\n"
                     "[domain strict.example]\nunpublished = refuse\npublish_wait = 1h\nretire_grace = 1d\n"
                     "subdomains = yes\n");
        assert_string_equal(c->state_dir, "/tmp/st");
        assert_string_equal(c->dns_resolver, "127.0.0.1:5353");
        assert_int_equal(c->dns_timeout_ms, 2000);
        assert_int_equal(c->check_interval, 1);
        assert_int_equal(config_publish_wait(c, "example.com"), 0);
        assert_int_equal(config_retire_grace(c, "example.com"), 30);
        assert_int_equal(config_unpublished(c, "example.com"), CONFIG_UNPUBLISHED_SIGN);
        assert_int_equal(config_publish_wait(c, "strict.example"), 3600);
        assert_int_equal(config_retire_grace(c, "a.strict.example"), 86400);
        assert_int_equal(config_unpublished(c, "a.strict.example"), CONFIG_UNPUBLISHED_REFUSE);
        config_free(c);

        c = parse_ok(TOKEN "[dns]\nresolver = 127.0.0.1\nresolver = system\nwatch = timer\n");
        assert_null(c->dns_resolver);
        assert_int_equal(c->dns_watch, CONFIG_WATCH_TIMER);
        config_free(c);
}

static void test_refusals_name_the_line(void **state)
{
        static const struct { const char *text; const char *expect; } cases[] = {
                { TOKEN "[limits]\nmax_frame = lots\n", "line 5: 'max_frame' must be" },
                { TOKEN "[limits]\nmax_frame = 10\n", "line 5" },
                { TOKEN "[daemon]\nsockett = /x\n", "line 5: unknown key 'sockett' in [daemon]" },
                { TOKEN "[bogus]\nx = 1\n", "unknown section [bogus]" },
                { TOKEN "[daemon]\nsocket = relative\n", "absolute path" },
                { TOKEN "[daemon]\nsocket_mode = 999\n", "octal" },
                { TOKEN "[signing]\nheaders = subject\n", "must include From" },
                { TOKEN "[signing]\nheaders = from, caf\xc3\xa9\n", "not a valid header field name" },
                { TOKEN "[domain not_a domain]\nselectors = a\n", "not a valid domain name" },
                { TOKEN "[domain a.example]\nselectors = a\n[domain a.example]\nselectors = b\n", "appears twice" },
                { "[token]\nlabel = t\n", "needs 'module' and 'label'" },
                { TOKEN "[token]\nmodule = /again\n", "set twice" },
                { TOKEN "[daemon]\nallow = user:no-such-user-here\n", "no such user" },
                { TOKEN "[daemon]\nallow = group:no-such-group-here\n", "no such group" },
                { TOKEN "[daemon]\nallow = root\n", "allow takes" },
                { TOKEN "[daemon]\nuser = no-such-user-here\n", "no such user" },
                { TOKEN "[limits]\nmax_frame = 2048\nmax_header_block = 4096\n", "max_frame must exceed" },
                { TOKEN "[daemon]\nstate_dir = var/lib\n", "line 5: 'state_dir' must be an absolute path" },
                { TOKEN "[dns]\nresolver = 1.2.3.4 5.6.7.8\n", "line 5: 'resolver' must be system" },
                { TOKEN "[dns]\ntimeout = 0\n", "'timeout' must be" },
                { TOKEN "processes = 0\n", "line 4: 'processes' must be" },
                { TOKEN "processes = 65\n", "line 4: 'processes' must be" },
                { TOKEN "key_copies = 65537\n", "line 4: 'key_copies' must be" },
                { TOKEN "key_copies = -1\n", "line 4: 'key_copies' must be" },
                { TOKEN "[dns]\ntimeout = 2m\n", "'timeout' must be" },
                { TOKEN "[dns]\ncheck_interval = 0\n", "'check_interval' must be" },
                { TOKEN "[dns]\npublish_wait = soon\n", "'publish_wait' must be a duration" },
                { TOKEN "[dns]\nretire_grace = 400d\n", "'retire_grace' must be a duration" },
                { TOKEN "[dns]\nwait = 1h\n", "unknown key 'wait' in [dns]" },
                { TOKEN "[dns]\nwatch = cron\n", "'watch' must be daemon or timer" },
                { TOKEN "[signing]\nunpublished = maybe\n", "'unpublished' must be refuse or sign" },
                { TOKEN "[domain a.example]\nunpublished = yes\n", "'unpublished' must be refuse or sign" },
                { TOKEN "[domain a.example]\npublish_wait = -1\n", "'publish_wait' must be a duration" },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct config *c = NULL;
                char err[512] = "";
                int r = config_parse(cases[i].text, strlen(cases[i].text), &c, err, sizeof(err));

                if (r == 0)
                        fail_msg("case %zu accepted", i);
                assert_null(c);
                assert_true(err[0] != 0);
                if (cases[i].expect && !strstr(err, cases[i].expect))
                        fail_msg("case %zu: '%s' lacks '%s'", i, err, cases[i].expect);
        }
}

static void test_nul_and_long_lines(void **state)
{
        char text[600];
        struct config *c = NULL;
        char err[256];

        assert_int_equal(config_parse("[token]\0x", 9, &c, err, sizeof(err)), DKIMSIGN_E_CONFIG);
        assert_non_null(strstr(err, "NUL"));
        memset(text, 'a', sizeof(text));
        assert_int_equal(config_parse(text, sizeof(text), &c, err, sizeof(err)), DKIMSIGN_E_CONFIG);
        assert_non_null(strstr(err, "longer than"));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_shipped_example_parses),
                cmocka_unit_test(test_values),
                cmocka_unit_test(test_allow_lists),
                cmocka_unit_test(test_lifecycle),
                cmocka_unit_test(test_refusals_name_the_line),
                cmocka_unit_test(test_nul_and_long_lines),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
