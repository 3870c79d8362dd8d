/* RFC 6455 section 4.2.1 (what the server must check) and 4.2.2 (what it answers). */
#include "handshake.h"

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

static int fail(const char **why, int status, const char *reason)
{
    *why = reason;
    return status;
}

/* A key is exactly base64 of 16 bytes: 22 characters of the base64 alphabet, then "==".
 * (Checked by hand: OpenSSL's EVP_DecodeBlock also accepts '=' in the middle, as zero bits.) */
static bool key_is_valid(const char *key, size_t len)
{
    if (len != HS_KEY_LEN || key[22] != '=' || key[23] != '=') return false;
    for (size_t i = 0; i < HS_KEY_LEN - 2; i++) {
        char c = key[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/'))
            return false;
    }
    return true;
}

/* Path and query from the target's resource (its path and query, whichever form it came in). */
static void split_target(const struct http_request *req, struct hs_upgrade *up)
{
    const char *r = req->resource;
    size_t len = req->resource_len;
    const char *q = memchr(r, '?', len);
    up->path = r;
    up->path_len = q ? (size_t)(q - r) : len;
    up->query = q ? q + 1 : r + len;
    up->query_len = q ? len - up->path_len - 1 : 0;
    /* An absolute target may have no path ("ws://host" or "ws://host?q"): that is the root
     * (RFC 7230 section 5.3.1 has clients send "/" for it in origin-form). */
    if (!up->path_len) {
        up->path = "/";
        up->path_len = 1;
    }
}

int hs_check_request(const struct http_request *req, struct hs_upgrade *up, const char **why)
{
    memset(up, 0, sizeof *up);
    /* Methods are case-sensitive (RFC 9110 section 9.1): "get" is not GET. HEAD is a plain
     * request (for static files); only GET can upgrade. */
    bool head = req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
    if (!head && (req->method_len != 3 || memcmp(req->method, "GET", 3) != 0))
        return fail(why, HS_E_METHOD, "only GET is allowed");
    split_target(req, up);

    bool upgrade = !head && http_list_contains(req, "Upgrade", "websocket");
    int n = http_find_header(req, "Host", &up->host, &up->host_len);
    /* HTTP/1.0 clients may leave Host out of plain requests; HTTP/1.1 and upgrades need it. */
    if (n < 0 || (n == 0 && (upgrade || req->minor_version >= 1)) || (n == 1 && !up->host_len))
        return fail(why, HS_E_BAD_REQUEST,
                    n < 0 ? "more than one Host field" : "the request has no Host field");
    /* With an absolute target the Host field, though still required, is ignored in favour of
     * the target's authority (RFC 7230 section 5.4): that is the host the client asked for, so
     * it is also what the origin check compares Origin against. */
    if (req->authority) {
        up->host = req->authority;
        up->host_len = req->authority_len;
    }
    size_t len;
    if (http_find_header(req, "Origin", &up->origin, &len) == 1) up->origin_len = len;
    else up->origin = NULL;

    if (!upgrade) return HS_NOT_UPGRADE;

    if (req->minor_version < 1)
        return fail(why, HS_E_BAD_REQUEST, "a WebSocket upgrade needs HTTP/1.1");
    if (!http_list_contains(req, "Connection", "upgrade"))
        return fail(why, HS_E_BAD_REQUEST, "Connection field does not contain \"upgrade\"");

    const char *v;
    if (http_find_header(req, "Sec-WebSocket-Version", &v, &len) != 1 ||
        !http_token_equals(v, len, "13"))
        return fail(why, HS_E_VERSION, "Sec-WebSocket-Version must be 13");

    n = http_find_header(req, "Sec-WebSocket-Key", &v, &len);
    if (n != 1 || !key_is_valid(v, len))
        return fail(why, HS_E_BAD_REQUEST,
                    n == 0   ? "the request has no Sec-WebSocket-Key field"
                    : n < 0  ? "more than one Sec-WebSocket-Key field"
                             : "Sec-WebSocket-Key is not base64 of 16 bytes");
    up->key = v;
    return 0;
}

void hs_accept_key(const char *key, char out[HS_ACCEPT_LEN + 1])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    /* Hashing 60 bytes cannot fail short of an allocation failure inside OpenSSL; an empty
     * accept value then makes the client refuse the handshake, which is the right outcome. */
    if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) ||
        !EVP_DigestUpdate(ctx, key, HS_KEY_LEN) ||
        !EVP_DigestUpdate(ctx, ws_guid, sizeof ws_guid - 1) ||
        !EVP_DigestFinal_ex(ctx, digest, &digest_len)) {
        out[0] = '\0';
    } else {
        EVP_EncodeBlock((unsigned char *)out, digest, (int)digest_len);
    }
    EVP_MD_CTX_free(ctx);
}

bool hs_protocol_offered(const struct http_request *req, const char *protocol, size_t len)
{
    size_t pos = 0, elem_len;
    const char *elem;
    while (http_list_next(req, "Sec-WebSocket-Protocol", &pos, &elem, &elem_len))
        if (elem_len == len && memcmp(elem, protocol, len) == 0) return true;
    return false;
}

size_t hs_build_response(char *out, size_t cap, const char *key, const char *protocol,
                         size_t protocol_len, const char *extra)
{
    char accept[HS_ACCEPT_LEN + 1];
    hs_accept_key(key, accept);
    int n = snprintf(out, cap,
                     "HTTP/1.1 101 Switching Protocols\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n"
                     "%s%.*s%s"
                     "%s"
                     "\r\n",
                     accept, protocol ? "Sec-WebSocket-Protocol: " : "",
                     protocol ? (int)protocol_len : 0, protocol ? protocol : "",
                     protocol ? "\r\n" : "", extra ? extra : "");
    return n < 0 || (size_t)n >= cap ? 0 : (size_t)n;
}
