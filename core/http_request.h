/* An outbound HTTP/1.1 request as bytes: the URL split into scheme, host, port and target, the
 * method, header fields and body checked, and the head written. Pure: no sockets, no DNS; the
 * client (http_client.c) builds each request with it and the unit tests drive it directly.
 *
 * URLs: http:// or https:// (any case), a host name (letters, digits, '-', '.', '_'; lower-
 * cased), an IPv4 address or an IPv6 address in brackets, an optional port (1..65535), then the
 * path and query (a '#' fragment is dropped; a space or control character is refused: percent-
 * encode it). User and password in the URL are refused: send an Authorization header. */
#ifndef MOONWIRE_HTTP_REQUEST_H
#define MOONWIRE_HTTP_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct hreq {
    bool tls;          /* https:// */
    char *host;        /* lower case; an IPv6 address without brackets */
    uint16_t port;     /* the URL's, or 80 / 443 */
    bool head_request; /* the method is HEAD: the answer has no body */
    bool close;        /* the caller sent Connection: close: don't reuse the connection */
    char *bytes;       /* the request: head and body */
    size_t len;
};

/* Builds the request into out: method (NULL: "GET"; must be an HTTP token), url, headers as
 * name, value pairs (names HTTP tokens, values without CR or LF; Content-Length and
 * Transfer-Encoding refused, since the body is framed here), and body (NULL: none). Adds Host
 * (unless given), User-Agent: moonwire (unless given), and Content-Length for a body or for
 * POST, PUT and PATCH. Returns 0, or -1 with a sentence in err (out is then empty; out of
 * memory says so). */
int hreq_build(struct hreq *out, const char *method, const char *url,
               const char *const *headers, size_t nheaders, const char *body, size_t body_len,
               char *err, size_t errlen);

/* Frees what hreq_build allocated; out is then empty (freeing again is harmless). */
void hreq_free(struct hreq *out);

#endif
