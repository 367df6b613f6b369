/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the decoder of DNS answer messages (dns/answer.c), the
 * first code to touch the bytes libunbound hands back from the network in
 * every lookup.  The input is one DNS message, read as the answer to a
 * TXT, an MX, an A and an AAAA query for a fixed name: decoded records must
 * stay within the message's size.
 *
 * Checks abort() rather than assert(): they must hold in NDEBUG builds too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "protocol/dkimsign-errors.h"
#include "dns/resolve.h"

#define INPUT_MAX 65535

#define CHECK(x) do { if (!(x)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const char *const names[] = { "sel._domainkey.example.com", "example.com" };
        struct dns_txt txt;
        struct dns_mx mx;
        struct dns_addrs addrs;
        int r;

        if (size > INPUT_MAX)
                return 0;
        for (size_t n = 0; n < 2; n++) {
                r = dns_txt_from_answer(data, size, names[n], &txt);
                if (r == 0) {
                        size_t total = 0;

                        CHECK(txt.count >= 1);
                        for (size_t i = 0; i < txt.count; i++) {
                                CHECK(txt.records[i].strings >= 1);
                                CHECK(txt.records[i].text[txt.records[i].len] == '\0');
                                total += txt.records[i].len + txt.records[i].strings;
                        }
                        CHECK(total <= size);
                        dns_txt_clear(&txt);
                } else {
                        CHECK(r == DKIMSIGN_E_FORMAT || r == DKIMSIGN_E_DNS_NOT_FOUND || r == DKIMSIGN_E_NOMEM);
                }
                for (int family = AF_INET; family != -1; family = family == AF_INET ? AF_INET6 : -1) {
                        r = dns_addr_from_answer(data, size, names[n], family, &addrs);
                        if (r == 0) {
                                CHECK(addrs.count >= 1 && addrs.count * 4 <= size);
                                for (size_t i = 0; i < addrs.count; i++)
                                        CHECK(addrs.addrs[i].family == family);
                                dns_addrs_clear(&addrs);
                        } else {
                                CHECK(r == DKIMSIGN_E_FORMAT || r == DKIMSIGN_E_DNS_NOT_FOUND ||
                                      r == DKIMSIGN_E_NOMEM);
                        }
                }
                r = dns_mx_from_answer(data, size, names[n], &mx);
                if (r == 0) {
                        CHECK(mx.count >= 1);
                        for (size_t i = 0; i < mx.count; i++)
                                CHECK(mx.records[i].host && strlen(mx.records[i].host) < 1025);
                        dns_mx_clear(&mx);
                } else {
                        CHECK(r == DKIMSIGN_E_FORMAT || r == DKIMSIGN_E_DNS_NOT_FOUND || r == DKIMSIGN_E_NOMEM);
                }
        }
        return 0;
}
