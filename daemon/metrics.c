/* SPDX-License-Identifier: MIT */
/*
 * The metrics' text.  See metrics.h.
 *
 * The two formats differ in little: OpenMetrics names a counter's family
 * without its _total suffix, has # UNIT lines and ends with # EOF; the
 * 0.0.4 format names the family as its sample and has neither.  Every
 * family's samples are written together, as both formats require.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "daemon/metrics.h"
#include "protocol/dkimsign-errors.h"
#include "protocol/msg.h"

/* 0.5 ms to 10 s: a software token signs in about a millisecond, a
 * network HSM in tens, a queue backed up in seconds. */
const uint64_t metrics_bucket_us[METRICS_BUCKETS - 1] = {
        500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
        1000000, 2500000, 5000000, 10000000,
};

static const char *const alg_names[METRICS_ALGS] = { "rsa-sha256", "ed25519-sha256" };
static const char *const reason_names[METRICS_REASONS] = {
        "bad_request", "version", "too_large", "refused", "denied", "no_key", "token", "busy", "internal", "quota",
};
static const char *const state_names[METRICS_KEY_STATES] = { "pending", "published", "active", "retired" };
static const char *const dns_names[METRICS_DNS_RESULTS] = {
        "unchecked", "match", "missing", "mismatch", "revoked", "broken", "failed",
};
static const char *const outcome_names[METRICS_OUTCOMES] = { "signed", "not_signed" };

size_t metrics_bucket(uint64_t us)
{
        size_t i = 0;

        while (i < METRICS_BUCKETS - 1 && us > metrics_bucket_us[i])
                i++;
        return i;
}

const char *metrics_reason_name(enum metrics_reason r)
{
        return (unsigned) r < METRICS_REASONS ? reason_names[r] : "internal";
}

struct out {
        struct buf *b;
        int format;
        int r;        /* the first failure; later writes do nothing */
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
        char line[1024];
        va_list ap;
        int n;

        if (o->r < 0)
                return;
        va_start(ap, fmt);
        n = vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        if (n < 0 || (size_t) n >= sizeof(line))
                o->r = DKIMSIGN_E_INTERNAL;   /* every line is far shorter: labels are DNS names */
        else
                o->r = buf_put(o->b, line, (size_t) n);
}

/* A label value: DNS names need no escape, but a value is escaped as both
 * formats say (backslash, double quote, newline) whatever it holds. */
static const char *esc(const char *v, char *ret, size_t size)
{
        size_t n = 0;

        for (; *v && n + 3 < size; v++) {
                if (*v == '\\' || *v == '"' || *v == '\n')
                        ret[n++] = '\\';
                ret[n++] = *v == '\n' ? 'n' : *v;
        }
        ret[n] = 0;
        return ret;
}

enum kind { COUNTER, GAUGE, HISTOGRAM };

/* # HELP, # TYPE (and # UNIT) of a family; name without _total. */
static void family(struct out *o, const char *name, enum kind k, const char *unit, const char *help)
{
        static const char *const types[] = { "counter", "gauge", "histogram" };
        const char *suffix = k == COUNTER && o->format == MSG_METRICS_PROMETHEUS ? "_total" : "";

        put(o, "# HELP %s%s %s\n# TYPE %s%s %s\n", name, suffix, help, name, suffix, types[k]);
        if (unit && o->format == MSG_METRICS_OPENMETRICS)
                put(o, "# UNIT %s %s\n", name, unit);
}

static void hist(struct out *o, const char *name, const char *labels, const struct metrics_hist *h)
{
        uint64_t cum = 0;

        for (size_t i = 0; i < METRICS_BUCKETS; i++) {
                cum += h->buckets[i];
                if (i < METRICS_BUCKETS - 1)
                        put(o, "%s_bucket{%sle=\"%g\"} %llu\n", name, labels, (double) metrics_bucket_us[i] / 1e6,
                            (unsigned long long) cum);
                else
                        put(o, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, labels, (unsigned long long) cum);
        }
        /* The labels end in a comma, or are empty. */
        if (*labels) {
                char l[256];
                size_t n = strlen(labels);

                snprintf(l, sizeof(l), "%.*s", (int) (n - 1), labels);
                put(o, "%s_count{%s} %llu\n%s_sum{%s} %llu.%06llu\n", name, l, (unsigned long long) cum, name, l,
                    (unsigned long long) (h->sum_us / 1000000), (unsigned long long) (h->sum_us % 1000000));
        } else {
                put(o, "%s_count %llu\n%s_sum %llu.%06llu\n", name, (unsigned long long) cum, name,
                    (unsigned long long) (h->sum_us / 1000000), (unsigned long long) (h->sum_us % 1000000));
        }
}

/* A histogram family in seconds with one label, a histogram per value. */
static void hist_family(struct out *o, const char *name, const char *help, const char *label,
                        const char *const *values, const struct metrics_hist *h, size_t n)
{
        family(o, name, HISTOGRAM, "seconds", help);
        for (size_t i = 0; i < n; i++) {
                char l[64];

                snprintf(l, sizeof(l), "%s=\"%s\",", label, values[i]);
                hist(o, name, l, &h[i]);
        }
}

static void counter1(struct out *o, const char *name, const char *help, uint64_t v)
{
        family(o, name, COUNTER, NULL, help);
        put(o, "%s_total %llu\n", name, (unsigned long long) v);
}

static void gauge1(struct out *o, const char *name, const char *unit, const char *help, long long v)
{
        family(o, name, GAUGE, unit, help);
        put(o, "%s %lld\n", name, v);
}

static void write_requests(struct out *o, const struct metrics_snapshot *s)
{
        counter1(o, "dkimsign_messages_signed", "Messages signed (each with one signature per algorithm).",
                 s->messages_signed);
        family(o, "dkimsign_signatures", COUNTER, NULL, "DKIM-Signature fields made.");
        if (s->per_domain) {
                for (size_t i = 0; i < s->ndomains; i++)
                        for (size_t a = 0; a < METRICS_ALGS; a++) {
                                char d[600];

                                if (s->domains[i].signatures[a])
                                        put(o, "dkimsign_signatures_total{domain=\"%s\",algorithm=\"%s\"} %llu\n",
                                            esc(s->domains[i].name, d, sizeof(d)), alg_names[a],
                                            (unsigned long long) s->domains[i].signatures[a]);
                        }
        } else {
                for (size_t a = 0; a < METRICS_ALGS; a++)
                        put(o, "dkimsign_signatures_total{algorithm=\"%s\"} %llu\n", alg_names[a],
                            (unsigned long long) s->signatures[a]);
        }
        family(o, "dkimsign_refusals", COUNTER, NULL, "SIGN requests answered with an error, by reason.");
        for (size_t i = 0; i < METRICS_REASONS; i++)
                put(o, "dkimsign_refusals_total{reason=\"%s\"} %llu\n", reason_names[i],
                    (unsigned long long) s->refusals[i]);
        hist_family(o, "dkimsign_request_duration_seconds",
                    "Time from a SIGN request's queueing to its reply, by outcome.", "outcome", outcome_names,
                    s->request, METRICS_OUTCOMES);
        hist_family(o, "dkimsign_token_sign_duration_seconds", "Time the token took for one signature, by algorithm.",
                    "algorithm", alg_names, s->token_sign, METRICS_ALGS);
}

static void write_daemon(struct out *o, const struct metrics_snapshot *s)
{
        counter1(o, "dkimsign_connections", "Connections accepted.", s->connections_total);
        counter1(o, "dkimsign_connections_refused", "Connections refused at a limit or while stopping.",
                 s->connections_refused);
        gauge1(o, "dkimsign_open_connections", NULL, "Connections open now.", (long long) s->connections);
        gauge1(o, "dkimsign_queue_depth", NULL, "SIGN requests queued or being signed.", (long long) s->queue_depth);
        gauge1(o, "dkimsign_sessions", NULL, "Token sessions signing requests.", (long long) s->sessions);
        gauge1(o, "dkimsign_sessions_busy", NULL, "Token sessions busy with a request now.",
               (long long) s->sessions_busy);
        gauge1(o, "dkimsign_processes", NULL, "Signer processes.", (long long) s->processes);
        counter1(o, "dkimsign_token_faults", "Signatures the token failed (or made wrong: not released).",
                 s->token_faults);
        counter1(o, "dkimsign_token_recoveries", "Sessions reopened and login restored after a token fault.",
                 s->token_recoveries);
        counter1(o, "dkimsign_reloads", "Reloads of the configuration and keys done.", s->reloads);
        counter1(o, "dkimsign_reload_failures", "Reloads refused (the running configuration stayed).",
                 s->reload_failures);
        gauge1(o, "dkimsign_start_time_seconds", "seconds", "When the daemon started, in Unix time.",
               (long long) s->start_time);
}

static void key_labels(const struct metrics_key *k, char *ret, size_t size)
{
        char d[600], sel[600];

        snprintf(ret, size, "domain=\"%s\",selector=\"%s\",algorithm=\"%s\"", esc(k->domain, d, sizeof(d)),
                 esc(k->selector, sel, sizeof(sel)), alg_names[k->alg]);
}

static void key_times(struct out *o, const struct metrics_snapshot *s, const char *name, const char *help,
                      size_t field)
{
        family(o, name, GAUGE, "seconds", help);
        for (size_t i = 0; i < s->nkeys; i++) {
                const struct metrics_key *k = &s->keys[i];
                const int64_t v[] = { k->created, k->active, k->retires, k->dns_checked };
                char l[1400];

                key_labels(k, l, sizeof(l));
                put(o, "%s{%s} %lld\n", name, l, (long long) v[field]);
        }
}

static void write_keys(struct out *o, const struct metrics_snapshot *s)
{
        family(o, "dkimsign_keys", GAUGE, NULL, "Keys on the token, by lifecycle state.");
        for (size_t i = 0; i < METRICS_KEY_STATES; i++)
                put(o, "dkimsign_keys{state=\"%s\"} %zu\n", state_names[i], s->keys_by_state[i]);
        if (!s->per_domain)
                return;
        family(o, "dkimsign_key_state", GAUGE, NULL, "A key's lifecycle state now: 1 on its state's series.");
        for (size_t i = 0; i < s->nkeys; i++) {
                char l[1400];

                key_labels(&s->keys[i], l, sizeof(l));
                put(o, "dkimsign_key_state{%s,state=\"%s\"} 1\n", l,
                    (unsigned) s->keys[i].state < METRICS_KEY_STATES ? state_names[s->keys[i].state] : "pending");
        }
        family(o, "dkimsign_key_dns_result", GAUGE, NULL,
               "What the DNS watch's last lookup of a key's record showed: 1 on its result's series.");
        for (size_t i = 0; i < s->nkeys; i++) {
                char l[1400];

                key_labels(&s->keys[i], l, sizeof(l));
                put(o, "dkimsign_key_dns_result{%s,result=\"%s\"} 1\n", l,
                    (unsigned) s->keys[i].dns < METRICS_DNS_RESULTS ? dns_names[s->keys[i].dns] : "unchecked");
        }
        key_times(o, s, "dkimsign_key_created_timestamp_seconds", "When the key was made on the token (0: unknown).",
                  0);
        key_times(o, s, "dkimsign_key_active_timestamp_seconds",
                  "When the key became (or becomes) active: signing (0: not yet known).", 1);
        key_times(o, s, "dkimsign_key_retire_timestamp_seconds",
                  "When the key retired or is to retire (0: no retirement due).", 2);
        key_times(o, s, "dkimsign_key_dns_checked_timestamp_seconds",
                  "When the DNS watch last looked the key's record up (0: never).", 3);
}

int metrics_format(const struct metrics_snapshot *s, int format, struct buf *out)
{
        struct out o = { .b = out, .format = format };
        size_t start = out->len;

        write_requests(&o, s);
        write_daemon(&o, s);
        write_keys(&o, s);
        if (format == MSG_METRICS_OPENMETRICS)
                put(&o, "# EOF\n");
        if (o.r < 0)
                out->len = start;
        return o.r == DKIMSIGN_E_NOSPACE ? DKIMSIGN_E_TOO_LARGE : o.r;
}
