/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the SPF record parser, as dkimsignctl check runs it on TXT
 * text from DNS.  A parsed record must describe itself consistently (term
 * count, the all and redirect indexes, a domain where the term needs one);
 * a refused one must say why.
 *
 * Checks abort() rather than assert(): they must hold in NDEBUG builds too.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/dkimsign-errors.h"
#include "dnscheck/spf.h"

#define INPUT_MAX (SPF_RECORD_MAX + 64)

#define CHECK(x) do { if (!(x)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_record(const struct spf_record *rec, const char *text, size_t size)
{
        CHECK(spf_is_record(text, size));
        CHECK(rec->count <= SPF_TERMS_MAX);
        CHECK(rec->all_index < (int) rec->count && rec->redirect_index < (int) rec->count);
        if (rec->all_index >= 0)
                CHECK(rec->terms[rec->all_index].kind == SPF_ALL);
        if (rec->redirect_index >= 0)
                CHECK(rec->terms[rec->redirect_index].kind == SPF_REDIRECT);
        for (size_t i = 0; i < rec->count; i++) {
                const struct spf_term *t = &rec->terms[i];

                CHECK(t->text && t->text[0] && strlen(t->text) <= size);
                CHECK(t->qualifier == '+' || t->qualifier == '-' || t->qualifier == '~' || t->qualifier == '?');
                CHECK(t->cidr4 >= -1 && t->cidr4 <= 32 && t->cidr6 >= -1 && t->cidr6 <= 128);
                if (t->kind == SPF_INCLUDE || t->kind == SPF_EXISTS || t->kind == SPF_REDIRECT || t->kind == SPF_EXP)
                        CHECK(t->domain && t->domain[0]);
                if (t->kind == SPF_ALL || t->kind == SPF_IP4 || t->kind == SPF_IP6)
                        CHECK(t->domain == NULL);
                if (t->domain && !t->has_macro)
                        CHECK(strchr(t->domain, '%') == NULL);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct spf_record rec;
        char why[256];
        int r;

        if (size > INPUT_MAX)
                return 0;
        why[0] = 'x';
        r = spf_parse((const char *) data, size, &rec, why, sizeof(why));
        if (r == 0) {
                check_record(&rec, (const char *) data, size);
                spf_record_clear(&rec);
        } else {
                CHECK(r == DKIMSIGN_E_FORMAT || r == DKIMSIGN_E_TOO_LARGE || r == DKIMSIGN_E_NOMEM);
                CHECK(r == DKIMSIGN_E_NOMEM || (why[0] && memchr(why, '\0', sizeof(why))));
        }
        return 0;
}
