/* SPDX-License-Identifier: MIT */
/*
 * ARC sealing from the MTA's side (dkimsign.h): finish the message, check
 * its chain (arc-verify.c), take the results of the configured
 * authserv-id (arc-results.c), and ask dkimsignd for the set (SEAL,
 * protocol version 2).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/arc-private.h"
#include "client/client-private.h"
#include "dkim/header.h"
#include "protocol/frame.h"
#include "protocol/msg.h"

#define PUBLIC __attribute__((visibility("default")))

PUBLIC int dkimsign_message_set_arc(dkimsign_message *m)
{
        if (client_message_started(m))
                return DKIMSIGN_E_INTERNAL;
        m->arc = true;
        m->hcanon = DKIMSIGN_CANON_RELAXED;
        m->bcanon = DKIMSIGN_CANON_RELAXED;
        return 0;
}

/* The finished message's header block, parsed as the daemon will. */
static int finish_and_parse(dkimsign_client *c, dkimsign_message *m, struct dkim_headers *ret)
{
        const struct dkim_header_limits limits = { .max_fields = 1000000, .max_line = 1024 * 1024 };
        int r;

        if (!m->arc || m->bcanon != DKIMSIGN_CANON_RELAXED)
                return client_set_error(c, DKIMSIGN_E_INTERNAL, "dkimsign_message_set_arc() was not called first");
        r = client_message_finish(m);
        if (r < 0)
                return client_set_error(c, r, "could not finish the message: %s", dkimsign_strerror(r));
        r = dkim_headers_parse(m->header.data, m->header.len, &limits, ret);
        if (r < 0)
                return client_set_error(c, DKIMSIGN_E_HEADER, "the header block is malformed");
        return 0;
}

static int send_seal(dkimsign_client *c, dkimsign_message *m, const char *domain, const char *authserv_id,
                     const char *results, enum arc_cv cv, size_t instance, char **ret_fields)
{
        struct msg_seal s = {
                .cv = (uint8_t) cv,
                .instance = (uint8_t) instance,
                .domain = domain,
                .domain_len = strlen(domain),
                .authserv_id = authserv_id,
                .authserv_id_len = strlen(authserv_id),
                .results = results,
                .results_len = strlen(results),
                .body_hash = m->body_hash,
                .headers = m->header.data,
                .headers_len = m->header.len,
        };
        struct buf req;
        uint32_t id;
        int r;

        if (c->fd < 0) {
                r = client_connect(c);
                if (r < 0)
                        return r;
        }
        if (c->version < PROTO_VERSION_SEAL)
                return client_set_error(c, DKIMSIGN_E_VERSION, "dkimsignd speaks protocol version %u, "
                                        "which has no ARC sealing", c->version);
        buf_init(&req, (size_t) m->header.len + strlen(results) + 1024);
        id = c->next_id++;
        r = msg_seal_encode(&req, id, &s);
        if (r < 0)
                r = client_set_error(c, r, "could not encode the request: %s", dkimsign_strerror(r));
        else
                r = client_request(c, &req, id, ret_fields);
        buf_deinit(&req);
        return r;
}

PUBLIC int dkimsign_arc_seal(dkimsign_client *c, dkimsign_message *m, const struct dkimsign_arc_options *o,
                             char **ret_fields, enum dkimsign_arc_cv *ret_cv)
{
        struct dkim_headers h;
        struct arc_chain chain;
        enum arc_cv cv = ARC_CV_FAIL;
        char why[256], results[MSG_RESULTS_MAX + 1];
        size_t n;
        int r;

        if (!o || !o->domain || !o->authserv_id || !*o->domain || !*o->authserv_id ||
            strlen(o->domain) > MSG_DOMAIN_MAX || strlen(o->authserv_id) > MSG_AUTHSERV_MAX ||
            strpbrk(o->authserv_id, " \t;\r\n"))
                return client_set_error(c, DKIMSIGN_E_FORMAT, "ARC needs a sealing domain and an authserv-id "
                                        "(one word)");
        r = finish_and_parse(c, m, &h);
        if (r < 0)
                return r;
        r = arc_check_chain(m, &h, o->dns_server, &chain, &cv, why, sizeof(why));
        if (r == 0 && chain.count >= ARC_INSTANCE_MAX) {
                snprintf(why, sizeof(why), "the ARC chain has %d sets already", ARC_INSTANCE_MAX);
                r = DKIMSIGN_E_HEADER;
        }
        if (r == 0) {
                arc_collect_results(&h, o->authserv_id, results, sizeof(results) - 32);
                /* The chain's state this sealer found, as RFC 8617 4.1.1's
                 * example AAR records it, unless the verifier said it. */
                if (!strstr(results, "arc="))
                        snprintf(results + strlen(results), 32, "%sarc=%s", results[0] ? "; " : "", arc_cv_name(cv));
        }
        dkim_headers_deinit(&h);
        if (r < 0)
                return client_set_error(c, r, "not sealed: %s", why);
        n = strlen(why);
        r = send_seal(c, m, o->domain, o->authserv_id, results, cv, chain.count + 1, ret_fields);
        if (r == 0) {
                snprintf(c->error, sizeof(c->error), "sealed i=%zu cv=%s: %.*s", chain.count + 1, arc_cv_name(cv),
                         (int) n, why);
                if (ret_cv)
                        *ret_cv = (enum dkimsign_arc_cv) cv;
        }
        return r;
}
