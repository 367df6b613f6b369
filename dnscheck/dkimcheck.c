/* SPDX-License-Identifier: MIT */
/*
 * DKIM selector checks.  See dkimcheck.h.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dnscheck/dkimcheck.h"
#include "dkim/dkimrec.h"
#include "protocol/dkimsign-errors.h"
#include "util/memdup.h"

void dkim_selector_report_clear(struct dkim_selector_report *rep)
{
        if (!rep)
                return;
        free(rep->record);
        memset(rep, 0, sizeof(*rep));
}

static void publish_fix(struct dns_findings *f, struct dns_finding *d, const char *name,
                        const struct dkim_selector_check *in, const char *verb)
{
        dns_finding_fix(f, d, "%s %s. IN TXT %s", verb, name, in->expected_zone);
}

/* A record of ours that is there: judge what it says besides the key. */
static void judge_record(struct dns_findings *f, const char *name, const struct dkim_keyrec *rec,
                         const struct dkim_selector_check *in)
{
        struct dns_finding *d;

        if (rec->testing) {
                d = dns_findings_add(f, DNS_VERDICT_WARNING, "dkim-testing",
                                     "The record at %s has t=y (testing): receivers may treat its signatures as "
                                     "unsigned mail.", name);
                publish_fix(f, d, name, in, "Once signing works, remove t=y:");
        }
        if (!rec->h_allows_sha256) {
                d = dns_findings_add(f, DNS_VERDICT_ERROR, "dkim-hash",
                                     "The record at %s has h=%s, which does not allow sha256: receivers reject "
                                     "every signature dkimsign makes with it.", name, rec->h);
                publish_fix(f, d, name, in, "Remove h= (or list sha256):");
        }
        if (!rec->s_allows_email) {
                d = dns_findings_add(f, DNS_VERDICT_ERROR, "dkim-service",
                                     "The record at %s has s=%s, which does not allow email.", name, rec->s);
                publish_fix(f, d, name, in, "Remove s=:");
        }
        if (in->bits > 0 && EVP_PKEY_get_base_id(in->pub) == EVP_PKEY_RSA) {
                if (in->bits < 1024) {
                        d = dns_findings_add(f, DNS_VERDICT_ERROR, "dkim-key-size",
                                             "The key of %s is RSA %u bits: receivers reject keys under 1024 "
                                             "bits (RFC 8301).", name, in->bits);
                        dns_finding_fix(f, d, "Rotate to a 2048-bit key (dkimsignctl keygen --bits 2048 with a "
                                        "new selector).");
                } else if (in->bits < 2048) {
                        d = dns_findings_add(f, DNS_VERDICT_WARNING, "dkim-key-size",
                                             "The key of %s is RSA %u bits: weak, and some receivers already "
                                             "distrust it.", name, in->bits);
                        dns_finding_fix(f, d, "Rotate to a 2048-bit key (dkimsignctl keygen --bits 2048 with a "
                                        "new selector).");
                } else {
                        dns_findings_add(f, DNS_VERDICT_OK, "dkim-key-size", "The key of %s is RSA %u bits.",
                                         name, in->bits);
                }
        } else if (in->bits > 0) {
                dns_findings_add(f, DNS_VERDICT_OK, "dkim-key-size",
                                 "The key of %s is Ed25519 (RFC 8463); sign with an RSA key too, for receivers "
                                 "that do not know Ed25519.", name);
        }
}

/* The one TXT record at name: any TXT there is taken as a key record (RFC
 * 6376 3.6.2.2), so several are the publisher's mistake. */
static int pick_record(struct dns_findings *f, const char *name, const struct dns_txt *txt, size_t *ret)
{
        struct dns_finding *d;

        if (txt->count > 1) {
                d = dns_findings_add(f, DNS_VERDICT_ERROR, "dkim-multiple",
                                     "%s has %zu TXT records: receivers may pick any of them.", name, txt->count);
                dns_finding_fix(f, d, "Keep only the DKIM key record at %s.", name);
                return DKIMSIGN_E_FORMAT;
        }
        if (txt->count == 1)
                *ret = 0;
        return 0;
}

int dkim_selector_check(struct dns_resolver *r, const struct dkim_selector_check *in,
                        struct dkim_selector_report *ret, struct dns_findings *f)
{
        struct dkim_selector_report rep = { 0 };
        struct dkim_keyrec rec = { 0 };
        struct dns_txt txt = { 0 };
        struct dns_finding *d;
        char name[DNS_NAME_MAX + 80], why[300];
        size_t which = 0;
        int rc;

        if ((size_t) snprintf(name, sizeof(name), "%s._domainkey.%s", in->selector, in->domain) > DNS_NAME_MAX) {
                d = dns_findings_add(f, DNS_VERDICT_ERROR, "dkim-name",
                                     "%s._domainkey.%s is longer than a DNS name may be (253 octets): no record "
                                     "can be published there.", in->selector, in->domain);
                dns_finding_fix(f, d, "Use a shorter selector for %s.", in->domain);
                goto out;
        }
        rc = dns_txt_lookup(r, name, &txt);
        if (rc == DKIMSIGN_E_DNS_NOT_FOUND) {
                if (in->retired) {
                        dns_findings_add(f, DNS_VERDICT_OK, "dkim-retired",
                                         "%s is retired and its record is gone.", name);
                } else {
                        d = dns_findings_add(f, DNS_VERDICT_ERROR, "dkim-missing",
                                             "No key record at %s: receivers cannot verify the signatures made "
                                             "with this key.", name);
                        publish_fix(f, d, name, in, "Publish");
                }
                goto out;
        }
        if (rc == DKIMSIGN_E_DNS_BOGUS) {
                dns_findings_bogus(f, "dkim-dns", "TXT", name);
                goto out;
        }
        if (rc < 0) {
                d = dns_findings_add(f, DNS_VERDICT_ERROR, "dkim-dns",
                                     rc == DKIMSIGN_E_DNS_TEMPORARY
                                             ? "The TXT lookup of %s failed for now (timeout or server failure)."
                                             : "The TXT answer for %s is malformed.", name);
                if (d)
                        d->incomplete = rc == DKIMSIGN_E_DNS_TEMPORARY;
                dns_finding_fix(f, d, "Make sure the name servers of %s answer; then check again.", in->domain);
                goto out;
        }
        if (pick_record(f, name, &txt, &which) < 0)
                goto out;
        rep.strings = txt.records[which].strings;
        rep.record = dns_memdup_str(txt.records[which].text, txt.records[which].len);
        if (!rep.record) {
                f->oom = true;
                goto out;
        }
        rc = dkim_keyrec_parse(txt.records[which].text, txt.records[which].len, &rec, why, sizeof(why));
        if (rc < 0) {
                d = dns_findings_add(f, DNS_VERDICT_ERROR, "dkim-syntax",
                                     "The record at %s is not a valid DKIM key record: %s", name, why);
                publish_fix(f, d, name, in, "Replace it by");
                goto out;
        }
        rep.testing = rec.testing;
        rc = dkim_keyrec_matches(&rec, in->pub, why, sizeof(why));
        if (rc == DKIMSIGN_E_NO_KEY) {
                d = dns_findings_add(f, in->retired ? DNS_VERDICT_OK : DNS_VERDICT_ERROR,
                                     rec.revoked ? "dkim-revoked" : "dkim-mismatch",
                                     "The record at %s does not hold the token's key: %s%s", name, why,
                                     in->retired ? " (the key is retired: that is fine)" : "");
                if (!in->retired)
                        publish_fix(f, d, name, in, "Replace it by");
                goto out;
        }
        if (rc < 0) {
                d = dns_findings_add(f, DNS_VERDICT_ERROR, "dkim-mismatch",
                                     "The key of %s cannot be compared: %s.", name, dkimsign_strerror(rc));
                goto out;
        }
        rep.matches = true;
        dns_findings_add(f, DNS_VERDICT_OK, "dkim-key",
                         "The record at %s holds the token's key%s%s.", name,
                         rep.strings > 1 ? " (split into several strings, as it should be)" : "",
                         in->retired ? "; the key is retired, so the record can go once old mail is verified" : "");
        judge_record(f, name, &rec, in);
out:
        dkim_keyrec_clear(&rec);
        dns_txt_clear(&txt);
        if (f->oom) {
                dkim_selector_report_clear(&rep);
                return DKIMSIGN_E_NOMEM;
        }
        *ret = rep;
        return 0;
}
