/* SPDX-License-Identifier: MIT */
/*
 * SIGN request handling: request, then policy, then signature, then reply.
 * A signature is verified against the key's public half before it leaves,
 * so a faulty token can never release a wrong one.
 */
#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <sodium.h>

#include "daemon/dispatch.h"
#include "protocol/dkimsign-errors.h"
#include "dkim/header.h"
#include "dkim/idn.h"
#include "daemon/audit.h"
#include "util/log.h"
#include "protocol/msg.h"
#include "daemon/policy.h"
#include "dkim/identity.h"
#include "dkim/sign.h"
#include "util/clock.h"
#include "util/ratelimit.h"
#include "daemon/dispatch-private.h"

#define MSGID_LOG_MAX 128

/* The signatures of one d= domain, and what they are made with. */
struct sigset {
        const char *d;                     /* d= */
        const struct config_domain *section;  /* whose options (config_identity, ...); NULL: [signing]'s */
        const struct signer_key *keys[KEYS_PER_DOMAIN_MAX];
        size_t nkeys;
        const char *hnames[DKIM_HNAMES_MAX];  /* h= */
        size_t hcount;
        char identity[DKIM_IDENTITY_SIZE]; /* i=; empty: none */
        uint64_t expire;                   /* x=; 0: none */
};

/* The domain asked for, and the also_sign domain of its section. */
enum { SET_MAIN, SET_ALSO, SETS_MAX };

struct request {
        struct msg_sign m;
        struct dkim_headers headers;
        char from_domain[DKIM_DOMAIN_SIZE];
        char domain[DKIM_DOMAIN_SIZE];     /* the domain asked for */
        const struct config_domain *section;  /* domain's section, resolved once; NULL: none */
        char msgid[MSGID_LOG_MAX + 1];     /* for the audit line only */
        struct sigset set[SETS_MAX];
        size_t nsets;
        const char *d;                     /* the main d=: set[SET_MAIN].d */
        char why[256];                     /* the sentence of a refusal */
};

static_assert(SETS_MAX * KEYS_PER_DOMAIN_MAX <= MSG_SIGNATURES_MAX, "every signature fits in one reply");

int sign_ctx_new(struct config *config, struct keytab *keys, struct sign_ctx **ret)
{
        struct sign_ctx *ctx = calloc(1, sizeof(*ctx));

        if (!ctx) {
                config_free(config);
                keytab_free(keys);
                return DKIMSIGN_E_NOMEM;
        }
        *ctx = (struct sign_ctx) { .config = config, .keys = keys, .refs = 1 };
        *ret = ctx;
        return 0;
}

struct sign_ctx *sign_ctx_ref(struct sign_ctx *ctx)
{
        ctx->refs++;
        return ctx;
}

struct sign_ctx *sign_ctx_unref(struct sign_ctx *ctx)
{
        if (ctx && --ctx->refs == 0) {
                config_free(ctx->config);
                keytab_free(ctx->keys);
                free(ctx);
        }
        return NULL;
}

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_state = -1;

static void sodium_start(void)
{
        sodium_state = sodium_init();
}

/* RFC 8463: PureEdDSA over the SHA-256 digest.  libsodium's check takes
 * about half the CPU of OpenSSL 3.0's (60 against 110 microseconds here),
 * and it is on every Ed25519 signature's path; it is also strict (it
 * refuses non-canonical encodings), which a token's own signature never
 * needs.  OpenSSL's when libsodium could not start. */
static bool ed25519_verify(const struct hsm_key *key, const uint8_t digest[DKIM_SHA256_LEN], const uint8_t *sig,
                           size_t sig_len)
{
        EVP_MD_CTX *mctx;
        bool ok;

        static_assert(HSM_ED25519_PUB_LEN == crypto_sign_PUBLICKEYBYTES, "an Ed25519 public key is 32 octets");
        pthread_once(&sodium_once, sodium_start);
        if (sodium_state >= 0)
                return sig_len == crypto_sign_BYTES &&
                       crypto_sign_verify_detached(sig, digest, DKIM_SHA256_LEN, key->ed25519_pub) == 0;
        mctx = EVP_MD_CTX_new();
        ok = mctx && EVP_DigestVerifyInit(mctx, NULL, NULL, NULL, key->pubkey) > 0 &&
             EVP_DigestVerify(mctx, sig, sig_len, digest, DKIM_SHA256_LEN) == 1;
        EVP_MD_CTX_free(mctx);
        return ok;
}

int dispatch_verify_signature(const struct hsm_key *key, const uint8_t digest[DKIM_SHA256_LEN],
                              const uint8_t *sig, size_t sig_len)
{
        EVP_PKEY_CTX *pctx = NULL;
        bool ok;

        if (key->alg == HSM_ALG_RSA) {
                pctx = EVP_PKEY_CTX_new(key->pubkey, NULL);
                ok = pctx && EVP_PKEY_verify_init(pctx) > 0 &&
                     EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) > 0 &&
                     EVP_PKEY_CTX_set_signature_md(pctx, EVP_sha256()) > 0 &&
                     EVP_PKEY_verify(pctx, sig, sig_len, digest, DKIM_SHA256_LEN) == 1;
        } else {
                ok = ed25519_verify(key, digest, sig, sig_len);
        }
        EVP_PKEY_CTX_free(pctx);
        return ok ? 0 : DKIMSIGN_E_VERIFY;
}

/* The Message-ID's value, trimmed and cut short, for the audit line. */
void dispatch_find_msgid(const struct dkim_headers *h, char *ret, size_t size)
{
        snprintf(ret, size, "-");
        for (size_t i = 0; i < h->count; i++) {
                const struct dkim_field *f = &h->fields[i];
                const uint8_t *v, *end = h->block + f->off + f->len;
                size_t n = 0;

                if (!dkim_field_name_is(h, i, "message-id"))
                        continue;
                v = memchr(h->block + f->off, ':', f->len);
                for (v = v ? v + 1 : end; v < end && n + 1 < size; v++)
                        if (*v > ' ' && *v < 0x7f)
                                ret[n++] = (char) *v;
                ret[n ? n : 1] = 0;
                return;
        }
}

int dispatch_parse_headers(const struct sign_ctx *ctx, const uint8_t *block, size_t len, struct dkim_headers *ret,
                           char *why, size_t whylen)
{
        const struct config_limits *lim = &ctx->config->limits;
        struct dkim_header_limits hl = { .max_fields = lim->max_headers, .max_line = lim->max_line };
        int r = dkim_headers_parse(block, len, &hl, ret);

        if (r == DKIMSIGN_E_TOO_LARGE) {
                snprintf(why, whylen, "the header block is over a configured limit (%zu fields, %zu octets a line)",
                         lim->max_headers, lim->max_line);
                return r;
        }
        if (r < 0) {
                snprintf(why, whylen, "the header block is malformed (a line that is not a "
                         "header field, a bare CR or LF, or a NUL octet)");
                return DKIMSIGN_E_HEADER;
        }
        return 0;
}

static int parse_request(const struct sign_ctx *ctx, struct request *rq, const uint8_t *payload, size_t len)
{
        const struct config_limits *lim = &ctx->config->limits;
        const char *idn_why = NULL;
        struct buf p;
        int r;

        buf_view(&p, payload, len);
        r = msg_sign_decode(&p, lim->max_header_block, &rq->m);
        if (r < 0) {
                snprintf(rq->why, sizeof(rq->why), "malformed SIGN request: %s", dkimsign_strerror(r));
                return r;
        }
        r = dispatch_parse_headers(ctx, rq->m.headers, rq->m.headers_len, &rq->headers, rq->why, sizeof(rq->why));
        if (r < 0)
                return r;
        dispatch_find_msgid(&rq->headers, rq->msgid, sizeof(rq->msgid));
        /* Both domains in lowercase A-label form, as the key table's and
         * the configuration's are: an EAI (RFC 6532) message's U-label
         * From domain is signed for as its A-labels (RFC 8616). */
        r = dkim_headers_from_domain(&rq->headers, rq->from_domain, &idn_why);
        if (r == DKIMSIGN_E_IDN) {
                snprintf(rq->why, sizeof(rq->why), "the From domain is not a valid internationalized domain "
                         "name (IDNA2008): %s", idn_why);
                return r;
        }
        if (r < 0) {
                snprintf(rq->why, sizeof(rq->why), "%s", r == DKIMSIGN_E_FORMAT
                         ? "the From header field has no valid address" : dkimsign_strerror(r));
                return r == DKIMSIGN_E_FORMAT ? DKIMSIGN_E_HEADER : r;
        }
        if (rq->m.domain_len == 0) {
                memcpy(rq->domain, rq->from_domain, sizeof(rq->domain));
        } else {
                r = dkim_domain_to_ascii(rq->m.domain, rq->m.domain_len, rq->domain, &idn_why);
                if (r < 0) {
                        snprintf(rq->why, sizeof(rq->why), "the requested signing domain is not a valid domain "
                                 "name: %s", idn_why);
                        return r == DKIMSIGN_E_NOMEM ? r : DKIMSIGN_E_FORMAT;
                }
        }
        return 0;
}

const struct dkim_hpolicy *dispatch_policy_for(const struct config *c, const struct config_domain *d,
                                               size_t *ret_len)
{
        if (d && d->hpolicy_len) {
                *ret_len = d->hpolicy_len;
                return d->hpolicy;
        }
        *ret_len = c->hpolicy_len;
        return c->hpolicy;
}

/* The h=, i= and x= of a set's signatures: its section's, else [signing]'s. */
static int sigset_prepare(const struct sign_ctx *ctx, struct request *rq, struct sigset *set, uint64_t now)
{
        const struct config *c = ctx->config;
        const char *identity = config_identity(c, set->section);
        uint64_t expire = config_expire(c, set->section);
        const struct dkim_hpolicy *pol;
        size_t plen;
        char why[200];
        int r;

        pol = dispatch_policy_for(c, set->section, &plen);
        r = dkim_select_headers(&rq->headers, pol, plen, set->hnames, DKIM_HNAMES_MAX, &set->hcount);
        if (r < 0) {
                snprintf(rq->why, sizeof(rq->why), "too many header fields to sign under the policy (h= would "
                         "name more than %d or run over %d characters)", DKIM_HNAMES_MAX, DKIM_HLIST_MAX);
                return r;
        }
        set->identity[0] = 0;
        /* Checked at load, but for a [signing] template's length with this d=. */
        if (identity && dkim_identity_make(identity, set->d, set->identity, why, sizeof(why)) < 0) {
                snprintf(rq->why, sizeof(rq->why), "the configured %s", why);
                return DKIMSIGN_E_CONFIG;
        }
        set->expire = expire ? now + expire : 0;
        return 0;
}

/* The also_sign domain is left out (its signature missing, the main
 * domain's made): say so, a few times a minute per worker at most. */
static void log_also_skipped(const struct request *rq, const char *also, const char *why)
{
        static _Thread_local struct ratelimit rl = RATELIMIT_INIT(60000, 10);
        unsigned long dropped = 0;

        if (!ratelimit_allow(&rl, now_ms(), &dropped))
                return;
        log_warn("also_sign: %s: not signed with d=%s, only with d=%s (%s)%s", rq->msgid, also, rq->d, why,
                 dropped ? " (more left out before, not logged)" : "");
}

/*
 * The second signing domain of the main one's section (also_sign), if any:
 * set[SET_ALSO].  The peer must be allowed to sign for it as for the main
 * domain (pol_may_sign), or the whole request is refused: a configuration
 * that gives the peer one signature but not the other is an error to see,
 * not to paper over.  A domain without a key to sign with now (none,
 * retired, not yet published) leaves its signature out, logged: the
 * message still carries the main domain's.
 */
static int select_also(const struct sign_ctx *ctx, const struct peer *peer, struct request *rq, int64_t now)
{
        const struct config *c = ctx->config;
        const char *name = config_also_sign(c, rq->section);
        struct sigset *set = &rq->set[SET_ALSO];
        char why[200];
        int r;

        if (!name || strcmp(name, rq->domain) == 0 || strcmp(name, rq->d) == 0)
                return 0;
        /* Refused before a key is chosen, as the main domain is: a peer
         * that may not sign for it learns nothing of its keys. */
        if (!pol_allowed(c, name, peer)) {
                snprintf(why, sizeof(why), "uid %u is not authorized to sign for domain %s", (unsigned) peer->uid,
                         name);
                r = DKIMSIGN_E_DENIED;
                goto refused;
        }
        set->section = config_domain_for(c, name);
        r = keytab_select(ctx->keys, c, name, set->section, now, set->keys, &set->nkeys, &set->d, why, sizeof(why));
        if (r == DKIMSIGN_E_NO_KEY) {
                log_also_skipped(rq, name, why);
                return 0;
        }
        if (r == 0 && !pol_may_sign(c, name, set->d, rq->from_domain, peer, why, sizeof(why)))
                r = DKIMSIGN_E_DENIED;
        if (r < 0)
                goto refused;
        if (strcmp(set->d, rq->d) != 0)  /* a key_domain may make them one */
                rq->nsets = 2;
        return 0;
refused:
        snprintf(rq->why, sizeof(rq->why), "also_sign %s (for %s): %s", name, rq->domain, why);
        return r;
}

/* Build, sign and self-check one DKIM-Signature field into field. */
static int sign_one(const struct sign_ctx *ctx, struct hsm_session *session, struct request *rq, const struct sigset *set,
                    const struct signer_key *k, uint64_t now, struct buf *field)
{
        struct dkim_sig_spec spec = {
                .alg = k->key->alg == HSM_ALG_RSA ? "rsa-sha256" : "ed25519-sha256",
                .header_canon = rq->m.header_canon,
                .body_canon = rq->m.body_canon,
                .domain = set->d,
                .selector = k->selector,
                .identity = set->identity[0] ? set->identity : NULL,
                .timestamp = now,
                .expire = set->expire,
                .body_hash = rq->m.body_hash,
                .hnames = set->hnames,
                .hcount = set->hcount,
        };
        uint8_t digest[DKIM_SHA256_LEN], sig[HSM_SIG_MAX];
        size_t sig_len = 0;
        int r;

        r = dkim_sig_field_begin(&spec, field);
        if (r == 0)
                r = dkim_sig_digest(&rq->headers, &spec, field->data, field->len, digest);
        if (r == 0) {
                uint64_t t0 = now_us();

                r = hsm_sign(session, k->key, digest, sig, &sig_len);
                counters_token_sign(ctx->counters, k->key->alg == HSM_ALG_RSA ? METRICS_RSA : METRICS_ED25519,
                                    now_us() - t0);
                /* The key was chosen a moment ago: if the token now says
                 * it is gone (a reset, a destroy before the reload), the
                 * answer is temporary, never a refusal that bounces mail. */
                if (r == DKIMSIGN_E_NO_KEY)
                        r = DKIMSIGN_E_HSM;
                if (r < 0)
                        snprintf(rq->why, sizeof(rq->why), "the token failed to sign (%s); try again later",
                                 hsm_ckr_name(hsm_last_ckr()));
        }
        if (r == 0) {
                r = dispatch_verify_signature(k->key, digest, sig, sig_len);
                if (r < 0)
                        snprintf(rq->why, sizeof(rq->why),
                                 "the token returned a signature that does not verify; not released");
        }
        if (r == 0)
                r = dkim_sig_field_finish(field, sig, sig_len);
        return r;
}

static void quota_refused(char *why, size_t whylen, const struct peer *peer, const struct quota_refusal *over,
                          const char *d)
{
        if (strcmp(over->who, "uid") == 0)
                snprintf(why, whylen, "uid %u is over its signing quota of %llu messages a %s; "
                         "try again later", (unsigned) peer->uid, (unsigned long long) over->limit, over->window);
        else
                snprintf(why, whylen, "domain %s is over its signing quota of %llu messages a %s; "
                         "try again later", d, (unsigned long long) over->limit, over->window);
}

static void quota_warn_full(const struct peer *peer, const char *d, int64_t now)
{
        /* At most once a minute, from whichever worker sees it. */
        static int64_t warned;
        int64_t last = __atomic_load_n(&warned, __ATOMIC_RELAXED);

        if (now - last >= 60 && __atomic_compare_exchange_n(&warned, &last, now, false, __ATOMIC_RELAXED,
                                                            __ATOMIC_RELAXED))
                log_warn("quota: no free counter for uid %u or domain %s (%d counters in use): not counted",
                         (unsigned) peer->uid, d, QUOTA_SLOTS);
}

/* Count the message against the domain quota of also_sign's d= too: its
 * signatures are made with that domain's keys as much as its own mail's
 * are, and its quota bounds them all (else a peer allowed on the first
 * domain would get the second's signatures past the second's quota).  The
 * uid was counted with the first d=: once per message. */
static int quota_take_also(const struct sign_ctx *ctx, const struct peer *peer, struct request *rq, int64_t now,
                           struct quota_pair *taken)
{
        const char *d = rq->set[SET_ALSO].d;
        struct config_quota dq = config_domain_quota(ctx->config, d);
        struct quota_limits none = { 0 };
        struct quota_refusal over;
        int full = 0, r;

        taken->also = (struct quota_limits) { .per_minute = dq.per_minute, .per_day = dq.per_day };
        r = quota_take(ctx->quota, now, peer->uid, &none, d, &taken->also, &over, &full);
        if (full)
                quota_warn_full(peer, d, now);
        if (r == DKIMSIGN_E_QUOTA) {
                quota_refused(rq->why, sizeof(rq->why), peer, &over, d);
                return r;
        }
        taken->also_d = d;
        return r;
}

/* Count the message against its uid's and its d= domain's quotas
 * (quota.h); DKIMSIGN_E_QUOTA, with the sentence in why, when either
 * is spent, nothing counted then.  *ret_taken points at what was counted
 * (in static storage of this thread: one request at a time), or is NULL. */
int dispatch_quota_check(const struct sign_ctx *ctx, const struct peer *peer, const char *d, char *why,
                         size_t whylen, int64_t now, struct quota_pair **ret_taken)
{
        static _Thread_local struct quota_pair taken;
        const struct config *c = ctx->config;
        struct config_quota dq = config_domain_quota(c, d);
        struct quota_refusal over;
        int full = 0, r;

        taken = (struct quota_pair) {
                .uid = { .per_minute = c->limits.uid_quota.per_minute, .per_day = c->limits.uid_quota.per_day },
                .domain = { .per_minute = dq.per_minute, .per_day = dq.per_day },
        };
        r = quota_take(ctx->quota, now, peer->uid, &taken.uid, d, &taken.domain, &over, &full);
        if (full)
                quota_warn_full(peer, d, now);
        if (r == DKIMSIGN_E_QUOTA) {
                quota_refused(why, whylen, peer, &over, d);
                return r;
        }
        *ret_taken = &taken;
        return r;
}

/* dispatch_quota_check for the request's d=, and also_sign's d='s
 * (quota_take_also); all or nothing. */
static int quota_check(const struct sign_ctx *ctx, const struct peer *peer, struct request *rq, int64_t now,
                       struct quota_pair **ret_taken)
{
        int r = dispatch_quota_check(ctx, peer, rq->d, rq->why, sizeof(rq->why), now, ret_taken);

        if (r == 0 && *ret_taken && rq->nsets > 1) {
                struct quota_pair *taken = *ret_taken;

                r = quota_take_also(ctx, peer, rq, now, taken);
                if (r < 0) {
                        quota_give_back(ctx->quota, now, peer->uid, &taken->uid, rq->d, &taken->domain);
                        *ret_taken = NULL;
                }
        }
        return r;
}

static void quota_give_back_all(const struct sign_ctx *ctx, const struct peer *peer, const struct request *rq,
                                int64_t now, const struct quota_pair *taken)
{
        quota_give_back(ctx->quota, now, peer->uid, &taken->uid, rq->d, &taken->domain);
        if (taken->also_d)
                quota_give_back(ctx->quota, now, peer->uid, &(struct quota_limits) { 0 }, taken->also_d,
                                &taken->also);
}

int dispatch_sign(const struct sign_ctx *ctx, struct hsm_session *session, const struct peer *peer,
                  uint32_t id, const uint8_t *payload, size_t len, struct buf *out)
{
        struct request rq = { .nsets = 1 };
        struct sigset *main_set = &rq.set[SET_MAIN];
        struct buf fields[MSG_SIGNATURES_MAX];
        struct msg_signed reply = { 0 };
        uint64_t now = (uint64_t) time(NULL);
        struct quota_pair *quota_taken = NULL;
        int r;

        for (size_t i = 0; i < MSG_SIGNATURES_MAX; i++)
                buf_init(&fields[i], MSG_FIELD_MAX);
        snprintf(rq.msgid, sizeof(rq.msgid), "-");

        r = parse_request(ctx, &rq, payload, len);
        if (r == 0)
                rq.section = config_domain_for(ctx->config, rq.domain);
        /* Refused early, before a key is chosen; the d= chosen and the
         * From domain are checked once it is (policy.h). */
        if (r == 0 && !pol_allowed(ctx->config, rq.domain, peer)) {
                snprintf(rq.why, sizeof(rq.why), "uid %u is not authorized to sign for domain %s",
                         (unsigned) peer->uid, rq.domain);
                r = DKIMSIGN_E_DENIED;
        }
        main_set->section = rq.section;
        if (r == 0)
                r = keytab_select(ctx->keys, ctx->config, rq.domain, rq.section, (int64_t) now, main_set->keys,
                                  &main_set->nkeys, &main_set->d, rq.why, sizeof(rq.why));
        rq.d = main_set->d;
        if (r == 0 && !pol_may_sign(ctx->config, rq.domain, rq.d, rq.from_domain, peer, rq.why, sizeof(rq.why)))
                r = DKIMSIGN_E_DENIED;
        if (r == 0)
                r = select_also(ctx, peer, &rq, (int64_t) now);
        if (r == 0)
                r = quota_check(ctx, peer, &rq, (int64_t) now, &quota_taken);
        for (size_t s = 0; r == 0 && s < rq.nsets; s++)
                r = sigset_prepare(ctx, &rq, &rq.set[s], now);
        for (size_t s = 0; r == 0 && s < rq.nsets; s++)
                for (size_t i = 0; r == 0 && i < rq.set[s].nkeys; i++) {
                        struct buf *field = &fields[reply.count];

                        r = sign_one(ctx, session, &rq, &rq.set[s], rq.set[s].keys[i], now, field);
                        reply.fields[reply.count] = field->data;
                        reply.field_lens[reply.count++] = field->len;
                }

        if (r < 0 && quota_taken)
                quota_give_back_all(ctx, peer, &rq, (int64_t) now, quota_taken);
        if (r == 0) {
                for (size_t s = 0; s < rq.nsets; s++) {
                        enum metrics_alg algs[KEYS_PER_DOMAIN_MAX];

                        for (size_t i = 0; i < rq.set[s].nkeys; i++)
                                algs[i] = rq.set[s].keys[i]->key->alg == HSM_ALG_RSA ? METRICS_RSA : METRICS_ED25519;
                        counters_signed(ctx->counters, rq.set[s].d, algs, rq.set[s].nkeys);
                        for (size_t i = 0; i < rq.set[s].nkeys; i++)
                                log_audit(&(struct audit) { .outcome = "signed", .uid = (unsigned) peer->uid,
                                                            .pid = (int) peer->pid, .domain = rq.set[s].d,
                                                            .selector = rq.set[s].keys[i]->selector,
                                                            .algorithm = hsm_alg_name(rq.set[s].keys[i]->key->alg),
                                                            .message_id = rq.msgid });
                }
                r = msg_signed_encode(out, id, &reply);
        } else {
                log_audit(&(struct audit) { .outcome = "refused", .uid = (unsigned) peer->uid,
                                            .pid = (int) peer->pid, .domain = rq.domain[0] ? rq.domain : NULL,
                                            .message_id = rq.msgid,
                                            .error = rq.why[0] ? rq.why : dkimsign_strerror(r) });
                if (msg_error_encode_code(out, id, r, rq.why[0] ? rq.why : NULL) < 0)
                        r = DKIMSIGN_E_NOMEM;
        }
        for (size_t i = 0; i < MSG_SIGNATURES_MAX; i++)
                buf_deinit(&fields[i]);
        dkim_headers_deinit(&rq.headers);
        return r;
}
