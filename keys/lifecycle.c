/* SPDX-License-Identifier: MIT */
/*
 * The key lifecycle's transitions.  See lifecycle.h.  Pure: it reads only
 * its arguments and never logs.
 */
#include <string.h>

#include "keys/lifecycle.h"

const char *key_dns_phrase(enum key_dns d)
{
        switch (d) {
        case KEY_DNS_MATCH: return "a matching record";
        case KEY_DNS_MISSING: return "no TXT record";
        case KEY_DNS_MISMATCH: return "a record with another public key";
        case KEY_DNS_REVOKED: return "a revoked record (empty p=)";
        case KEY_DNS_BROKEN: return "a record that is not a valid DKIM key record";
        case KEY_DNS_FAILED: return "no answer (timeout or server failure)";
        case KEY_DNS_BOGUS: return "an answer that failed DNSSEC validation (bogus)";
        default: return "nothing yet: not checked";
        }
}

struct events {
        struct lifecycle_event *e;
        size_t n;
};

static void emit(struct events *ev, struct lifecycle_event e)
{
        ev->e[ev->n++] = e;
}

/* What DNS showed changes a pending or published key; returns true on a change. */
static bool apply_dns(struct key_view *k, size_t i, enum key_dns seen_now, enum key_dns before, int64_t now,
                      struct events *ev)
{
        struct key_times *t = &k->t;

        if (seen_now == KEY_DNS_UNCHECKED || seen_now == KEY_DNS_FAILED)
                return false;
        if (t->state == KEY_PENDING && seen_now == KEY_DNS_MATCH) {
                /* Times are whole seconds and the record was seen somewhere
                 * inside second now: counting a wait from the next one means
                 * a key never signs before publish_wait has passed (at most
                 * 1 s late instead of up to 1 s early). */
                int64_t seen = k->wait ? now + 1 : now;

                *t = (struct key_times) { .state = KEY_PUBLISHED, .seen = seen };
                emit(ev, (struct lifecycle_event) { .key = i, .what = LC_PUBLISHED,
                                                    .when = seen + (int64_t) k->wait });
                return true;
        }
        if (t->state == KEY_PUBLISHED && seen_now != KEY_DNS_MATCH) {
                /* The wait promises the record was visible all along: it
                 * starts again when the record is back. */
                *t = (struct key_times) { .state = KEY_PENDING };
                emit(ev, (struct lifecycle_event) { .key = i, .what = LC_BACK_TO_PENDING, .dns = seen_now });
                return true;
        }
        if (t->state == KEY_ACTIVE && seen_now != KEY_DNS_MATCH)
                emit(ev, (struct lifecycle_event) { .key = i, .what = LC_ACTIVE_NOT_IN_DNS, .dns = seen_now });
        else if (t->state == KEY_ACTIVE && before != KEY_DNS_MATCH && before != KEY_DNS_UNCHECKED)
                emit(ev, (struct lifecycle_event) { .key = i, .what = LC_RECORD_BACK });
        else if (t->state == KEY_PENDING && seen_now != before)
                emit(ev, (struct lifecycle_event) { .key = i, .what = LC_PENDING_SEES, .dns = seen_now });
        return false;
}

/* Where the domain of keys[first] ends (keys sorted by domain). */
static size_t domain_end(const struct key_view *keys, size_t n, size_t first)
{
        size_t end = first + 1;

        while (end < n && strcmp(keys[end].domain, keys[first].domain) == 0)
                end++;
        return end;
}

/* What the clock did: activation after publish_wait, retirement after a
 * successor's retire_grace or on the token.  Each key is weighed against
 * its own domain's only, so a token of many domains costs linear time.
 * A domain's keys are all weighed on the times as they stood before the
 * pass (its events are emitted first), then the events are applied.
 * Returns true on a change. */
static bool apply_clock(struct key_view *keys, size_t n, int64_t now, struct events *ev)
{
        size_t from = ev->n;

        for (size_t first = 0, end; first < n; first = end) {
                size_t domain_from = ev->n;

                end = domain_end(keys, n, first);
                for (size_t i = first; i < end; i++) {
                        size_t next;
                        int64_t since;
                        enum key_state st = keystate_effective(keys + first, end - first, i - first, now, &since,
                                                               &next);

                        if (st == keys[i].t.state || (st != KEY_ACTIVE && st != KEY_RETIRED))
                                continue;
                        if (st == KEY_ACTIVE)
                                emit(ev, (struct lifecycle_event) { .key = i, .what = LC_ACTIVE, .when = since });
                        else if (next != (size_t) -1)
                                emit(ev, (struct lifecycle_event) { .key = i, .what = LC_RETIRED_SUCCEEDED,
                                                                    .when = since ? since : now,
                                                                    .successor = first + next });
                        else
                                emit(ev, (struct lifecycle_event) { .key = i, .what = LC_RETIRED_ON_TOKEN,
                                                                    .when = since ? since : now });
                }
                for (size_t e = domain_from; e < ev->n; e++) {
                        struct key_times *t = &keys[ev->e[e].key].t;

                        if (ev->e[e].what == LC_ACTIVE)
                                *t = (struct key_times) { .state = KEY_ACTIVE, .seen = t->seen,
                                                          .active = ev->e[e].when };
                        else
                                *t = (struct key_times) { .state = KEY_RETIRED, .seen = t->seen,
                                                          .active = t->active, .retired = ev->e[e].when };
                }
        }
        return ev->n > from;
}

bool lifecycle_step(struct key_view *keys, size_t n, const enum key_dns *before, const enum key_dns *seen,
                    int64_t now, struct lifecycle_event *events, size_t *ret_nevents)
{
        struct events ev = { .e = events };
        bool changed, moved = false;

        /* The clock first: a key whose wait is over is active, and a record
         * going away then only warns. */
        changed = apply_clock(keys, n, now, &ev);
        for (size_t i = 0; i < n; i++)
                moved |= apply_dns(&keys[i], i, seen[i], before[i], now, &ev);
        /* Once more only after a DNS move (a wait of 0 is over at once):
         * otherwise the clock has nothing new to say. */
        if (moved)
                changed |= apply_clock(keys, n, now, &ev);
        *ret_nevents = ev.n;
        return changed || moved;
}
