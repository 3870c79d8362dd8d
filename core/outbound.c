/* The outbound policy (see outbound.h): names and CIDR blocks parsed from the config, judged
 * against a destination's name and each address it resolved to. Every address is kept as 16
 * bytes of IPv6, an IPv4 one in its mapped form (::ffff:a.b.c.d), so one comparison covers both
 * families and the mapped spelling of a link-local address cannot slip past the IPv4 rule. */
#include "outbound.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cidr {
    uint8_t addr[16];
    unsigned prefix; /* 0..128, over the 16-byte form */
};

struct name_rule {
    char *name;    /* lower case, no final dot; for "*.x" this is "x" */
    bool wildcard; /* "*.x": names strictly below x */
};

struct outbound_policy {
    struct name_rule *names;
    size_t nnames;
    struct cidr *cidrs;
    size_t ncidrs;
};

/* The blocks no destination may reach unless listed from inside: link-local, where cloud
 * metadata services live (169.254.169.254) and where no server of ours should. */
static const struct cidr link_local[] = {
    { { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 169, 254, 0, 0 }, 96 + 16 },
    { { 0xfe, 0x80 }, 10 },
};

static bool in_block(const uint8_t a[16], const struct cidr *c)
{
    unsigned full = c->prefix / 8, rest = c->prefix % 8;
    if (memcmp(a, c->addr, full) != 0) return false;
    if (rest == 0) return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[full] & mask) == (c->addr[full] & mask);
}

/* True when block c lies wholly inside block outer. */
static bool block_inside(const struct cidr *c, const struct cidr *outer)
{
    return c->prefix >= outer->prefix && in_block(c->addr, outer);
}

/* Parses an address (no prefix) into the 16-byte form; returns its family, or 0. */
static int parse_addr(const char *s, uint8_t out[16])
{
    struct in_addr v4;
    if (inet_pton(AF_INET, s, &v4) == 1) {
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &v4, 4);
        return AF_INET;
    }
    if (inet_pton(AF_INET6, s, out) == 1) return AF_INET6;
    return 0;
}

static bool addr_from_sockaddr(const struct sockaddr *sa, uint8_t out[16])
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &in->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        memcpy(out, &in6->sin6_addr, 16);
        return true;
    }
    return false;
}

static bool name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
}

/* Copies a name lower-cased without its final dot into out (size outlen); false when it is
 * empty, too long or holds characters no host name has. */
static bool clean_name(const char *s, char *out, size_t outlen)
{
    size_t n = strlen(s);
    if (n && s[n - 1] == '.') n--;
    if (n == 0 || n >= outlen) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (!name_char(c)) return false;
        out[i] = c;
    }
    out[n] = '\0';
    return out[0] != '.' && strstr(out, "..") == NULL;
}

static int parse_entry(struct outbound_policy *p, const char *e, char *err, size_t errlen)
{
    char buf[256];
    if (strstr(e, "://")) {
        snprintf(err, errlen, "outbound entry \"%s\": give the host name alone, not a URL", e);
        return -1;
    }
    const char *slash = strchr(e, '/');
    size_t len = slash ? (size_t)(slash - e) : strlen(e);
    if (len < sizeof buf) {
        memcpy(buf, e, len);
        buf[len] = '\0';
        struct cidr c = { .prefix = 0 };
        int family = parse_addr(buf, c.addr);
        if (family) {
            unsigned max = family == AF_INET ? 32 : 128;
            unsigned prefix = max;
            if (slash) {
                char *end;
                unsigned long v = strtoul(slash + 1, &end, 10);
                if (slash[1] < '0' || slash[1] > '9' || *end || v > max) {
                    snprintf(err, errlen,
                             "outbound entry \"%s\": the prefix length must be 0 to %u", e, max);
                    return -1;
                }
                prefix = (unsigned)v;
            }
            c.prefix = family == AF_INET ? prefix + 96 : prefix;
            p->cidrs[p->ncidrs++] = c;
            return 0;
        }
    }
    if (slash) {
        snprintf(err, errlen,
                 "outbound entry \"%s\": a CIDR block needs an IPv4 or IPv6 address before '/' "
                 "(\"10.1.0.0/16\", \"fd00::/8\")", e);
        return -1;
    }
    bool wildcard = strncmp(e, "*.", 2) == 0;
    if (!clean_name(wildcard ? e + 2 : e, buf, sizeof buf)) {
        snprintf(err, errlen,
                 "outbound entry \"%s\" is neither a host name (\"api.example.com\", "
                 "\"*.example.org\"), an address nor a CIDR block (\"10.1.0.0/16\")", e);
        return -1;
    }
    char *copy = strdup(buf);
    if (!copy) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    p->names[p->nnames++] = (struct name_rule){ .name = copy, .wildcard = wildcard };
    return 0;
}

struct outbound_policy *outbound_parse(const char *const *entries, size_t n, char *err,
                                       size_t errlen)
{
    struct outbound_policy *p = calloc(1, sizeof *p);
    if (!p) goto oom;
    if (n) {
        p->names = calloc(n, sizeof *p->names);
        p->cidrs = calloc(n, sizeof *p->cidrs);
        if (!p->names || !p->cidrs) goto oom;
    }
    for (size_t i = 0; i < n; i++) {
        if (!entries[i]) {
            snprintf(err, errlen, "outbound entry %zu is missing", i + 1);
            goto fail;
        }
        if (parse_entry(p, entries[i], err, errlen) < 0) goto fail;
    }
    return p;
oom:
    snprintf(err, errlen, "out of memory");
fail:
    outbound_free(p);
    return NULL;
}

void outbound_free(struct outbound_policy *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->nnames; i++) free(p->names[i].name);
    free(p->names);
    free(p->cidrs);
    free(p);
}

static bool policy_empty(const struct outbound_policy *p)
{
    return !p || (p->nnames == 0 && p->ncidrs == 0);
}

static bool name_matches(const struct name_rule *r, const char *host)
{
    if (!r->wildcard) return strcmp(r->name, host) == 0;
    size_t hl = strlen(host), rl = strlen(r->name);
    return hl > rl + 1 && host[hl - rl - 1] == '.' && strcmp(host + hl - rl, r->name) == 0;
}

enum outbound_name outbound_check_name(const struct outbound_policy *p, const char *host)
{
    if (policy_empty(p)) return OUTBOUND_NAME_ALLOWED;
    uint8_t a[16];
    if (parse_addr(host, a)) return OUTBOUND_NAME_BY_ADDRESS; /* an address: its CIDR decides */
    char name[256];
    if (clean_name(host, name, sizeof name)) {
        for (size_t i = 0; i < p->nnames; i++)
            if (name_matches(&p->names[i], name)) return OUTBOUND_NAME_ALLOWED;
    }
    return p->ncidrs ? OUTBOUND_NAME_BY_ADDRESS : OUTBOUND_NAME_REFUSED;
}

void outbound_explain_name(const char *host, char *why, size_t whylen)
{
    snprintf(why, whylen,
             "%s is not in the outbound list of the config: add it (or \"*.parent.domain\") "
             "to outbound = { ... }", host);
}

static void format_addr(const uint8_t a[16], char *out, size_t outlen)
{
    static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    if (memcmp(a, mapped, 12) == 0)
        inet_ntop(AF_INET, a + 12, out, (socklen_t)outlen);
    else
        inet_ntop(AF_INET6, a, out, (socklen_t)outlen);
}

bool outbound_check_address(const struct outbound_policy *p, enum outbound_name name,
                            const struct sockaddr *sa, char *why, size_t whylen)
{
    uint8_t a[16];
    char text[INET6_ADDRSTRLEN];
    if (!addr_from_sockaddr(sa, a)) {
        snprintf(why, whylen, "the destination is not an IPv4 or IPv6 address");
        return false;
    }
    format_addr(a, text, sizeof text);

    const struct cidr *covering = NULL;
    for (size_t i = 0; p && i < p->ncidrs && !covering; i++)
        if (in_block(a, &p->cidrs[i])) covering = &p->cidrs[i];

    for (size_t i = 0; i < sizeof link_local / sizeof link_local[0]; i++) {
        if (!in_block(a, &link_local[i])) continue;
        for (size_t j = 0; p && j < p->ncidrs; j++)
            if (in_block(a, &p->cidrs[j]) && block_inside(&p->cidrs[j], &link_local[i]))
                return true;
        snprintf(why, whylen,
                 "%s is a link-local address (where cloud metadata services answer), always "
                 "refused: to allow it, list it in the config, outbound = { \"%s\" }", text, text);
        return false;
    }
    if (name == OUTBOUND_NAME_ALLOWED || covering) return true;
    snprintf(why, whylen,
             "%s is in no CIDR block of the outbound list of the config: add it, or a block "
             "that holds it, to outbound = { ... }", text);
    return false;
}
