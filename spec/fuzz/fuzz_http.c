/* Fuzz target for the HTTP request head parser (core/http.h) and the handshake check on what it
 * parses (core/handshake.h). A head is parsed three ways:
 *   - by a reference written here, plainly: find the blank line, cut the head into lines, parse
 *     each line on its own;
 *   - by http_parse_request on the whole input;
 *   - by http_parse_request on a buffer that grows in pieces chosen by the input, the scan state
 *     carried, as the server calls it while a head trickles in.
 * Verdicts and parsed fields must agree, every pointer must lie in the head, and a parsed head
 * goes on to hs_check_request and the list helpers, whose results are checked too.
 *
 * Input: [0] max_headers (% 33), [1] max_len (16 per step, 0: 65536), [2..9] the split plan,
 * then the bytes of the request. */
#include "fuzz.h"

#include "handshake.h"
#include "http.h"

#define SETTINGS_LEN (2 + FUZZ_PLAN_LEN)
#define MAX_HEADERS 32

/* A parse result as offsets into the input, so results over different copies compare. */
struct span {
    size_t off, len;
};

struct result {
    int rc;
    struct span method, target;
    bool absolute;                /* absolute-form: the target has an authority */
    struct span authority, resource;
    int minor;
    size_t nh;
    struct span name[MAX_HEADERS], value[MAX_HEADERS];
};

/* ---- The reference ------------------------------------------------------------------------- */

static bool ref_tchar(uint8_t c)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";
    if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) return true;
    for (size_t i = 0; i < sizeof extra - 1; i++)
        if (c == (uint8_t)extra[i]) return true;
    return false;
}

static bool ref_blank(uint8_t c) { return c == ' ' || c == '\t'; }

static bool ref_in(uint8_t c, const char *set)
{
    for (; *set; set++)
        if (c == (uint8_t)*set) return true;
    return false;
}

static bool ref_hex(uint8_t c) { return ref_in(c, "0123456789abcdefABCDEF"); }

/* host [":" port] in d[a..b) (RFC 3986 section 3.2.2 and 3.2.3, as http.h narrows it): "[" hex
 * digits, colons and dots "]", or a reg-name (unreserved, sub-delims, %HH); a port of 1 to 5
 * digits worth 1 to 65535. */
static bool ref_authority(const uint8_t *d, size_t a, size_t b)
{
    static const char reg_name[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                   "0123456789-._~!$&'()*+,;=";
    size_t colon; /* where ":" port begins, or b */
    if (a < b && d[a] == '[') {
        size_t close = a + 1;
        while (close < b && d[close] != ']') close++;
        if (close == b || close == a + 1) return false;
        for (size_t k = a + 1; k < close; k++)
            if (!ref_hex(d[k]) && d[k] != ':' && d[k] != '.') return false;
        colon = close + 1;
        if (colon < b && d[colon] != ':') return false;
    } else {
        colon = a;
        while (colon < b && d[colon] != ':') colon++;
        if (colon == a) return false;
        for (size_t k = a; k < colon; k++) {
            if (d[k] == '%') {
                if (k + 2 >= colon || !ref_hex(d[k + 1]) || !ref_hex(d[k + 2])) return false;
                k += 2;
            } else if (!ref_in(d[k], reg_name)) {
                return false;
            }
        }
    }
    if (colon >= b) return true;
    size_t digits = b - colon - 1;
    if (digits < 1 || digits > 5) return false;
    unsigned port = 0;
    for (size_t k = colon + 1; k < b; k++) {
        if (d[k] < '0' || d[k] > '9') return false;
        port = port * 10 + (unsigned)(d[k] - '0');
    }
    return port >= 1 && port <= 65535;
}

/* The target in d[t..e): origin-form "/..." (the resource is all of it), or absolute-form (RFC
 * 7230 section 5.3.2) "http://", "https://", "ws://" or "wss://" in any case, an authority up to
 * the first '/' or '?', then the resource; no '#' anywhere. */
static int ref_target(const uint8_t *d, size_t t, size_t e, struct result *r)
{
    static const char *const schemes[] = { "http://", "https://", "ws://", "wss://" };
    r->target = (struct span){ t, e - t };
    if (d[t] == '/') {
        r->resource = r->target;
        return 0;
    }
    size_t a = 0;
    for (size_t s = 0; s < sizeof schemes / sizeof schemes[0] && !a; s++) {
        size_t n = strlen(schemes[s]), k = 0;
        while (k < n && t + k < e && (d[t + k] | 0x20) == (uint8_t)(schemes[s][k] | 0x20)) k++;
        if (k == n) a = t + n;
    }
    if (!a) return HTTP_E_BAD_REQUEST;
    for (size_t k = t; k < e; k++)
        if (d[k] == '#') return HTTP_E_BAD_REQUEST;
    size_t end = a;
    while (end < e && d[end] != '/' && d[end] != '?') end++;
    if (!ref_authority(d, a, end)) return HTTP_E_BAD_REQUEST;
    r->absolute = true;
    r->authority = (struct span){ a, end - a };
    r->resource = (struct span){ end, e - end };
    return 0;
}

/* "METHOD SP target SP HTTP/d.d" in d[a..b), which holds no CR or LF. */
static int ref_request_line(const uint8_t *d, size_t a, size_t b, struct result *r)
{
    size_t i = a;
    while (i < b && ref_tchar(d[i])) i++;
    if (i == a || i == b || d[i] != ' ') return HTTP_E_BAD_REQUEST;
    r->method = (struct span){ a, i - a };
    size_t t = ++i;
    while (i < b && d[i] > ' ' && d[i] != 0x7F) i++;
    if (i == t || i == b || d[i] != ' ') return HTTP_E_BAD_REQUEST;
    if (ref_target(d, t, i, r) < 0) return HTTP_E_BAD_REQUEST;
    const uint8_t *v = d + i + 1;
    if (b - (i + 1) != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' ||
        v[6] != '.' || v[7] < '0' || v[7] > '9')
        return HTTP_E_BAD_REQUEST;
    if (v[5] != '1') return HTTP_E_VERSION;
    r->minor = v[7] - '0';
    return 0;
}

/* "name: value" in d[a..b). */
static int ref_header_line(const uint8_t *d, size_t a, size_t b, size_t max_headers,
                           struct result *r)
{
    if (ref_blank(d[a])) return HTTP_E_BAD_REQUEST; /* obsolete line folding */
    size_t i = a;
    while (i < b && ref_tchar(d[i])) i++;
    if (i == a || i == b || d[i] != ':') return HTTP_E_BAD_REQUEST;
    if (r->nh == max_headers) return HTTP_E_TOO_LARGE;
    for (size_t k = i + 1; k < b; k++)
        if (d[k] != '\t' && (d[k] < 0x20 || d[k] == 0x7F)) return HTTP_E_BAD_REQUEST;
    size_t vs = i + 1, ve = b;
    while (vs < ve && ref_blank(d[vs])) vs++;
    while (ve > vs && ref_blank(d[ve - 1])) ve--;
    r->name[r->nh] = (struct span){ a, i - a };
    r->value[r->nh] = (struct span){ vs, ve - vs };
    r->nh++;
    return 0;
}

static void ref_parse(const uint8_t *d, size_t len, size_t max_len, size_t max_headers,
                      struct result *r)
{
    memset(r, 0, sizeof *r);
    /* The head ends at the first CRLF CRLF; an LF without CR before it is refused at once. */
    size_t limit = len < max_len ? len : max_len, head = 0;
    for (size_t i = 0; i < limit && !head; i++) {
        if (d[i] != '\n') continue;
        if (i == 0 || d[i - 1] != '\r') {
            r->rc = HTTP_E_BAD_REQUEST;
            return;
        }
        if (i >= 3 && d[i - 3] == '\r' && d[i - 2] == '\n') head = i + 1;
    }
    if (!head) {
        r->rc = len >= max_len ? HTTP_E_TOO_LARGE : HTTP_NEED_MORE;
        return;
    }
    /* Lines, each ending in CRLF, up to the blank line at head - 2. A CR inside a line is an
     * error of that line. */
    size_t start = 0;
    for (size_t line = 0; start < head - 2; line++) {
        size_t lf = start;
        while (d[lf] != '\n') lf++;
        size_t end = lf - 1; /* the CR */
        int rc = memchr(d + start, '\r', end - start) ? HTTP_E_BAD_REQUEST
                 : line == 0 ? ref_request_line(d, start, end, r)
                             : ref_header_line(d, start, end, max_headers, r);
        if (rc < 0) {
            r->rc = rc;
            return;
        }
        start = lf + 1;
    }
    r->rc = (int)head;
}

/* ---- The parser ---------------------------------------------------------------------------- */

static struct span span_of(const char *buf, size_t len, const char *p, size_t n, const char *what)
{
    FUZZ_CHECK(p && p >= buf && n <= len && (size_t)(p - buf) <= len - n,
               "%s (%zu bytes) outside the buffer", what, n);
    return (struct span){ (size_t)(p - buf), n };
}

/* Turns a parse into offsets, checking every pointer and every promise of a parsed head. */
static void record(const char *buf, size_t len, int rc, const struct http_request *req,
                   const char *why, size_t max_len, struct result *r)
{
    memset(r, 0, sizeof *r);
    r->rc = rc;
    FUZZ_CHECK(rc > 0 || rc == HTTP_NEED_MORE || rc == HTTP_E_BAD_REQUEST ||
                   rc == HTTP_E_TOO_LARGE || rc == HTTP_E_VERSION,
               "http_parse_request returned %d", rc);
    if (rc < HTTP_NEED_MORE) FUZZ_CHECK(why && *why, "error %d without a reason", rc);
    if (rc <= 0) return;
    size_t head = (size_t)rc;
    FUZZ_CHECK(head <= len && head <= max_len, "head of %zu bytes, buffer %zu, max_len %zu",
               head, len, max_len);
    FUZZ_CHECK(head >= 4 && memcmp(buf + head - 4, "\r\n\r\n", 4) == 0,
               "head does not end in a blank line");
    FUZZ_CHECK(req->num_headers <= req->max_headers, "%zu header fields, room for %zu",
               req->num_headers, req->max_headers);
    r->method = span_of(buf, head, req->method, req->method_len, "method");
    r->target = span_of(buf, head, req->target, req->target_len, "target");
    FUZZ_CHECK(req->method_len > 0 && req->target_len > 0, "empty method or target");
    r->resource = span_of(buf, head, req->resource, req->resource_len, "resource");
    FUZZ_CHECK(req->resource + req->resource_len == req->target + req->target_len,
               "the resource does not end the target");
    if (!req->authority) {
        FUZZ_CHECK(req->target[0] == '/' && req->resource == req->target &&
                       req->resource_len == req->target_len,
                   "origin-form target not starting with /, or not all resource");
    } else {
        r->absolute = true;
        r->authority = span_of(buf, head, req->authority, req->authority_len, "authority");
        /* scheme "://" authority resource */
        FUZZ_CHECK(req->authority_len > 0 && req->authority >= req->target + 5 &&
                       memcmp(req->authority - 3, "://", 3) == 0 &&
                       req->authority + req->authority_len == req->resource,
                   "absolute-form target not split as scheme://authority resource");
        FUZZ_CHECK(!memchr(req->authority, '@', req->authority_len) &&
                       !memchr(req->authority, '/', req->authority_len) &&
                       !memchr(req->authority, '?', req->authority_len),
                   "authority holds user info, a path or a query");
        FUZZ_CHECK(!memchr(req->target, '#', req->target_len), "target holds a fragment");
        FUZZ_CHECK(req->resource_len == 0 || req->resource[0] == '/' || req->resource[0] == '?',
                   "resource of an absolute target starts with 0x%02X",
                   (uint8_t)req->resource[0]);
    }
    r->minor = req->minor_version;
    FUZZ_CHECK(r->minor >= 0 && r->minor <= 9, "minor version %d", r->minor);
    r->nh = req->num_headers;
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct http_header *h = &req->headers[i];
        r->name[i] = span_of(buf, head, h->name, h->name_len, "field name");
        r->value[i] = span_of(buf, head, h->value, h->value_len, "field value");
        FUZZ_CHECK(h->name_len > 0, "empty field name");
        for (size_t k = 0; k < h->name_len; k++)
            FUZZ_CHECK(ref_tchar((uint8_t)h->name[k]), "field name has 0x%02X",
                       (uint8_t)h->name[k]);
        for (size_t k = 0; k < h->value_len; k++) {
            uint8_t c = (uint8_t)h->value[k];
            FUZZ_CHECK(c == '\t' || (c >= 0x20 && c != 0x7F), "field value has 0x%02X", c);
        }
        if (h->value_len)
            FUZZ_CHECK(!ref_blank((uint8_t)h->value[0]) &&
                           !ref_blank((uint8_t)h->value[h->value_len - 1]),
                       "field value not trimmed");
    }
}

static void check_same(const struct result *a, const struct result *b, const char *what)
{
    FUZZ_CHECK(a->rc == b->rc, "%s: verdict %d vs %d", what, a->rc, b->rc);
    if (a->rc <= 0) return;
    FUZZ_CHECK(a->method.off == b->method.off && a->method.len == b->method.len &&
                   a->target.off == b->target.off && a->target.len == b->target.len &&
                   a->minor == b->minor,
               "%s: request lines differ", what);
    FUZZ_CHECK(a->absolute == b->absolute && a->authority.off == b->authority.off &&
                   a->authority.len == b->authority.len && a->resource.off == b->resource.off &&
                   a->resource.len == b->resource.len,
               "%s: targets split differently (authority %zu+%zu vs %zu+%zu)", what,
               a->authority.off, a->authority.len, b->authority.off, b->authority.len);
    FUZZ_CHECK(a->nh == b->nh, "%s: %zu vs %zu header fields", what, a->nh, b->nh);
    for (size_t i = 0; i < a->nh; i++)
        FUZZ_CHECK(a->name[i].off == b->name[i].off && a->name[i].len == b->name[i].len &&
                       a->value[i].off == b->value[i].off &&
                       a->value[i].len == b->value[i].len,
                   "%s: header field %zu differs", what, i);
}

/* ---- After the parse: the handshake and the list helpers ----------------------------------- */

static bool inside(const char *p, size_t n, const char *a, size_t alen)
{
    return p >= a && n <= alen && (size_t)(p - a) <= alen - n;
}

static void check_lists(const struct http_request *req, const char *name)
{
    size_t pos = 0, n, count = 0;
    const char *e;
    while (http_list_next(req, name, &pos, &e, &n)) {
        FUZZ_CHECK(++count <= 10000, "http_list_next does not end");
        bool in_field = false;
        for (size_t i = 0; i < req->num_headers && !in_field; i++)
            in_field = http_token_equals(req->headers[i].name, req->headers[i].name_len, name) &&
                       inside(e, n, req->headers[i].value, req->headers[i].value_len);
        FUZZ_CHECK(in_field, "list element outside the %s fields", name);
        FUZZ_CHECK(n > 0 && !ref_blank((uint8_t)e[0]) && !ref_blank((uint8_t)e[n - 1]) &&
                       !memchr(e, ',', n),
                   "list element not trimmed, or holding a comma");
    }
}

/* http_find_header against a count of the fields called name, compared by hand. */
static void check_find(const struct http_request *req, const char *name)
{
    size_t len = strlen(name), count = 0, first = 0;
    for (size_t i = req->num_headers; i-- > 0;) {
        const struct http_header *h = &req->headers[i];
        bool same = h->name_len == len;
        for (size_t k = 0; same && k < len; k++) {
            char a = h->name[k], b = name[k];
            if (a >= 'A' && a <= 'Z') a = (char)(a + 32);
            if (b >= 'A' && b <= 'Z') b = (char)(b + 32);
            same = a == b;
        }
        if (same) count++, first = i;
    }
    const char *v = NULL;
    size_t n = 0;
    int rc = http_find_header(req, name, &v, &n);
    FUZZ_CHECK(rc == (count == 0 ? 0 : count == 1 ? 1 : -1), "http_find_header(%s) returned %d"
               " for %zu fields", name, rc, count);
    if (rc == 1)
        FUZZ_CHECK(v == req->headers[first].value && n == req->headers[first].value_len,
                   "http_find_header(%s) returned another value", name);
}

/* ---- The reference handshake: RFC 6455 section 4.2.1 in the order handshake.h lists it ---- */

static bool ref_ieq(const char *s, size_t len, const char *lit)
{
    if (strlen(lit) != len) return false;
    for (size_t i = 0; i < len; i++) {
        char a = s[i], b = lit[i];
        if (a >= 'A' && a <= 'Z') a = (char)(a + 32);
        if (b >= 'A' && b <= 'Z') b = (char)(b + 32);
        if (a != b) return false;
    }
    return true;
}

/* The fields called name: how many, and the value of the last one. */
static size_t ref_fields(const struct http_request *req, const char *name,
                         const struct http_header **last)
{
    size_t n = 0;
    for (size_t i = 0; i < req->num_headers; i++)
        if (ref_ieq(req->headers[i].name, req->headers[i].name_len, name)) {
            n++;
            *last = &req->headers[i];
        }
    return n;
}

/* A comma-separated list across all fields called name holds token (any case). */
static bool ref_list_has(const struct http_request *req, const char *name, const char *token)
{
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct http_header *h = &req->headers[i];
        if (!ref_ieq(h->name, h->name_len, name)) continue;
        size_t a = 0;
        while (a <= h->value_len) {
            size_t b = a;
            while (b < h->value_len && h->value[b] != ',') b++;
            size_t s = a, e = b;
            while (s < e && ref_blank((uint8_t)h->value[s])) s++;
            while (e > s && ref_blank((uint8_t)h->value[e - 1])) e--;
            if (ref_ieq(h->value + s, e - s, token)) return true;
            a = b + 1;
        }
    }
    return false;
}

static bool ref_key_ok(const char *k, size_t len)
{
    if (len != 24 || k[22] != '=' || k[23] != '=') return false;
    static const char b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < 22; i++)
        if (!k[i] || !memchr(b64, k[i], sizeof b64 - 1)) return false;
    return true;
}

static int ref_handshake(const struct http_request *req)
{
    bool get = req->method_len == 3 && memcmp(req->method, "GET", 3) == 0;
    bool head = req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
    if (!get && !head) return HS_E_METHOD;
    bool upgrade = get && ref_list_has(req, "Upgrade", "websocket");
    const struct http_header *h = NULL;
    size_t hosts = ref_fields(req, "Host", &h);
    if (hosts > 1 || (hosts == 1 && h->value_len == 0)) return HS_E_BAD_REQUEST;
    if (hosts == 0 && (upgrade || req->minor_version >= 1)) return HS_E_BAD_REQUEST;
    if (!upgrade) return HS_NOT_UPGRADE;
    if (req->minor_version < 1) return HS_E_BAD_REQUEST;
    if (!ref_list_has(req, "Connection", "upgrade")) return HS_E_BAD_REQUEST;
    if (ref_fields(req, "Sec-WebSocket-Version", &h) != 1 || !ref_ieq(h->value, h->value_len, "13"))
        return HS_E_VERSION;
    if (ref_fields(req, "Sec-WebSocket-Key", &h) != 1 || !ref_key_ok(h->value, h->value_len))
        return HS_E_BAD_REQUEST;
    return 0;
}

static void check_handshake(const struct http_request *req)
{
    struct hs_upgrade up;
    const char *why = NULL;
    int rc = hs_check_request(req, &up, &why);
    int want = ref_handshake(req);
    FUZZ_CHECK(rc == want, "hs_check_request returned %d, reference %d (%s)", rc, want,
               rc < 0 ? why : "no error");
    if (rc < 0) {
        FUZZ_CHECK(why && *why, "handshake error %d without a reason", rc);
        return;
    }
    bool head = req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
    FUZZ_CHECK(head || (req->method_len == 3 && memcmp(req->method, "GET", 3) == 0),
               "a method other than GET or HEAD passed");
    FUZZ_CHECK(!(rc == 0 && head), "HEAD upgraded");
    /* Path and query split the resource (path and query, in either form of target) at its
     * first '?'; an absolute target's empty path is "/". */
    const char *res = req->resource;
    size_t res_len = req->resource_len, q = 0;
    while (q < res_len && res[q] != '?') q++;
    if (q > 0)
        FUZZ_CHECK(up.path == res && up.path_len == q, "path is not the resource up to '?'");
    else
        FUZZ_CHECK(req->authority && up.path_len == 1 && up.path[0] == '/',
                   "empty path not turned into /, or an empty origin-form path");
    if (q < res_len)
        FUZZ_CHECK(up.query == res + q + 1 && up.query_len == res_len - q - 1,
                   "query is not the rest of the resource");
    else
        FUZZ_CHECK(up.query_len == 0, "query without a '?'");
    const char *v;
    size_t n;
    int hosts = http_find_header(req, "Host", &v, &n);
    if (req->authority) /* RFC 7230 section 5.4: the Host field is ignored */
        FUZZ_CHECK(up.host == req->authority && up.host_len == req->authority_len,
                   "host is not the absolute target's authority");
    else if (up.host)
        FUZZ_CHECK(hosts == 1 && up.host == v && up.host_len == n && n > 0,
                   "host is not the one Host field");
    else
        FUZZ_CHECK(hosts == 0 && req->minor_version == 0, "no host on HTTP/1.1");
    if (up.origin) FUZZ_CHECK(http_find_header(req, "Origin", &v, &n) == 1 && up.origin == v &&
                                  up.origin_len == n,
                              "origin is not the one Origin field");
    if (rc != 0) return;

    /* A valid upgrade: HTTP/1.1, the tokens, version 13 and a well-formed key in the head. */
    FUZZ_CHECK(req->minor_version >= 1, "upgrade over HTTP/1.0");
    FUZZ_CHECK(http_list_contains(req, "Upgrade", "websocket") &&
                   http_list_contains(req, "Connection", "upgrade"),
               "upgrade without the Upgrade and Connection tokens");
    FUZZ_CHECK(http_find_header(req, "Sec-WebSocket-Version", &v, &n) == 1 && n == 2 &&
                   memcmp(v, "13", 2) == 0,
               "upgrade without Sec-WebSocket-Version: 13");
    FUZZ_CHECK(http_find_header(req, "Sec-WebSocket-Key", &v, &n) == 1 && v == up.key &&
                   n == HS_KEY_LEN,
               "key is not the one Sec-WebSocket-Key field");
    for (size_t i = 0; i < HS_KEY_LEN; i++) {
        char c = up.key[i];
        bool b64 = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                   c == '+' || c == '/';
        FUZZ_CHECK(i >= 22 ? c == '=' : b64, "key byte %zu is 0x%02X", i, (uint8_t)c);
    }
    char out[512];
    size_t len = hs_build_response(out, sizeof out, up.key, "chat", 4, NULL);
    FUZZ_CHECK(len > 0 && len < sizeof out && memcmp(out + len - 4, "\r\n\r\n", 4) == 0,
               "101 response of %zu bytes", len);
    (void)hs_protocol_offered(req, "chat", 4);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < SETTINGS_LEN) return 0;
    size_t max_headers = data[0] % (MAX_HEADERS + 1);
    size_t max_len = data[1] ? (size_t)data[1] * 16 : 65536;
    const uint8_t *in = data + SETTINGS_LEN;
    size_t len = size - SETTINGS_LEN;
    static const struct http_header none[MAX_HEADERS];

    struct result want, whole, grown;
    ref_parse(in, len, max_len, max_headers, &want);

    /* Whole: the input and the header array each end at a guard page. */
    const char *buf = (const char *)fuzz_guard_copy(0, in, len);
    struct http_request req = { 0 };
    req.headers = (struct http_header *)fuzz_guard_copy(1, none, max_headers * sizeof none[0]);
    req.max_headers = max_headers;
    struct http_scan scan = { 0 };
    const char *why = NULL;
    int rc = http_parse_request(buf, len, max_len, &scan, &req, &why);
    record(buf, len, rc, &req, why, max_len, &whole);
    check_same(&want, &whole, "reference vs whole");
    if (rc > 0) {
        check_handshake(&req);
        check_lists(&req, "Connection");
        check_lists(&req, "Upgrade");
        check_lists(&req, "Sec-WebSocket-Protocol");
        check_find(&req, "Host");
        check_find(&req, "Origin");
        check_find(&req, "Sec-WebSocket-Key");
    }

    /* Growing: each call sees only the bytes so far, in a fresh exact-size copy, with the scan
     * state carried; it stops at the first verdict other than "need more". */
    struct fuzz_plan plan;
    fuzz_plan_init(&plan, data + 2);
    memset(&scan, 0, sizeof scan);
    size_t have = 0;
    rc = HTTP_NEED_MORE;
    while (have < len && rc == HTTP_NEED_MORE) {
        have += fuzz_plan_piece(&plan, len - have);
        buf = (const char *)fuzz_guard_copy(2, in, have);
        req = (struct http_request){ 0 };
        req.headers = (struct http_header *)fuzz_guard_copy(3, none,
                                                            max_headers * sizeof none[0]);
        req.max_headers = max_headers;
        why = NULL;
        rc = http_parse_request(buf, have, max_len, &scan, &req, &why);
        FUZZ_CHECK(scan.pos <= have, "scan position %zu past the %zu bytes", scan.pos, have);
    }
    if (len) { /* else nothing was fed */
        record(buf, have, rc, &req, why, max_len, &grown);
        check_same(&whole, &grown, "whole vs growing");
    }
    return 0;
}
