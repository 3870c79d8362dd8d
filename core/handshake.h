/* The WebSocket opening handshake (RFC 6455 section 4.2): decides whether a parsed HTTP request is
 * a valid upgrade, computes Sec-WebSocket-Accept and writes the 101 response.
 *
 * Pure apart from hashing with OpenSSL; points into the request's buffer (but for the path "/"
 * of an absolute target with an empty path, a static string). */
#ifndef MOONWIRE_HANDSHAKE_H
#define MOONWIRE_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>

#include "http.h"

/* Results of hs_check_request besides 0 (a valid upgrade) and negated HTTP statuses. */
enum {
    HS_NOT_UPGRADE = 1, /* a well-formed GET or HEAD that does not ask for WebSocket */
    HS_E_BAD_REQUEST = -400,
    HS_E_METHOD = -405,      /* answer with Allow: GET */
    HS_E_VERSION = -426,     /* answer with Sec-WebSocket-Version: 13 */
};

#define HS_KEY_LEN 24    /* base64 of 16 bytes */
#define HS_ACCEPT_LEN 28 /* base64 of a SHA-1 digest */

struct hs_upgrade {
    const char *key;     /* HS_KEY_LEN characters */
    const char *path;    /* up to '?'; "/" for an absolute target that has no path */
    size_t path_len;
    const char *query;   /* after '?', without it; empty when there is none */
    size_t query_len;
    const char *host;    /* the Host field's value; for an absolute target, its authority
                          * (host[:port]), the Host field being ignored (RFC 7230 section 5.4) */
    size_t host_len;
    const char *origin;  /* NULL when the request has no Origin field */
    size_t origin_len;
};

/* Checks req (a complete, parsed request head).
 * The target may be in origin- or absolute-form; either way a Host field is required as below.
 * Returns 0 for a valid upgrade with *up filled; HS_NOT_UPGRADE for a HEAD, or a GET without
 * "Upgrade: websocket" (*up has path, query and host, which HTTP/1.0 may omit);
 * HS_E_METHOD for a method other than GET and HEAD;
 * HS_E_VERSION when Sec-WebSocket-Version is missing or not 13; HS_E_BAD_REQUEST for an upgrade
 * over HTTP/1.0, a missing or repeated Host, a Connection field without the "upgrade" token, or a
 * Sec-WebSocket-Key that is missing, repeated or not base64 of 16 bytes. *why then says which. */
int hs_check_request(const struct http_request *req, struct hs_upgrade *up, const char **why);

/* Writes the Sec-WebSocket-Accept value for key (HS_KEY_LEN characters) into out. */
void hs_accept_key(const char *key, char out[HS_ACCEPT_LEN + 1]);

/* True when the client listed protocol in its Sec-WebSocket-Protocol fields (exact match, as
 * subprotocol names are case-sensitive). */
bool hs_protocol_offered(const struct http_request *req, const char *protocol, size_t len);

/* Writes the 101 response for key into out (cap bytes, which must also hold a terminating NUL).
 * protocol: the subprotocol chosen, or NULL; extra: more header lines, each ending in CRLF
 * (Sec-WebSocket-Extensions, Set-Cookie...), or NULL. Returns the length without the NUL, or 0
 * when cap is too small. */
size_t hs_build_response(char *out, size_t cap, const char *key, const char *protocol,
                         size_t protocol_len, const char *extra);

#endif
