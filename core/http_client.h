/* Outbound HTTP/1.1 on the loop: requests to http:// and https:// URLs that never block, with a
 * keep-alive pool per (scheme, host, port), TLS through OpenSSL with the peer's certificate and
 * host name verified, name resolution through dns.c, and the outbound policy (outbound.h)
 * judged on the address actually connected to. Knows nothing of Lua: the caller gets one
 * callback per request.
 *
 * One request, in order: the URL is parsed and the request head built (any mistake: "invalid");
 * an idle pooled connection to the same scheme, host and port is taken if there is one;
 * otherwise the host is resolved and each address tried in turn (policy first, then connect;
 * a refusal moves on to the next address), then TLS; the request is written, the response read
 * (Content-Length, chunked, or until close; none for HEAD, 1xx, 204 and 304). A reused
 * connection that fails before the first byte of the answer (the server had closed it) is
 * replaced by a fresh one once, and the request sent again. One timeout covers all of it.
 *
 * Memory: a call holds its request, a response head of at most 64 KiB and a body of at most
 * max_response; the pool at most max_idle_per_host connections per destination, each closed
 * after idle_timeout. How many calls run at once is the caller's to bound.
 *
 * Not done: addresses are tried one after the other, not raced ("happy eyeballs"), each but the
 * last for attempt_timeout at most; no HTTP/2, no proxies, no compression (no Accept-Encoding
 * is sent), no redirects (a 3xx is a response like any other); host names must be ASCII (IDNA
 * is the caller's). */
#ifndef MOONWIRE_HTTP_CLIENT_H
#define MOONWIRE_HTTP_CLIENT_H

#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct outbound_policy;
struct hc;
struct hc_call;

struct hc_config {
    size_t max_response;        /* largest body accepted, bytes; past it: "too_large" */
    unsigned max_idle_per_host; /* idle connections kept per (scheme, host, port); 0: none */
    double idle_timeout;        /* seconds an idle connection is kept */
    double timeout;             /* seconds for a request that gives none (its timeout <= 0) */
    /* Seconds one address has to accept the connection before the next one is tried, when
     * the name has another; the last address has what is left of the request's timeout.
     * <= 0: each address has all of it. */
    double attempt_timeout;
    const char *ca_file;        /* PEM file of CAs trusted besides the system's, or NULL */
    /* Where requests may go (not copied: must outlive the client). NULL: anywhere but
     * link-local addresses. */
    const struct outbound_policy *policy;
};

/* The defaults: max_response 8 MiB, 8 idle connections per host kept 30 s, timeout 30 s,
 * attempt_timeout 1 s, no extra CAs, no policy. */
void hc_config_defaults(struct hc_config *cfg);

/* A client on loop. cfg is copied (ca_file read now). Returns it, or NULL with the reason in
 * err: the CA file could not be read, the resolver did not start, out of memory. */
struct hc *hc_new(struct ev_loop *loop, const struct hc_config *cfg, char *err, size_t errlen);

/* Stops every request (their callbacks are not called), closes every connection, frees the
 * client. Not from inside an hc_done callback. */
void hc_free(struct hc *c);

struct hc_request {
    const char *method;            /* "GET", "POST", ...: an HTTP token; NULL: "GET" */
    const char *url;               /* http:// or https://, host, [:port], path and query */
    const char *const *headers;    /* name, value, name, value, ... */
    size_t nheaders;               /* pairs */
    const char *body;              /* NULL: none (Content-Length is sent when not NULL) */
    size_t body_len;
    double timeout;                /* seconds for the whole request; <= 0: the config's */
};
/* The client writes Host (unless given), Content-Length (for a body, or for POST, PUT and
 * PATCH), and User-Agent: moonwire (unless given). Header names must be HTTP tokens, values
 * must not hold CR or LF; Content-Length and Transfer-Encoding may not be given (the client
 * frames the body itself). Any of these mistakes: "invalid". The body is copied. */

struct hc_response {
    int status;
    const char *const *headers; /* name, value, ...: names in lower case; fields that came
                                 * more than once are joined with ", ", except set-cookie,
                                 * whose fields stay separate pairs */
    size_t nheaders;            /* pairs */
    const char *body;           /* body_len bytes, followed by a NUL not counted */
    size_t body_len;
};

/* The end of a request. On success res is the response and reason and detail are NULL. On
 * failure res is NULL, reason one of the words below and detail a sentence for a human (which
 * host, what happened, what to do). Everything is valid during the call only.
 *   "invalid"    the request itself: URL, method, a header
 *   "forbidden"  the outbound policy refused the host or every address it resolved to
 *   "dns"        the name did not resolve
 *   "refused"    no address accepted a connection
 *   "tls"        the handshake failed: detail holds the verification error
 *   "timeout"    the request's timeout passed (resolving, connecting, TLS, sending, waiting)
 *   "reset"      the connection broke or closed before the response was complete
 *   "protocol"   the response was not HTTP/1.x as it should be
 *   "too_large"  the body passed max_response (the connection is closed at once)
 *   "no_memory"  an allocation failed */
typedef void (*hc_done)(void *ud, const struct hc_response *res, const char *reason,
                        const char *detail);
/* done may start new requests (a pooled connection it freed is already available to them) and
 * cancel other calls, but must not call hc_free. */

/* Starts a request. The client copies what it needs from req before returning. Returns the
 * call, or NULL only when out of memory. done is called exactly once, from the loop, never
 * before hc_request returns (an invalid URL too), unless hc_cancel or hc_free comes first.
 * The call handle is invalid once done has been called. */
struct hc_call *hc_request(struct hc *c, const struct hc_request *req, hc_done done, void *ud);

/* Abandons a call in progress: done is not called; a connection it was using is closed. Not
 * for a call whose done has run (a no-op when called from inside that done). */
void hc_cancel(struct hc_call *call);

struct hc_stats {
    uint64_t requests;           /* hc_request calls that returned a call */
    uint64_t connections_opened; /* TCP connection attempts started (TLS or not) */
    uint64_t connections_reused; /* requests sent on a pooled connection */
    uint64_t failures;           /* calls that ended with a reason */
    unsigned idle;               /* idle pooled connections now */
    unsigned in_flight;          /* calls not yet done nor cancelled */
};
void hc_get_stats(const struct hc *c, struct hc_stats *out);

#endif
