/* The outbound policy (core/outbound.c): parsing, names, CIDR blocks, and the link-local rule
 * that holds whatever the list says, in IPv4, IPv6 and IPv4-mapped spellings. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "outbound.h"

static struct sockaddr_storage addr(const char *text)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, text, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
    } else {
        cr_assert_eq(inet_pton(AF_INET6, text, &in6->sin6_addr), 1, "bad test address %s", text);
        in6->sin6_family = AF_INET6;
    }
    return ss;
}

/* The whole verdict for a destination name resolved to one address. */
static bool allowed(const struct outbound_policy *p, const char *name, const char *address)
{
    enum outbound_name v = outbound_check_name(p, name);
    struct sockaddr_storage ss = addr(address);
    char why[256] = "";
    bool ok = outbound_check_address(p, v, (struct sockaddr *)&ss, why, sizeof why);
    if (!ok) cr_assert(strstr(why, "outbound = {") != NULL, "refusal says how to allow: %s", why);
    return ok;
}

static struct outbound_policy *parse(const char *const *entries, size_t n)
{
    char err[256] = "";
    struct outbound_policy *p = outbound_parse(entries, n, err, sizeof err);
    cr_assert_not_null(p, "parse failed: %s", err);
    return p;
}

Test(outbound, empty_list_allows_all_but_link_local)
{
    struct outbound_policy *p = parse(NULL, 0);
    static const struct {
        const char *name, *address;
        bool ok;
    } cases[] = {
        { "api.example.com", "93.184.216.34", true },
        { "localhost", "127.0.0.1", true },
        { "::1", "::1", true },
        { "metadata", "169.254.169.254", false },
        { "169.254.0.1", "169.254.0.1", false },
        { "v6", "fe80::1", false },
        { "v6b", "febf::1", false },
        { "v6c", "fec0::1", true },
        { "mapped", "::ffff:169.254.169.254", false },
        { "near", "169.255.0.1", true },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_expect_eq(allowed(p, cases[i].name, cases[i].address), cases[i].ok, "%s at %s",
                     cases[i].name, cases[i].address);
    cr_expect_eq(outbound_check_name(p, "anything.at.all"), OUTBOUND_NAME_ALLOWED);
    cr_expect_eq(outbound_check_name(NULL, "anything"), OUTBOUND_NAME_ALLOWED);
    outbound_free(p);
}

Test(outbound, names_and_wildcards)
{
    const char *const entries[] = { "API.example.com.", "*.example.org" };
    struct outbound_policy *p = parse(entries, 2);
    static const struct {
        const char *name;
        enum outbound_name v;
    } cases[] = {
        { "api.example.com", OUTBOUND_NAME_ALLOWED },
        { "API.Example.COM", OUTBOUND_NAME_ALLOWED },
        { "api.example.com.", OUTBOUND_NAME_ALLOWED },
        { "x.api.example.com", OUTBOUND_NAME_REFUSED },
        { "example.com", OUTBOUND_NAME_REFUSED },
        { "a.example.org", OUTBOUND_NAME_ALLOWED },
        { "a.b.example.org", OUTBOUND_NAME_ALLOWED },
        { "example.org", OUTBOUND_NAME_REFUSED },
        { "badexample.org", OUTBOUND_NAME_REFUSED },
        { "127.0.0.1", OUTBOUND_NAME_BY_ADDRESS },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_expect_eq(outbound_check_name(p, cases[i].name), cases[i].v, "%s", cases[i].name);
    /* A name allowed by name may use any address but link-local (DNS could point it there). */
    cr_expect(allowed(p, "api.example.com", "10.9.9.9"));
    cr_expect_not(allowed(p, "api.example.com", "169.254.169.254"));
    cr_expect_not(allowed(p, "api.example.com", "::ffff:169.254.1.1"));
    /* An address literal is judged by the CIDR entries only: there are none. */
    cr_expect_not(allowed(p, "127.0.0.1", "127.0.0.1"));
    outbound_free(p);
}

Test(outbound, cidr_blocks)
{
    const char *const entries[] = { "10.1.0.0/16", "::1/128", "127.0.0.1", "fd00::/8" };
    struct outbound_policy *p = parse(entries, 4);
    static const struct {
        const char *name, *address;
        bool ok;
    } cases[] = {
        { "10.1.2.3", "10.1.2.3", true },
        { "10.2.0.1", "10.2.0.1", false },
        { "internal.corp", "10.1.255.255", true }, /* a name, allowed through its address */
        { "internal.corp", "10.0.255.255", false },
        { "::1", "::1", true },
        { "::2", "::2", false },
        { "localhost", "127.0.0.1", true },
        { "127.0.0.2", "127.0.0.2", false },
        { "::ffff:127.0.0.1", "::ffff:127.0.0.1", true }, /* mapped: the same address */
        { "fd12::1", "fd12::1", true },
        { "fe00::1", "fe00::1", false },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_expect_eq(allowed(p, cases[i].name, cases[i].address), cases[i].ok, "%s at %s",
                     cases[i].name, cases[i].address);
    cr_expect_eq(outbound_check_name(p, "anything"), OUTBOUND_NAME_BY_ADDRESS);
    outbound_free(p);
}

Test(outbound, link_local_only_when_listed_from_inside)
{
    const char *const broad[] = { "0.0.0.0/0", "::/0" };
    struct outbound_policy *p = parse(broad, 2);
    cr_expect(allowed(p, "x", "8.8.8.8"));
    cr_expect(allowed(p, "x", "2001:db8::1"));
    cr_expect_not(allowed(p, "x", "169.254.169.254"), "a broad block does not open link-local");
    cr_expect_not(allowed(p, "x", "fe80::1"));
    cr_expect_not(allowed(p, "x", "::ffff:169.254.169.254"));
    outbound_free(p);

    const char *const metadata[] = { "169.254.169.254", "fe80::/64" };
    p = parse(metadata, 2);
    cr_expect(allowed(p, "169.254.169.254", "169.254.169.254"));
    cr_expect(allowed(p, "x", "::ffff:169.254.169.254"), "the mapped form of a listed address");
    cr_expect_not(allowed(p, "169.254.169.253", "169.254.169.253"));
    cr_expect(allowed(p, "fe80::5", "fe80::5"));
    cr_expect_not(allowed(p, "fe80:0:0:1::5", "fe80:0:0:1::5"));
    outbound_free(p);

    char why[256];
    struct sockaddr_storage ss = addr("169.254.169.254");
    cr_expect_not(outbound_check_address(NULL, OUTBOUND_NAME_ALLOWED, (struct sockaddr *)&ss,
                                         why, sizeof why));
    cr_expect(strstr(why, "link-local") && strstr(why, "outbound = { \"169.254.169.254\" }"),
              "%s", why);
}

Test(outbound, parse_errors_name_the_entry)
{
    static const struct {
        const char *entry, *says;
    } cases[] = {
        { "10.0.0.0/33", "0 to 32" },
        { "::/129", "0 to 128" },
        { "10.0.0.0/", "0 to 32" },
        { "10.0.0.0/x", "0 to 32" },
        { "example.com/8", "CIDR block" },
        { "", "neither" },
        { "bad name", "neither" },
        { "a..b", "neither" },
        { "*.", "neither" },
        { "http://x", "not a URL" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[256] = "";
        const char *const e[] = { "ok.example.com", cases[i].entry };
        struct outbound_policy *p = outbound_parse(e, 2, err, sizeof err);
        cr_expect_null(p, "\"%s\" parsed", cases[i].entry);
        outbound_free(p);
        cr_expect(strstr(err, cases[i].says) != NULL, "\"%s\": %s", cases[i].entry, err);
        char quoted[64];
        snprintf(quoted, sizeof quoted, "\"%s\"", cases[i].entry);
        cr_expect(strstr(err, quoted) != NULL, "error names the entry: %s", err);
    }
}
