/* RFC 6455 client handshake and frame codec for wsload: see wsclient.h. */
#include "wsclient.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

const char *wsc_strerror(int err)
{
    switch (err) {
    case WSC_NEED_MORE: return "incomplete";
    case WSC_E_RESERVED: return "RSV2 or RSV3 set";
    case WSC_E_OPCODE: return "unknown opcode";
    case WSC_E_CONTROL: return "fragmented or oversized control frame";
    case WSC_E_MASKED: return "masked frame from the server";
    case WSC_E_LENGTH: return "64-bit length with the top bit set";
    case WSC_E_STATUS: return "response status is not 101";
    case WSC_E_UPGRADE: return "Upgrade or Connection field missing";
    case WSC_E_ACCEPT: return "Sec-WebSocket-Accept missing or wrong";
    case WSC_E_EXTENSION: return "server chose an extension or parameter we did not offer";
    case WSC_E_NO_DEFLATE:
        return "server declined permessage-deflate (is compression on in its configuration?)";
    case WSC_E_HEAD_TOO_BIG: return "response head too long";
    default: return "unknown error";
    }
}

void wsc_make_key(char key[WSC_KEY_LEN + 1], const uint8_t random16[16])
{
    EVP_EncodeBlock((unsigned char *)key, random16, 16);
    key[WSC_KEY_LEN] = '\0';
}

size_t wsc_build_request(char *dst, size_t cap, const char *host, const char *path,
                         const char key[WSC_KEY_LEN + 1], const char *extensions)
{
    int n = snprintf(dst, cap,
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "%s%s%s"
                     "\r\n",
                     path, host, key, extensions ? "Sec-WebSocket-Extensions: " : "",
                     extensions ? extensions : "", extensions ? "\r\n" : "");
    if (n < 0 || (size_t)n >= cap) return 0;
    return (size_t)n;
}

/* True when the comma-separated list value[0..len) holds token, compared without case. */
static bool has_token(const char *value, size_t len, const char *token)
{
    size_t tlen = strlen(token);
    size_t i = 0;
    while (i < len) {
        while (i < len && (value[i] == ' ' || value[i] == '\t' || value[i] == ',')) i++;
        size_t start = i;
        while (i < len && value[i] != ',') i++;
        size_t end = i;
        while (end > start && (value[end - 1] == ' ' || value[end - 1] == '\t')) end--;
        if (end - start == tlen && strncasecmp(value + start, token, tlen) == 0) return true;
    }
    return false;
}

/* Reads a window size "=N" (9 to 15; 8 is legal but zlib's raw deflate cannot keep to it). */
static bool window_bits(const char *v, size_t len, uint8_t *bits)
{
    if (len == 3 && v[0] == '=' && v[1] == '9') return *bits = 9, true;
    if (len == 3 && v[0] == '=' && v[1] == '1' && v[2] >= '0' && v[2] <= '5')
        return *bits = (uint8_t)(10 + v[2] - '0'), true;
    return false;
}

/* The server's answer: "permessage-deflate" and its parameters, separated by ';'. One
 * extension only, since we offer one. */
static int parse_pmd_answer(const char *v, size_t len, struct wsc_pmd *pmd)
{
    pmd->server_window_bits = pmd->client_window_bits = 15;
    size_t i = 0;
    bool first = true;
    while (i <= len) {
        size_t start = i;
        while (i < len && v[i] != ';') i++;
        size_t end = i++;
        while (start < end && (v[start] == ' ' || v[start] == '\t')) start++;
        while (end > start && (v[end - 1] == ' ' || v[end - 1] == '\t')) end--;
        const char *p = v + start;
        size_t n = end - start;
        if (first) {
            if (n != 18 || strncasecmp(p, "permessage-deflate", 18) != 0) return WSC_E_EXTENSION;
            first = false;
        } else if (n == 26 && strncasecmp(p, "server_no_context_takeover", 26) == 0) {
            pmd->server_no_context = true;
        } else if (n == 26 && strncasecmp(p, "client_no_context_takeover", 26) == 0) {
            pmd->client_no_context = true;
        } else if (n > 22 && strncasecmp(p, "server_max_window_bits", 22) == 0) {
            if (!window_bits(p + 22, n - 22, &pmd->server_window_bits)) return WSC_E_EXTENSION;
        } else if (n > 22 && strncasecmp(p, "client_max_window_bits", 22) == 0) {
            if (!window_bits(p + 22, n - 22, &pmd->client_window_bits)) return WSC_E_EXTENSION;
        } else {
            return WSC_E_EXTENSION;
        }
    }
    return 0;
}

int wsc_check_response(const char *buf, size_t len, const char key[WSC_KEY_LEN + 1],
                       struct wsc_pmd *pmd)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end) return len >= WSC_MAX_RESPONSE ? WSC_E_HEAD_TOO_BIG : WSC_NEED_MORE;
    size_t head_len = (size_t)(end - buf) + 4;
    if (head_len > WSC_MAX_RESPONSE) return WSC_E_HEAD_TOO_BIG;

    /* "HTTP/1.1 101" followed by a space (and a reason) or the end of the line. */
    if (head_len < 14 || memcmp(buf, "HTTP/1.1 101", 12) != 0 ||
        (buf[12] != ' ' && buf[12] != '\r'))
        return WSC_E_STATUS;

    /* The accept value the server must send: base64(SHA-1(key + GUID)). */
    char concat[WSC_KEY_LEN + sizeof ws_guid];
    memcpy(concat, key, WSC_KEY_LEN);
    memcpy(concat + WSC_KEY_LEN, ws_guid, sizeof ws_guid - 1);
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)concat, WSC_KEY_LEN + sizeof ws_guid - 1, digest);
    char accept[32];
    int accept_len = EVP_EncodeBlock((unsigned char *)accept, digest, SHA_DIGEST_LENGTH);

    bool upgrade = false, connection = false, accepted = false, deflate = false;
    const char *line = (const char *)memchr(buf, '\n', head_len) + 1;
    const char *stop = end + 2; /* the blank line */
    while (line < stop) {
        const char *eol = memchr(line, '\n', (size_t)(stop - line));
        if (!eol) break;
        size_t llen = (size_t)(eol - line);
        if (llen && line[llen - 1] == '\r') llen--;
        const char *colon = memchr(line, ':', llen);
        if (colon) {
            size_t nlen = (size_t)(colon - line);
            const char *v = colon + 1;
            const char *vend = line + llen;
            while (v < vend && (*v == ' ' || *v == '\t')) v++;
            while (vend > v && (vend[-1] == ' ' || vend[-1] == '\t')) vend--;
            size_t vlen = (size_t)(vend - v);
            if (nlen == 7 && strncasecmp(line, "upgrade", 7) == 0)
                upgrade = has_token(v, vlen, "websocket");
            else if (nlen == 10 && strncasecmp(line, "connection", 10) == 0)
                connection = has_token(v, vlen, "upgrade");
            else if (nlen == 20 && strncasecmp(line, "sec-websocket-accept", 20) == 0)
                accepted = vlen == (size_t)accept_len && memcmp(v, accept, vlen) == 0;
            else if (nlen == 24 && strncasecmp(line, "sec-websocket-extensions", 24) == 0 &&
                     vlen > 0) {
                if (!pmd || deflate) return WSC_E_EXTENSION;
                int rc = parse_pmd_answer(v, vlen, pmd);
                if (rc < 0) return rc;
                deflate = true;
            }
        }
        line = eol + 1;
    }
    if (!upgrade || !connection) return WSC_E_UPGRADE;
    if (!accepted) return WSC_E_ACCEPT;
    if (pmd && !deflate) return WSC_E_NO_DEFLATE;
    return (int)head_len;
}

int wsc_parse_header(const uint8_t *buf, size_t len, struct wsc_frame *f)
{
    if (len < 2) return WSC_NEED_MORE;
    uint8_t b0 = buf[0], b1 = buf[1];
    if (b0 & 0x30) return WSC_E_RESERVED;
    f->rsv1 = b0 & WSC_RSV1;
    uint8_t op = b0 & 0x0F;
    bool control = op & 0x08;
    if ((op > WSC_OP_BINARY && !control) || op > WSC_OP_PONG) return WSC_E_OPCODE;
    if (b1 & 0x80) return WSC_E_MASKED;
    f->fin = b0 & 0x80;
    f->opcode = op;
    uint64_t n = b1 & 0x7F;
    if (control && (!f->fin || n > 125)) return WSC_E_CONTROL;
    if (n < 126) {
        f->len = n;
        return 2;
    }
    if (n == 126) {
        if (len < 4) return WSC_NEED_MORE;
        f->len = (uint64_t)buf[2] << 8 | buf[3];
        return 4;
    }
    if (len < 10) return WSC_NEED_MORE;
    if (buf[2] & 0x80) return WSC_E_LENGTH;
    uint64_t v = 0;
    for (int i = 2; i < 10; i++) v = v << 8 | buf[i];
    f->len = v;
    return 10;
}

size_t wsc_put_header(uint8_t *dst, unsigned opcode, bool fin, uint64_t len,
                      const uint8_t mask[4])
{
    dst[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0F));
    size_t h;
    if (len < 126) {
        dst[1] = (uint8_t)(0x80 | len);
        h = 2;
    } else if (len <= 0xFFFF) {
        dst[1] = 0x80 | 126;
        dst[2] = (uint8_t)(len >> 8);
        dst[3] = (uint8_t)len;
        h = 4;
    } else {
        dst[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++) dst[2 + i] = (uint8_t)(len >> (56 - 8 * i));
        h = 10;
    }
    memcpy(dst + h, mask, 4);
    return h + 4;
}

void wsc_mask_copy(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t mask[4])
{
    /* The mask repeated to eight bytes in memory order, so the XOR of a loaded word does not
     * depend on the machine's byte order. memcpy loads and stores compile to plain unaligned
     * moves (and the loop to SIMD where the compiler likes). */
    uint8_t m8[8] = { mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3] };
    uint64_t m;
    memcpy(&m, m8, 8);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, src + i, 8);
        w ^= m;
        memcpy(dst + i, &w, 8);
    }
    for (; i < n; i++) dst[i] = src[i] ^ mask[i & 3];
}
