/* SPDX-License-Identifier: MIT */
/* Unit tests for the key lifecycle's transitions (lifecycle_step): one
 * table row per transition, each a set of keys with their recorded times,
 * what DNS showed before and now, the clock, and the times and events that
 * must follow.  No token, no DNS, no thread: the step is pure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <stdlib.h>
#include <openssl/evp.h>

#include "hsm/hsm.h"
#include "keys/config.h"
#include "keys/keys.h"
#include "keys/lifecycle.h"

#define NOW 1800000000
#define DAY 86400
#define KEYS_MAX 3
#define EVENTS_MAX (LIFECYCLE_EVENTS_PER_KEY * KEYS_MAX)
#define NONE (-1)

enum { RSA = 1, ED = 2 };

struct key_case {
        const char *domain;
        int alg;
        bool token_retired;
        uint64_t wait, grace;
        struct key_times t;         /* as recorded before the step */
        enum key_dns before, seen;  /* the previous cycle's and this one's lookup */
        struct key_times want;      /* after the step */
};

struct lc_case {
        const char *name;
        size_t n;
        struct key_case keys[KEYS_MAX];
        bool changed;
        int events[EVENTS_MAX];     /* enum lifecycle_what in order, ended by NONE */
        int64_t published_when;     /* LC_PUBLISHED's when, if any */
        size_t successor;           /* LC_RETIRED_SUCCEEDED's successor, if any */
};

#define PENDING { .state = KEY_PENDING }
#define PUBLISHED(s) { .state = KEY_PUBLISHED, .seen = (s) }
#define ACTIVE(s, a) { .state = KEY_ACTIVE, .seen = (s), .active = (a) }
#define RETIRED(s, a, r) { .state = KEY_RETIRED, .seen = (s), .active = (a), .retired = (r) }

/* Rows name only the fields they need: the rest are zero. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const struct lc_case cases[] = {
        { "pending, record seen: published, counting from the next second", 1,
          { { "a.example", RSA, false, 2 * DAY, 7 * DAY, PENDING, KEY_DNS_UNCHECKED, KEY_DNS_MATCH,
              PUBLISHED(NOW + 1) } },
          true, { LC_PUBLISHED, NONE }, NOW + 1 + 2 * DAY },
        { "pending, record seen, no wait: active at once", 1,
          { { "a.example", RSA, false, 0, 7 * DAY, PENDING, KEY_DNS_MISSING, KEY_DNS_MATCH, ACTIVE(NOW, NOW) } },
          true, { LC_PUBLISHED, LC_ACTIVE, NONE }, NOW },
        { "pending, still missing: nothing moves, nothing said", 1,
          { { "a.example", RSA, false, DAY, DAY, PENDING, KEY_DNS_MISSING, KEY_DNS_MISSING, PENDING } },
          false, { NONE } },
        { "pending, DNS now shows another key: said, no move", 1,
          { { "a.example", RSA, false, DAY, DAY, PENDING, KEY_DNS_MISSING, KEY_DNS_MISMATCH, PENDING } },
          false, { LC_PENDING_SEES, NONE } },
        { "pending, no answer: nothing known, nothing moves", 1,
          { { "a.example", RSA, false, DAY, DAY, PENDING, KEY_DNS_MISSING, KEY_DNS_FAILED, PENDING } },
          false, { NONE } },
        { "pending, a bogus answer (DNSSEC): no record, even with no wait to count", 1,
          { { "a.example", RSA, false, 0, DAY, PENDING, KEY_DNS_MISSING, KEY_DNS_BOGUS, PENDING } },
          false, { LC_PENDING_SEES, NONE } },
        { "published, now a bogus answer: back to pending, the wait starts again", 1,
          { { "a.example", RSA, false, DAY, DAY, PUBLISHED(NOW - DAY + 1), KEY_DNS_MATCH, KEY_DNS_BOGUS,
              PENDING } },
          true, { LC_BACK_TO_PENDING, NONE } },
        { "published, wait not over: stays published", 1,
          { { "a.example", RSA, false, DAY, DAY, PUBLISHED(NOW - DAY + 1), KEY_DNS_MATCH, KEY_DNS_MATCH,
              PUBLISHED(NOW - DAY + 1) } },
          false, { NONE } },
        { "published, wait over to the second: active since seen + wait", 1,
          { { "a.example", RSA, false, DAY, DAY, PUBLISHED(NOW - DAY), KEY_DNS_MATCH, KEY_DNS_UNCHECKED,
              ACTIVE(NOW - DAY, NOW) } },
          true, { LC_ACTIVE, NONE } },
        { "published, record gone: back to pending, the wait starts again", 1,
          { { "a.example", RSA, false, DAY, DAY, PUBLISHED(NOW - 10), KEY_DNS_MATCH, KEY_DNS_MISSING, PENDING } },
          true, { LC_BACK_TO_PENDING, NONE } },
        { "published, revoked record: back to pending", 1,
          { { "a.example", RSA, false, DAY, DAY, PUBLISHED(NOW - 10), KEY_DNS_MATCH, KEY_DNS_REVOKED, PENDING } },
          true, { LC_BACK_TO_PENDING, NONE } },
        { "published, wait over, record gone in the same cycle: the clock first, it stays active", 1,
          { { "a.example", RSA, false, DAY, DAY, PUBLISHED(NOW - DAY - 5), KEY_DNS_MATCH, KEY_DNS_MISSING,
              ACTIVE(NOW - DAY - 5, NOW - 5) } },
          true, { LC_ACTIVE, LC_ACTIVE_NOT_IN_DNS, NONE } },
        { "active, record gone: keeps signing, warned", 1,
          { { "a.example", RSA, false, DAY, DAY, ACTIVE(1, 2), KEY_DNS_MATCH, KEY_DNS_MISSING, ACTIVE(1, 2) } },
          false, { LC_ACTIVE_NOT_IN_DNS, NONE } },
        { "active, record back", 1,
          { { "a.example", RSA, false, DAY, DAY, ACTIVE(1, 2), KEY_DNS_MISSING, KEY_DNS_MATCH, ACTIVE(1, 2) } },
          false, { LC_RECORD_BACK, NONE } },
        { "active, retired on the token: retired now", 1,
          { { "a.example", RSA, true, DAY, DAY, ACTIVE(1, 2), KEY_DNS_MATCH, KEY_DNS_UNCHECKED,
              RETIRED(1, 2, NOW) } },
          true, { LC_RETIRED_ON_TOKEN, NONE } },
        { "a successor active for retire_grace: the old key retires at its end", 2,
          { { "a.example", RSA, false, DAY, 7 * DAY, ACTIVE(1, 2), KEY_DNS_MATCH, KEY_DNS_UNCHECKED,
              RETIRED(1, 2, NOW - 3 * DAY) },
            { "a.example", RSA, false, DAY, 7 * DAY, ACTIVE(NOW - 11 * DAY, NOW - 10 * DAY),
              KEY_DNS_MATCH, KEY_DNS_UNCHECKED, ACTIVE(NOW - 11 * DAY, NOW - 10 * DAY) } },
          true, { LC_RETIRED_SUCCEEDED, NONE }, 0, 1 },
        { "a successor inside retire_grace: both sign", 2,
          { { "a.example", RSA, false, DAY, 7 * DAY, ACTIVE(1, 2), KEY_DNS_MATCH, KEY_DNS_UNCHECKED, ACTIVE(1, 2) },
            { "a.example", RSA, false, DAY, 7 * DAY, ACTIVE(NOW - 2 * DAY, NOW - DAY), KEY_DNS_MATCH,
              KEY_DNS_UNCHECKED, ACTIVE(NOW - 2 * DAY, NOW - DAY) } },
          false, { NONE } },
        { "a newer key of the other algorithm never retires a key", 2,
          { { "a.example", RSA, false, DAY, DAY, ACTIVE(1, 2), KEY_DNS_MATCH, KEY_DNS_UNCHECKED, ACTIVE(1, 2) },
            { "a.example", ED, false, DAY, DAY, ACTIVE(NOW - 9 * DAY, NOW - 8 * DAY), KEY_DNS_MATCH,
              KEY_DNS_UNCHECKED, ACTIVE(NOW - 9 * DAY, NOW - 8 * DAY) } },
          false, { NONE } },
        { "a newer key of another domain never retires a key", 2,
          { { "a.example", RSA, false, DAY, DAY, ACTIVE(1, 2), KEY_DNS_MATCH, KEY_DNS_UNCHECKED, ACTIVE(1, 2) },
            { "b.example", RSA, false, DAY, DAY, ACTIVE(NOW - 9 * DAY, NOW - 8 * DAY), KEY_DNS_MATCH,
              KEY_DNS_UNCHECKED, ACTIVE(NOW - 9 * DAY, NOW - 8 * DAY) } },
          false, { NONE } },
        { "a successor that becomes active in this step, grace 0: the old key retires in the same step", 2,
          { { "a.example", RSA, false, 0, 0, ACTIVE(1, 2), KEY_DNS_MATCH, KEY_DNS_UNCHECKED, RETIRED(1, 2, NOW) },
            { "a.example", RSA, false, 0, 0, PENDING, KEY_DNS_MISSING, KEY_DNS_MATCH, ACTIVE(NOW, NOW) } },
          true, { LC_PUBLISHED, LC_RETIRED_SUCCEEDED, LC_ACTIVE, NONE }, NOW, 1 },
        { "retired stays retired whatever DNS shows", 1,
          { { "a.example", RSA, false, DAY, DAY, RETIRED(1, 2, 3), KEY_DNS_MATCH, KEY_DNS_MISSING,
              RETIRED(1, 2, 3) } },
          false, { NONE } },
};

static void check_case(const struct lc_case *c)
{
        struct key_view views[KEYS_MAX];
        enum key_dns before[KEYS_MAX], seen[KEYS_MAX];
        struct lifecycle_event events[EVENTS_MAX];
        size_t nevents = 0, want_events = 0;
        bool changed;

        for (size_t i = 0; i < c->n; i++) {
                const struct key_case *k = &c->keys[i];

                views[i] = (struct key_view) { .domain = k->domain, .alg = k->alg, .token_retired = k->token_retired,
                                               .t = k->t, .wait = k->wait, .grace = k->grace };
                before[i] = k->before;
                seen[i] = k->seen;
        }
        changed = lifecycle_step(views, c->n, before, seen, NOW, events, &nevents);
        print_message("case: %s\n", c->name);
        assert_int_equal(changed, c->changed);
        for (size_t i = 0; i < c->n; i++) {
                const struct key_times *w = &c->keys[i].want, *t = &views[i].t;

                print_message("  key %zu: %s %lld %lld %lld\n", i, key_state_name(t->state), (long long) t->seen,
                              (long long) t->active, (long long) t->retired);
                assert_int_equal(t->state, w->state);
                assert_int_equal(t->seen, w->seen);
                assert_int_equal(t->active, w->active);
                assert_int_equal(t->retired, w->retired);
        }
        while (c->events[want_events] != NONE)
                want_events++;
        assert_int_equal(nevents, want_events);
        for (size_t e = 0; e < nevents; e++) {
                assert_int_equal(events[e].what, c->events[e]);
                if (events[e].what == LC_PUBLISHED)
                        assert_int_equal(events[e].when, c->published_when);
                if (events[e].what == LC_RETIRED_SUCCEEDED)
                        assert_int_equal(events[e].successor, c->successor);
        }
}

static void test_transitions(void **state)
{
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
                check_case(&cases[i]);
}

static void test_dns_phrases(void **state)
{
        /* Every observation has a phrase of its own for the log lines. */
        for (int a = KEY_DNS_UNCHECKED; a <= KEY_DNS_BOGUS; a++)
                for (int b = a + 1; b <= KEY_DNS_BOGUS; b++)
                        assert_string_not_equal(key_dns_phrase(a), key_dns_phrase(b));
}

/* A key whose record only ever comes back bogus never becomes active: a
 * check every hour for a year, waits of 0 and of a day, the answers before
 * and now bogus, so no step can take a forged record for a published one. */
static void test_bogus_never_active(void **state)
{
        for (uint64_t wait = 0; wait <= DAY; wait += DAY) {
                struct key_view k = { .domain = "a.example", .alg = RSA, .wait = wait, .grace = DAY,
                                      .t = { .state = KEY_PENDING } };
                enum key_dns before = KEY_DNS_UNCHECKED, seen = KEY_DNS_BOGUS;
                struct lifecycle_event ev[LIFECYCLE_EVENTS_PER_KEY];

                for (int64_t now = NOW; now < NOW + 365 * DAY; now += 3600) {
                        size_t nev = 0;

                        lifecycle_step(&k, 1, &before, &seen, now, ev, &nev);
                        assert_int_equal(k.t.state, KEY_PENDING);
                        for (size_t e = 0; e < nev; e++)
                                assert_true(ev[e].what != LC_PUBLISHED && ev[e].what != LC_ACTIVE);
                        before = seen;
                }
        }
        (void) state;
}

/* A key that never signs gets no lifecycle: a newer key of the domain
 * refused for its custody (or RSA under 1024 bits) must never become the
 * successor that retires the key that signs. */
static void test_unusable_keys_have_no_lifecycle(void **state)
{
        static const char text[] = "[token]\nmodule = /m.so\nlabel = t\n";
        struct hsm_key keys[3] = {
                { .alg = HSM_ALG_ED25519, .bits = 256 },
                { .alg = HSM_ALG_ED25519, .bits = 256, .refused = "its private key is CKA_EXTRACTABLE" },
                { .alg = HSM_ALG_RSA, .bits = 512 },
        };
        struct signer_key sk[3];
        struct keytab t = { .keys = sk, .count = 3 };
        struct keyreg_entry **current = NULL;
        struct keyreg *g = NULL;
        struct config *c = NULL;
        size_t n = 0;
        char err[256];

        assert_int_equal(config_parse(text, strlen(text), &c, err, sizeof(err)), 0);
        for (size_t i = 0; i < 3; i++) {
                EVP_PKEY *pk = NULL;
                EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, i == 2 ? "RSA" : "ED25519", NULL);

                assert_non_null(ctx);
                assert_int_equal(EVP_PKEY_keygen_init(ctx), 1);
                assert_int_equal(EVP_PKEY_generate(ctx, &pk), 1);
                EVP_PKEY_CTX_free(ctx);
                keys[i].pubkey = pk;
                sk[i] = (struct signer_key) { .domain = (char *) "a.example", .selector = (char *) (i == 0 ? "good"
                                              : i == 1 ? "leaky" : "weak"), .key = &keys[i] };
        }
        assert_int_equal(keyreg_new(&g), 0);
        assert_int_equal(keyreg_attach(g, &t, c, NULL), 0);
        assert_non_null(sk[0].reg);
        assert_null(sk[1].reg);
        assert_null(sk[2].reg);
        assert_int_equal(keyreg_current(g, &current, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(current[0]->label, "good._domainkey.a.example");
        free(current);
        keyreg_free(g);
        config_free(c);
        for (size_t i = 0; i < 3; i++)
                EVP_PKEY_free(keys[i].pubkey);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_transitions),
                cmocka_unit_test(test_dns_phrases),
                cmocka_unit_test(test_bogus_never_active),
                cmocka_unit_test(test_unusable_keys_have_no_lifecycle),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
