/* Fuzz target for the origin matcher (core/origin.h). Beyond not crashing on any pattern, Origin
 * or Host text: a parsed pattern is lower case, has a host without '*' and a real port, and
 * matches the origin it describes (in any case) but not its neighbours; origin_allowed follows
 * the rules its header lists for a missing origin, "*", "null" and case.
 *
 * Input: [0] flags (bit 0 require_origin, bit 1: no Origin field), then three fields separated
 * by '\n': an allowed-origin pattern, an Origin value, a Host value. */
#include "fuzz.h"

#include "origin.h"

static char upper(char c) { return c >= 'a' && c <= 'z' ? (char)(c - 32) : c; }

/* origin_allowed on a guard copy of s, which has no terminating NUL. */
static bool allowed(const struct origin_policy *pol, const char *s, size_t len, const char *host,
                    size_t host_len)
{
    const char *o = s ? (const char *)fuzz_guard_copy(0, s, len) : NULL;
    const char *h = (const char *)fuzz_guard_copy(1, host, host_len);
    return origin_allowed(pol, o, len, h, host_len);
}

static void check_pattern(const struct origin_pattern *p, const char *text)
{
    size_t scheme_len = strnlen(p->scheme, sizeof p->scheme);
    size_t host_len = strnlen(p->host, sizeof p->host);
    FUZZ_CHECK(scheme_len > 0 && scheme_len < sizeof p->scheme, "\"%s\": scheme length %zu",
               text, scheme_len);
    FUZZ_CHECK(host_len > 0 && host_len < sizeof p->host, "\"%s\": host length %zu", text,
               host_len);
    FUZZ_CHECK(p->port >= 1 && p->port <= 65535, "\"%s\": port %d", text, p->port);
    for (size_t i = 0; i < scheme_len; i++)
        FUZZ_CHECK(!(p->scheme[i] >= 'A' && p->scheme[i] <= 'Z'), "\"%s\": scheme not lower "
                   "case", text);
    for (size_t i = 0; i < host_len; i++) {
        FUZZ_CHECK(!(p->host[i] >= 'A' && p->host[i] <= 'Z'), "\"%s\": host not lower case",
                   text);
        FUZZ_CHECK(p->host[i] != '*', "\"%s\": '*' left in the host \"%s\"", text, p->host);
    }

    /* The origin it describes: a browser sends no default port, but may; either must match. */
    struct origin_policy pol = { .patterns = (struct origin_pattern *)p, .count = 1 };
    char canon[400], other[400];
    const char *label = p->wildcard ? "sub." : "";
    int n = snprintf(canon, sizeof canon, "%s://%s%s:%d", p->scheme, label, p->host, p->port);
    FUZZ_CHECK(n > 0 && (size_t)n < sizeof canon, "canonical origin too long");
    FUZZ_CHECK(allowed(&pol, canon, (size_t)n, "", 0), "\"%s\" does not match %s", text, canon);
    for (int i = 0; i < n; i++) other[i] = upper(canon[i]);
    FUZZ_CHECK(allowed(&pol, other, (size_t)n, "", 0), "\"%s\" does not match %.*s", text, n,
               other);
    /* Another port, and for a wildcard the parent name itself, do not match. */
    n = snprintf(other, sizeof other, "%s://%s%s:%d", p->scheme, label, p->host,
                 p->port % 65535 + 1);
    FUZZ_CHECK(!allowed(&pol, other, (size_t)n, "", 0), "\"%s\" matches %s", text, other);
    if (p->wildcard) {
        n = snprintf(other, sizeof other, "%s://%s:%d", p->scheme, p->host, p->port);
        FUZZ_CHECK(!allowed(&pol, other, (size_t)n, "", 0), "\"%s\" matches its parent %s",
                   text, other);
    }
}

/* Matching ignores the case of the origin and of the Host field. */
static void check_case(const struct origin_policy *pol, const char *o, size_t olen,
                       const char *h, size_t hlen, bool verdict)
{
    char *uo = malloc(olen + 1), *uh = malloc(hlen + 1);
    FUZZ_CHECK(uo && uh, "out of memory");
    for (size_t i = 0; i < olen; i++) uo[i] = upper(o[i]);
    for (size_t i = 0; i < hlen; i++) uh[i] = upper(h[i]);
    FUZZ_CHECK(allowed(pol, uo, olen, uh, hlen) == verdict, "verdict changes with case");
    free(uo);
    free(uh);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    unsigned flags = data[0];
    const char *fields[3] = { "", "", "" };
    size_t lens[3] = { 0, 0, 0 };
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    for (int i = 0; i < 3 && p <= end; i++) {
        const char *nl = i < 2 ? memchr(p, '\n', (size_t)(end - p)) : NULL;
        fields[i] = p;
        lens[i] = (size_t)((nl ? nl : end) - p);
        if (!nl) break;
        p = nl + 1;
    }

    /* The pattern is a C string, as the configuration gives it. */
    char *text = malloc(lens[0] + 1);
    FUZZ_CHECK(text, "out of memory");
    memcpy(text, fields[0], lens[0]);
    text[lens[0]] = '\0';
    struct origin_pattern pat;
    const char *why = NULL;
    int rc = origin_parse_pattern(text, &pat, &why);
    FUZZ_CHECK(rc == 0 || (rc == -1 && why), "origin_parse_pattern returned %d", rc);
    if (rc == 0) check_pattern(&pat, text);

    const char *origin = flags & 2 ? NULL : fields[1];
    size_t olen = origin ? lens[1] : 0;
    const char *host = fields[2];
    size_t hlen = lens[2];
    bool require = flags & 1;

    struct origin_policy same = { .require_origin = require };
    struct origin_policy any = { .any = true, .require_origin = require };
    struct origin_policy one = { .patterns = &pat, .count = 1, .require_origin = require };
    bool v_same = allowed(&same, origin, olen, host, hlen);
    bool v_any = allowed(&any, origin, olen, host, hlen);
    if (!origin) {
        FUZZ_CHECK(v_same == !require && v_any == !require, "no Origin: allowed %d/%d with "
                   "require_origin %d", v_same, v_any, require);
    } else {
        FUZZ_CHECK(v_any, "\"*\" refused an origin");
        if (olen == 4 && memcmp(origin, "null", 4) == 0)
            FUZZ_CHECK(!v_same, "the origin \"null\" matched the Host");
        check_case(&same, origin, olen, host, hlen, v_same);
    }
    if (rc == 0) {
        bool v_one = allowed(&one, origin, olen, host, hlen);
        if (origin) {
            check_case(&one, origin, olen, host, hlen, v_one);
            if (olen == 4 && memcmp(origin, "null", 4) == 0)
                FUZZ_CHECK(!v_one, "the origin \"null\" matched a pattern");
        }
    }
    free(text);
    return 0;
}
