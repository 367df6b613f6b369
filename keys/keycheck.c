/* SPDX-License-Identifier: MIT */
/*
 * One check of the keys' records and states.  See keycheck.h.  No thread
 * of its own, no logging.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dkim/dkimrec.h"
#include "protocol/dkimsign-errors.h"
#include "keys/keycheck.h"
#include "keys/keystate.h"

enum key_dns keycheck_lookup(struct dns_resolver *res, const char *label, EVP_PKEY *pub)
{
        struct dns_txt txt = { 0 };
        enum key_dns out = KEY_DNS_BROKEN;
        bool revoked = false, other = false;
        int r = dns_txt_lookup(res, label, &txt);

        if (r == DKIMSIGN_E_DNS_NOT_FOUND)
                return KEY_DNS_MISSING;
        if (r == DKIMSIGN_E_DNS_BOGUS)
                return KEY_DNS_BOGUS;   /* whatever it held, it is not believed */
        if (r < 0)
                return KEY_DNS_FAILED;  /* no answer, or one we could not read: nothing known */
        for (size_t i = 0; i < txt.count && out != KEY_DNS_MATCH; i++) {
                struct dkim_keyrec rec;

                if (dkim_keyrec_parse(txt.records[i].text, txt.records[i].len, &rec, NULL, 0) < 0)
                        continue;
                if (dkim_keyrec_matches(&rec, pub, NULL, 0) == 0)
                        out = KEY_DNS_MATCH;
                else if (rec.revoked)
                        revoked = true;
                else
                        other = true;
                dkim_keyrec_clear(&rec);
        }
        dns_txt_clear(&txt);
        if (out != KEY_DNS_MATCH)
                out = revoked ? KEY_DNS_REVOKED : other ? KEY_DNS_MISMATCH : KEY_DNS_BROKEN;
        return out;
}

/* Look up every key's record; pending and published ones first, as they
 * are what the check is for.  obs[i] stays KEY_DNS_UNCHECKED for keys not
 * looked up. */
static void observe(struct keyreg_entry **keys, size_t n, struct dns_resolver *res, const atomic_bool *stop,
                    enum key_dns *obs, struct keycheck_report *rep)
{
        unsigned failures = 0;

        for (int pass = 0; pass < 2; pass++)
                for (size_t i = 0; i < n; i++) {
                        struct keyreg_entry *e = keys[i];
                        int st = atomic_load(&e->live.state);

                        if (atomic_load(&e->token_retired) || st == KEY_RETIRED || (pass == 0) != (st < KEY_ACTIVE))
                                continue;
                        if (stop && atomic_load(stop))
                                return;
                        if (failures >= KEYCHECK_FAILURES_MAX) {
                                rep->skipped++;
                                continue;
                        }
                        obs[i] = keycheck_lookup(res, e->label, e->pubkey);
                        failures = obs[i] == KEY_DNS_FAILED ? failures + 1 : 0;
                        if (obs[i] == KEY_DNS_FAILED)
                                rep->failed++;
                        else
                                rep->answered++;
                        if (obs[i] == KEY_DNS_BOGUS)
                                rep->bogus++;
                        if (obs[i] != KEY_DNS_FAILED)
                                atomic_store(&e->live.dnssec, (int) dns_resolver_last_security(res));
                        atomic_store(&e->live.dns, (int) obs[i]);
                        atomic_store(&e->live.checked, (int64_t) time(NULL));
                }
        rep->failures_in_row = failures;
}

/* Keys by domain, then label: the lifecycle weighs each domain's together. */
static int by_domain(const void *a, const void *b)
{
        const struct keyreg_entry *x = *(struct keyreg_entry *const *) a, *y = *(struct keyreg_entry *const *) b;
        int c = strcmp(x->domain, y->domain);

        return c != 0 ? c : strcmp(x->label, y->label);
}

static void view_of(const struct keyreg_entry *e, struct key_view *ret)
{
        *ret = (struct key_view) { .domain = e->domain, .alg = (int) e->alg,
                                   .token_retired = atomic_load(&e->token_retired),
                                   .wait = atomic_load(&e->live.wait), .grace = atomic_load(&e->live.grace) };
        key_live_times(&e->live, &ret->t);
}

static bool times_equal(const struct key_times *a, const struct key_times *b)
{
        return a->state == b->state && a->seen == b->seen && a->active == b->active && a->retired == b->retired;
}

static void set_state(struct key_live *l, const struct key_times *t)
{
        /* Times first: a worker reads the state, then the times. */
        atomic_store(&l->seen, t->seen);
        atomic_store(&l->active, t->active);
        atomic_store(&l->retired, t->retired);
        atomic_store(&l->state, (int) t->state);
}

/* Move the keys along (lifecycle_step) and store the new times where the
 * workers read them.  Returns true on a change. */
static bool advance(struct keyreg_entry **keys, size_t n, struct key_view *views, const enum key_dns *before,
                    const enum key_dns *obs, int64_t now, struct keycheck_report *rep)
{
        size_t nevents = 0;
        bool changed;

        for (size_t i = 0; i < n; i++)
                view_of(keys[i], &views[i]);
        changed = lifecycle_step(views, n, before, obs, now, rep->events + rep->nevents, &nevents);
        rep->nevents += nevents;
        for (size_t i = 0; changed && i < n; i++) {
                struct key_times old;

                key_live_times(&keys[i]->live, &old);
                if (!times_equal(&old, &views[i].t))
                        set_state(&keys[i]->live, &views[i].t);
        }
        return changed;
}

/* Write the keys' states into the file's. */
static int record(struct keystate *file, struct keyreg_entry **keys, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                struct keystate_entry e = { 0 };
                int r;

                snprintf(e.label, sizeof(e.label), "%s", keys[i]->label);
                memcpy(e.fingerprint, keys[i]->fingerprint, sizeof(e.fingerprint));
                key_live_times(&keys[i]->live, &e.t);
                e.dnssec = (enum dns_security) atomic_load(&keys[i]->live.dnssec);
                r = keystate_put(file, &e);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Whether the file already says what is known of key e. */
static bool file_matches(const struct keystate *file, const struct keyreg_entry *e)
{
        const struct keystate_entry *f = keystate_find(file, e->label);
        struct key_times t;

        key_live_times(&e->live, &t);
        return f && strcmp(f->fingerprint, e->fingerprint) == 0 && times_equal(&f->t, &t) &&
               f->dnssec == (enum dns_security) atomic_load(&e->live.dnssec);
}

/* Take what dkimsignctl wrote in the file (an import active at once, a
 * retirement; with no lookups of our own, what DNS showed). */
static void adopt(struct keyreg_entry **keys, size_t n, const struct keystate *file, bool dns_from_file,
                  struct keycheck_report *rep)
{
        for (size_t i = 0; i < n; i++) {
                const struct keystate_entry *f = keystate_find(file, keys[i]->label);

                if (f && dns_from_file && strcmp(f->fingerprint, keys[i]->fingerprint) == 0)
                        atomic_store(&keys[i]->live.dnssec, (int) f->dnssec);   /* the looker-up's word */
                if (f && strcmp(f->fingerprint, keys[i]->fingerprint) == 0 &&
                    key_live_adopt(&keys[i]->live, &f->t, dns_from_file))
                        rep->events[rep->nevents++] = (struct lifecycle_event) { .key = i, .what = LC_FROM_FILE,
                                                                                 .state = f->t.state };
        }
}

/* Under the state directory's lock: read the file, move the keys along,
 * write the file when it no longer says what is known. */
static void update(struct keyreg_entry **keys, size_t n, const char *state_dir, bool dns_from_file,
                   struct key_view *views, const enum key_dns *before, const enum key_dns *obs,
                   struct keycheck_report *rep)
{
        struct keystate file = { 0 };
        char *why = rep->file_error;
        size_t whylen = sizeof(rep->file_error);
        bool changed;
        int fd = -1, r;

        r = keystate_lock(state_dir, &fd, why, whylen);
        if (r == 0)
                r = keystate_load(state_dir, &file, why, whylen);
        if (r == 0)
                adopt(keys, n, &file, dns_from_file, rep);
        else
                rep->file_result = DKIMSIGN_E_STATE;
        changed = advance(keys, n, views, before, obs, (int64_t) time(NULL), rep);
        if (r == 0) {
                /* Also when nothing moved here: the file may lack a key (the
                 * first check writes every one) or hold another key's state
                 * under its label. */
                for (size_t i = 0; i < n && !changed; i++)
                        changed = !file_matches(&file, keys[i]);
                r = changed ? record(&file, keys, n) : 0;
                if (r == 0 && changed)
                        r = keystate_save(state_dir, &file, why, whylen);
                else if (r < 0)
                        snprintf(why, whylen, "%s", dkimsign_strerror(r));
                if (r < 0)
                        rep->file_result = DKIMSIGN_E_STATE;
        }
        if (fd >= 0)
                close(fd);
        keystate_clear(&file);
}

int keycheck_run(struct keyreg_entry **keys, size_t n, struct dns_resolver *res, const char *state_dir,
                 const atomic_bool *stop, struct keycheck_report *ret)
{
        struct keycheck_report rep = { .keys = keys };
        enum key_dns *obs, *before;
        struct key_view *views;
        int r = DKIMSIGN_E_NOMEM;

        qsort(keys, n, sizeof(*keys), by_domain);
        obs = calloc(n ? n : 1, sizeof(*obs));
        before = calloc(n ? n : 1, sizeof(*before));
        views = calloc(n ? n : 1, sizeof(*views));
        rep.events = calloc(n ? LIFECYCLE_EVENTS_PER_CHECK * n : 1, sizeof(*rep.events));
        if (obs && before && views && rep.events) {
                for (size_t i = 0; i < n; i++)
                        before[i] = (enum key_dns) atomic_load(&keys[i]->live.dns);
                if (res)
                        observe(keys, n, res, stop, obs, &rep);
                update(keys, n, state_dir, !res, views, before, obs, &rep);
                *ret = rep;
                rep.events = NULL;
                r = 0;
        }
        free(rep.events);
        free(views);
        free(before);
        free(obs);
        return r;
}

void keycheck_report_clear(struct keycheck_report *r)
{
        free(r->events);
        *r = (struct keycheck_report) { 0 };
}

void keycheck_event_sentence(const struct keycheck_report *r, const struct lifecycle_event *ev, char *buf,
                             size_t size, bool *ret_warning)
{
        const char *label = r->keys[ev->key]->label;
        bool warning = false;
        char when[24];

        switch (ev->what) {
        case LC_PUBLISHED:
                keystate_utc(ev->when, when);
                snprintf(buf, size, "key %s: published: DNS shows its record; it signs from %s", label, when);
                break;
        case LC_BACK_TO_PENDING:
                snprintf(buf, size, "key %s: back to pending: DNS now shows %s; publish_wait starts again when "
                         "the record is back", label, key_dns_phrase(ev->dns));
                warning = true;
                break;
        case LC_ACTIVE_NOT_IN_DNS:
                snprintf(buf, size, "key %s is active but DNS shows %s: verifiers fail its signatures; it keeps "
                         "signing (a DNS outage must not stop mail): publish the record again, or retire the key",
                         label, key_dns_phrase(ev->dns));
                warning = true;
                break;
        case LC_RECORD_BACK:
                snprintf(buf, size, "key %s: its DNS record is back", label);
                break;
        case LC_PENDING_SEES:
                snprintf(buf, size, "key %s is pending: DNS shows %s", label, key_dns_phrase(ev->dns));
                warning = ev->dns == KEY_DNS_BOGUS;   /* forged, or a broken zone: someone must look */
                break;
        case LC_ACTIVE:
                snprintf(buf, size, "key %s is active: dkimsignd signs with it", label);
                break;
        case LC_RETIRED_SUCCEEDED:
                snprintf(buf, size, "key %s retired: %s has been active for retire_grace; its record may stay "
                         "published", label, r->keys[ev->successor]->label);
                break;
        case LC_RETIRED_ON_TOKEN:
                snprintf(buf, size, "key %s retired (on the token)", label);
                break;
        case LC_FROM_FILE:
                snprintf(buf, size, "key %s: %s, as the state file says (dkimsignctl)", label,
                         key_state_name(ev->state));
                break;
        }
        if (ret_warning)
                *ret_warning = warning;
}
