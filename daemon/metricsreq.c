/* SPDX-License-Identifier: MIT */
/*
 * The answer to a METRICS request.  See metricsreq.h.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/metricsreq.h"
#include "protocol/dkimsign-errors.h"

/* A token date, "YYYYMMDD" in UTC, as Unix seconds; 0 when unset. */
static int64_t token_date(const char *d)
{
        struct tm tm = { 0 };

        if (strlen(d) != 8 || strspn(d, "0123456789") != 8)
                return 0;
        tm.tm_year = (d[0] - '0') * 1000 + (d[1] - '0') * 100 + (d[2] - '0') * 10 + (d[3] - '0') - 1900;
        tm.tm_mon = (d[4] - '0') * 10 + (d[5] - '0') - 1;
        tm.tm_mday = (d[6] - '0') * 10 + (d[7] - '0');
        return (int64_t) timegm(&tm);
}

/* Key i's series: its state at now as the workers see it, and its times:
 * active from (or, published, from when it will be), retired at (or,
 * superseded, when it will be). */
static void key_figures(const struct keytab *t, const struct counters *c, size_t i, int64_t now,
                        struct metrics_key *ret)
{
        const struct signer_key *k = &t->keys[i];
        struct key_life l;

        keytab_key_life(t, i, now, &l);
        *ret = (struct metrics_key) { .domain = k->domain, .selector = k->selector,
                                      .alg = k->key->alg == HSM_ALG_RSA ? METRICS_RSA : METRICS_ED25519,
                                      .created = token_date(k->key->created), .state = (int) l.state,
                                      .active = l.state == KEY_PUBLISHED ? l.signs_from : l.recorded_active,
                                      .retires = l.state == KEY_RETIRED ? l.retired : l.retires };
        if (k->reg) {
                ret->dns = atomic_load(&k->reg->live.dns);
                ret->dns_checked = atomic_load(&k->reg->live.checked);
                /* A process that leaves the lookups to another reads its results. */
                if (ret->dns == KEY_DNS_UNCHECKED)
                        counters_dns_get(c, k->reg->label, &ret->dns, &ret->dns_checked);
        }
}

void metricsreq_post_dns(const struct sign_ctx *ctx, struct counters *c)
{
        const struct keytab *t = ctx->keys;

        for (size_t i = 0; i < t->count && i < ctx->config->metrics_max_keys; i++) {
                const struct keyreg_entry *e = t->keys[i].reg;
                int dns = e ? atomic_load(&e->live.dns) : KEY_DNS_UNCHECKED;

                if (dns != KEY_DNS_UNCHECKED)
                        counters_dns_put(c, e->label, dns, atomic_load(&e->live.checked));
        }
}

int metricsreq_answer(const struct sign_ctx *ctx, const struct counters *c, int format, int64_t now,
                      struct buf *out)
{
        const struct config *cfg = ctx->config;
        const struct keytab *t = ctx->keys;
        struct metrics_domain *domains = NULL;
        struct metrics_key *keys = NULL;
        struct metrics_snapshot s;
        size_t ndomains = 0, nkeys = 0;
        int r = counters_snapshot(c, &s, &domains, &ndomains);

        if (r == 0 && t->count && !(keys = calloc(t->count, sizeof(*keys))))
                r = DKIMSIGN_E_NOMEM;
        for (size_t i = 0; r == 0 && i < t->count; i++) {
                struct metrics_key k;

                key_figures(t, c, i, now, &k);
                if ((unsigned) k.state < METRICS_KEY_STATES)
                        s.keys_by_state[k.state]++;
                /* Past max_keys a key is counted by state only. */
                if (nkeys < cfg->metrics_max_keys)
                        keys[nkeys++] = k;
        }
        if (r == 0) {
                s.per_domain = cfg->metrics_per_domain;
                s.domains = domains;
                s.ndomains = ndomains;
                s.keys = keys;
                s.nkeys = nkeys;
                r = metrics_format(&s, format, out);
        }
        free(domains);
        free(keys);
        return r;
}
