/* The origin policy: which web pages may open a WebSocket to us (RFC 6455 section 10.2).
 *
 * Browsers send the page's origin with every upgrade; checking it is what stops a page on
 * another site from using a visitor's cookies against us (cross-site WebSocket hijacking).
 * Pure: strings in, a verdict out. */
#ifndef MOONWIRE_ORIGIN_H
#define MOONWIRE_ORIGIN_H

#include <stdbool.h>
#include <stddef.h>

/* One allowed origin: "https://example.com", "http://localhost:8080", or with a wildcard as the
 * first label of the host, "*.example.com" after the scheme (any name below example.com, not
 * example.com itself). */
struct origin_pattern {
    char scheme[16];  /* lower case */
    char host[256];   /* lower case; without the "*." of a wildcard */
    int port;         /* explicit, or the scheme's default (80, 443) */
    bool wildcard;
};

struct origin_policy {
    struct origin_pattern *patterns;
    size_t count;
    bool any;            /* "*": every origin */
    bool require_origin; /* refuse requests without an Origin field (non-browser clients) */
};

/* Parses one allowed origin. Returns 0, or -1 with *why set to a sentence. "*" is not a
 * pattern: the caller sets policy.any for it. */
int origin_parse_pattern(const char *s, struct origin_pattern *p, const char **why);

/* Decides whether a request may upgrade. origin: the Origin field's value, or NULL without
 * one; host: the Host field's value. With no patterns (and not any), only an http or https
 * origin whose host[:port] is the Host field's is allowed (the page was served by this
 * server), ports compared after filling in the scheme's default. Comparison of schemes and hosts ignores case;
 * the origin "null" (sandboxed frames, file: pages) matches nothing. */
bool origin_allowed(const struct origin_policy *pol, const char *origin, size_t origin_len,
                    const char *host, size_t host_len);

#endif
