/* HTTP/1.1 request head parser. Two passes: a resumable scan for the blank line that ends the head
 * (rejecting bare LF as it goes, so a broken client is answered at once instead of at the
 * timeout), then a strict parse of the complete head. Strictness is deliberate: we are an origin
 * server for browsers and WebSocket clients, all of which send clean heads, and lenient parsing
 * of CR, LF and blanks is where request smuggling begins. */
#include "http.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

static bool is_tchar(unsigned char c)
{
    /* RFC 9110 section 5.6.2: token characters. */
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Field values: visible ASCII, blanks and obs-text; no other control characters. */
static bool is_value_char(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7F); }

/* Request targets: visible ASCII and obs-text, no blanks or controls. */
static bool is_target_char(unsigned char c) { return c > 0x20 && c != 0x7F; }

static int fail(const char **why, int status, const char *reason)
{
    *why = reason;
    return status;
}

static bool is_alpha(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static bool is_hex(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* RFC 3986 section 3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ). */
static bool is_scheme_char(unsigned char c)
{
    return is_alpha(c) || is_digit(c) || c == '+' || c == '-' || c == '.';
}

/* The URI schemes a WebSocket server can be asked for: http and https by HTTP clients (RFC 7230
 * section 2.7), ws and wss by WebSocket clients that send their URI (RFC 6455 section 3). */
static bool is_served_scheme(const char *s, size_t len)
{
    return http_token_equals(s, len, "http") || http_token_equals(s, len, "https") ||
           http_token_equals(s, len, "ws") || http_token_equals(s, len, "wss");
}

/* A host and optional port (RFC 3986 section 3.2.2 and 3.2.3), already known to hold no '@':
 * an IP literal in brackets (hex digits, colons and the dots of an embedded IPv4 address), or a
 * reg-name of unreserved characters, sub-delims and %HH escapes (which covers IPv4 addresses);
 * then ":" and a port of 1 to 5 digits, 1 to 65535. Stricter than the RFC, which allows an empty
 * port and IPvFuture literals: nothing a client sends needs them, and the authority is compared
 * against Origin values, whose parser (core/origin.c) refuses them too. */
static bool authority_is_valid(const char *a, size_t len)
{
    size_t i = 0;
    if (a[0] == '[') {
        for (i = 1; i < len && a[i] != ']'; i++)
            if (!is_hex((unsigned char)a[i]) && a[i] != ':' && a[i] != '.') return false;
        if (i == len || i == 1) return false;
        i++;
    } else {
        for (; i < len && a[i] != ':'; i++) {
            unsigned char c = (unsigned char)a[i];
            if (c == '%') {
                if (len - i < 3 || !is_hex((unsigned char)a[i + 1]) ||
                    !is_hex((unsigned char)a[i + 2]))
                    return false;
                i += 2;
            } else if (!is_alpha(c) && !is_digit(c) && !strchr("-._~!$&'()*+,;=", c)) {
                return false;
            }
        }
        if (i == 0) return false;
    }
    if (i == len) return true;
    if (a[i] != ':' || len - i < 2 || len - i > 6) return false;
    long port = 0;
    for (i++; i < len; i++) {
        if (!is_digit((unsigned char)a[i])) return false;
        port = port * 10 + (a[i] - '0');
    }
    return port >= 1 && port <= 65535;
}

/* Splits the request target t[0..len), which holds only visible characters, into authority and
 * resource (see struct http_request). */
static int parse_target(const char *t, size_t len, struct http_request *req, const char **why)
{
    req->target = t;
    req->target_len = len;
    if (t[0] == '/') {
        req->authority = NULL;
        req->authority_len = 0;
        req->resource = t;
        req->resource_len = len;
        return 0;
    }

    /* Absolute-form (RFC 7230 section 5.3.2): scheme "://" authority path-abempty ["?" query]. */
    size_t i = 0;
    while (i < len && is_scheme_char((unsigned char)t[i])) i++;
    if (i == 0 || i == len || t[i] != ':' || !is_alpha((unsigned char)t[0]))
        return fail(why, HTTP_E_BAD_REQUEST,
                    "request target must be a path or an absolute URI (scheme://host/path)");
    if (!is_served_scheme(t, i))
        return fail(why, HTTP_E_BAD_REQUEST,
                    "the request target's scheme must be http, https, ws or wss");
    if (len - i < 3 || memcmp(t + i, "://", 3) != 0)
        return fail(why, HTTP_E_BAD_REQUEST,
                    "absolute request target without an authority (scheme://host)");
    const char *a = t + i + 3, *end = t + len;
    /* A fragment is for the client alone (RFC 3986 section 3.5) and never part of a request. */
    if (memchr(a, '#', (size_t)(end - a)))
        return fail(why, HTTP_E_BAD_REQUEST, "request target with a fragment ('#')");
    const char *e = a;
    while (e < end && *e != '/' && *e != '?') e++;
    if (e == a)
        return fail(why, HTTP_E_BAD_REQUEST,
                    "absolute request target without an authority (scheme://host)");
    /* User info in an http URI is deprecated and a favourite of phishing (RFC 7230 section
     * 2.7.1); an origin server has no use for it. */
    if (memchr(a, '@', (size_t)(e - a)))
        return fail(why, HTTP_E_BAD_REQUEST, "request target with user info (user@host)");
    if (!authority_is_valid(a, (size_t)(e - a)))
        return fail(why, HTTP_E_BAD_REQUEST, "malformed host or port in the request target");
    req->authority = a;
    req->authority_len = (size_t)(e - a);
    req->resource = e;
    req->resource_len = (size_t)(end - e);
    return 0;
}

/* Finds the end of the head. Returns its length, HTTP_NEED_MORE or an error. */
static int scan_head(const char *buf, size_t len, size_t max_len, struct http_scan *scan,
                     const char **why)
{
    size_t limit = len < max_len ? len : max_len;
    size_t i = scan->pos;
    while (i < limit) {
        const char *nl = memchr(buf + i, '\n', limit - i);
        if (!nl) {
            i = limit;
            break;
        }
        i = (size_t)(nl - buf);
        if (i == 0 || buf[i - 1] != '\r')
            return fail(why, HTTP_E_BAD_REQUEST, "a line of the request ends in LF without CR");
        i++;
        if (i >= 4 && memcmp(buf + i - 4, "\r\n\r\n", 4) == 0) return (int)i;
    }
    scan->pos = i;
    if (len >= max_len)
        return fail(why, HTTP_E_TOO_LARGE, "request head larger than max_header_bytes");
    return HTTP_NEED_MORE;
}

static int parse_request_line(const char *p, const char *end, struct http_request *req,
                              const char **why)
{
    const char *s = p;
    while (p < end && is_tchar((unsigned char)*p)) p++;
    if (p == s || p == end || *p != ' ')
        return fail(why, HTTP_E_BAD_REQUEST, "malformed request line: bad method");
    req->method = s;
    req->method_len = (size_t)(p - s);

    s = ++p;
    while (p < end && is_target_char((unsigned char)*p)) p++;
    if (p == s || p == end || *p != ' ')
        return fail(why, HTTP_E_BAD_REQUEST, "malformed request line: bad request target");
    int rc = parse_target(s, (size_t)(p - s), req, why);
    if (rc < 0) return rc;

    s = ++p;
    if (end - s != 8 || memcmp(s, "HTTP/", 5) != 0 || s[5] < '0' || s[5] > '9' || s[6] != '.' ||
        s[7] < '0' || s[7] > '9')
        return fail(why, HTTP_E_BAD_REQUEST, "malformed request line: bad HTTP version");
    if (s[5] != '1') return fail(why, HTTP_E_VERSION, "only HTTP/1.x is supported");
    req->minor_version = s[7] - '0';
    return 0;
}

static int parse_header_line(const char *p, const char *end, struct http_request *req,
                             const char **why)
{
    if (*p == ' ' || *p == '\t')
        return fail(why, HTTP_E_BAD_REQUEST, "obsolete line folding in a header field");
    const char *s = p;
    while (p < end && is_tchar((unsigned char)*p)) p++;
    if (p == s || p == end || *p != ':')
        return fail(why, HTTP_E_BAD_REQUEST, "malformed header field name");
    if (req->num_headers == req->max_headers)
        return fail(why, HTTP_E_TOO_LARGE, "too many header fields");
    struct http_header *h = &req->headers[req->num_headers++];
    h->name = s;
    h->name_len = (size_t)(p - s);

    p++;
    while (p < end && (*p == ' ' || *p == '\t')) p++;
    s = p;
    for (; p < end; p++)
        if (!is_value_char((unsigned char)*p))
            return fail(why, HTTP_E_BAD_REQUEST, "control character in a header field value");
    while (p > s && (p[-1] == ' ' || p[-1] == '\t')) p--;
    h->value = s;
    h->value_len = (size_t)(p - s);
    return 0;
}

int http_parse_request(const char *buf, size_t len, size_t max_len, struct http_scan *scan,
                       struct http_request *req, const char **why)
{
    int head = scan_head(buf, len, max_len, scan, why);
    if (head < 0) return head;

    /* Every line now ends in CRLF and the head ends in an empty line. */
    const char *p = buf, *end = buf + head - 2;
    const char *eol = memchr(p, '\r', (size_t)(end - p));
    if (!eol || eol[1] != '\n')
        return fail(why, HTTP_E_BAD_REQUEST, "malformed request line");
    int rc = parse_request_line(p, eol, req, why);
    if (rc < 0) return rc;

    req->num_headers = 0;
    for (p = eol + 2; p < end; p = eol + 2) {
        eol = memchr(p, '\r', (size_t)(end - p));
        if (eol[1] != '\n')
            return fail(why, HTTP_E_BAD_REQUEST, "stray CR inside a request line");
        rc = parse_header_line(p, eol, req, why);
        if (rc < 0) return rc;
    }
    return head;
}

bool http_token_equals(const char *s, size_t len, const char *lit)
{
    return strlen(lit) == len && strncasecmp(s, lit, len) == 0;
}

int http_find_header(const struct http_request *req, const char *name, const char **value,
                     size_t *len)
{
    int found = 0;
    for (size_t i = 0; i < req->num_headers; i++) {
        const struct http_header *h = &req->headers[i];
        if (!http_token_equals(h->name, h->name_len, name)) continue;
        if (found) return -1;
        found = 1;
        *value = h->value;
        *len = h->value_len;
    }
    return found;
}

bool http_list_next(const struct http_request *req, const char *name, size_t *pos,
                    const char **elem, size_t *elem_len)
{
    size_t field = (size_t)(*pos >> 32), off = (size_t)(*pos & 0xFFFFFFFFu);
    for (; field < req->num_headers; field++, off = 0) {
        const struct http_header *h = &req->headers[field];
        if (!http_token_equals(h->name, h->name_len, name)) continue;
        while (off < h->value_len) {
            const char *v = h->value;
            size_t start = off;
            while (off < h->value_len && v[off] != ',') off++;
            size_t stop = off;
            if (off < h->value_len) off++; /* skip the comma */
            while (start < stop && (v[start] == ' ' || v[start] == '\t')) start++;
            while (stop > start && (v[stop - 1] == ' ' || v[stop - 1] == '\t')) stop--;
            if (stop == start) continue;
            *elem = v + start;
            *elem_len = stop - start;
            *pos = (uint64_t)field << 32 | off;
            return true;
        }
    }
    *pos = (uint64_t)req->num_headers << 32;
    return false;
}

bool http_list_contains(const struct http_request *req, const char *name, const char *token)
{
    size_t pos = 0, len;
    const char *elem;
    while (http_list_next(req, name, &pos, &elem, &len))
        if (http_token_equals(elem, len, token)) return true;
    return false;
}

const char *http_status_text(int status)
{
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
    }
}
