/* SPDX-License-Identifier: MIT */
/*
 * Which token: a PKCS#11 URI (RFC 7512) checked and parsed with p11-kit's
 * URI functions, the criteria a token and its slot are matched against
 * (a URI's, or a bare label's), and a token's description as C strings.
 *
 * A URI is taken only when every part of it means something here: the
 * token's and the slot's attributes, and module-path.  Whatever would
 * select objects, name a module by p11-kit's configuration or carry a PIN
 * is refused, saying which part and why; a refusal never quotes a value
 * (a pin-value must not reach a log).  It makes no PKCS#11 call but
 * C_GetSlotInfo in hsmi_uri_match, and never logs.
 */
#include <stdio.h>
#include <string.h>

#include "hsm/hsm-private.h"

/* A path attribute taken: matched against the token or its slot. */
static const struct {
        const char *name;
        size_t max;              /* octets, decoded; 0: slot-id, a number */
        const char *what;
} taken[] = {
        { "token", sizeof(((CK_TOKEN_INFO *) 0)->label), "token label" },
        { "manufacturer", sizeof(((CK_TOKEN_INFO *) 0)->manufacturerID), "token manufacturer ID" },
        { "model", sizeof(((CK_TOKEN_INFO *) 0)->model), "token model" },
        { "serial", sizeof(((CK_TOKEN_INFO *) 0)->serialNumber), "token serial number" },
        { "slot-description", sizeof(((CK_SLOT_INFO *) 0)->slotDescription), "slot description" },
        { "slot-manufacturer", sizeof(((CK_SLOT_INFO *) 0)->manufacturerID), "slot manufacturer ID" },
        { "slot-id", 0, "slot ID" },
};

#define OBJECTS "selects objects, not a token: dkimsign finds its keys on the token itself; drop it"
#define LIBRARY "is not matched: the module is the file that module-path= or [token] module names; drop it"
#define PIN_FROM "the PIN comes from [token] pin_file or the 'pin' credential"

/* Parts RFC 7512 (or p11-kit) defines that dkimsign refuses, and why. */
static const struct {
        const char *name;
        const char *why;
} refused[] = {
        { "object", OBJECTS },
        { "id", OBJECTS },
        { "type", OBJECTS },
        { "object-type", OBJECTS },
        { "objecttype", OBJECTS },
        { "library-description", LIBRARY },
        { "library-manufacturer", LIBRARY },
        { "library-version", LIBRARY },
        { "pin-value", "would put the PIN in the configuration and in logs; it is refused: " PIN_FROM },
        { "pin-source", "is not read: " PIN_FROM },
        { "pinfile", "is not read: " PIN_FROM },
        { "module-name", "names a module by p11-kit's configuration, which dkimsign does not read: give its file "
                         "with module-path=" },
};

#define NAME_SHOWN 40   /* an unknown attribute's name is quoted up to this */

static int hexval(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        c = (char) (c | 0x20);
        return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* The octets of a percent-encoded value [v, end): their count, or -1 when
 * a '%' is not followed by two hex digits; *ret_ctl when one is a control
 * character (a NUL included). */
static long decoded_len(const char *v, const char *end, bool *ret_ctl)
{
        long n = 0;

        *ret_ctl = false;
        for (; v < end; n++) {
                int c = (unsigned char) *v;

                if (*v == '%') {
                        if (end - v < 3 || hexval(v[1]) < 0 || hexval(v[2]) < 0)
                                return -1;
                        c = hexval(v[1]) * 16 + hexval(v[2]);
                        v += 3;
                } else {
                        v++;
                }
                if (c < 0x20 || c == 0x7f)
                        *ret_ctl = true;
        }
        return n;
}

/* One attribute [a, end) of the path (query false) or the query: 0, or a
 * sentence in why.  seen: the names taken so far, to refuse a repeat. */
static int attr_check(const char *a, const char *end, bool query, unsigned *seen, char *why, size_t whylen)
{
        const char *eq = memchr(a, '=', (size_t) (end - a));
        size_t nlen = eq ? (size_t) (eq - a) : (size_t) (end - a);
        const char *v = eq ? eq + 1 : end;
        bool ctl = false;
        long len;
        size_t i;

        if (nlen == 0) {
                snprintf(why, whylen, "an attribute has no name (an empty one between '%c's, or one at the end)",
                         query ? '&' : ';');
                return DKIMSIGN_E_FORMAT;
        }
        for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
                if (strlen(refused[i].name) == nlen && memcmp(a, refused[i].name, nlen) == 0) {
                        snprintf(why, whylen, "%s= %s", refused[i].name, refused[i].why);
                        return DKIMSIGN_E_FORMAT;
                }
        len = decoded_len(v, end, &ctl);
        if (query) {
                if (nlen != strlen("module-path") || memcmp(a, "module-path", nlen) != 0) {
                        snprintf(why, whylen, "%.*s= is not a query attribute dkimsign takes (only module-path=)",
                                 (int) (nlen > NAME_SHOWN ? NAME_SHOWN : nlen), a);
                        return DKIMSIGN_E_FORMAT;
                }
                i = sizeof(taken) / sizeof(taken[0]);  /* its bit, after the path's */
        } else {
                for (i = 0; i < sizeof(taken) / sizeof(taken[0]); i++)
                        if (strlen(taken[i].name) == nlen && memcmp(a, taken[i].name, nlen) == 0)
                                break;
                if (i == sizeof(taken) / sizeof(taken[0])) {
                        snprintf(why, whylen, "%.*s= is not an attribute of a token or a slot (RFC 7512): token, "
                                 "manufacturer, model, serial, slot-description, slot-manufacturer or slot-id",
                                 (int) (nlen > NAME_SHOWN ? NAME_SHOWN : nlen), a);
                        return DKIMSIGN_E_FORMAT;
                }
        }
        if (*seen & (1u << i)) {
                snprintf(why, whylen, "%.*s= appears twice", (int) nlen, a);
                return DKIMSIGN_E_FORMAT;
        }
        *seen |= 1u << i;
        if (len < 0) {
                snprintf(why, whylen, "%.*s= has a '%%' not followed by two hex digits", (int) nlen, a);
                return DKIMSIGN_E_FORMAT;
        }
        if (len == 0) {
                snprintf(why, whylen, "%.*s= is empty", (int) nlen, a);
                return DKIMSIGN_E_FORMAT;
        }
        if (ctl) {
                snprintf(why, whylen, "%.*s= has a control character", (int) nlen, a);
                return DKIMSIGN_E_FORMAT;
        }
        if (query) {
                if (*v != '/') {
                        snprintf(why, whylen, "module-path= must be an absolute path");
                        return DKIMSIGN_E_FORMAT;
                }
                return 0;
        }
        if (taken[i].max == 0) {
                /* p11-kit reads it into a long without an overflow check. */
                if (strspn(v, "0123456789") != (size_t) (end - v) || end - v > 18) {
                        snprintf(why, whylen, "slot-id= must be a decimal number of at most 18 digits");
                        return DKIMSIGN_E_FORMAT;
                }
                return 0;
        }
        if ((size_t) len > taken[i].max) {
                snprintf(why, whylen, "%s= is longer than a PKCS#11 %s may be (%zu octets)", taken[i].name,
                         taken[i].what, taken[i].max);
                return DKIMSIGN_E_FORMAT;
        }
        return 0;
}

/* The name of the attribute of text that holds a '%' not followed by two
 * hex digits, into ret; false if there is none. */
static bool bad_percent_where(const char *text, char *ret, size_t size)
{
        const char *first = strchr(text, ':'), *p, *start, *eq;

        if (!first)
                return false;
        first++;
        for (p = first; (p = strchr(p, '%')) && hexval(p[1]) >= 0 && hexval(p[2]) >= 0;)
                p += 3;
        if (!p)
                return false;
        for (start = p; start > first && !strchr(";?&", start[-1]); start--)
                ;
        eq = memchr(start, '=', (size_t) (p - start));
        if (!eq)
                return false;
        snprintf(ret, size, "%.*s", (int) (eq - start), start);
        return true;
}

/* Every attribute of text (parsed by p11-kit already): 0, or why. */
static int attrs_check(const char *text, char *why, size_t whylen)
{
        const char *p = strchr(text, ':') + 1, *q = strchr(p, '?');
        const char *path_end = q ? q : p + strlen(p);
        unsigned seen = 0;
        int r = 0;

        for (const char *a = p; r == 0 && a < path_end;) {
                const char *e = memchr(a, ';', (size_t) (path_end - a));

                e = e ? e : path_end;
                r = attr_check(a, e, false, &seen, why, whylen);
                a = e + 1;
                if (r == 0 && e < path_end && a == path_end)
                        r = attr_check(a, a, false, &seen, why, whylen);  /* a ';' at the end */
        }
        for (const char *a = q ? q + 1 : NULL; r == 0 && a && *a;) {
                const char *e = strchr(a, '&');

                e = e ? e : a + strlen(a);
                r = attr_check(a, e, true, &seen, why, whylen);
                a = *e ? e + 1 : e;
                if (r == 0 && *e && !*a)
                        r = attr_check(a, a, true, &seen, why, whylen);  /* a '&' at the end */
        }
        return r;
}

/* Check and parse text: 0 with the criteria in *ret (owned; NULL: only
 * checked) and module-path in ret_module ("" when none), or
 * DKIMSIGN_E_FORMAT with why. */
static int uri_parse(const char *text, P11KitUri **ret, char *ret_module, size_t module_size, char *why,
                     size_t whylen)
{
        P11KitUri *u = NULL;
        const char *mp;
        size_t len;
        int r;

        if (!text || !ret_module || module_size == 0)
                return DKIMSIGN_E_INTERNAL;
        len = strnlen(text, HSM_URI_MAX + 1);
        if (len > HSM_URI_MAX) {
                snprintf(why, whylen, "it is longer than %d characters", HSM_URI_MAX);
                return DKIMSIGN_E_FORMAT;
        }
        /* RFC 7512 percent-encodes all else; p11-kit would drop spaces. */
        for (size_t i = 0; i < len; i++)
                if ((unsigned char) text[i] <= ' ' || (unsigned char) text[i] >= 0x7f) {
                        snprintf(why, whylen, "a space, a control character or a character outside ASCII must be "
                                 "percent-encoded (%%20 for a space, %%C3%%A9 for an e acute)");
                        return DKIMSIGN_E_FORMAT;
                }
        u = p11_kit_uri_new();
        if (!u)
                return DKIMSIGN_E_NOMEM;
        r = p11_kit_uri_parse(text, P11_KIT_URI_FOR_TOKEN | P11_KIT_URI_FOR_SLOT, u);
        if (r == P11_KIT_URI_NO_MEMORY) {
                r = DKIMSIGN_E_NOMEM;
                goto out;
        }
        if (r != P11_KIT_URI_OK) {
                char where[NAME_SHOWN + 1];

                /* p11-kit does not say where: a bad %XX is looked for here. */
                if (r == P11_KIT_URI_BAD_ENCODING && bad_percent_where(text, where, sizeof(where)))
                        snprintf(why, whylen, "%s (a '%%' in %s= is not followed by two hex digits)",
                                 p11_kit_uri_message(r), where);
                else
                        snprintf(why, whylen, "%s (RFC 7512: pkcs11:ATTR=VALUE;...?module-path=PATH)",
                                 p11_kit_uri_message(r));
                r = DKIMSIGN_E_FORMAT;
                goto out;
        }
        r = attrs_check(text, why, whylen);
        if (r < 0)
                goto out;
        /* What the checks above refused already, asked of p11-kit too. */
        if (p11_kit_uri_any_unrecognized(u) || p11_kit_uri_get_pin_value(u) || p11_kit_uri_get_pin_source(u) ||
            p11_kit_uri_get_module_name(u)) {
                snprintf(why, whylen, "a part of it is not one dkimsign takes");
                r = DKIMSIGN_E_FORMAT;
                goto out;
        }
        mp = p11_kit_uri_get_module_path(u);
        if (mp && strlen(mp) >= module_size) {
                snprintf(why, whylen, "module-path= is too long");
                r = DKIMSIGN_E_FORMAT;
                goto out;
        }
        snprintf(ret_module, module_size, "%s", mp ? mp : "");
        if (ret) {
                *ret = u;
                u = NULL;
        }
out:
        p11_kit_uri_free(u);
        return r;
}

int hsm_uri_check(const char *uri, char *ret_module, size_t module_size, char *why, size_t whylen)
{
        if (whylen)
                why[0] = '\0';
        return uri_parse(uri, NULL, ret_module, module_size, why, whylen);
}

int hsmi_uri_parse(const char *text, P11KitUri **ret, char *ret_module, size_t module_size)
{
        hsmi_last_why[0] = '\0';
        return uri_parse(text, ret, ret_module, module_size, hsmi_last_why, sizeof(hsmi_last_why));
}

P11KitUri *hsmi_uri_for_label(const char *label)
{
        P11KitUri *m = p11_kit_uri_new();
        CK_TOKEN_INFO *t;
        size_t n = strlen(label);

        if (!m)
                return NULL;
        t = p11_kit_uri_get_token_info(m);
        if (n > sizeof(t->label)) {
                p11_kit_uri_set_unrecognized(m, 1);  /* no token is labelled so */
        } else {
                memset(t->label, ' ', sizeof(t->label));
                memcpy(t->label, label, n);
        }
        return m;
}

/* Blank padded by the standard; some modules pad with NULs. */
static void blank_pad(CK_UTF8CHAR *field, size_t size)
{
        for (size_t i = 0; i < size; i++)
                if (field[i] == '\0')
                        field[i] = ' ';
}

bool hsmi_uri_match(P11KitUri *m, CK_FUNCTION_LIST *p11, CK_SLOT_ID slot, const CK_TOKEN_INFO *info,
                    bool ignore_label)
{
        const CK_SLOT_INFO *want = p11_kit_uri_get_slot_info(m);
        CK_SLOT_ID want_id = p11_kit_uri_get_slot_id(m);
        CK_TOKEN_INFO t = *info;
        CK_SLOT_INFO s;

        blank_pad(t.label, sizeof(t.label));
        blank_pad(t.manufacturerID, sizeof(t.manufacturerID));
        blank_pad(t.model, sizeof(t.model));
        blank_pad(t.serialNumber, sizeof(t.serialNumber));
        if (ignore_label)
                memcpy(t.label, p11_kit_uri_get_token_info(m)->label, sizeof(t.label));
        if (!p11_kit_uri_match_token_info(m, &t))
                return false;
        if (want_id != (CK_SLOT_ID) -1 && want_id != slot)
                return false;
        if (!want->slotDescription[0] && !want->manufacturerID[0])
                return true;
        if (p11->C_GetSlotInfo(slot, &s) != CKR_OK)
                return false;
        blank_pad(s.slotDescription, sizeof(s.slotDescription));
        blank_pad(s.manufacturerID, sizeof(s.manufacturerID));
        return p11_kit_uri_match_slot_info(m, &s);
}

/* A blank-padded field as a C string: padding dropped, a control
 * character shown as '?' (it goes into log lines). */
static void field_string(const CK_UTF8CHAR *field, size_t size, char *ret)
{
        size_t n = size;

        while (n > 0 && (field[n - 1] == ' ' || field[n - 1] == '\0'))
                n--;
        for (size_t i = 0; i < n; i++)
                ret[i] = field[i] < 0x20 || field[i] == 0x7f ? '?' : (char) field[i];
        ret[n] = '\0';
}

void hsmi_token_id(const CK_TOKEN_INFO *info, struct hsm_token_id *ret)
{
        _Static_assert(sizeof(ret->label) > sizeof(info->label), "hsm_token_id.label");
        _Static_assert(sizeof(ret->manufacturer) > sizeof(info->manufacturerID), "hsm_token_id.manufacturer");
        _Static_assert(sizeof(ret->model) > sizeof(info->model), "hsm_token_id.model");
        _Static_assert(sizeof(ret->serial) > sizeof(info->serialNumber), "hsm_token_id.serial");
        field_string(info->label, sizeof(info->label), ret->label);
        field_string(info->manufacturerID, sizeof(info->manufacturerID), ret->manufacturer);
        field_string(info->model, sizeof(info->model), ret->model);
        field_string(info->serialNumber, sizeof(info->serialNumber), ret->serial);
}
