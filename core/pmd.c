/* permessage-deflate negotiation: the grammar of RFC 7692 section 5 over RFC 6455's
 * Sec-WebSocket-Extensions element (extension-token *( ";" extension-param )), then the rules of
 * section 7 for each parameter. A bad offer is declined, never the handshake: the caller tries
 * the next offer and, when none is left, answers without the extension. */
#include "pmd.h"

#include <stdio.h>
#include <string.h>

static bool is_tchar(char ch)
{
    unsigned char u = (unsigned char)ch;
    if (u <= 32 || u >= 127) return false;
    return !strchr("()<>@,;:\\\"/[]?={}", ch);
}

static bool is_ows(char ch) { return ch == ' ' || ch == '\t'; }

static size_t skip_ows(const char *s, size_t len, size_t i)
{
    while (i < len && is_ows(s[i])) i++;
    return i;
}

static size_t take_token(const char *s, size_t len, size_t i)
{
    while (i < len && is_tchar(s[i])) i++;
    return i;
}

static bool same_ci(const char *s, size_t len, const char *lit)
{
    if (strlen(lit) != len) return false;
    for (size_t i = 0; i < len; i++) {
        char a = s[i], b = lit[i];
        if (a >= 'A' && a <= 'Z') a = (char)(a - 'A' + 'a');
        if (a != b) return false;
    }
    return true;
}

static int fail(const char **why, int code, const char *text)
{
    if (why) *why = text;
    return code;
}

/* A window size: "8".."15", no sign, no leading zero (RFC 7692 sections 7.1.2.1, 7.1.2.2). */
static int window_value(const char *v, size_t n)
{
    if (n == 1 && v[0] >= '8' && v[0] <= '9') return v[0] - '0';
    if (n == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5') return 10 + (v[1] - '0');
    return 0;
}

enum { P_SNCT, P_CNCT, P_SMWB, P_CMWB, P_COUNT };
static const char *const param_names[P_COUNT] = {
    "server_no_context_takeover", "client_no_context_takeover", "server_max_window_bits",
    "client_max_window_bits",
};

int pmd_parse_offer(const char *s, size_t len, struct pmd_offer *o, const char **why)
{
    memset(o, 0, sizeof *o);
    size_t i = skip_ows(s, len, 0);
    size_t name_end = take_token(s, len, i);
    if (name_end == i) return fail(why, PMD_E_SYNTAX, "an extension offer without a name");
    if (!same_ci(s + i, name_end - i, "permessage-deflate")) {
        if (why) *why = "another extension";
        return PMD_OTHER;
    }
    bool seen[P_COUNT] = { false };
    i = skip_ows(s, len, name_end);
    while (i < len) {
        if (s[i] != ';') return fail(why, PMD_E_SYNTAX, "expected ';' between parameters");
        i = skip_ows(s, len, i + 1);
        size_t p_end = take_token(s, len, i);
        if (p_end == i) return fail(why, PMD_E_SYNTAX, "an empty parameter");
        int which = -1;
        for (int k = 0; k < P_COUNT; k++)
            if (same_ci(s + i, p_end - i, param_names[k])) which = k;
        if (which < 0) return fail(why, PMD_E_UNKNOWN, "an unknown parameter");
        if (seen[which]) return fail(why, PMD_E_DUPLICATE, "a parameter given twice");
        seen[which] = true;
        i = skip_ows(s, len, p_end);
        const char *v = NULL;
        size_t vlen = 0;
        if (i < len && s[i] == '=') {
            i = skip_ows(s, len, i + 1);
            if (i < len && s[i] == '"') {
                /* A quoted value must hold a token once unquoted (RFC 6455 section 9.1);
                 * escapes cannot form one of the values we accept, so none are allowed. */
                size_t q = i + 1;
                while (q < len && s[q] != '"') {
                    if (!is_tchar(s[q])) return fail(why, PMD_E_VALUE, "a bad quoted value");
                    q++;
                }
                if (q >= len) return fail(why, PMD_E_SYNTAX, "an unterminated quoted value");
                v = s + i + 1;
                vlen = q - i - 1;
                i = q + 1;
            } else {
                size_t v_end = take_token(s, len, i);
                v = s + i;
                vlen = v_end - i;
                i = v_end;
            }
            if (vlen == 0) return fail(why, PMD_E_VALUE, "an empty value");
            i = skip_ows(s, len, i);
        }
        switch (which) {
        case P_SNCT:
        case P_CNCT:
            if (v) return fail(why, PMD_E_VALUE, "a value on a no_context_takeover parameter");
            if (which == P_SNCT) o->server_no_context_takeover = true;
            else o->client_no_context_takeover = true;
            break;
        case P_SMWB:
            if (!v) return fail(why, PMD_E_VALUE, "server_max_window_bits without a value");
            if (!(o->server_max_window_bits = window_value(v, vlen)))
                return fail(why, PMD_E_VALUE, "server_max_window_bits not from 8 to 15");
            break;
        default: /* P_CMWB: the value is optional */
            if (!v) o->client_max_window_bits = -1;
            else if (!(o->client_max_window_bits = window_value(v, vlen)))
                return fail(why, PMD_E_VALUE, "client_max_window_bits not from 8 to 15");
            break;
        }
    }
    return PMD_OK;
}

bool pmd_accept(const struct pmd_offer *o, const struct pmd_policy *p, struct pmd_agreement *a)
{
    memset(a, 0, sizeof *a);
    /* zlib's deflate turns a request for a 256-byte window into 512 bytes: a client that
     * demanded 8 could not inflate what we sent, so the offer is declined. */
    if (o->server_max_window_bits == 8) return false;
    int w = p->window_bits >= 9 && p->window_bits <= 15 ? p->window_bits : 15;
    if (o->server_max_window_bits && o->server_max_window_bits < w) w = o->server_max_window_bits;
    a->server_window_bits = w;
    a->server_context = p->context && !o->server_no_context_takeover;
    /* The client keeps its context only where the server can afford an inflater of a known,
     * small window: context mode and an offer that lets us cap the client's window. Otherwise
     * it is asked for no context takeover, and the worker's one inflater serves it. */
    a->client_context = p->context && !o->client_no_context_takeover &&
                        o->client_max_window_bits != 0;
    a->client_window_bits = 15;
    if (a->client_context) {
        int cw = o->client_max_window_bits > 0 ? o->client_max_window_bits : 15;
        if (w < cw) cw = w;
        a->client_window_bits = cw; /* 8 is fine for inflate */
    }
    return true;
}

size_t pmd_format_answer(char *out, size_t cap, const struct pmd_offer *o,
                         const struct pmd_agreement *a)
{
    char smwb[40] = "", cmwb[40] = "";
    /* The window is named when the client asked for a cap (it must be, section 7.1.2.1) or
     * when the server keeps its context (so the client may size its inflater). */
    if (o->server_max_window_bits || a->server_context)
        snprintf(smwb, sizeof smwb, "; server_max_window_bits=%d", a->server_window_bits);
    if (a->client_context && o->client_max_window_bits)
        snprintf(cmwb, sizeof cmwb, "; client_max_window_bits=%d", a->client_window_bits);
    int n = snprintf(out, cap, "permessage-deflate%s%s%s%s",
                     a->server_context ? "" : "; server_no_context_takeover",
                     a->client_context ? "" : "; client_no_context_takeover", smwb, cmwb);
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}

bool pmd_negotiate(const struct http_request *req, const struct pmd_policy *p,
                   struct pmd_agreement *a, char *out, size_t cap)
{
    size_t pos = 0, len;
    const char *elem;
    while (http_list_next(req, "Sec-WebSocket-Extensions", &pos, &elem, &len)) {
        struct pmd_offer o;
        if (pmd_parse_offer(elem, len, &o, NULL) != PMD_OK) continue;
        if (!pmd_accept(&o, p, a)) continue;
        if (pmd_format_answer(out, cap, &o, a)) return true;
    }
    return false;
}
