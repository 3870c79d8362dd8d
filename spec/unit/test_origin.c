/* Tests for the origin policy (core/origin.h): which allowed-origin patterns parse and into what,
 * how an Origin field is matched against them (scheme, host, port, "*." wildcards), and the
 * same-host rule used when no pattern is configured. Origins and Host values are counted
 * strings from the request, so they are given to origin_allowed at the end of a guard page. */
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "guard.h"
#include "origin.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- Patterns ------------------------------------------------------------------------------- */

struct pattern_case {
    const char *name;
    const char *text;
    bool valid;
    /* When valid: */
    const char *scheme;
    const char *host;
    int port;
    bool wildcard;
};

static const struct pattern_case patterns[] = {
    { "https", "https://example.com", true, "https", "example.com", 443, false },
    { "http", "http://example.com", true, "http", "example.com", 80, false },
    { "upper case scheme and host are lowered", "HTTPS://Example.COM", true, "https",
      "example.com", 443, false },
    { "explicit port", "http://localhost:8080", true, "http", "localhost", 8080, false },
    { "explicit default port", "https://example.com:443", true, "https", "example.com", 443,
      false },
    { "port 1", "http://example.com:1", true, "http", "example.com", 1, false },
    { "port 65535", "http://example.com:65535", true, "http", "example.com", 65535, false },
    { "ws takes http's port", "ws://example.com", true, "ws", "example.com", 80, false },
    { "wss takes https's port", "wss://example.com", true, "wss", "example.com", 443, false },
    { "another scheme with a port", "ftp://example.com:21", true, "ftp", "example.com", 21,
      false },
    { "scheme with + - .", "a+b.c-d://host:7", true, "a+b.c-d", "host", 7, false },
    { "15-character scheme (the longest)", "abcdefghijklmno://x:1", true, "abcdefghijklmno", "x",
      1, false },
    { "IPv4 address", "http://127.0.0.1:3000", true, "http", "127.0.0.1", 3000, false },
    { "IPv6 loopback with port", "http://[::1]:8080", true, "http", "[::1]", 8080, false },
    { "IPv6 without port", "https://[2001:db8::1]", true, "https", "[2001:db8::1]", 443, false },
    { "IPv6 upper case is lowered", "https://[2001:DB8::A]", true, "https", "[2001:db8::a]", 443,
      false },
    { "wildcard", "https://*.example.com", true, "https", "example.com", 443, true },
    { "wildcard with port and capitals", "https://*.Example.COM:8443", true, "https",
      "example.com", 8443, true },
    { "wildcard over a deeper name", "http://*.a.b.example.com", true, "http", "a.b.example.com",
      80, true },

    { "empty", "", false, 0, 0, 0, false },
    { "\"*\" is the caller's business, not a pattern", "*", false, 0, 0, 0, false },
    { "null", "null", false, 0, 0, 0, false },
    { "no scheme", "example.com", false, 0, 0, 0, false },
    { "no scheme, with a port", "example.com:443", false, 0, 0, 0, false },
    { "wildcard without scheme", "*.example.com", false, 0, 0, 0, false },
    { "one slash", "https:/example.com", false, 0, 0, 0, false },
    { "no colon", "https//example.com", false, 0, 0, 0, false },
    { "empty scheme", "://example.com", false, 0, 0, 0, false },
    { "space in scheme", "ht tp://example.com", false, 0, 0, 0, false },
    { "leading space", " https://example.com", false, 0, 0, 0, false },
    { "16-character scheme: too long", "abcdefghijklmnop://x:1", false, 0, 0, 0, false },
    { "other scheme without a port", "ftp://example.com", false, 0, 0, 0, false },
    { "nothing after the scheme", "https://", false, 0, 0, 0, false },
    { "port without host", "https://:443", false, 0, 0, 0, false },
    { "trailing slash", "https://example.com/", false, 0, 0, 0, false },
    { "path", "https://example.com/app", false, 0, 0, 0, false },
    { "port then path", "https://example.com:443/", false, 0, 0, 0, false },
    { "user info", "https://user@example.com", false, 0, 0, 0, false },
    { "user and password", "https://user:pw@example.com", false, 0, 0, 0, false },
    { "query", "https://example.com?q=1", false, 0, 0, 0, false },
    { "fragment", "https://example.com#top", false, 0, 0, 0, false },
    { "colon without port", "https://example.com:", false, 0, 0, 0, false },
    { "port 0", "https://example.com:0", false, 0, 0, 0, false },
    { "port 65536", "https://example.com:65536", false, 0, 0, 0, false },
    { "port 99999", "https://example.com:99999", false, 0, 0, 0, false },
    { "six-digit port", "https://example.com:100080", false, 0, 0, 0, false },
    { "port past 2^32 does not wrap to 80", "https://example.com:4294967376", false, 0, 0, 0,
      false },
    { "negative port", "https://example.com:-1", false, 0, 0, 0, false },
    { "signed port", "https://example.com:+80", false, 0, 0, 0, false },
    { "letter in port", "https://example.com:8o", false, 0, 0, 0, false },
    { "two ports", "https://example.com:80:80", false, 0, 0, 0, false },
    { "space in host", "https://exa mple.com", false, 0, 0, 0, false },
    { "trailing space", "https://example.com ", false, 0, 0, 0, false },
    { "tab", "https://example.com\t", false, 0, 0, 0, false },
    { "non-ASCII host", "https://ex\xC3\xA9mple.com", false, 0, 0, 0, false },
    { "DEL in host", "https://exa\x7Fmple.com", false, 0, 0, 0, false },
    { "wildcard alone", "https://*", false, 0, 0, 0, false },
    { "wildcard and dot alone", "https://*.", false, 0, 0, 0, false },
    { "wildcard without its dot", "https://*example.com", false, 0, 0, 0, false },
    { "wildcard inside a label", "https://ex*ample.com", false, 0, 0, 0, false },
    { "wildcard as a middle label", "https://a.*.example.com", false, 0, 0, 0, false },
    { "wildcard as the last label", "https://example.*", false, 0, 0, 0, false },
    { "two wildcard labels", "https://*.*.example.com", false, 0, 0, 0, false },
    { "wildcard first and later", "https://*.example.*", false, 0, 0, 0, false },
    { "double star", "https://**.example.com", false, 0, 0, 0, false },
    { "IPv6 without its bracket", "https://[::1", false, 0, 0, 0, false },
    { "IPv6 without brackets", "https://::1", false, 0, 0, 0, false },
    { "IPv6 with a second bracket", "https://[::1]]", false, 0, 0, 0, false },
    { "IPv6 with junk after the bracket", "https://[::1]x", false, 0, 0, 0, false },
    { "IPv6 with a colon and no port", "https://[::1]:", false, 0, 0, 0, false },
    { "IPv6 with a bad port", "https://[::1]:99999", false, 0, 0, 0, false },
    { "IPv6 with a path", "https://[::1]/", false, 0, 0, 0, false },
};

/* Parses text read from a guard page: the terminating NUL is the last readable byte, so a parser
 * that looks past it crashes. */
static int parse_guarded(const char *text, struct origin_pattern *p, const char **why)
{
    struct guard g;
    const char *s = guard_copy_str(&g, text, strlen(text) + 1);
    guard_seal(&g);
    int rc = origin_parse_pattern(s, p, why);
    guard_free(&g);
    return rc;
}

static void check_pattern(const struct pattern_case *c)
{
    struct origin_pattern p;
    memset(&p, 0xA5, sizeof p);
    const char *why = NULL;
    int rc = parse_guarded(c->text, &p, &why);
    if (!c->valid) {
        cr_expect_eq(rc, -1, "%s (\"%s\"): accepted, want refused", c->name, c->text);
        if (rc == -1)
            cr_expect(why && why[0], "%s (\"%s\"): refused without a reason", c->name, c->text);
        return;
    }
    cr_expect_eq(rc, 0, "%s (\"%s\"): refused (%s)", c->name, c->text, why ? why : "");
    if (rc != 0) return;
    /* Both strings are NUL-terminated inside their arrays. */
    cr_expect(memchr(p.scheme, 0, sizeof p.scheme) && strcmp(p.scheme, c->scheme) == 0,
              "%s: scheme \"%.*s\", want \"%s\"", c->name, (int)sizeof p.scheme, p.scheme,
              c->scheme);
    cr_expect(memchr(p.host, 0, sizeof p.host) && strcmp(p.host, c->host) == 0,
              "%s: host \"%.*s\", want \"%s\"", c->name, (int)sizeof p.host, p.host, c->host);
    cr_expect_eq(p.port, c->port, "%s: port %d, want %d", c->name, p.port, c->port);
    cr_expect_eq(p.wildcard, c->wildcard, "%s: wildcard %d, want %d", c->name, p.wildcard,
                 c->wildcard);
}

Test(origin, pattern_table)
{
    for (size_t i = 0; i < N(patterns); i++) check_pattern(&patterns[i]);
}

/* The host must fit its 256-byte array with the NUL: 255 characters do, 256 do not. */
Test(origin, pattern_length_limits)
{
    static const struct {
        const char *name;
        const char *prefix;
        size_t host_len;
        bool valid;
    } cases[] = {
        { "255-character host", "https://", 255, true },
        { "256-character host", "https://", 256, false },
        { "1000-character host", "https://", 1000, false },
        { "wildcard over a 200-character name", "https://*.", 200, true },
        { "wildcard over a 1000-character name", "https://*.", 1000, false },
    };
    for (size_t i = 0; i < N(cases); i++) {
        char text[1100];
        size_t plen = strlen(cases[i].prefix);
        memcpy(text, cases[i].prefix, plen);
        memset(text + plen, 'a', cases[i].host_len);
        text[plen + cases[i].host_len] = 0;
        struct origin_pattern p;
        const char *why = NULL;
        int rc = parse_guarded(text, &p, &why);
        cr_expect_eq(rc, cases[i].valid ? 0 : -1, "%s: returned %d", cases[i].name, rc);
        if (rc == 0)
            cr_expect_eq(strlen(p.host), cases[i].host_len, "%s: host of %zu characters",
                         cases[i].name, strlen(p.host));
        else
            cr_expect(why && why[0], "%s: refused without a reason", cases[i].name);
    }
}

/* ---- Matching ------------------------------------------------------------------------------- */

#define MAX_PATTERNS 4

struct match_case {
    const char *name;
    const char *patterns[MAX_PATTERNS]; /* up to the first NULL; none: the same-host rule */
    bool any;
    bool require_origin;
    const char *origin; /* NULL: no Origin field */
    const char *host;
    bool want;
};

static const struct match_case matches[] = {
    /* One exact pattern. */
    { "exact", { "https://example.com" }, false, false, "https://example.com", "example.com",
      true },
    { "scheme and host in capitals", { "https://example.com" }, false, false,
      "HTTPS://EXAMPLE.COM", "example.com", true },
    { "mixed case host", { "https://example.com" }, false, false, "https://ExAmple.Com",
      "example.com", true },
    { "explicit default port matches the default", { "https://example.com" }, false, false,
      "https://example.com:443", "example.com", true },
    { "another port", { "https://example.com" }, false, false, "https://example.com:8443",
      "example.com", false },
    { "http instead of https", { "https://example.com" }, false, false, "http://example.com",
      "example.com", false },
    { "http on port 443 is not https", { "https://example.com" }, false, false,
      "http://example.com:443", "example.com", false },
    { "wss shares the port, not the scheme", { "https://example.com" }, false, false,
      "wss://example.com", "example.com", false },
    { "subdomain of an exact pattern", { "https://example.com" }, false, false,
      "https://www.example.com", "example.com", false },
    { "pattern as a prefix of another host", { "https://example.com" }, false, false,
      "https://example.com.evil.org", "example.com", false },
    { "pattern as a suffix of another host", { "https://example.com" }, false, false,
      "https://evilexample.com", "example.com", false },
    { "host shorter by a letter", { "https://example.com" }, false, false, "https://example.co",
      "example.com", false },
    { "host longer by a letter", { "https://example.com" }, false, false,
      "https://example.comm", "example.com", false },
    { "trailing dot is another name", { "https://example.com" }, false, false,
      "https://example.com.", "example.com", false },
    { "origin with a path", { "https://example.com" }, false, false, "https://example.com/",
      "example.com", false },
    { "origin with user info", { "https://example.com" }, false, false,
      "https://evil@example.com", "example.com", false },
    { "null origin", { "https://example.com" }, false, false, "null", "example.com", false },
    { "empty origin", { "https://example.com" }, false, false, "", "example.com", false },
    { "no Origin field", { "https://example.com" }, false, false, NULL, "example.com", true },
    { "no Origin field, origin required", { "https://example.com" }, false, true, NULL,
      "example.com", false },
    { "the Host field does not matter with patterns", { "https://example.com" }, false, false,
      "https://other.org", "other.org", false },
    { "a pattern match does not need the Host field", { "https://example.com" }, false, false,
      "https://example.com", "other.org", true },
    { "pattern with an explicit default port", { "https://example.com:443" }, false, false,
      "https://example.com", "example.com", true },
    { "http pattern, origin with :80", { "http://example.com" }, false, false,
      "http://example.com:80", "example.com", true },
    { "port pattern", { "http://localhost:8080" }, false, false, "http://localhost:8080",
      "localhost", true },
    { "port pattern, capitals", { "http://localhost:8080" }, false, false,
      "HTTP://LOCALHOST:8080", "localhost", true },
    { "port pattern, no port in the origin", { "http://localhost:8080" }, false, false,
      "http://localhost", "localhost", false },
    { "port pattern, another port", { "http://localhost:8080" }, false, false,
      "http://localhost:8081", "localhost", false },

    /* Wildcards: at least one label, then a dot, then the pattern's host. */
    { "wildcard: one label", { "https://*.example.com" }, false, false,
      "https://a.example.com", "x", true },
    { "wildcard: two labels", { "https://*.example.com" }, false, false,
      "https://a.b.example.com", "x", true },
    { "wildcard: capitals", { "https://*.example.com" }, false, false,
      "https://A.EXAMPLE.COM", "x", true },
    { "wildcard: with the default port", { "https://*.example.com" }, false, false,
      "https://a.example.com:443", "x", true },
    { "wildcard: not the name itself", { "https://*.example.com" }, false, false,
      "https://example.com", "x", false },
    { "wildcard: not a name ending in it", { "https://*.example.com" }, false, false,
      "https://badexample.com", "x", false },
    { "wildcard: not one letter longer", { "https://*.example.com" }, false, false,
      "https://xexample.com", "x", false },
    { "wildcard: not a label ending in it", { "https://*.example.com" }, false, false,
      "https://a.badexample.com", "x", false },
    { "wildcard: not as a prefix", { "https://*.example.com" }, false, false,
      "https://example.com.evil.org", "x", false },
    { "wildcard: not as a middle part", { "https://*.example.com" }, false, false,
      "https://a.example.com.evil.org", "x", false },
    { "wildcard: not an empty label", { "https://*.example.com" }, false, false,
      "https://.example.com", "x", false },
    { "wildcard: another port", { "https://*.example.com" }, false, false,
      "https://a.example.com:8443", "x", false },
    { "wildcard: another scheme", { "https://*.example.com" }, false, false,
      "http://a.example.com", "x", false },
    { "wildcard: truncated name", { "https://*.example.com" }, false, false,
      "https://a.example.co", "x", false },

    /* Several patterns: any one may match. */
    { "list: first", { "https://example.com", "https://*.example.com", "http://localhost:3000" },
      false, false, "https://example.com", "x", true },
    { "list: second", { "https://example.com", "https://*.example.com", "http://localhost:3000" },
      false, false, "https://www.example.com", "x", true },
    { "list: third", { "https://example.com", "https://*.example.com", "http://localhost:3000" },
      false, false, "http://localhost:3000", "x", true },
    { "list: none", { "https://example.com", "https://*.example.com", "http://localhost:3000" },
      false, false, "http://localhost", "x", false },
    { "list: another site", { "https://example.com", "https://*.example.com" }, false, false,
      "https://example.org", "x", false },

    /* IPv6 patterns compare the bracketed text, ignoring case. */
    { "IPv6 pattern", { "http://[::1]:8080" }, false, false, "http://[::1]:8080", "x", true },
    { "IPv6 pattern, no port", { "http://[::1]:8080" }, false, false, "http://[::1]", "x",
      false },
    { "IPv6 pattern, another address", { "http://[::1]:8080" }, false, false,
      "http://[::2]:8080", "x", false },
    { "IPv6 pattern, capitals", { "https://[2001:db8::a]" }, false, false,
      "https://[2001:DB8::A]", "x", true },
    { "IPv6 origin without brackets", { "http://[::1]:8080" }, false, false, "http://::1:8080",
      "x", false },

    /* "*": every origin that is present, well-formed or not. */
    { "any: a site", { 0 }, true, false, "https://anything.org", "example.com", true },
    { "any: null", { 0 }, true, false, "null", "example.com", true },
    { "any: malformed", { 0 }, true, false, "not an origin", "example.com", true },
    { "any: empty", { 0 }, true, false, "", "example.com", true },
    { "any: no Origin field", { 0 }, true, false, NULL, "example.com", true },
    { "any: no Origin field, origin required", { 0 }, true, true, NULL, "example.com", false },

    /* No patterns: the origin's host[:port] must be the Host field's. */
    { "same host: http", { 0 }, false, false, "http://example.com", "example.com", true },
    { "same host: https", { 0 }, false, false, "https://example.com", "example.com", true },
    { "same host: http, Host with :80", { 0 }, false, false, "http://example.com",
      "example.com:80", true },
    { "same host: https, Host with :443", { 0 }, false, false, "https://example.com",
      "example.com:443", true },
    { "same host: origin with :80, Host without", { 0 }, false, false, "http://example.com:80",
      "example.com", true },
    { "same host: origin with :443, Host without", { 0 }, false, false,
      "https://example.com:443", "example.com", true },
    { "same host: same explicit port", { 0 }, false, false, "http://example.com:8080",
      "example.com:8080", true },
    { "same host: origin on 8080, Host on the default port", { 0 }, false, false,
      "http://example.com:8080", "example.com", false },
    { "same host: https origin on 8443, Host on the default port", { 0 }, false, false,
      "https://example.com:8443", "example.com", false },
    { "same host: http origin on 443, Host on http's default", { 0 }, false, false,
      "http://example.com:443", "example.com", false },
    { "same host: origin on the default port, Host on 8080", { 0 }, false, false,
      "http://example.com", "example.com:8080", false },
    { "same host: https origin, Host on 80", { 0 }, false, false, "https://example.com",
      "example.com:80", false },
    { "same host: http origin, Host on 443", { 0 }, false, false, "http://example.com",
      "example.com:443", false },
    { "same host: different explicit ports", { 0 }, false, false, "http://example.com:8080",
      "example.com:8081", false },
    { "same host: case differs", { 0 }, false, false, "HTTP://EXAMPLE.com", "example.COM",
      true },
    { "same host: origin is a subdomain", { 0 }, false, false, "http://www.example.com",
      "example.com", false },
    { "same host: Host is a subdomain", { 0 }, false, false, "http://example.com",
      "www.example.com", false },
    { "same host: Host as a prefix of the origin", { 0 }, false, false,
      "http://example.com.evil.org", "example.com", false },
    { "same host: other site", { 0 }, false, false, "http://evil.org", "example.com", false },
    { "same host: origin shorter", { 0 }, false, false, "http://example.co", "example.com",
      false },
    { "same host: Host shorter", { 0 }, false, false, "http://example.com", "example.co",
      false },
    { "same host: IPv4", { 0 }, false, false, "http://127.0.0.1:3000", "127.0.0.1:3000", true },
    { "same host: another IPv4", { 0 }, false, false, "http://127.0.0.1:3000", "127.0.0.2:3000",
      false },
    { "same host: IPv6", { 0 }, false, false, "http://[::1]", "[::1]", true },
    { "same host: IPv6 with port", { 0 }, false, false, "http://[::1]:8080", "[::1]:8080",
      true },
    { "same host: IPv6, Host with :80", { 0 }, false, false, "http://[::1]", "[::1]:80", true },
    { "same host: IPv6, https, Host with :443", { 0 }, false, false, "https://[::1]",
      "[::1]:443", true },
    { "same host: IPv6 capitals", { 0 }, false, false, "http://[2001:DB8::1]", "[2001:db8::1]",
      true },
    { "same host: IPv6, origin on 8080, Host without", { 0 }, false, false,
      "http://[::1]:8080", "[::1]", false },
    { "same host: IPv6, another address", { 0 }, false, false, "http://[::1]", "[::2]", false },
    { "same host: IPv6, Host without brackets", { 0 }, false, false, "http://[::1]", "::1",
      false },
    { "same host: IPv6 origin without its bracket", { 0 }, false, false, "http://[::1",
      "[::1]", false },
    { "same host: IPv6 Host without its bracket", { 0 }, false, false, "http://[::1]", "[::1",
      false },
    { "same host: IPv6 both without their bracket", { 0 }, false, false, "http://[::1", "[::1",
      false },
    { "same host: null origin", { 0 }, false, false, "null", "example.com", false },
    { "same host: null origin, Host null", { 0 }, false, false, "null", "null", false },
    { "same host: empty origin", { 0 }, false, false, "", "example.com", false },
    { "same host: origin without scheme", { 0 }, false, false, "example.com", "example.com",
      false },
    { "same host: origin with a path", { 0 }, false, false, "http://example.com/",
      "example.com", false },
    { "same host: origin with user info", { 0 }, false, false, "http://u@example.com",
      "example.com", false },
    { "same host: origin with a query", { 0 }, false, false, "http://example.com?x",
      "example.com", false },
    { "same host: origin with a fragment", { 0 }, false, false, "http://example.com#x",
      "example.com", false },
    { "same host: origin with an empty port", { 0 }, false, false, "http://example.com:",
      "example.com:", false },
    { "same host: origin with port 0", { 0 }, false, false, "http://example.com:0",
      "example.com:0", false },
    { "same host: origin with port 65536", { 0 }, false, false, "http://example.com:65536",
      "example.com:65536", false },
    { "same host: ports past 2^32 do not wrap to 80", { 0 }, false, false,
      "http://example.com:4294967376", "example.com:4294967376", false },
    { "same host: one slash", { 0 }, false, false, "http:/example.com", "example.com", false },
    { "same host: no scheme before ://", { 0 }, false, false, "://example.com", "example.com",
      false },
    { "same host: nothing after ://", { 0 }, false, false, "http://", "example.com", false },
    { "same host: space before the host", { 0 }, false, false, "http:// example.com",
      "example.com", false },
    { "same host: CRLF after the origin", { 0 }, false, false, "http://example.com\r\n",
      "example.com", false },
    { "same host: non-ASCII", { 0 }, false, false, "http://ex\xC3\xA9mple.com",
      "ex\xC3\xA9mple.com", false },
    { "same host: empty Host", { 0 }, false, false, "http://example.com", "", false },
    { "same host: Host with an empty port", { 0 }, false, false, "http://example.com",
      "example.com:", false },
    { "same host: Host with a bad port", { 0 }, false, false, "http://example.com",
      "example.com:abc", false },
    { "same host: Host with port 0", { 0 }, false, false, "http://example.com",
      "example.com:0", false },
    { "same host: Host with a port too large", { 0 }, false, false, "http://example.com",
      "example.com:70000", false },
    { "same host: Host with a path", { 0 }, false, false, "http://example.com",
      "example.com/x", false },
    { "same host: Host with user info", { 0 }, false, false, "http://example.com",
      "u@example.com", false },
    { "same host: Host with a trailing space", { 0 }, false, false, "http://example.com",
      "example.com ", false },
    { "same host: Host is only a port", { 0 }, false, false, "http://example.com", ":80", false },
    { "same host: no Origin field", { 0 }, false, false, NULL, "example.com", true },
    { "same host: no Origin field, origin required", { 0 }, false, true, NULL, "example.com",
      false },
};

/* Runs origin_allowed with origin and host each ending at a guard page. */
static bool allowed_guarded(const struct origin_policy *pol, const char *origin,
                            size_t origin_len, const char *host, size_t host_len)
{
    struct guard go = { 0 }, gh;
    const char *o = NULL;
    if (origin) {
        o = guard_copy_str(&go, origin, origin_len);
        guard_seal(&go);
    }
    const char *h = guard_copy_str(&gh, host, host_len);
    guard_seal(&gh);
    bool ok = origin_allowed(pol, o, origin_len, h, host_len);
    guard_free(&go);
    guard_free(&gh);
    return ok;
}

/* Fills pol from pattern texts; store must hold MAX_PATTERNS. */
static void policy_of(struct origin_policy *pol, struct origin_pattern *store,
                      const char *const *texts, bool any, bool require_origin)
{
    memset(pol, 0, sizeof *pol);
    pol->patterns = store;
    pol->any = any;
    pol->require_origin = require_origin;
    for (size_t i = 0; i < MAX_PATTERNS && texts[i]; i++) {
        const char *why = "";
        cr_assert_eq(origin_parse_pattern(texts[i], &store[pol->count], &why), 0,
                     "pattern \"%s\" refused: %s", texts[i], why);
        pol->count++;
    }
}

Test(origin, match_table)
{
    for (size_t i = 0; i < N(matches); i++) {
        const struct match_case *c = &matches[i];
        struct origin_pattern store[MAX_PATTERNS];
        struct origin_policy pol;
        policy_of(&pol, store, c->patterns, c->any, c->require_origin);
        size_t olen = c->origin ? strlen(c->origin) : 0;
        bool got = allowed_guarded(&pol, c->origin, olen, c->host, strlen(c->host));
        cr_expect_eq(got, c->want, "%s (origin \"%s\", Host \"%s\"): %s", c->name,
                     c->origin ? c->origin : "(none)", c->host, got ? "allowed" : "refused");
    }
}

/* The lengths are what count, not NULs: a NUL inside either value is a byte like any other (and
 * not one a host may contain), and bytes after the given length are not part of the value. */
Test(origin, counted_strings)
{
    static const struct {
        const char *name;
        const char *origin;
        size_t origin_len;
        const char *host;
        size_t host_len;
        bool want;
    } cases[] = {
        { "NUL then another domain in the origin", "http://example.com\0.evil.org", 28,
          "example.com", 11, false },
        { "NUL then a port in the Host", "http://example.com", 18, "example.com\0:80", 15,
          false },
        { "NUL inside both, same bytes", "http://exa\0mple.com", 19, "exa\0mple.com", 12,
          false },
        { "origin cut before its port", "http://example.com:8080", 18, "example.com", 11, true },
        { "Host cut before its port", "http://example.com", 18, "example.com:8080", 11, true },
        { "origin cut inside its host", "http://example.com", 14, "example.com", 11, false },
        { "origin cut before the host", "http://example.com", 7, "example.com", 11, false },
        { "origin cut inside ://", "http://example.com", 6, "example.com", 11, false },
        { "empty origin", "http://example.com", 0, "example.com", 11, false },
        { "empty Host", "http://example.com", 18, "example.com", 0, false },
    };
    struct origin_policy pol = { 0 };
    for (size_t i = 0; i < N(cases); i++) {
        bool got = allowed_guarded(&pol, cases[i].origin, cases[i].origin_len, cases[i].host,
                                   cases[i].host_len);
        cr_expect_eq(got, cases[i].want, "%s: %s", cases[i].name, got ? "allowed" : "refused");
    }
}

/* Every byte value placed in the host of both the origin and the Host field, the two agreeing.
 * A byte that cannot be in a host (controls, space, DEL, non-ASCII) or that would end the
 * authority (/ @ ? #) is refused; the bytes of a name (letters, digits, '-', '.', '_') are
 * allowed. No byte, NUL included, is taken as the end of the value. */
Test(origin, every_byte_in_the_host)
{
    struct origin_policy pol = { 0 };
    for (unsigned c = 0; c < 256; c++) {
        char origin[19], host[12];
        memcpy(origin, "http://exa?mple.com", sizeof origin);
        memcpy(host, "exa?mple.com", sizeof host);
        origin[10] = (char)c;
        host[3] = (char)c;
        bool refuse = c <= ' ' || c >= 0x7F || c == '/' || c == '@' || c == '?' || c == '#';
        bool allow = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                     (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
        bool got = allowed_guarded(&pol, origin, sizeof origin, host, sizeof host);
        if ((refuse && got) || (allow && !got))
            cr_expect(false, "byte 0x%02X in the host: %s", c, got ? "allowed" : "refused");
    }
}

/* A long origin against a long Host: lengths near the pattern limit are no problem for a
 * request, which has no fixed-size copy. */
Test(origin, long_same_host)
{
    static char origin[2100], host[2100];
    memcpy(origin, "https://", 8);
    memset(origin + 8, 'a', 2000);
    memset(host, 'a', 2000);
    struct origin_policy pol = { 0 };
    cr_expect(allowed_guarded(&pol, origin, 2008, host, 2000), "2000-character host refused");
    host[1999] = 'b';
    cr_expect_not(allowed_guarded(&pol, origin, 2008, host, 2000), "last byte differs: allowed");
}
