/* SPDX-License-Identifier: MIT */
/* Unit tests for keys/config.c: defaults, the shipped example, and every
 * refusal naming its line. */
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "keys/config.h"
#include "util/readfile.h"
#include "dkimsign-build.h"
#include "protocol/dkimsign-errors.h"

#define TOKEN "[token]\nmodule = /usr/lib/softhsm/libsofthsm2.so\nlabel = t\n"

static struct config *parse_ok(const char *text)
{
        struct config *c = NULL;
        char err[512];
        int r = config_parse(text, strlen(text), &c, err, sizeof(err));

        if (r == 0)
                r = config_resolve(c, err, sizeof(err));
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
        char path[4096], err[512], *text = NULL;
        size_t len = 0;

        assert_non_null(src);
        snprintf(path, sizeof(path), "%s/packaging/dkimsignd.conf", src);
        /* Parsed, not loaded: a checkout's file modes follow its umask,
         * which config_load's permission check would judge. */
        if (readfile(path, CONFIG_FILE_MAX, 0, &text, &len, err, sizeof(err)) != 0)
                fail_msg("%s", err);
        if (config_parse(text, len, &c, err, sizeof(err)) != 0 || config_resolve(c, err, sizeof(err)) != 0)
                fail_msg("%s", err);
        readfile_free(text, len);
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

/* Domains are kept, and found, in A-label form, whichever form the file
 * wrote them in (RFC 8616: the form d= and DNS use). */
static void test_idn_domains(void **state)
{
        struct config *c = parse_ok(TOKEN "[domain B\xc3\x9c" "CHER.example]\nkey_domain = mail.b\xc3\xbc" "cher.example\n"
                                    "allow = *\nsubdomains = yes\n"
                                    "[domain xn--fa-hia.de]\nselectors = a\n");
        const struct config_domain *d = config_find_domain(c, "xn--bcher-kva.example");

        (void) state;
        assert_int_equal(c->ndomains, 2);
        assert_non_null(d);
        assert_string_equal(d->name, "xn--bcher-kva.example");
        assert_string_equal(d->key_domain, "mail.xn--bcher-kva.example");
        assert_true(d->subdomains && d->allow.set);
        assert_ptr_equal(config_domain_for(c, "shop.xn--bcher-kva.example"), d);
        assert_null(config_find_domain(c, "b\xc3\xbc" "cher.example"));
        assert_non_null(config_find_domain(c, "xn--fa-hia.de"));
        config_free(c);
}

/* also_sign and identity's written-out domain part too: i= and the second
 * d= are compared with, and put beside, A-label d= values.  "%d" and plain
 * ASCII stay as written. */
static void test_idn_signing_options(void **state)
{
        struct config *c = parse_ok(TOKEN "[signing]\nidentity = bounces@n\xc3\xabws.%d\n"
                                    "also_sign = ESP.b\xc3\xbc" "cher.example\n"
                                    "[domain b\xc3\xbc" "cher.example]\nidentity = joerg@Post.B\xc3\x9c" "CHER.example\n"
                                    "also_sign = xn--fa-hia.de\n"
                                    "[domain c.example]\nidentity = @Mail.c.example\n");
        const struct config_domain *b = config_find_domain(c, "xn--bcher-kva.example");
        const struct config_domain *d = config_find_domain(c, "c.example");

        (void) state;
        assert_string_equal(config_identity(c, NULL), "bounces@xn--nws-jma.%d");
        assert_string_equal(config_also_sign(c, NULL), "esp.xn--bcher-kva.example");
        assert_string_equal(config_identity(c, b), "joerg@post.xn--bcher-kva.example");
        assert_string_equal(config_also_sign(c, b), "xn--fa-hia.de");
        assert_string_equal(config_identity(c, d), "@Mail.c.example");
        config_free(c);
}

/* config_parse asks no one: a name stays a name until config_resolve,
 * which looks it up and names the line of one that does not exist. */
static void test_names_resolved_apart(void **state)
{
        static const char text[] = TOKEN "[daemon]\nallow = user:root, user:no-such-user-here\n";
        struct config *c = NULL;
        char err[512] = "";

        assert_int_equal(config_parse(text, strlen(text), &c, err, sizeof(err)), 0);
        assert_int_equal(c->allow.nnames, 2);
        assert_int_equal(c->allow.nuids, 0);  /* nothing looked up yet */
        assert_int_equal(config_resolve(c, err, sizeof(err)), DKIMSIGN_E_CONFIG);
        assert_string_equal(err, "line 5: allow: no such user 'no-such-user-here'");
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

        c = parse_ok(TOKEN "[dns]\nresolver = system\nwatch = timer\n");
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
                /* one domain, as U-labels and as A-labels */
                { TOKEN "[domain b\xc3\xbc" "cher.example]\nselectors = a\n[domain xn--bcher-kva.example]\n"
                  "selectors = b\n", "line 7: [domain xn--bcher-kva.example] appears twice" },
                { TOKEN "[domain a\xe2\x80\x8d" "b.example]\nselectors = a\n", "line 5: [domain a\xe2\x80\x8d"
                  "b.example]: 'a\xe2\x80\x8d" "b.example' is not a valid domain name: it contains a joiner" },
                { TOKEN "[domain a.example]\nkey_domain = xn--zz.example\n", "line 5: 'xn--zz.example' is not a "
                  "valid domain name: an xn-- label is not a valid A-label" },
                { TOKEN "[signing]\nalso_sign = a\xe2\x80\x8d" "b.example\n", "line 5: 'also_sign' takes a domain "
                  "name, or none: 'a\xe2\x80\x8d" "b.example' is not a valid domain name: it contains a joiner" },
                { TOKEN "[domain a.example]\nidentity = @xn--zz.a.example\n", "line 5: identity '@xn--zz.a.example': "
                  "'xn--zz.a.example' is not a valid domain name: an xn-- label is not a valid A-label" },
                { TOKEN "[signing]\nidentity = @\xd9\xa1\xd9\xa2.%d\n", "line 5: identity '@\xd9\xa1\xd9\xa2.%d': "
                  "'\xd9\xa1\xd9\xa2' is not a valid domain name: " },
                /* converted, then checked against d= like any identity */
                { TOKEN "[domain a.example]\nidentity = @b\xc3\xbc" "cher.example\n",
                  "identity '@xn--bcher-kva.example': xn--bcher-kva.example is neither d=a.example" },
                { "[token]\nlabel = t\n", "needs 'module' and 'label'" },
                { TOKEN "[token]\nmodule = /again\n", "set twice" },
                { TOKEN "[daemon]\nallow = user:no-such-user-here\n", "no such user" },
                { TOKEN "[daemon]\nallow = group:no-such-group-here\n", "no such group" },
                { TOKEN "[daemon]\nallow = root\n", "allow takes" },
                { TOKEN "[daemon]\nuser = no-such-user-here\n", "no such user" },
                { TOKEN "[limits]\nmax_frame = 2048\nmax_header_block = 4096\n", "max_frame must exceed" },
                { TOKEN "[limits]\nmax_buffered_per_uid = 65536\n", "max_buffered_per_uid must be at least twice max_frame" },
                { TOKEN "[limits]\nmax_buffered = 65536\n", "max_buffered at least max_buffered_per_uid" },
                { TOKEN "[limits]\nwrite_timeout = 0s\n", "'write_timeout' must be a duration" },
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
                /* A setting set again, or doing nothing where it stands. */
                { TOKEN "[dns]\nresolver = 127.0.0.1\nresolver = system\n",
                  "line 6: 'resolver' is set twice in [dns] (first on line 5)" },
                { TOKEN "[signing]\nheaders = from\nheaders = to\n",
                  "line 6: 'headers' is set twice in [signing] (first on line 5)" },
                { TOKEN "[signing]\noversign = from\n[dns]\ntimeout = 2s\n[signing]\noversign = date\n",
                  "line 9: 'oversign' is set twice in [signing] (first on line 5)" },
                { TOKEN "sessions = 2\nsessions = 3\n", "line 5: 'sessions' is set twice in [token] (first on line 4)" },
                { TOKEN "[limits]\nmax_line = 100\nmax_line = 200\n", "line 6: 'max_line' is set twice" },
                { TOKEN "[daemon]\nallow = *\nallow = user:root\n", "line 6: 'allow' is set twice" },
                { TOKEN "[domain a.example]\nselector = a\nselectors = b\n",
                  "line 6: 'selectors' is set twice in [domain a.example] (first on line 5)" },
                { TOKEN "[domain a.example]\nsubdomains = yes\nunpublished = sign\nsubdomains = no\n",
                  "line 7: 'subdomains' is set twice" },
                { TOKEN "[domain a.example]\nkey_domain = b.example\nkey_domain = c.example\n", "line 6: 'key_domain' is set twice" },
                { TOKEN "[daemon]\nsocket = /a\n  /b\n", "line 6: 'socket' takes one value: only a list continues" },
                { TOKEN "[signing]\nheaders = from\noversign = from, date\n",
                  "line 6: [signing] oversign names 'date', which is not signed: add it to headers" },
                { TOKEN "[signing]\noversign = from, x-mailer\n", "line 5: [signing] oversign names 'x-mailer'" },
                { TOKEN "[signing]\nheaders = from, to\n[domain a.example]\noversign = date\n",
                  "line 7: [domain a.example] oversign names 'date', which is not signed" },
                { TOKEN "[domain a.example]\nheaders = subject\n", "line 5: [domain a.example] headers must include From" },
                { TOKEN "[signing]\noversign = from, From\n", "line 5: header field 'From' is listed twice" },
                { TOKEN "[signing]\noversign = from\noversign_if_present = to, from\n",
                  "line 6: [signing] 'from' is in oversign (line 5) and in oversign_if_present: keep it in one" },
                { TOKEN "[signing]\nheaders = from\noversign_if_present = to\n",
                  "line 6: [signing] oversign_if_present names 'to', which is not signed" },
                /* Signing options: i= checked against d= once the file is read. */
                { TOKEN "[signing]\nidentity = @example.com\n",
                  "line 5: [signing] identity '@example.com' names one domain, but it applies to every d=" },
                { TOKEN "[signing]\nidentity = a b@%d\n", "line 5: [signing] 'a b' is not a local part" },
                { TOKEN "[signing]\nidentity = @x%d\n", "line 5: [signing] '@x%d': %d stands for d=" },
                { TOKEN "[domain a.example]\nidentity = @b.example\n",
                  "line 5: [domain a.example] identity '@b.example': b.example is neither d=a.example nor a "
                  "subdomain of it" },
                { TOKEN "[domain a.example]\nidentity = @mail.a.example\nkey_domain = esp.example\n",
                  "line 5: [domain a.example] identity '@mail.a.example': mail.a.example is neither d=esp.example" },
                { TOKEN "[domain a.example]\nidentity = x@y@a.example\n", "one '@'" },
                { TOKEN "[domain a.example]\nidentity = \"a=b\"@a.example\n", "is not a local part" },
                { TOKEN "[domain a.example]\nidentity = a..b@a.example\n", "is not a local part" },
                { TOKEN "[domain a.example]\nidentity = a=b@a.example\n", "is not a local part" },
                { TOKEN "[domain a.example]\nidentity = "
                  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@a.example\n", "at most 64" },
                { TOKEN "[domain a.example]\nidentity = @\n", "'' is not a valid domain name" },
                { TOKEN "[domain a.example]\nidentity = @a.example\nidentity = @a.example\n", "set twice" },
                { TOKEN "[signing]\nalso_sign = not a domain\n", "line 5: 'also_sign' takes a domain name, or none" },
                { TOKEN "[domain a.example]\nalso_sign = A.example\n",
                  "line 5: [domain a.example] also_sign names d=a.example, which signs already" },
                { TOKEN "[domain a.example]\nkey_domain = esp.example\nalso_sign = esp.example\n",
                  "line 6: [domain a.example] also_sign names d=esp.example" },
                { TOKEN "[domain a.example]\nexpire = soon\n", "line 5: 'expire' must be a duration" },
                /* x= is at most 12 digits (RFC 6376 3.5): 2^32-1 days made 15. */
                { TOKEN "[signing]\nexpire = 4294967295d\n", "line 5: 'expire' must be a duration from 0 to 365d" },
                { TOKEN "[domain a.example]\nexpire = 366d\n", "line 5: 'expire' must be a duration from 0 to 365d" },
                /* The first refusal is reported, with its own line. */
                { TOKEN "[limits]\ngarbage\nmax_frame = lots\n", "line 5: syntax error" },
                { TOKEN "[limits]\nmax_line = 1\nmax_frame = lots\n", "line 5: 'max_line' must be" },
                /* [token] module_env */
                { TOKEN "module_env = SOFTHSM2_CONF\n", "line 4: 'module_env' takes NAME=VALUE" },
                { TOKEN "module_env = 2FA=x\n", "line 4: module_env: '2FA' is not an environment variable name" },
                { TOKEN "module_env = SOFT-HSM=x\n", "is not an environment variable name" },
                { TOKEN "module_env = SOFTHSM2_CONF = /x\n", "'SOFTHSM2_CONF ' is not an environment variable name" },
                { TOKEN "module_env = =x\n", "'' is not an environment variable name" },
                { TOKEN "module_env = A=1\n  AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=1\n",
                  "line 5: module_env: 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' is not" },
                { TOKEN "module_env = LD_PRELOAD=/tmp/x.so\n",
                  "line 4: module_env: LD_PRELOAD would change how dkimsignd itself runs; it is refused" },
                { TOKEN "module_env = A=1\n  LD_LIBRARY_PATH=/tmp\n", "line 5: module_env: LD_LIBRARY_PATH would change" },
                { TOKEN "module_env = PATH=/tmp\n", "module_env: PATH would change" },
                { TOKEN "module_env = OPENSSL_CONF=/tmp/o.cnf\n", "module_env: OPENSSL_CONF would change" },
                { TOKEN "module_env = GLIBC_TUNABLES=x\n", "module_env: GLIBC_TUNABLES would change" },
                { TOKEN "module_env = CREDENTIALS_DIRECTORY=/tmp\n", "module_env: CREDENTIALS_DIRECTORY would change" },
                { TOKEN "module_env = A=1\n  B=2\n  A=3\n", "line 6: module_env: A is set twice" },
                { TOKEN "[signing]\nheaders = from\n  [domain b.example]\nunpublished = sign\n",
                  "line 6: a section header must start its line" },
                { TOKEN "module_env = A=1\nmodule_env = B=2\n", "line 5: 'module_env' is set twice in [token]" },
                { TOKEN "module_env = A=x\ty\n", "line 4: module_env: A's value has a control character" },
                { TOKEN "module_env = V0=0\n  V1=1\n  V2=2\n  V3=3\n  V4=4\n  V5=5\n  V6=6\n  V7=7\n  V8=8\n"
                  "  V9=9\n  V10=10\n  V11=11\n  V12=12\n  V13=13\n  V14=14\n  V15=15\n  V16=16\n",
                  "line 20: module_env: at most 16 variables" },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct config *c = NULL;
                char err[512] = "";
                int r = config_parse(cases[i].text, strlen(cases[i].text), &c, err, sizeof(err));

                /* Names are looked up in a step of their own. */
                if (r == 0 && (r = config_resolve(c, err, sizeof(err))) != 0)
                        c = config_free(c);
                if (r == 0)
                        fail_msg("case %zu accepted", i);
                assert_null(c);
                assert_true(err[0] != 0);
                if (cases[i].expect && !strstr(err, cases[i].expect))
                        fail_msg("case %zu: '%s' lacks '%s'", i, err, cases[i].expect);
        }
}

/* A policy as "name", "name+" (over-signed) or "name?" (over-signed when
 * present), comma-separated. */
static void policy_string(const struct dkim_hpolicy *p, size_t len, char *ret, size_t size)
{
        size_t n = 0;

        ret[0] = 0;
        for (size_t i = 0; i < len && n < size; i++)
                n += (size_t) snprintf(ret + n, size - n, "%s%s%s", i ? "," : "", p[i].name,
                                       p[i].oversign == DKIM_OVERSIGN_ALWAYS ? "+" :
                                       p[i].oversign == DKIM_OVERSIGN_IF_PRESENT ? "?" : "");
}

/* RFC 6376 5.4.1's fields after Content-Type, in the default list's order. */
#define DEFAULT_TAIL ",content-transfer-encoding,content-id,content-description,in-reply-to,references," \
        "resent-date,resent-from,resent-sender,resent-to,resent-cc,resent-message-id,list-id,list-help," \
        "list-unsubscribe,list-unsubscribe-post,list-subscribe,list-post,list-owner,list-archive,sender"

/* headers and oversign, each replacing its default, in any order; a
 * [domain] inherits each list it does not set from [signing]. */
/* identity, also_sign and expire: each a [domain]'s own, else [signing]'s. */
static void test_signing_options(void **state)
{
        struct config *c = parse_ok(TOKEN "[signing]\nidentity = bounces@%d\nalso_sign = ESP.example\nexpire = 2d\n"
                                    "[domain a.example]\nidentity = \"j.doe\"@Mail.A.example\nexpire = 1h\n"
                                    "also_sign = none\n"
                                    "[domain b.example]\nkey_domain = c.example\nidentity = @c.example\n"
                                    "also_sign = other.example\n"
                                    "[domain d.example]\nselectors = s\n");
        const struct config_domain *a = config_find_domain(c, "a.example"), *b = config_find_domain(c, "b.example");
        const struct config_domain *d = config_find_domain(c, "d.example");

        assert_string_equal(config_identity(c, NULL), "bounces@%d");
        assert_string_equal(config_also_sign(c, NULL), "esp.example");
        assert_int_equal(config_expire(c, NULL), 2 * 86400);
        assert_string_equal(config_identity(c, a), "\"j.doe\"@Mail.A.example");
        assert_null(config_also_sign(c, a));
        assert_int_equal(config_expire(c, a), 3600);
        assert_string_equal(config_identity(c, b), "@c.example");
        assert_string_equal(config_also_sign(c, b), "other.example");
        assert_int_equal(config_expire(c, b), 2 * 86400);
        assert_string_equal(config_identity(c, d), "bounces@%d");
        assert_string_equal(config_also_sign(c, d), "esp.example");
        config_free(c);
        /* None set: no i=, no second domain, no x=. */
        c = parse_ok(TOKEN "[domain a.example]\nexpire = 0\n");
        assert_null(config_identity(c, NULL));
        assert_null(config_also_sign(c, config_find_domain(c, "a.example")));
        assert_int_equal(config_expire(c, config_find_domain(c, "a.example")), 0);
        config_free(c);
        /* The longest expire there is. */
        c = parse_ok(TOKEN "[signing]\nexpire = 365d\n");
        assert_int_equal(config_expire(c, NULL), 365 * 86400);
        config_free(c);
}

static void test_header_policy(void **state)
{
        static const struct { const char *text; const char *domain; const char *expect; } cases[] = {
                { "", NULL,
                  "from+,reply-to+,subject+,date+,to+,cc+,message-id+,mime-version+,content-type+" DEFAULT_TAIL },
                /* oversign is the whole list: Date (and Reply-To ...) taken out. */
                { "[signing]\noversign = from, to, cc, subject\n", NULL,
                  "from+,reply-to,subject+,date,to+,cc+,message-id,mime-version,content-type" DEFAULT_TAIL },
                { "[signing]\noversign =\n", NULL,
                  "from,reply-to,subject,date,to,cc,message-id,mime-version,content-type" DEFAULT_TAIL },
                /* headers before or after oversign: the same policy. */
                { "[signing]\nheaders = from, subject, date, x-mailer\noversign = from, x-mailer\n", NULL,
                  "from+,subject,date,x-mailer+" },
                { "[signing]\noversign = from, x-mailer\nheaders = from, subject, date, x-mailer\n", NULL,
                  "from+,subject,date,x-mailer+" },
                { "[signing]\noversign = from, x-mailer\n[dns]\ntimeout = 2s\n[signing]\n"
                  "headers = from, subject, date, x-mailer\n", NULL, "from+,subject,date,x-mailer+" },
                /* headers alone: the default's over-signed fields among them. */
                { "[signing]\nheaders = from, list-id, date\n", NULL, "from+,list-id,date+" },
                /* A [domain] without either list signs with the global policy. */
                { "[signing]\nheaders = from, date\n[domain a.example]\nselectors = s\n", "a.example", NULL },
                /* Its own oversign over [signing]'s headers, wherever [signing] stands. */
                { "[signing]\nheaders = from, date, subject\n[domain a.example]\noversign = subject\n", "a.example",
                  "from,date,subject+" },
                { "[domain a.example]\noversign = subject\n[signing]\nheaders = from, date, subject\n", "a.example",
                  "from,date,subject+" },
                /* Its own headers, over-signed as [signing] says (or the default). */
                { "[signing]\noversign = from, subject\n[domain a.example]\nheaders = from, date, subject\n",
                  "a.example", "from+,date,subject+" },
                { "[domain a.example]\nheaders = from, date, x-mailer\n", "a.example", "from+,date+,x-mailer" },
                { "[domain a.example]\nheaders = from, subject\noversign = from\n", "a.example", "from+,subject" },
                /* oversign_if_present: its own list wins over the inherited
                 * oversign; a [domain] inherits [signing]'s. */
                { "[signing]\nheaders = from, to, subject, cc\noversign_if_present = to, cc\n", NULL,
                  "from+,to?,subject+,cc?" },
                { "[signing]\nheaders = from, to, cc\noversign = from\noversign_if_present = to, cc\n", NULL,
                  "from+,to?,cc?" },
                { "[signing]\nheaders = from, to, cc\noversign_if_present = to\n[domain a.example]\noversign = to\n",
                  "a.example", "from,to+,cc" },
                { "[signing]\nheaders = from, to, cc\noversign_if_present = to\n[domain a.example]\nselectors = s\n"
                  "headers = from, to, date\n", "a.example", "from+,to?,date+" },
                { "[domain a.example]\nheaders = from, to\noversign =\noversign_if_present = from, to\n", "a.example",
                  "from?,to?" },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char text[1024], got[2048];
                struct config *c;
                const struct config_domain *d;

                snprintf(text, sizeof(text), "%s%s", TOKEN, cases[i].text);
                c = parse_ok(text);
                d = cases[i].domain ? config_find_domain(c, cases[i].domain) : NULL;
                if (cases[i].domain)
                        assert_non_null(d);
                if (d && !cases[i].expect) {
                        if (d->hpolicy)
                                fail_msg("case %zu: the domain has a policy of its own", i);
                } else {
                        policy_string(d ? d->hpolicy : c->hpolicy, d ? d->hpolicy_len : c->hpolicy_len, got,
                                      sizeof(got));
                        if (strcmp(got, cases[i].expect) != 0)
                                fail_msg("case %zu: policy '%s', expected '%s'", i, got, cases[i].expect);
                }
                config_free(c);
        }
}

/* [token] module_env: NAME=VALUE a line, values kept whole, put into the
 * environment by config_apply_module_env. */
static void test_module_env(void **state)
{
        char err[512];
        struct config *c = parse_ok(TOKEN "module_env = DKIMSIGN_TEST_CONF=/etc/softhsm/a b.conf\n"
                                    "  DKIMSIGN_TEST_TCTI=swtpm:host=localhost,port=2321\n"
                                    "  DKIMSIGN_TEST_EMPTY=\n"
                                    "sessions = 2\n");

        assert_int_equal(c->nmodule_env, 3);
        assert_string_equal(c->module_env[0], "DKIMSIGN_TEST_CONF=/etc/softhsm/a b.conf");
        assert_string_equal(c->module_env[1], "DKIMSIGN_TEST_TCTI=swtpm:host=localhost,port=2321");
        assert_string_equal(c->module_env[2], "DKIMSIGN_TEST_EMPTY=");
        assert_int_equal(c->sessions, 2);
        setenv("DKIMSIGN_TEST_CONF", "replaced", 1);
        assert_int_equal(config_apply_module_env(c, err, sizeof(err)), 0);
        assert_string_equal(getenv("DKIMSIGN_TEST_CONF"), "/etc/softhsm/a b.conf");
        assert_string_equal(getenv("DKIMSIGN_TEST_TCTI"), "swtpm:host=localhost,port=2321");
        assert_string_equal(getenv("DKIMSIGN_TEST_EMPTY"), "");
        config_free(c);
        c = parse_ok(TOKEN);
        assert_int_equal(c->nmodule_env, 0);
        config_free(c);
        /* A file the module would read as root must be as trusted as the
         * module: not one its group may write. */
        {
                char dir[] = "/tmp/dkimsign-test-env-XXXXXX", path[64], text[256];

                assert_non_null(mkdtemp(dir));
                snprintf(path, sizeof(path), "%s/module.conf", dir);
                fclose(fopen(path, "w"));
                assert_int_equal(chmod(path, 0664), 0);
                snprintf(text, sizeof(text), TOKEN "module_env = DKIMSIGN_TEST_FILE=%s\n", path);
                c = parse_ok(text);
                assert_int_equal(config_apply_module_env(c, err, sizeof(err)), DKIMSIGN_E_CONFIG);
                assert_non_null(strstr(err, "DKIMSIGN_TEST_FILE names a file the PKCS#11 module reads"));
                assert_non_null(strstr(err, "writable by its group"));
                config_free(c);
                assert_int_equal(chmod(path, 0644), 0);
                c = parse_ok(text);
                assert_int_equal(config_apply_module_env(c, err, sizeof(err)), 0);
                config_free(c);
                unlink(path);
                rmdir(dir);
        }
}

/* A module_env file may also belong to the [daemon] user, who is trusted
 * with its token's data (it writes tpm2-pkcs11's store); any other owner,
 * and a file others may write, are still refused, in the same sentence.
 * Needs root: the files are given to other users. */
static void test_module_env_daemon_user(void **state)
{
        static const struct {
                bool daemon_user;       /* [daemon] user = nobody */
                bool owner_nobody;      /* else another user, neither root nor nobody */
                mode_t mode;
                bool missing;           /* the value names a file not made yet: its directory is judged */
                const char *refusal;    /* NULL: accepted */
        } cases[] = {
                { true, true, 0755, false, NULL },
                { true, true, 0644, false, NULL },
                { true, true, 0755, true, NULL },
                { false, true, 0755, false, "owned by a user other than root and uid 0 (who runs this)" },
                { false, true, 0755, true, "owned by a user other than root and uid 0 (who runs this)" },
                { true, false, 0755, false, "owned by a user other than root, uid 0 (who runs this) and uid " },
                { true, true, 0775, false, "writable by its group (chmod g-w)" },
                { true, true, 0757, false, "writable by everyone (chmod o-w)" },
                { true, true, 0777, true, "writable by its group and by everyone (chmod go-w)" },
        };
        const struct passwd *pw = getpwnam("nobody");
        uid_t nobody, other;

        (void) state;
        if (geteuid() != 0 || !pw)
                skip();
        nobody = pw->pw_uid;
        other = nobody == 4242 ? 4243 : 4242;
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char dir[] = "/tmp/dkimsign-test-env-XXXXXX", path[64], text[512], err[1024], want[256];
                uid_t owner = cases[i].owner_nobody ? nobody : other;
                struct config *c;
                int r;

                assert_non_null(mkdtemp(dir));
                snprintf(path, sizeof(path), "%s/store", dir);
                if (!cases[i].missing)
                        assert_int_equal(mkdir(path, 0700), 0);
                /* What is judged: the store, or the directory it would be made in. */
                assert_int_equal(chown(cases[i].missing ? dir : path, owner, owner), 0);
                assert_int_equal(chmod(cases[i].missing ? dir : path, cases[i].mode), 0);
                snprintf(text, sizeof(text), "%s" TOKEN "module_env = DKIMSIGN_TEST_STORE=%s\n",
                         cases[i].daemon_user ? "[daemon]\nuser = nobody\n" : "", path);
                c = parse_ok(text);
                err[0] = 0;
                r = config_apply_module_env(c, err, sizeof(err));
                if (!cases[i].refusal) {
                        if (r != 0)
                                fail_msg("case %zu: refused: %s", i, err);
                        assert_string_equal(getenv("DKIMSIGN_TEST_STORE"), path);
                } else {
                        if (r != DKIMSIGN_E_CONFIG)
                                fail_msg("case %zu: accepted (%d)", i, r);
                        snprintf(want, sizeof(want), "DKIMSIGN_TEST_STORE names a file the PKCS#11 module reads "
                                 "as this user: bad permissions on %s (owner uid %u, mode %04o): ",
                                 cases[i].missing ? dir : path, (unsigned) owner, (unsigned) cases[i].mode);
                        if (strncmp(err, want, strlen(want)) != 0 || !strstr(err, cases[i].refusal))
                                fail_msg("case %zu: '%s', expected '%s...%s'", i, err, want, cases[i].refusal);
                }
                config_free(c);
                rmdir(path);
                rmdir(dir);
        }
}

/* [token] allow_decrypt_keys: no by default, yes or no, nothing else. */
static void test_allow_decrypt_keys(void **state)
{
        struct config *c = parse_ok(TOKEN);
        char err[512];
        int r;

        (void) state;
        assert_false(c->allow_decrypt_keys);
        config_free(c);
        c = parse_ok(TOKEN "allow_decrypt_keys = yes\n");
        assert_true(c->allow_decrypt_keys);
        config_free(c);
        c = parse_ok(TOKEN "allow_decrypt_keys = no\n");
        assert_false(c->allow_decrypt_keys);
        config_free(c);
        c = NULL;
        r = config_parse(TOKEN "allow_decrypt_keys = sometimes\n", strlen(TOKEN "allow_decrypt_keys = sometimes\n"),
                         &c, err, sizeof(err));
        assert_int_not_equal(r, 0);
        assert_null(c);
        assert_non_null(strstr(err, "line 4: 'allow_decrypt_keys' must be yes or no"));
}

/* inih keeps 49 octets of a section's name: a [domain] of a longer name
 * must still govern that domain (its allow above all), not the prefix of
 * it inih kept, nor silently nothing. */
static void test_long_domain_section(void **state)
{
        const char *name = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example";
        char text[1024], longest[DKIM_DOMAIN_SIZE];
        struct config *c;
        const struct config_domain *d;

        snprintf(text, sizeof(text), TOKEN "[domain %s]\nallow = user:4242\nexpire = 1h\n"
                 "[domain b.example]\nallow = *\n", name);
        c = parse_ok(text);
        assert_int_equal(c->ndomains, 2);
        d = config_find_domain(c, name);
        assert_non_null(d);
        assert_string_equal(d->name, name);
        assert_true(d->allow.set && !d->allow.any && d->allow.nuids == 1 && d->allow.uids[0] == 4242);
        assert_int_equal(config_expire(c, d), 3600);
        assert_null(config_find_domain(c, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
        config_free(c);

        /* Labels of 59 and a TLD: about the longest name a 198-character line holds. */
        snprintf(longest, sizeof(longest), "%.59s.%.59s.%.59s.example", name, name, name);
        snprintf(text, sizeof(text), TOKEN "[domain %s]\nallow = user:4242\n", longest);
        c = parse_ok(text);
        d = config_find_domain(c, longest);
        assert_non_null(d);
        assert_true(d->allow.set && d->allow.nuids == 1);
        config_free(c);
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

        /* The longest line inih reads whole: the lines after it keep their numbers. */
        snprintf(text, sizeof(text), TOKEN "[signing]\nexpire = 1d ;%0*d\nunpublished = bogus\n", 198 - 13, 0);
        assert_int_equal(config_parse(text, strlen(text), &c, err, sizeof(err)), DKIMSIGN_E_CONFIG);
        assert_non_null(strstr(err, "line 6: 'unpublished' must be"));
        snprintf(text, sizeof(text), TOKEN "[signing]\nexpire = 1d ;%0*d\n", 199 - 13, 0);
        assert_int_equal(config_parse(text, strlen(text), &c, err, sizeof(err)), DKIMSIGN_E_CONFIG);
        assert_non_null(strstr(err, "line 5: longer than 198 characters"));
}

#define SOFTHSM "/usr/lib/softhsm/libsofthsm2.so"

/* [token] uri (RFC 7512): the token chosen by a PKCS#11 URI instead of a
 * label, its module from its module-path or from 'module'. */
static void test_token_uri(void **state)
{
        static const struct { const char *text; const char *uri; const char *module; } good[] = {
                { "[token]\nuri = pkcs11:token=dkim;manufacturer=SoftHSM%20project?module-path=" SOFTHSM "\n",
                  "pkcs11:token=dkim;manufacturer=SoftHSM%20project?module-path=" SOFTHSM, SOFTHSM },
                { "[token]\nmodule = /opt/p11/lib.so\nuri = pkcs11:serial=0123456789abcdef\n",
                  "pkcs11:serial=0123456789abcdef", "/opt/p11/lib.so" },
                { "[token]\nmodule = " SOFTHSM "\nuri = pkcs11:token=dkim?module-path=" SOFTHSM "\n",
                  "pkcs11:token=dkim?module-path=" SOFTHSM, SOFTHSM },
                /* Broken across lines (RFC 3986 appendix C), joined without the breaks. */
                { "[token]\nuri = pkcs11:token=dkim;\n  manufacturer=SoftHSM%20project;model=SoftHSM%20v2\n"
                  "\t?module-path=" SOFTHSM "\npin_file = /etc/pin\n",
                  "pkcs11:token=dkim;manufacturer=SoftHSM%20project;model=SoftHSM%20v2?module-path=" SOFTHSM, SOFTHSM },
                { "[token]\nmodule = /m.so\nuri = pkcs11:slot-id=12;slot-description=Slot%201;token=%41b\n",
                  "pkcs11:slot-id=12;slot-description=Slot%201;token=%41b", "/m.so" },
        };
        static const struct { const char *text; const char *err; } bad[] = {
                { "[token]\nmodule = " SOFTHSM "\nlabel = t\nuri = pkcs11:token=t\n",
                  "line 4: [token] 'uri' and 'label' (line 3) both choose the token: keep one" },
                { "[token]\nuri = pkcs11:token=t\nlabel = t\nmodule = " SOFTHSM "\n",
                  "line 2: [token] 'uri' and 'label' (line 3) both choose the token: keep one" },
                { "[token]\nmodule = " SOFTHSM "\nuri = pkcs11:token=t?pin-value=123456\n",
                  "line 3: 'uri': pin-value= would put the PIN in the configuration and in logs; it is refused: "
                  "the PIN comes from [token] pin_file or the 'pin' credential" },
                { "[token]\nmodule = " SOFTHSM "\nuri = pkcs11:token=t;pin-value=123456\n",
                  "line 3: 'uri': pin-value= would put the PIN in the configuration and in logs; it is refused: "
                  "the PIN comes from [token] pin_file or the 'pin' credential" },
                { "[token]\nmodule = " SOFTHSM "\nuri = pkcs11:token=t%2?pin-value=123456\n",
                  "line 3: 'uri': URI encoding invalid or corrupted (a '%' in token= is not followed by two hex "
                  "digits)" },
                { "[token]\nmodule = " SOFTHSM "\nuri = pkcs11:token=t?pin-source=file:/etc/pin\n",
                  "line 3: 'uri': pin-source= is not read: the PIN comes from [token] pin_file or the 'pin' credential" },
                { "[token]\nmodule = " SOFTHSM "\nuri = pkcs11:token=a%2\n",
                  "line 3: 'uri': URI encoding invalid or corrupted (a '%' in token= is not followed by two hex "
                  "digits)" },
                { "[token]\nmodule = " SOFTHSM "\nuri = pkcs11:token=dkim;manufacturer=Soft%zzHSM\n",
                  "line 3: 'uri': URI encoding invalid or corrupted (a '%' in manufacturer= is not followed by two "
                  "hex digits)" },
                { "[token]\nmodule = /usr/lib/other.so\nuri = pkcs11:token=t?module-path=" SOFTHSM "\n",
                  "line 3: 'uri' has module-path=" SOFTHSM ", but 'module' (line 2) is /usr/lib/other.so: keep one, "
                  "or make them the same" },
                { "[token]\nuri = pkcs11:token=t\n", "line 2: 'uri' has no module-path=: set 'module' too" },
                { "[token]\nmodule = /m.so\nuri = pkcs11:token=t;object=dkim\n",
                  "line 3: 'uri': object= selects objects, not a token: dkimsign finds its keys on the token "
                  "itself; drop it" },
                { "[token]\nmodule = /m.so\nuri = pkcs11:token=t;id=%01\n",
                  "line 3: 'uri': id= selects objects, not a token: dkimsign finds its keys on the token itself; "
                  "drop it" },
                { "[token]\nmodule = /m.so\nuri = pkcs11:type=private;token=t\n",
                  "line 3: 'uri': type= selects objects, not a token: dkimsign finds its keys on the token itself; "
                  "drop it" },
                { "[token]\nmodule = /m.so\nuri = pkcs11:library-version=2.6;token=t\n",
                  "line 3: 'uri': library-version= is not matched: the module is the file that module-path= or "
                  "[token] module names; drop it" },
                { "[token]\nmodule = /m.so\nuri = pkcs11:token=t?module-name=softhsm2\n",
                  "line 3: 'uri': module-name= names a module by p11-kit's configuration, which dkimsign does not "
                  "read: give its file with module-path=" },
                { "[token]\nmodule = /m.so\nuri = file:/m.so\n",
                  "line 3: 'uri': URI scheme must be 'pkcs11:' (RFC 7512: pkcs11:ATTR=VALUE;...?module-path=PATH)" },
                { "[token]\nmodule = /m.so\nuri = pkcs11:token=my token\n",
                  "line 3: 'uri': a space, a control character or a character outside ASCII must be percent-encoded "
                  "(%20 for a space, %C3%A9 for an e acute)" },
                { "[token]\nmodule = /m.so\nuri = pkcs11:tokne=t\n",
                  "line 3: 'uri': tokne= is not an attribute of a token or a slot (RFC 7512): token, manufacturer, "
                  "model, serial, slot-description, slot-manufacturer or slot-id" },
                { "[token]\nmodule = /m.so\nuri = pkcs11:token=t?foo=bar\n",
                  "line 3: 'uri': foo= is not a query attribute dkimsign takes (only module-path=)" },
                { "[token]\nmodule = /m.so\nuri = pkcs11:token=t;token=u\n", "line 3: 'uri': token= appears twice" },
                { "[token]\nmodule = /m.so\nuri = pkcs11:token=\n", "line 3: 'uri': token= is empty" },
                { "[token]\nmodule = /m.so\nuri = pkcs11:token=t;\n",
                  "line 3: 'uri': an attribute has no name (an empty one between ';'s, or one at the end)" },
                { "[token]\nmodule = /m.so\nuri = pkcs11:token=123456789012345678901234567890123\n",
                  "line 3: 'uri': token= is longer than a PKCS#11 token label may be (32 octets)" },
                { "[token]\nmodule = /m.so\nuri = pkcs11:serial=%30%31%32%33%34%35%36%37%38%39%30%31%32%33%34%35%36\n",
                  "line 3: 'uri': serial= is longer than a PKCS#11 token serial number may be (16 octets)" },
                { "[token]\nmodule = /m.so\nuri = pkcs11:token=a%00b\n", "line 3: 'uri': token= has a control character" },
                { "[token]\nmodule = /m.so\nuri = pkcs11:slot-id=1234567890123456789\n",
                  "line 3: 'uri': slot-id= must be a decimal number of at most 18 digits" },
                { "[token]\nuri = pkcs11:token=t?module-path=libsofthsm2.so\n",
                  "line 2: 'uri': module-path= must be an absolute path" },
                { "[token]\nmodule = /m.so\nuri = pkcs11:token=t\nuri = pkcs11:token=u\n",
                  "line 4: 'uri' is set twice in [token] (first on line 3)" },
                { "[token]\nmodule = /m.so\nuri =\n", "line 3: 'uri' is empty" },
                { "[token]\nmodule = /m.so\n", "[token] needs 'module' and 'label', or 'uri'" },
        };
        char text[2048], err[512];
        struct config *c = NULL;
        size_t n;

        (void) state;
        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
                c = parse_ok(good[i].text);
                assert_string_equal(c->token_uri, good[i].uri);
                assert_string_equal(c->module, good[i].module);
                assert_null(c->token_label);
                c = config_free(c);
        }
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                err[0] = '\0';
                if (config_parse(bad[i].text, strlen(bad[i].text), &c, err, sizeof(err)) != DKIMSIGN_E_CONFIG)
                        fail_msg("case %zu accepted", i);
                assert_null(c);
                if (strcmp(err, bad[i].err) != 0)
                        fail_msg("case %zu: '%s', not '%s'", i, err, bad[i].err);
                /* A PIN in the URI never reaches the message. */
                assert_null(strstr(err, "123456"));
        }

        /* At most HSM_URI_MAX (1024) characters, however many lines. */
        n = (size_t) snprintf(text, sizeof(text), "[token]\nmodule = /m.so\nuri = pkcs11:model=\n");
        for (int k = 0; k < 7; k++)
                n += (size_t) snprintf(text + n, sizeof(text) - n, "  %0150d\n", 0);
        assert_int_equal(config_parse(text, n, &c, err, sizeof(err)), DKIMSIGN_E_CONFIG);
        assert_string_equal(err, "line 10: 'uri' is longer than 1024 characters");
        assert_null(c);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_shipped_example_parses),
                cmocka_unit_test(test_values),
                cmocka_unit_test(test_idn_domains),
                cmocka_unit_test(test_idn_signing_options),
                cmocka_unit_test(test_names_resolved_apart),
                cmocka_unit_test(test_allow_lists),
                cmocka_unit_test(test_lifecycle),
                cmocka_unit_test(test_refusals_name_the_line),
                cmocka_unit_test(test_header_policy),
                cmocka_unit_test(test_signing_options),
                cmocka_unit_test(test_module_env),
                cmocka_unit_test(test_module_env_daemon_user),
                cmocka_unit_test(test_nul_and_long_lines),
                cmocka_unit_test(test_long_domain_section),
                cmocka_unit_test(test_allow_decrypt_keys),
                cmocka_unit_test(test_token_uri),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
