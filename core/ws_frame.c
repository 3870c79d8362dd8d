/* RFC 6455 section 5.2 frame headers. Every rule a server must enforce on the header alone is
 * checked here, so the message reader above only deals with sequences of frames. */
#include "ws_frame.h"

#include <string.h>

static bool opcode_is_known(unsigned op)
{
    return op == WS_OP_CONTINUATION || op == WS_OP_TEXT || op == WS_OP_BINARY ||
           op == WS_OP_CLOSE || op == WS_OP_PING || op == WS_OP_PONG;
}

static int fail(const char **why, const char *reason)
{
    *why = reason;
    return WS_E_PROTOCOL;
}

int ws_frame_parse_header(const uint8_t *p, size_t len, unsigned allowed_rsv,
                          struct ws_frame_header *h, const char **why)
{
    if (len < 2) return WS_NEED_MORE;

    unsigned b0 = p[0], b1 = p[1];
    unsigned opcode = b0 & 0x0F;
    unsigned rsv = b0 & (WS_RSV1 | WS_RSV2 | WS_RSV3);
    bool fin = (b0 & 0x80) != 0;
    bool masked = (b1 & 0x80) != 0;
    unsigned len7 = b1 & 0x7F;

    /* Fail on the first two bytes where possible, before waiting for the rest of the header:
     * a peer that sends garbage learns so at once. */
    if (rsv & ~allowed_rsv) return fail(why, "reserved bits set without a negotiated extension");
    if (!opcode_is_known(opcode)) return fail(why, "reserved opcode");
    if (ws_opcode_is_control(opcode)) {
        if (!fin) return fail(why, "fragmented control frame");
        if (len7 > WS_CONTROL_MAX_PAYLOAD)
            return fail(why, "control frame payload longer than 125 bytes");
        if (rsv) return fail(why, "reserved bits set on a control frame");
    }
    if (!masked) return fail(why, "client frame is not masked");

    size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
    size_t header_len = 2 + ext + 4;
    if (len < header_len) return WS_NEED_MORE;

    uint64_t payload_len = len7;
    if (ext == 2) {
        payload_len = (uint64_t)p[2] << 8 | p[3];
        if (payload_len < 126) return fail(why, "16-bit length used for a payload under 126 bytes");
    } else if (ext == 8) {
        payload_len = 0;
        for (size_t i = 0; i < 8; i++) payload_len = payload_len << 8 | p[2 + i];
        if (payload_len >> 63) return fail(why, "64-bit length with the most significant bit set");
        if (payload_len <= 0xFFFF)
            return fail(why, "64-bit length used for a payload under 65536 bytes");
    }

    h->payload_len = payload_len;
    h->opcode = (uint8_t)opcode;
    h->rsv = (uint8_t)rsv;
    h->fin = fin;
    h->masked = masked;
    memcpy(h->mask, p + 2 + ext, 4);
    h->header_len = (uint8_t)header_len;
    return (int)header_len;
}

void ws_frame_unmask(uint8_t *p, size_t len, const uint8_t mask[4], uint64_t offset)
{
    /* Rotate the key so that byte 0 of p lines up with mask[offset % 4], then repeat it to
     * a word (in memory order either way round). */
    uint8_t key[4];
    for (size_t i = 0; i < 4; i++) key[i] = mask[(offset + i) & 3];
    uint32_t k4;
    memcpy(&k4, key, 4);
    uint64_t k = (uint64_t)k4 << 32 | k4;

    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        w ^= k;
        memcpy(p + i, &w, 8);
    }
    for (; i < len; i++) p[i] ^= key[i & 3];
}

size_t ws_frame_build_header(uint8_t *out, bool fin, unsigned rsv, unsigned opcode,
                             uint64_t payload_len)
{
    out[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv & 0x70) | (opcode & 0x0F));
    if (payload_len < 126) {
        out[1] = (uint8_t)payload_len;
        return 2;
    }
    if (payload_len <= 0xFFFF) {
        out[1] = 126;
        out[2] = (uint8_t)(payload_len >> 8);
        out[3] = (uint8_t)payload_len;
        return 4;
    }
    out[1] = 127;
    for (size_t i = 0; i < 8; i++) out[2 + i] = (uint8_t)(payload_len >> (56 - 8 * i));
    return 10;
}
