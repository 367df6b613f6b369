/* SPDX-License-Identifier: MIT */
/*
 * The MTA profiles and the checks of what an MTA changes after signing:
 * see milter-mta.h.
 */
#include <string.h>
#include <strings.h>

#include "client/milter-mta.h"

static const struct milter_mta profiles[] = {
        /* smtp_line_length_limit, MIME output conversion on by default;
         * cleanup(8) adds Date and Message-ID and qualifies addresses
         * before the milters see the header. */
        { "postfix", 998, true, false, false, false },
        /* The esmtp mailer's L=990 and no F=8; the H?D?Date and
         * H?M?Message-Id defaults, the MIME label of 8-bit mail and
         * MasqSMTP's qualification of header addresses happen when the
         * message is sent, after the milters. */
        { "sendmail", 990, true, true, true, true },
        /* An MTA that sends what it was given (Exim with the milter
         * replaced by a transport filter, a relay on 8BITMIME hops). */
        { "other", 0, false, false, false, false },
};

int milter_mta_profile(const char *name, struct milter_mta *ret)
{
        for (size_t i = 0; i < sizeof(profiles) / sizeof(profiles[0]); i++)
                if (strcmp(name, profiles[i].name) == 0) {
                        *ret = profiles[i];
                        return 0;
                }
        return -1;
}

bool milter_mta_address_field(const char *name)
{
        static const char *const fields[] = { "from", "sender", "reply-to", "to", "cc", "bcc" };

        if (strncasecmp(name, "resent-", 7) == 0)
                name += 7;
        for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
                if (strcasecmp(name, fields[i]) == 0)
                        return true;
        return false;
}

/* One list element (an address, "Name <addr>", a group's member) as it is
 * read. */
struct element {
        bool content;           /* text outside comments and angle brackets */
        bool at;                /* an '@' there */
        bool angle;             /* an angle address */
        bool angle_content;
        bool angle_at;
};

static bool element_unqualified(const struct element *e)
{
        if (e->angle)
                return e->angle_content && !e->angle_at;
        return e->content && !e->at;
}

bool milter_mta_unqualified(const char *value, size_t len)
{
        struct element e = { 0 };
        unsigned comment = 0;
        bool quoted = false, in_angle = false;

        for (size_t i = 0; i < len; i++) {
                char ch = value[i];

                /* A quoted pair: the next octet is text.  Outside quoted
                 * strings too, as Sendmail reads it: "bob\@x" has no
                 * domain to it, and it qualifies the address. */
                if (ch == '\\') {
                        i++;
                        if (!comment)
                                *(in_angle ? &e.angle_content : &e.content) = true;
                        continue;
                }
                if (quoted) {
                        if (ch == '"')
                                quoted = false;
                        continue;
                }
                if (comment) {
                        comment += ch == '(';
                        comment -= ch == ')';
                        continue;
                }
                switch (ch) {
                case '(':
                        comment = 1;
                        continue;
                case '"':
                        quoted = true;
                        *(in_angle ? &e.angle_content : &e.content) = true;
                        continue;
                case '<':
                        in_angle = true;
                        e.angle = true;
                        continue;
                case '>':
                        in_angle = false;
                        continue;
                case ' ': case '\t': case '\r': case '\n':
                        continue;
                case ':':
                        if (!in_angle) {
                                /* A group's name ("team: a, b;"): no address. */
                                e = (struct element) { 0 };
                                continue;
                        }
                        break;
                case ',': case ';':
                        if (!in_angle) {
                                if (element_unqualified(&e))
                                        return true;
                                e = (struct element) { 0 };
                                continue;
                        }
                        break;
                default:
                        break;
                }
                if (in_angle) {
                        e.angle_content = true;
                        e.angle_at |= ch == '@';
                } else {
                        e.content = true;
                        e.at |= ch == '@';
                }
        }
        return element_unqualified(&e);
}

void milter_scan_feed(struct milter_scan *s, const void *data, size_t len)
{
        const unsigned char *p = data;

        for (size_t i = 0; i < len; i++) {
                if (p[i] == '\n') {
                        size_t n = s->line - (s->cr ? 1 : 0);

                        if (n > s->longest)
                                s->longest = n;
                        s->line = 0;
                        s->cr = false;
                        continue;
                }
                s->line++;
                s->cr = p[i] == '\r';
                s->eightbit |= p[i] > 127;
        }
}

size_t milter_scan_longest(const struct milter_scan *s)
{
        return s->line > s->longest ? s->line : s->longest;
}
