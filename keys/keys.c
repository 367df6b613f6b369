/* SPDX-License-Identifier: MIT */
/*
 * The key table.  See keys.h.  Selection is a binary search plus a scan of
 * one domain's few keys, so it costs the same with 10,000 domains as with one.
 * The registry is sorted by label and fingerprint and guarded by a mutex;
 * its entries are never freed before the registry, so the watcher and the
 * workers may keep pointers to them.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "protocol/dkimsign-errors.h"
#include "dkim/header.h"
#include "keys/keys.h"
#include "dkim/sign.h"

#define DOMAINKEY_INFIX "._domainkey."

int keys_parse_label(const char *label, char *ret_selector, size_t selsize, char *ret_domain,
                     size_t domsize)
{
        const char *mid = strstr(label, DOMAINKEY_INFIX);
        const char *dom;
        size_t sel_len, dom_len;

        if (!mid || mid == label)
                return DKIMSIGN_E_FORMAT;
        sel_len = (size_t) (mid - label);
        dom = mid + strlen(DOMAINKEY_INFIX);
        dom_len = strlen(dom);
        if (sel_len > DKIM_SELECTOR_MAX || sel_len >= selsize || dom_len >= domsize ||
            !dkim_domain_is_valid(label, sel_len) || !dkim_domain_is_valid(dom, dom_len))
                return DKIMSIGN_E_FORMAT;
        for (size_t i = 0; i < sel_len; i++)
                ret_selector[i] = (char) tolower((unsigned char) label[i]);
        ret_selector[sel_len] = 0;
        for (size_t i = 0; i <= dom_len; i++)
                ret_domain[i] = (char) tolower((unsigned char) dom[i]);
        return 0;
}

static int key_cmp(const void *a, const void *b)
{
        const struct signer_key *x = a, *y = b;
        int c = strcmp(x->domain, y->domain);

        return c ? c : strcmp(x->selector, y->selector);
}

int keytab_load(struct hsm *h, const struct config *c, struct keytab **ret)
{
        struct hsm_key **all = NULL;
        size_t n = 0;
        struct keytab *t;
        int r;

        t = calloc(1, sizeof(*t));
        if (!t)
                return DKIMSIGN_E_NOMEM;
        r = hsm_list(h, &all, &n);
        if (r < 0)
                goto out;
        t->keys = calloc(n ? n : 1, sizeof(*t->keys));
        if (!t->keys) {
                r = DKIMSIGN_E_NOMEM;
                goto out;
        }
        for (size_t i = 0; i < n; i++) {
                char sel[DKIM_SELECTOR_MAX + 1], dom[DKIM_DOMAIN_SIZE];
                struct signer_key *k = &t->keys[t->count];

                if (!all[i]->pubkey || keys_parse_label(all[i]->label, sel, sizeof(sel), dom, sizeof(dom)) < 0)
                        continue;
                if (!all[i]->refused && (all[i]->uses & HSM_USE_DECRYPT) && !c->allow_decrypt_keys)
                        all[i]->refused = KEYS_DECRYPT_REFUSED;
                k->selector = strdup(sel);
                k->domain = strdup(dom);
                if (!k->selector || !k->domain) {
                        free(k->selector);
                        free(k->domain);
                        r = DKIMSIGN_E_NOMEM;
                        goto out;
                }
                k->key = all[i];
                all[i] = NULL;  /* transferred */
                t->count++;
        }
        qsort(t->keys, t->count, sizeof(*t->keys), key_cmp);
        *ret = t;
        t = NULL;
out:
        hsm_key_list_free(all, n);
        keytab_free(t);
        return r;
}

struct keytab *keytab_free(struct keytab *t)
{
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->count; i++) {
                free(t->keys[i].domain);
                free(t->keys[i].selector);
                hsm_key_free(t->keys[i].key);
        }
        free(t->keys);
        free(t);
        return NULL;
}

/* Index of the first key of domain, or count when there is none. */
static size_t first_of_domain(const struct keytab *t, const char *domain)
{
        size_t lo = 0, hi = t->count;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;

                if (strcmp(t->keys[mid].domain, domain) < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return lo < t->count && strcmp(t->keys[lo].domain, domain) == 0 ? lo : t->count;
}

static bool selector_chosen(const struct config_domain *d, const char *selector)
{
        if (!d || d->nselectors == 0)
                return true;
        for (size_t i = 0; i < d->nselectors; i++)
                if (strcmp(d->selectors[i], selector) == 0)
                        return true;
        return false;
}

void key_live_times(const struct key_live *l, struct key_times *ret)
{
        /* The state first: the watcher stores the times before it. */
        ret->state = (enum key_state) atomic_load(&l->state);
        ret->seen = atomic_load(&l->seen);
        ret->active = atomic_load(&l->active);
        ret->retired = atomic_load(&l->retired);
}

bool key_live_adopt(struct key_live *l, const struct key_times *file, bool dns_from_file)
{
        enum key_state now = (enum key_state) atomic_load(&l->state);

        if (file->state == KEY_RETIRED && now != KEY_RETIRED) {
                atomic_store(&l->retired, file->retired);
                atomic_store(&l->state, KEY_RETIRED);
                return true;
        }
        if (file->state == KEY_ACTIVE && (now == KEY_PENDING || now == KEY_PUBLISHED)) {
                if (file->seen)
                        atomic_store(&l->seen, file->seen);
                atomic_store(&l->active, file->active);
                atomic_store(&l->state, KEY_ACTIVE);
                return true;
        }
        if (dns_from_file && (now == KEY_PENDING || now == KEY_PUBLISHED) &&
            (file->state == KEY_PENDING || file->state == KEY_PUBLISHED) &&
            (file->state != now || file->seen != atomic_load(&l->seen))) {
                atomic_store(&l->seen, file->state == KEY_PUBLISHED ? file->seen : 0);
                atomic_store(&l->state, (int) file->state);
                return true;
        }
        return false;
}

static void view_of(const struct signer_key *k, struct key_view *v)
{
        *v = (struct key_view) { .domain = k->domain, .alg = (int) k->key->alg,
                                 .token_retired = k->key->retired[0] != 0 };
        if (k->reg) {
                key_live_times(&k->reg->live, &v->t);
                v->wait = atomic_load(&k->reg->live.wait);
                v->grace = atomic_load(&k->reg->live.grace);
        } else {
                v->wait = CONFIG_PUBLISH_WAIT_DEFAULT;
                v->grace = CONFIG_RETIRE_GRACE_DEFAULT;
        }
}

/* Views of one domain's keys.  A domain has a few keys (with its retired
 * ones), so the caller's stack array holds them on the signing path and
 * the heap is only for a domain with more: free with views_free. */
#define VIEWS_ON_STACK 16

static struct key_view *domain_views(const struct keytab *t, size_t first, size_t end,
                                     struct key_view stack[VIEWS_ON_STACK])
{
        size_t n = end > first ? end - first : 0;
        struct key_view *v = n <= VIEWS_ON_STACK ? stack : calloc(n, sizeof(*v));

        for (size_t i = first; v && i < end; i++)
                view_of(&t->keys[i], &v[i - first]);
        return v;
}

static void views_free(struct key_view *v, const struct key_view *stack)
{
        if (v != stack)
                free(v);
}

static size_t end_of_domain(const struct keytab *t, size_t first)
{
        size_t end = first;

        while (end < t->count && strcmp(t->keys[end].domain, t->keys[first].domain) == 0)
                end++;
        return end;
}

enum key_state keytab_key_state(const struct keytab *t, size_t i, int64_t now, int64_t *ret_since,
                                size_t *ret_successor)
{
        size_t first = first_of_domain(t, t->keys[i].domain), end = end_of_domain(t, first);
        struct key_view stack[VIEWS_ON_STACK];
        struct key_view *v = domain_views(t, first, end, stack);
        enum key_state st;
        size_t next = (size_t) -1;

        if (!v) {
                /* Out of memory: the key alone, without its successors. */
                struct key_view one;

                view_of(&t->keys[i], &one);
                return keystate_effective(&one, 1, 0, now, ret_since, ret_successor);
        }
        st = keystate_effective(v, end - first, i - first, now, ret_since, &next);
        if (ret_successor)
                *ret_successor = next == (size_t) -1 ? next : next + first;
        views_free(v, stack);
        return st;
}

/* Why a key that is not active does not sign. */
static void explain_waiting(const struct signer_key *k, const struct key_view *v, enum key_state st, const char *kd,
                            char *why, size_t whylen)
{
        char when[24], from[24];

        if (st == KEY_PUBLISHED) {
                keystate_utc(v->t.seen, when);
                keystate_utc(v->t.seen + (int64_t) v->wait, from);
                snprintf(why, whylen, "no active key for domain %s: %s._domainkey.%s is published (first seen %s) "
                         "and signs from %s", kd, k->selector, k->domain, when, from);
                return;
        }
        if (!k->reg || !atomic_load(&k->reg->live.checked)) {
                snprintf(why, whylen, "no active key for domain %s: %s._domainkey.%s is pending (DNS not checked "
                         "yet); it signs once its record has been seen for publish_wait", kd, k->selector, k->domain);
                return;
        }
        keystate_utc(atomic_load(&k->reg->live.checked), when);
        snprintf(why, whylen, "no active key for domain %s: %s._domainkey.%s is pending (DNS at %s: %s); "
                 "publish its record (dkimsignctl dns-record)", kd, k->selector, k->domain, when,
                 key_dns_phrase((enum key_dns) atomic_load(&k->reg->live.dns)));
}

struct candidate {
        const struct signer_key *key;
        int rank;                       /* 2 active, 1 signs unpublished */
        int64_t since;
        const struct signer_key *tie;   /* another key just as good: ambiguous */
};

static void consider(struct candidate *c, const struct signer_key *k, int rank, int64_t since)
{
        if (!c->key || rank > c->rank || (rank == c->rank && since > c->since))
                *c = (struct candidate) { .key = k, .rank = rank, .since = since };
        else if (rank == c->rank && since == c->since && !c->tie)
                c->tie = k;
}

/* Whether key may ever sign: RFC 8301 has verifiers reject RSA keys under
 * 1024 bits, so an imported weak key never signs, and neither does a key
 * refused for its custody or its uses (hsm.h, refused; keytab_load). */
static bool key_may_sign(const struct hsm_key *key)
{
        return !key->refused && !(key->alg == HSM_ALG_RSA && key->bits < HSM_RSA_MIN_BITS);
}

int keytab_select(const struct keytab *t, const struct config *c, const char *domain,
                  const struct config_domain *d, int64_t now,
                  const struct signer_key **ret, size_t *ret_count, const char **ret_domain,
                  char *why, size_t whylen)
{
        /* A parent's section that covers its subdomains signs with d= parent. */
        const char *kd = d && d->key_domain ? d->key_domain
                       : d && strcmp(d->name, domain) != 0 ? d->name : domain;
        struct candidate best[3] = { 0 };
        const struct signer_key *waiting = NULL;
        enum key_state waiting_state = KEY_PENDING;
        struct key_view waiting_view = { 0 };
        size_t first = first_of_domain(t, kd), end = first < t->count ? end_of_domain(t, first) : first;
        struct key_view stack[VIEWS_ON_STACK];
        struct key_view *views = domain_views(t, first, end, stack);
        size_t n = 0, retired = 0;

        if (!views) {
                snprintf(why, whylen, "out of memory");
                return DKIMSIGN_E_NOMEM;
        }
        for (size_t i = first; i < end; i++) {
                const struct signer_key *k = &t->keys[i];
                enum hsm_alg a = k->key->alg;
                enum key_state st;
                int64_t since = 0;

                if (!selector_chosen(d, k->selector) || (a != HSM_ALG_RSA && a != HSM_ALG_ED25519))
                        continue;
                if (!key_may_sign(k->key))
                        continue;
                /* Retired (dkimsignctl retire, or succeeded by a newer key):
                 * the key stays on the token (its DNS record may still
                 * verify old mail) but never signs again. */
                st = keystate_effective(views, end - first, i - first, now, &since, NULL);
                if (st == KEY_RETIRED) {
                        retired++;
                } else if (st == KEY_ACTIVE) {
                        consider(&best[a], k, 2, since);
                } else if (config_unpublished(c, kd) == CONFIG_UNPUBLISHED_SIGN) {
                        /* Looked up only here: a key not active yet is rare. */
                        consider(&best[a], k, 1, 0);
                } else if (!waiting || st > waiting_state) {
                        waiting = k;
                        waiting_state = st;
                        waiting_view = views[i - first];
                }
        }
        views_free(views, stack);
        for (int a = HSM_ALG_RSA; a <= HSM_ALG_ED25519; a++)
                if (best[a].tie) {
                        snprintf(why, whylen,
                                 "domain %s has several %s keys (%s, %s): name one with 'selectors' in [domain %s]",
                                 kd, hsm_alg_name((enum hsm_alg) a), best[a].key->selector, best[a].tie->selector,
                                 d ? d->name : domain);
                        return DKIMSIGN_E_NO_KEY;
                }
        for (int a = HSM_ALG_RSA; a <= HSM_ALG_ED25519; a++)
                if (best[a].key)
                        ret[n++] = best[a].key;
        if (n == 0 && waiting) {
                explain_waiting(waiting, &waiting_view, waiting_state, kd, why, whylen);
                return DKIMSIGN_E_NO_KEY;
        }
        if (n == 0) {
                snprintf(why, whylen, "no signing key for domain %s%s", kd,
                         retired ? " (its keys are retired)" : "");
                return DKIMSIGN_E_NO_KEY;
        }
        *ret_count = n;
        *ret_domain = kd;
        return 0;
}

/* ---- the registry ---- */

struct keyreg {
        struct keyreg_entry **entries;  /* owned, sorted by label, then fingerprint */
        size_t count;
        unsigned generation;
};

static int reg_cmp(const char *label, const char *fp, const struct keyreg_entry *e)
{
        int c = strcmp(label, e->label);

        return c ? c : strcmp(fp, e->fingerprint);
}

static int reg_sort_cmp(const void *a, const void *b)
{
        const struct keyreg_entry *x = *(struct keyreg_entry *const *) a;

        return reg_cmp(x->label, x->fingerprint, *(struct keyreg_entry *const *) b);
}

static struct keyreg_entry *reg_find(const struct keyreg *g, const char *label, const char *fp)
{
        size_t lo = 0, hi = g->count;

        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                int c = reg_cmp(label, fp, g->entries[mid]);

                if (c == 0)
                        return g->entries[mid];
                if (c > 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

static struct keyreg_entry *entry_free(struct keyreg_entry *e)
{
        if (!e)
                return NULL;
        free(e->label);
        free(e->domain);
        free(e->selector);
        EVP_PKEY_free(e->pubkey);
        free(e);
        return NULL;
}

/* A registry entry for key k, named label (<selector>._domainkey.<domain>). */
static struct keyreg_entry *entry_new(const struct signer_key *k, const char *label, const char *fp,
                                      const struct keystate *file)
{
        struct keyreg_entry *e = calloc(1, sizeof(*e));
        const struct keystate_entry *f;

        if (!e)
                return NULL;
        e->label = strdup(label);
        e->domain = strdup(k->domain);
        e->selector = strdup(k->selector);
        if (!e->label || !e->domain || !e->selector || EVP_PKEY_up_ref(k->key->pubkey) != 1)
                return entry_free(e);
        e->pubkey = k->key->pubkey;
        e->alg = k->key->alg;
        memcpy(e->fingerprint, fp, sizeof(e->fingerprint));
        /* A state of another key under the same label (destroyed and made
         * again) says nothing about this one: it starts pending. */
        f = file ? keystate_find(file, e->label) : NULL;
        if (f && strcmp(f->fingerprint, fp) == 0) {
                atomic_store(&e->live.seen, f->t.seen);
                atomic_store(&e->live.active, f->t.active);
                atomic_store(&e->live.retired, f->t.retired);
                atomic_store(&e->live.state, (int) f->t.state);
                atomic_store(&e->live.dnssec, (int) f->dnssec);
        }
        return e;
}

int keyreg_new(struct keyreg **ret)
{
        struct keyreg *g = calloc(1, sizeof(*g));

        if (!g)
                return DKIMSIGN_E_NOMEM;
        *ret = g;
        return 0;
}

struct keyreg *keyreg_free(struct keyreg *g)
{
        if (!g)
                return NULL;
        for (size_t i = 0; i < g->count; i++)
                entry_free(g->entries[i]);
        free(g->entries);
        free(g);
        return NULL;
}

int keyreg_attach(struct keyreg *g, struct keytab *t, const struct config *c, const struct keystate *file)
{
        struct keyreg_entry **grown;
        size_t added = 0;
        unsigned gen;
        int r = 0;

        grown = realloc(g->entries, (g->count + t->count + 1) * sizeof(*grown));
        if (!grown)
                return DKIMSIGN_E_NOMEM;
        g->entries = grown;
        gen = g->generation + 1;
        for (size_t i = 0; i < t->count; i++) {
                struct signer_key *k = &t->keys[i];
                char fp[KEYSTATE_FP_LEN + 1], label[HSM_LABEL_MAX + 1];
                struct keyreg_entry *e;

                /* A key that never signs has no lifecycle: never looked up,
                 * never active, so never the successor that retires a key
                 * that does sign. */
                if (!key_may_sign(k->key)) {
                        k->reg = NULL;
                        continue;
                }
                r = keystate_fingerprint(k->key->pubkey, fp);
                if (r < 0)
                        break;
                snprintf(label, sizeof(label), "%s._domainkey.%s", k->selector, k->domain);
                e = reg_find(g, label, fp);
                if (e) {
                        const struct keystate_entry *f = file ? keystate_find(file, e->label) : NULL;

                        if (f && strcmp(f->fingerprint, fp) == 0)
                                key_live_adopt(&e->live, &f->t, false);
                } else {
                        e = entry_new(k, label, fp, file);
                        if (!e) {
                                r = DKIMSIGN_E_NOMEM;
                                break;
                        }
                        /* Appended past the sorted part; sorted in below. */
                        g->entries[g->count + added++] = e;
                }
                atomic_store(&e->token_retired, k->key->retired[0] != 0);
                atomic_store(&e->live.wait, config_publish_wait(c, k->domain));
                atomic_store(&e->live.grace, config_retire_grace(c, k->domain));
                atomic_store(&e->generation, gen);
                k->reg = e;
        }
        g->count += added;
        qsort(g->entries, g->count, sizeof(*g->entries), reg_sort_cmp);
        if (r == 0)
                g->generation = gen;
        return r;
}

int keyreg_current(struct keyreg *g, struct keyreg_entry ***ret, size_t *ret_count)
{
        struct keyreg_entry **list;
        size_t n = 0;

        list = calloc(g->count ? g->count : 1, sizeof(*list));
        for (size_t i = 0; list && i < g->count; i++)
                if (atomic_load(&g->entries[i]->generation) == g->generation)
                        list[n++] = g->entries[i];
        if (!list)
                return DKIMSIGN_E_NOMEM;
        *ret = list;
        *ret_count = n;
        return 0;
}

void keytab_key_life(const struct keytab *t, size_t i, int64_t now, struct key_life *ret)
{
        const struct signer_key *k = &t->keys[i];
        struct key_times times = { 0 };
        size_t next = (size_t) -1;
        int64_t since = 0;
        uint64_t wait = 0, grace = 0;

        if (k->reg) {
                key_live_times(&k->reg->live, &times);
                wait = atomic_load(&k->reg->live.wait);
                grace = atomic_load(&k->reg->live.grace);
        }
        *ret = (struct key_life) { .state = keytab_key_state(t, i, now, &since, &next), .seen = times.seen,
                                   .recorded_active = times.active };
        switch (ret->state) {
        case KEY_RETIRED:
                ret->retired = since;
                break;
        case KEY_ACTIVE:
                ret->active = since;
                ret->recorded_active = since;
                if (next != (size_t) -1) {
                        int64_t next_since = 0;

                        keytab_key_state(t, next, now, &next_since, NULL);
                        ret->retires = next_since + (int64_t) grace;
                }
                break;
        case KEY_PUBLISHED:
                ret->signs_from = times.seen + (int64_t) wait;
                break;
        default:
                break;
        }
}
