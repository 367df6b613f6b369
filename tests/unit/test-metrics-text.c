/* SPDX-License-Identifier: MIT */
/*
 * daemon/metrics and daemon/counters: the text parsed back line by line
 * (every sample under a family declared before it, counters named _total,
 * histograms cumulative with _count equal to +Inf, # EOF last in
 * OpenMetrics only), a text over its bound refused whole, and the counters
 * summed across a forked process, with domains past the bound as _other.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "protocol/dkimsign-errors.h"
#include "protocol/msg.h"
#include "daemon/counters.h"
#include "daemon/metrics.h"

struct family {
        char name[128];
        char type[16];
};

struct parsed {
        struct family fam[128];
        size_t nfam;
        bool eof;
};

/* The family a sample belongs to, by its name and the format's rules. */
static const struct family *family_of(const struct parsed *p, const char *sample, int format)
{
        for (size_t i = 0; i < p->nfam; i++) {
                const struct family *f = &p->fam[i];
                size_t n = strlen(f->name);
                const char *rest = sample + n;

                if (strncmp(sample, f->name, n) != 0)
                        continue;
                if (strcmp(f->type, "counter") == 0 && format == MSG_METRICS_OPENMETRICS &&
                    strcmp(rest, "_total") == 0)
                        return f;
                if (strcmp(f->type, "histogram") == 0 &&
                    (strcmp(rest, "_bucket") == 0 || strcmp(rest, "_count") == 0 || strcmp(rest, "_sum") == 0))
                        return f;
                if (*rest == 0)
                        return f;
        }
        return NULL;
}

/* The value of the sample "name{labels}" in text, or -1. */
static double value_of(const char *text, const char *series)
{
        const char *p = text;
        size_t n = strlen(series);

        while ((p = strstr(p, series))) {
                if ((p == text || p[-1] == '\n') && p[n] == ' ')
                        return strtod(p + n + 1, NULL);
                p += n;
        }
        return -1;
}

/* Parse every line; fail the test at the first that breaks a rule. */
static void parse(const char *text, int format, struct parsed *p)
{
        char *copy = strdup(text), *save = NULL, *line;
        double last_bucket = -1, last_count = -1;
        char hist_key[512] = "";

        memset(p, 0, sizeof(*p));
        assert_non_null(copy);
        assert_true(text[strlen(text) - 1] == '\n');
        for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char name[128], type[16];
                const struct family *f;
                char *brace, *space;

                assert_false(p->eof);   /* nothing after # EOF */
                if (strcmp(line, "# EOF") == 0) {
                        p->eof = true;
                        continue;
                }
                if (sscanf(line, "# TYPE %127s %15s", name, type) == 2) {
                        assert_true(p->nfam < 128);
                        if (strcmp(type, "counter") == 0)
                                assert_int_equal(strstr(name, "_total") != NULL, format == MSG_METRICS_PROMETHEUS);
                        snprintf(p->fam[p->nfam].name, sizeof(p->fam[0].name), "%s", name);
                        snprintf(p->fam[p->nfam++].type, sizeof(p->fam[0].type), "%s", type);
                        continue;
                }
                if (strncmp(line, "# UNIT ", 7) == 0) {
                        assert_int_equal(format, MSG_METRICS_OPENMETRICS);
                        continue;
                }
                if (strncmp(line, "# HELP ", 7) == 0)
                        continue;
                assert_true(line[0] != '#');
                space = strrchr(line, ' ');
                assert_non_null(space);
                *space = 0;
                brace = strchr(line, '{');
                snprintf(name, sizeof(name), "%.*s", (int) (brace ? brace - line : (long) strlen(line)), line);
                f = family_of(p, name, format);
                if (!f)
                        fail_msg("sample %s has no family declared before it", name);
                /* Only the last family may have samples: families are not interleaved. */
                assert_ptr_equal(f, &p->fam[p->nfam - 1]);
                if (brace)
                        assert_true(line[strlen(line) - 1] == '}');
                if (strcmp(f->type, "histogram") == 0 && strstr(name, "_bucket")) {
                        double v = strtod(space + 1, NULL);
                        char *le = strstr(line, "le=\"");

                        assert_non_null(le);
                        if (strncmp(line, hist_key, (size_t) (le - line)) != 0) {
                                snprintf(hist_key, sizeof(hist_key), "%.*s", (int) (le - line), line);
                                last_bucket = -1;
                        }
                        assert_true(v >= last_bucket);   /* cumulative */
                        last_bucket = v;
                        if (strncmp(le, "le=\"+Inf\"", 9) == 0)
                                last_count = v;
                }
                if (strcmp(f->type, "histogram") == 0 && strstr(name, "_count"))
                        assert_true(strtod(space + 1, NULL) == last_count);
        }
        assert_int_equal(p->eof, format == MSG_METRICS_OPENMETRICS);
        free(copy);
}

static const struct metrics_domain domains[] = {
        { .name = "a.example", .signatures = { 3, 3 } },
        { .name = "b.example", .signatures = { 0, 2 } },
};
static const struct metrics_key keys[] = {
        { .domain = "a.example", .selector = "s1", .alg = METRICS_RSA, .state = 2, .dns = 1, .created = 1700000000,
          .active = 1700086400 },
        { .domain = "b.example", .selector = "q\"x", .alg = METRICS_ED25519, .state = 0, .dns = 2 },
};

static void fill(struct metrics_snapshot *s)
{
        *s = (struct metrics_snapshot) {
                .messages_signed = 5, .signatures = { 3, 5 }, .connections = 2, .processes = 1,
                .per_domain = true, .domains = domains, .ndomains = 2, .keys = keys, .nkeys = 2,
                .keys_by_state = { 1, 0, 1, 0 },
        };
        s->refusals[METRICS_R_DENIED] = 4;
        s->refusals[METRICS_R_QUOTA] = 1;
        s->request[METRICS_SIGNED].buckets[0] = 2;
        s->request[METRICS_SIGNED].buckets[3] = 3;
        s->request[METRICS_SIGNED].sum_us = 1234567;
        s->token_sign[METRICS_RSA].buckets[METRICS_BUCKETS - 1] = 3;
}

static void test_formats(void **state)
{
        for (int format = 0; format <= 1; format++) {
                struct metrics_snapshot s;
                struct parsed p;
                struct buf b;
                char *text;

                fill(&s);
                buf_init(&b, MSG_METRICS_MAX);
                assert_int_equal(metrics_format(&s, format, &b), 0);
                assert_non_null(text = strndup((const char *) buf_ptr(&b), buf_remaining(&b)));
                parse(text, format, &p);
                assert_true(value_of(text, "dkimsign_signatures_total{domain=\"a.example\",algorithm=\"rsa-sha256\"}") ==
                            3);
                /* A series that never counted is left out. */
                assert_true(value_of(text, "dkimsign_signatures_total{domain=\"b.example\",algorithm=\"rsa-sha256\"}") ==
                            -1);
                assert_true(value_of(text, "dkimsign_refusals_total{reason=\"quota\"}") == 1);
                assert_true(value_of(text, "dkimsign_request_duration_seconds_count{outcome=\"signed\"}") == 5);
                assert_true(value_of(text, "dkimsign_request_duration_seconds_sum{outcome=\"signed\"}") == 1.234567);
                assert_true(value_of(text, "dkimsign_request_duration_seconds_bucket{outcome=\"signed\",le=\"0.0005\"}") ==
                            2);
                assert_true(value_of(text, "dkimsign_token_sign_duration_seconds_bucket{algorithm=\"rsa-sha256\","
                                           "le=\"10\"}") == 0);
                assert_true(value_of(text, "dkimsign_key_state{domain=\"a.example\",selector=\"s1\","
                                           "algorithm=\"rsa-sha256\",state=\"active\"}") == 1);
                assert_true(value_of(text, "dkimsign_key_dns_result{domain=\"b.example\",selector=\"q\\\"x\","
                                           "algorithm=\"ed25519-sha256\",result=\"missing\"}") == 1);
                assert_true(value_of(text, "dkimsign_key_active_timestamp_seconds{domain=\"a.example\",selector=\"s1\","
                                           "algorithm=\"rsa-sha256\"}") == 1700086400);
                free(text);
                buf_deinit(&b);
        }
}

static void test_per_domain_off(void **state)
{
        struct metrics_snapshot s;
        struct parsed p;
        struct buf b;
        char *text;

        fill(&s);
        s.per_domain = false;
        buf_init(&b, MSG_METRICS_MAX);
        assert_int_equal(metrics_format(&s, MSG_METRICS_OPENMETRICS, &b), 0);
        assert_non_null(text = strndup((const char *) buf_ptr(&b), buf_remaining(&b)));
        parse(text, MSG_METRICS_OPENMETRICS, &p);
        assert_null(strstr(text, "domain="));
        assert_true(value_of(text, "dkimsign_signatures_total{algorithm=\"ed25519-sha256\"}") == 5);
        assert_true(value_of(text, "dkimsign_keys{state=\"active\"}") == 1);
        free(text);
        buf_deinit(&b);
}

static void test_too_large(void **state)
{
        struct metrics_snapshot s;
        struct buf b;

        fill(&s);
        buf_init(&b, 2000);
        assert_int_equal(buf_put(&b, "x", 1), 0);
        assert_int_equal(metrics_format(&s, MSG_METRICS_OPENMETRICS, &b), DKIMSIGN_E_TOO_LARGE);
        assert_int_equal(b.len, 1);   /* as it was */
        buf_deinit(&b);
}

static void test_buckets(void **state)
{
        assert_int_equal(metrics_bucket(0), 0);
        assert_int_equal(metrics_bucket(500), 0);
        assert_int_equal(metrics_bucket(501), 1);
        assert_int_equal(metrics_bucket(10000000), METRICS_BUCKETS - 2);
        assert_int_equal(metrics_bucket(10000001), METRICS_BUCKETS - 1);
}

static const char *name_of(const struct metrics_domain *d, size_t n, const char *name, uint64_t *ret_ed)
{
        for (size_t i = 0; i < n; i++)
                if (strcmp(d[i].name, name) == 0) {
                        *ret_ed = d[i].signatures[METRICS_ED25519];
                        return d[i].name;
                }
        return NULL;
}

static void test_counters_across_processes(void **state)
{
        const enum metrics_alg ed = METRICS_ED25519;
        struct metrics_domain *d = NULL;
        struct metrics_snapshot s;
        struct counters *c;
        size_t n = 0;
        uint64_t v = 0;
        int status;
        pid_t pid;

        assert_int_equal(counters_new(2, 2, 4, &c), 0);
        counters_signed(c, "a.example", &ed, 1);
        counters_refusal(c, counters_reason(DKIMSIGN_E_DENIED));
        counters_request(c, METRICS_SIGNED, 700);
        counters_gauges(c, 3, 0, 4, 1);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                counters_select(c, 1);
                counters_signed(c, "a.example", &ed, 1);
                counters_signed(c, "b.example", &ed, 1);
                counters_signed(c, "c.example", &ed, 1);   /* past max_domains (2) */
                counters_refusal(c, counters_reason(DKIMSIGN_E_QUOTA));
                counters_gauges(c, 2, 0, 4, 0);
                counters_dns_put(c, "s1._domainkey.a.example", 2, 1700000000);
                _exit(0);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        assert_int_equal(counters_snapshot(c, &s, &d, &n), 0);
        assert_int_equal(s.messages_signed, 4);
        assert_int_equal(s.signatures[METRICS_ED25519], 4);
        assert_int_equal(s.refusals[METRICS_R_DENIED], 1);
        assert_int_equal(s.refusals[METRICS_R_QUOTA], 1);
        assert_int_equal(s.request[METRICS_SIGNED].buckets[1], 1);
        assert_int_equal(s.connections, 5);
        assert_int_equal(s.sessions, 8);
        assert_int_equal(s.processes, 2);
        assert_int_equal(n, 3);
        assert_non_null(name_of(d, n, "a.example", &v));
        assert_int_equal(v, 2);
        assert_non_null(name_of(d, n, "b.example", &v));
        assert_int_equal(v, 1);
        assert_non_null(name_of(d, n, COUNTERS_OTHER_DOMAIN, &v));
        assert_int_equal(v, 1);
        {
                int dns = 0;
                int64_t checked = 0;

                assert_true(counters_dns_get(c, "s1._domainkey.a.example", &dns, &checked));
                assert_int_equal(dns, 2);
                assert_int_equal(checked, 1700000000);
                assert_false(counters_dns_get(c, "s2._domainkey.a.example", &dns, &checked));
        }
        free(d);
        counters_free(c);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_formats),
                cmocka_unit_test(test_per_domain_off),
                cmocka_unit_test(test_too_large),
                cmocka_unit_test(test_buckets),
                cmocka_unit_test(test_counters_across_processes),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
