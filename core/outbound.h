/* Where outbound requests may go: the `outbound = { ... }` list of the config, parsed once and
 * then asked about each destination. A pure module: no sockets, no DNS, no clock; it judges a
 * host name and the addresses it resolved to, and the HTTP client asks it at connect time, so a
 * name that resolves differently later (DNS rebinding) is judged by the address it really has.
 *
 * Entries: "api.example.com" (that name), "*.example.org" (any name below example.org, not
 * example.org itself), "10.1.0.0/16" or "::1/128" (a CIDR block), "127.0.0.1" or "::1" (one
 * address). Names compare without case and without a final dot.
 *
 * The rules:
 *   - an empty list allows every destination, except link-local ones (below);
 *   - otherwise a destination is allowed when its name matches a name entry, or its address
 *     lies in a CIDR entry;
 *   - a link-local address (169.254.0.0/16, fe80::/10, and ::ffff:169.254.0.0/112, the same
 *     addresses mapped into IPv6) is always refused, whatever the name, unless a CIDR entry
 *     that lies inside the link-local block covers it ("169.254.169.254", "169.254.0.0/16"):
 *     a broad entry such as "0.0.0.0/0" does not open the cloud metadata service by accident.
 */
#ifndef MOONWIRE_OUTBOUND_H
#define MOONWIRE_OUTBOUND_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct outbound_policy;

/* Parses entries[0..n). Returns the policy (n == 0 gives the empty one: any destination but
 * link-local), or NULL with a message in err naming the entry that is wrong and why (also when
 * out of memory). The strings are copied. */
struct outbound_policy *outbound_parse(const char *const *entries, size_t n, char *err,
                                       size_t errlen);
void outbound_free(struct outbound_policy *p);

/* The verdict on a name before it is resolved. */
enum outbound_name {
    OUTBOUND_NAME_ALLOWED,   /* the list is empty, or a name entry matches */
    OUTBOUND_NAME_BY_ADDRESS, /* no name entry matches, but CIDR entries may allow its addresses */
    OUTBOUND_NAME_REFUSED,   /* no entry can allow it: don't even resolve it */
};

/* Judges host, a name or an IP literal (without brackets). p may be NULL: the empty policy.
 * An IP literal is judged as its address would be. */
enum outbound_name outbound_check_name(const struct outbound_policy *p, const char *host);

/* Judges one resolved address (AF_INET or AF_INET6) of a destination whose name got the
 * verdict name. Returns true when a connection may be made. When refused, why holds a sentence
 * saying which rule refused it and how to allow it (it names `outbound = {...}`). */
bool outbound_check_address(const struct outbound_policy *p, enum outbound_name name,
                            const struct sockaddr *sa, char *why, size_t whylen);

/* Writes a sentence for a name refused by outbound_check_name into why. */
void outbound_explain_name(const char *host, char *why, size_t whylen);

#endif
