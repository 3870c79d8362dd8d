/* Origin matching. An origin is scheme "://" host [":" port] (RFC 6454), nothing more: a path,
 * user info or trailing junk makes it malformed, and a malformed origin matches nothing. */
#include "origin.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

/* An origin or host split into its parts; pointers into the caller's text. */
struct parts {
    const char *scheme;
    size_t scheme_len;
    const char *host; /* with brackets for IPv6 */
    size_t host_len;
    int port;         /* -1 when absent */
};

static char lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c | 0x20) : c; }

static bool is_web_scheme(const char *scheme, size_t len)
{
    return (len == 4 && strncasecmp(scheme, "http", 4) == 0) ||
           (len == 5 && strncasecmp(scheme, "https", 5) == 0);
}

static int default_port(const char *scheme, size_t len)
{
    if (len == 5 && strncasecmp(scheme, "https", 5) == 0) return 443;
    if (len == 4 && strncasecmp(scheme, "http", 4) == 0) return 80;
    if (len == 3 && strncasecmp(scheme, "wss", 3) == 0) return 443;
    if (len == 2 && strncasecmp(scheme, "ws", 2) == 0) return 80;
    return -1;
}

/* Splits "host[:port]" (host possibly "[v6]"). Returns 0, or -1 when malformed. */
static int split_host_port(const char *s, size_t len, struct parts *p)
{
    size_t host_end;
    if (len && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        if (!close) return -1;
        host_end = (size_t)(close - s) + 1;
    } else {
        const char *colon = memchr(s, ':', len);
        host_end = colon ? (size_t)(colon - s) : len;
    }
    if (host_end == 0) return -1;
    for (size_t i = 0; i < host_end; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == '/' || c == '@' || c == '?' || c == '#' || c >= 0x7F) return -1;
    }
    p->host = s;
    p->host_len = host_end;
    p->port = -1;
    if (host_end == len) return 0;
    if (s[host_end] != ':' || host_end + 1 == len || len - host_end - 1 > 5) return -1;
    int port = 0;
    for (size_t i = host_end + 1; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        port = port * 10 + (s[i] - '0');
    }
    if (port < 1 || port > 65535) return -1;
    p->port = port;
    return 0;
}

static int split_origin(const char *s, size_t len, struct parts *p)
{
    const char *sep = NULL;
    for (size_t i = 0; i + 2 < len; i++)
        if (s[i] == ':' && s[i + 1] == '/' && s[i + 2] == '/') {
            sep = s + i;
            break;
        }
    if (!sep || sep == s) return -1;
    p->scheme = s;
    p->scheme_len = (size_t)(sep - s);
    for (size_t i = 0; i < p->scheme_len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '-' || c == '.'))
            return -1;
    }
    const char *rest = sep + 3;
    if (split_host_port(rest, len - (size_t)(rest - s), p) < 0) return -1;
    if (p->port < 0) p->port = default_port(p->scheme, p->scheme_len);
    return 0;
}

int origin_parse_pattern(const char *s, struct origin_pattern *p, const char **why)
{
    struct parts parts;
    memset(p, 0, sizeof *p);
    if (split_origin(s, strlen(s), &parts) < 0) {
        *why = "an allowed origin must look like https://example.com or https://*.example.com"
               " (a scheme, ://, a host and an optional port, nothing more)";
        return -1;
    }
    if (parts.scheme_len >= sizeof p->scheme || parts.host_len >= sizeof p->host) {
        *why = "an allowed origin is too long";
        return -1;
    }
    if (parts.port < 0) {
        *why = "an allowed origin with a scheme other than http or https needs a port";
        return -1;
    }
    const char *host = parts.host;
    size_t host_len = parts.host_len;
    if (host_len > 2 && host[0] == '*' && host[1] == '.') {
        p->wildcard = true;
        host += 2;
        host_len -= 2;
    }
    /* Checked after the "*." is taken off, so that "*.*.example.com" is refused too. */
    if (memchr(host, '*', host_len)) {
        *why = "a wildcard is only allowed as the first label: https://*.example.com";
        return -1;
    }
    for (size_t i = 0; i < parts.scheme_len; i++) p->scheme[i] = lower(parts.scheme[i]);
    for (size_t i = 0; i < host_len; i++) p->host[i] = lower(host[i]);
    p->port = parts.port;
    return 0;
}

static bool pattern_matches(const struct origin_pattern *p, const struct parts *o)
{
    if (strlen(p->scheme) != o->scheme_len || strncasecmp(p->scheme, o->scheme, o->scheme_len))
        return false;
    if (p->port != o->port) return false;
    size_t n = strlen(p->host);
    if (!p->wildcard) return n == o->host_len && strncasecmp(p->host, o->host, n) == 0;
    /* "*.example.com": at least one label, then ".example.com". */
    return o->host_len > n + 1 && o->host[o->host_len - n - 1] == '.' &&
           strncasecmp(p->host, o->host + o->host_len - n, n) == 0;
}

bool origin_allowed(const struct origin_policy *pol, const char *origin, size_t origin_len,
                    const char *host, size_t host_len)
{
    if (!origin) return !pol->require_origin;
    if (pol->any) return true;
    struct parts o;
    if (split_origin(origin, origin_len, &o) < 0) return false; /* "null" lands here too */
    if (pol->count) {
        for (size_t i = 0; i < pol->count; i++)
            if (pattern_matches(&pol->patterns[i], &o)) return true;
        return false;
    }
    /* Same host: the page came from this server. The Host field has no scheme, so a Host
     * without a port means the default port of the origin's scheme (not the origin's own port:
     * a page on example.com:8080 must not pass for example.com). */
    struct parts h;
    if (split_host_port(host, host_len, &h) < 0) return false;
    /* Pages this server serves are http or https; another scheme (an extension's page) is
     * not "the same host" even with the same name. */
    if (!is_web_scheme(o.scheme, o.scheme_len)) return false;
    if (h.host_len != o.host_len || strncasecmp(h.host, o.host, o.host_len) != 0) return false;
    int host_port = h.port >= 0 ? h.port : default_port(o.scheme, o.scheme_len);
    return host_port == o.port;
}
