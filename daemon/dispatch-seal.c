/* SPDX-License-Identifier: MIT */
/*
 * SEAL request handling (RFC 8617): one ARC set for the instance the
 * client asks, with the cv= it decided, over the header block (which holds
 * the sets before it) and the relaxed body hash.  The client checked the
 * chain's signatures (the daemon keeps no network); the daemon checks its
 * structure again, since the ARC-Seal it signs covers those sets.
 *
 * A chain too broken to parse can only be sealed cv=fail (5.1.2).
 *
 * One set per instance (RFC 8617 4.2.1 allows no second): when the domain
 * has an RSA and an Ed25519 key, the RSA key seals, since few verifiers
 * check Ed25519 ARC yet.  Both signatures are checked against the public
 * key before they leave, as for SIGN.  Authorization is SIGN's for the
 * sealing domain; the From domain plays no part (a seal is no DMARC
 * alignment).
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "daemon/dispatch.h"
#include "daemon/dispatch-private.h"
#include "protocol/dkimsign-errors.h"
#include "protocol/msg.h"
#include "daemon/audit.h"
#include "daemon/policy.h"
#include "dkim/arc.h"
#include "dkim/header.h"
#include "dkim/idn.h"
#include "dkim/sign.h"

#define MSGID_LOG_MAX 128
#define AAR_MAX (MSG_RESULTS_MAX + MSG_AUTHSERV_MAX + 1024)

struct seal_request {
        struct msg_seal m;
        struct dkim_headers headers;
        struct arc_chain chain;
        char domain[DKIM_DOMAIN_SIZE];
        char msgid[MSGID_LOG_MAX + 1];
        const struct signer_key *key;
        const char *d;
        char why[320];
};

/* An authserv-id is one token here (RFC 8601 2.2's value, as hosts name
 * themselves); results are one line of text: no control octets, so no
 * field or line can end inside them. */
static bool text_ok(const char *s, size_t len, bool spaces)
{
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char) s[i];

                if (c < 0x20 || c == 0x7f || (!spaces && (c == ' ' || c == ';')))
                        return false;
        }
        return true;
}

static int parse_seal(const struct sign_ctx *ctx, struct seal_request *rq, const uint8_t *payload, size_t len)
{
        const struct config_limits *lim = &ctx->config->limits;
        const char *idn_why = NULL;
        struct buf p;
        int r;

        buf_view(&p, payload, len);
        r = msg_seal_decode(&p, lim->max_header_block, &rq->m);
        if (r < 0) {
                snprintf(rq->why, sizeof(rq->why), "malformed SEAL request: %s", dkimsign_strerror(r));
                return r;
        }
        if (!text_ok(rq->m.authserv_id, rq->m.authserv_id_len, false) ||
            !text_ok(rq->m.results, rq->m.results_len, true)) {
                snprintf(rq->why, sizeof(rq->why), "malformed SEAL request: a bad authserv-id or results text");
                return DKIMSIGN_E_FORMAT;
        }
        /* In lowercase A-label form, as SIGN's domain and the key table's
         * and the configuration's are (dkim/idn.h). */
        r = dkim_domain_to_ascii(rq->m.domain, rq->m.domain_len, rq->domain, &idn_why);
        if (r < 0) {
                snprintf(rq->why, sizeof(rq->why), "malformed SEAL request: the sealing domain is not a valid "
                         "domain name: %s", idn_why);
                return r == DKIMSIGN_E_NOMEM ? r : DKIMSIGN_E_FORMAT;
        }
        r = dispatch_parse_headers(ctx, rq->m.headers, rq->m.headers_len, &rq->headers, rq->why, sizeof(rq->why));
        if (r < 0)
                return r;
        dispatch_find_msgid(&rq->headers, rq->msgid, sizeof(rq->msgid));
        if (rq->m.instance > ARC_INSTANCE_MAX) {
                snprintf(rq->why, sizeof(rq->why), "an ARC chain holds at most %d sets; not sealed", ARC_INSTANCE_MAX);
                return DKIMSIGN_E_HEADER;
        }
        r = arc_chain_parse(&rq->headers, &rq->chain, rq->why, sizeof(rq->why));
        if (r < 0 && rq->m.cv == MSG_ARC_CV_FAIL) {
                /* A chain too broken to parse is sealed cv=fail after its
                 * highest instance; that seal covers its own set alone. */
                size_t top = arc_highest_instance(&rq->headers);

                rq->chain = (struct arc_chain) { 0 };
                if (top + 1 == rq->m.instance)
                        return 0;
                snprintf(rq->why, sizeof(rq->why), "the highest ARC instance is %zu, so the next is i=%zu, not i=%u",
                         top, top + 1, rq->m.instance);
                return DKIMSIGN_E_HEADER;
        }
        if (r < 0)
                return DKIMSIGN_E_HEADER;
        if (rq->chain.count + 1 != rq->m.instance) {
                snprintf(rq->why, sizeof(rq->why), "the message holds %zu ARC sets, so the next is i=%zu, not i=%u",
                         rq->chain.count, rq->chain.count + 1, rq->m.instance);
                return DKIMSIGN_E_HEADER;
        }
        /* RFC 8617 5.1: a chain that failed upstream gets no further set. */
        if (rq->chain.count && rq->chain.cv[rq->chain.count - 1] == ARC_CV_FAIL) {
                snprintf(rq->why, sizeof(rq->why), "the ARC chain ended with cv=fail upstream; no set is added");
                return DKIMSIGN_E_HEADER;
        }
        return 0;
}

/* Sign digest with the key and check the signature before it is used. */
static int token_sign(struct hsm_session *session, struct seal_request *rq, const uint8_t digest[DKIM_SHA256_LEN],
                      uint8_t sig[HSM_SIG_MAX], size_t *ret_len)
{
        int r = hsm_sign(session, rq->key->key, digest, sig, ret_len);

        if (r == DKIMSIGN_E_NO_KEY)
                r = DKIMSIGN_E_HSM;  /* chosen a moment ago: gone is temporary */
        if (r < 0) {
                snprintf(rq->why, sizeof(rq->why), "the token failed to sign (%s); try again later",
                         hsm_ckr_name(hsm_last_ckr()));
                return r;
        }
        r = dispatch_verify_signature(rq->key->key, digest, sig, *ret_len);
        if (r < 0)
                snprintf(rq->why, sizeof(rq->why), "the token returned a signature that does not verify; not released");
        return r;
}

static const char *alg_tag(const struct signer_key *k)
{
        return k->key->alg == HSM_ALG_RSA ? "rsa-sha256" : "ed25519-sha256";
}

/* The ARC-Message-Signature: a DKIM-Signature with "i=N" for "v=1",
 * relaxed/relaxed, over the domain's header policy (never ARC-Seal,
 * RFC 8617 4.1.2). */
static int build_ams(const struct sign_ctx *ctx, struct hsm_session *session, struct seal_request *rq,
                     uint64_t now, struct buf *ams)
{
        const char *hnames[DKIM_HNAMES_MAX];
        size_t hcount = 0, plen, kept = 0;
        const struct dkim_hpolicy *pol = dispatch_policy_for(ctx->config, config_domain_for(ctx->config, rq->domain),
                                                             &plen);
        char head[48];
        uint8_t digest[DKIM_SHA256_LEN], sig[HSM_SIG_MAX];
        size_t sig_len = 0;
        int r;

        r = dkim_select_headers(&rq->headers, pol, plen, hnames, DKIM_HNAMES_MAX, &hcount);
        if (r < 0) {
                snprintf(rq->why, sizeof(rq->why), "too many header fields to sign under the policy");
                return r;
        }
        for (size_t i = 0; i < hcount; i++)
                if (strcasecmp(hnames[i], "arc-seal") != 0)
                        hnames[kept++] = hnames[i];
        snprintf(head, sizeof(head), "ARC-Message-Signature: i=%u", rq->m.instance);
        {
                struct dkim_sig_spec spec = {
                        .head = head,
                        .alg = alg_tag(rq->key),
                        .header_canon = DKIM_CANON_RELAXED,
                        .body_canon = DKIM_CANON_RELAXED,
                        .domain = rq->d,
                        .selector = rq->key->selector,
                        .timestamp = now,
                        .body_hash = rq->m.body_hash,
                        .hnames = hnames,
                        .hcount = kept,
                };

                r = dkim_sig_field_begin(&spec, ams);
                if (r == 0)
                        r = dkim_sig_digest(&rq->headers, &spec, ams->data, ams->len, digest);
        }
        if (r == 0)
                r = token_sign(session, rq, digest, sig, &sig_len);
        if (r == 0)
                r = dkim_sig_field_finish(ams, sig, sig_len);
        return r;
}

static int build_seal(struct hsm_session *session, struct seal_request *rq, uint64_t now, const struct buf *aar,
                      const struct buf *ams, struct buf *as)
{
        struct arc_seal_spec spec = {
                .alg = alg_tag(rq->key),
                .instance = rq->m.instance,
                .cv = (enum arc_cv) rq->m.cv,
                .domain = rq->d,
                .selector = rq->key->selector,
                .timestamp = now,
        };
        uint8_t digest[DKIM_SHA256_LEN], sig[HSM_SIG_MAX];
        size_t sig_len = 0;
        /* RFC 8617 5.1.2: a cv=fail seal covers its own set alone. */
        size_t before = spec.cv == ARC_CV_FAIL ? 0 : rq->chain.count;
        int r;

        r = arc_seal_begin(&spec, as);
        if (r == 0)
                r = arc_seal_digest(&rq->headers, &rq->chain, before, aar->data, aar->len, ams->data, ams->len,
                                    as->data, as->len, digest);
        if (r == 0)
                r = token_sign(session, rq, digest, sig, &sig_len);
        if (r == 0)
                r = dkim_sig_field_finish(as, sig, sig_len);
        return r;
}

/* Authorization and the key: SIGN's rules for the sealing domain. */
static int choose_key(const struct sign_ctx *ctx, const struct peer *peer, struct seal_request *rq, uint64_t now)
{
        const struct signer_key *keys[KEYS_PER_DOMAIN_MAX];
        size_t nkeys = 0;
        int r;

        if (!pol_allowed(ctx->config, rq->domain, peer)) {
                snprintf(rq->why, sizeof(rq->why), "uid %u is not authorized to seal for domain %s",
                         (unsigned) peer->uid, rq->domain);
                return DKIMSIGN_E_DENIED;
        }
        r = keytab_select(ctx->keys, ctx->config, rq->domain, config_domain_for(ctx->config, rq->domain),
                          (int64_t) now, keys, &nkeys, &rq->d, rq->why, sizeof(rq->why));
        if (r < 0)
                return r;
        if (!pol_may_sign(ctx->config, rq->domain, rq->d, rq->d, peer, rq->why, sizeof(rq->why)))
                return DKIMSIGN_E_DENIED;
        rq->key = keys[0];
        for (size_t i = 0; i < nkeys; i++)
                if (keys[i]->key->alg == HSM_ALG_RSA) {
                        rq->key = keys[i];
                        break;
                }
        return 0;
}

int dispatch_seal(const struct sign_ctx *ctx, struct hsm_session *session, const struct peer *peer,
                  uint32_t id, const uint8_t *payload, size_t len, struct buf *out)
{
        struct seal_request rq = { 0 };
        struct buf aar, ams, as;
        struct msg_signed reply = { .count = 3 };
        uint64_t now = (uint64_t) time(NULL);
        struct quota_pair *quota_taken = NULL;
        int r;

        buf_init(&aar, MSG_FIELD_MAX);
        buf_init(&ams, MSG_FIELD_MAX);
        buf_init(&as, MSG_FIELD_MAX);
        snprintf(rq.msgid, sizeof(rq.msgid), "-");

        r = parse_seal(ctx, &rq, payload, len);
        if (r == 0)
                r = choose_key(ctx, peer, &rq, now);
        if (r == 0)
                r = dispatch_quota_check(ctx, peer, rq.d, rq.why, sizeof(rq.why), (int64_t) now, &quota_taken);
        if (r == 0) {
                r = arc_aar_build(rq.m.instance, rq.m.authserv_id, rq.m.authserv_id_len, rq.m.results,
                                  rq.m.results_len, &aar);
                if (r < 0)
                        snprintf(rq.why, sizeof(rq.why), "the authentication results are too long for one field");
        }
        if (r == 0)
                r = build_ams(ctx, session, &rq, now, &ams);
        if (r == 0)
                r = build_seal(session, &rq, now, &aar, &ams, &as);

        if (r < 0 && quota_taken)
                quota_give_back(ctx->quota, (int64_t) now, peer->uid, &quota_taken->uid, rq.d, &quota_taken->domain);
        if (r == 0) {
                /* Prepended in this order, the newest ARC-Seal on top. */
                reply.fields[0] = as.data;
                reply.field_lens[0] = as.len;
                reply.fields[1] = ams.data;
                reply.field_lens[1] = ams.len;
                reply.fields[2] = aar.data;
                reply.field_lens[2] = aar.len;
                log_audit(&(struct audit) { .outcome = "sealed", .uid = (unsigned) peer->uid, .pid = (int) peer->pid,
                                            .domain = rq.d, .selector = rq.key->selector,
                                            .algorithm = hsm_alg_name(rq.key->key->alg), .message_id = rq.msgid });
                r = msg_signed_encode(out, id, &reply);
        } else {
                log_audit(&(struct audit) { .outcome = "refused", .uid = (unsigned) peer->uid,
                                            .pid = (int) peer->pid, .domain = rq.domain[0] ? rq.domain : NULL,
                                            .message_id = rq.msgid,
                                            .error = rq.why[0] ? rq.why : dkimsign_strerror(r) });
                if (msg_error_encode_code(out, id, r, rq.why[0] ? rq.why : NULL) < 0)
                        r = DKIMSIGN_E_NOMEM;
        }
        buf_deinit(&aar);
        buf_deinit(&ams);
        buf_deinit(&as);
        dkim_headers_deinit(&rq.headers);
        return r;
}
