/* Outbound requests as bytes (see http_request.h): the URL taken apart and checked, the head
 * written with the fields the caller gave and the ones HTTP/1.1 needs. Everything the caller
 * passes is checked here: a CR or LF let through would let a header value start a second
 * request on the same connection. */
#include "http_request.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool token(const char *s)
{
    if (!*s) return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("!#$%&'*+-.^_`|~", c)))
            return false;
    }
    return true;
}

/* Splits url into out's scheme, host and port; *path points at the path and query. */
static int parse_url(struct hreq *out, const char *url, const char **path, size_t *path_len,
                     char *err, size_t errlen)
{
    const char *s;
    if (strncasecmp(url, "http://", 7) == 0) {
        out->tls = false;
        out->port = 80;
        s = url + 7;
    } else if (strncasecmp(url, "https://", 8) == 0) {
        out->tls = true;
        out->port = 443;
        s = url + 8;
    } else {
        snprintf(err, errlen, "the URL must start with http:// or https://");
        return -1;
    }
    size_t alen = strcspn(s, "/?#");
    const char *aend = s + alen;
    if (memchr(s, '@', alen)) {
        snprintf(err, errlen, "user and password in the URL are not supported: send an "
                              "Authorization header");
        return -1;
    }
    const char *h = s, *hend;
    const char *port = NULL;
    if (*s == '[') {
        hend = memchr(s, ']', alen);
        if (!hend) {
            snprintf(err, errlen, "the URL's IPv6 address has no closing ']'");
            return -1;
        }
        h = s + 1;
        if (hend + 1 < aend) {
            if (hend[1] != ':') {
                snprintf(err, errlen, "garbage after the URL's IPv6 address");
                return -1;
            }
            port = hend + 2;
        }
    } else {
        hend = memchr(s, ':', alen);
        if (hend) port = hend + 1;
        else hend = aend;
    }
    size_t hlen = (size_t)(hend - h);
    if (hlen == 0 || hlen > 253) {
        snprintf(err, errlen, "the URL has %s host", hlen ? "too long a" : "no");
        return -1;
    }
    out->host = malloc(hlen + 1);
    if (!out->host) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < hlen; i++) {
        char ch = h[i];
        if (ch >= 'A' && ch <= 'Z') ch = (char)(ch - 'A' + 'a');
        out->host[i] = ch;
    }
    out->host[hlen] = '\0';
    unsigned char a[16];
    if (*s == '[') {
        if (inet_pton(AF_INET6, out->host, a) != 1) {
            snprintf(err, errlen, "the URL's [%s] is not an IPv6 address", out->host);
            return -1;
        }
    } else {
        for (size_t i = 0; i < hlen; i++) {
            char ch = out->host[i];
            if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' ||
                  ch == '.' || ch == '_')) {
                snprintf(err, errlen, "the URL's host holds '%c', which no host name has", ch);
                return -1;
            }
        }
    }
    if (port) {
        unsigned long v = 0;
        const char *p = port;
        while (p < aend && *p >= '0' && *p <= '9' && v <= 65535)
            v = v * 10 + (unsigned)(*p++ - '0');
        if (p == port || p != aend || v == 0 || v > 65535) {
            snprintf(err, errlen, "the URL's port must be a number from 1 to 65535");
            return -1;
        }
        out->port = (uint16_t)v;
    }
    *path = aend;
    *path_len = strcspn(aend, "#");
    for (size_t i = 0; i < *path_len; i++) {
        unsigned char ch = (unsigned char)aend[i];
        if (ch <= 0x20 || ch == 0x7f) {
            snprintf(err, errlen, "the URL's path holds a space or a control character: "
                                  "percent-encode it (%%20)");
            return -1;
        }
    }
    return 0;
}

struct buf {
    char *p;
    size_t len, cap;
    bool failed;
};

static void put(struct buf *b, const char *s, size_t n)
{
    if (b->failed) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 512;
        while (cap < b->len + n) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void puts_(struct buf *b, const char *s)
{
    put(b, s, strlen(s));
}

static int build(struct hreq *out, const char *method, const char *url,
                 const char *const *headers, size_t nheaders, const char *body, size_t body_len,
                 char *err, size_t errlen)
{
    if (!method) method = "GET";
    if (!token(method)) {
        snprintf(err, errlen, "the method \"%.40s\" is not an HTTP token", method);
        return -1;
    }
    if (!url) {
        snprintf(err, errlen, "the request has no URL");
        return -1;
    }
    const char *path;
    size_t path_len;
    if (parse_url(out, url, &path, &path_len, err, errlen) < 0) return -1;
    out->head_request = strcmp(method, "HEAD") == 0;

    bool have_host = false, have_agent = false;
    for (size_t i = 0; i < nheaders; i++) {
        const char *name = headers[2 * i], *value = headers[2 * i + 1];
        if (!name || !value || !token(name)) {
            snprintf(err, errlen, "the header name \"%.40s\" is not an HTTP token",
                     name ? name : "(null)");
            return -1;
        }
        if (strpbrk(value, "\r\n")) {
            snprintf(err, errlen, "the value of header %.40s holds CR or LF", name);
            return -1;
        }
        if (!strcasecmp(name, "content-length") || !strcasecmp(name, "transfer-encoding")) {
            snprintf(err, errlen, "%s is set by the client from the body: leave it out", name);
            return -1;
        }
        if (!strcasecmp(name, "host")) have_host = true;
        if (!strcasecmp(name, "user-agent")) have_agent = true;
        if (!strcasecmp(name, "connection") && strcasestr(value, "close")) out->close = true;
    }

    struct buf b = { 0 };
    puts_(&b, method);
    put(&b, " ", 1);
    if (path_len == 0 || path[0] != '/') put(&b, "/", 1);
    put(&b, path, path_len);
    puts_(&b, " HTTP/1.1\r\n");
    if (!have_host) {
        char host[300], port[8] = "";
        bool v6 = strchr(out->host, ':') != NULL;
        if (out->port != (out->tls ? 443 : 80)) snprintf(port, sizeof port, ":%u", out->port);
        snprintf(host, sizeof host, "Host: %s%s%s%s\r\n", v6 ? "[" : "", out->host,
                 v6 ? "]" : "", port);
        puts_(&b, host);
    }
    if (!have_agent) puts_(&b, "User-Agent: moonwire\r\n");
    for (size_t i = 0; i < nheaders; i++) {
        puts_(&b, headers[2 * i]);
        put(&b, ": ", 2);
        puts_(&b, headers[2 * i + 1]);
        put(&b, "\r\n", 2);
    }
    if (body || !strcmp(method, "POST") || !strcmp(method, "PUT") ||
        !strcmp(method, "PATCH")) {
        char cl[48];
        snprintf(cl, sizeof cl, "Content-Length: %zu\r\n", body ? body_len : 0);
        puts_(&b, cl);
    }
    put(&b, "\r\n", 2);
    if (body) put(&b, body, body_len);
    if (b.failed) {
        free(b.p);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    out->bytes = b.p;
    out->len = b.len;
    return 0;
}

int hreq_build(struct hreq *out, const char *method, const char *url,
               const char *const *headers, size_t nheaders, const char *body, size_t body_len,
               char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (build(out, method, url, headers, nheaders, body, body_len, err, errlen) < 0) {
        hreq_free(out);
        return -1;
    }
    return 0;
}

void hreq_free(struct hreq *out)
{
    free(out->host);
    free(out->bytes);
    memset(out, 0, sizeof *out);
}
