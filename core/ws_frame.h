/* RFC 6455 frame codec: parse one frame header, unmask payload bytes, build server frame headers.
 *
 * Pure: bytes in, results out. No allocation, no I/O, no clock. Errors are negative close codes,
 * so the caller knows at once what to send: WS_E_PROTOCOL is -1002, and so on. */
#ifndef MOONWIRE_WS_FRAME_H
#define MOONWIRE_WS_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ws_opcode {
    WS_OP_CONTINUATION = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

/* The three reserved bits as they sit in the first byte; RSV1 is permessage-deflate's. */
enum { WS_RSV1 = 0x40, WS_RSV2 = 0x20, WS_RSV3 = 0x10 };

/* Results shared by the frame codec and the message reader (ws_reader.h). Each error is the
 * negated close code the connection must be closed with. */
enum {
    WS_NEED_MORE = -1,         /* not enough bytes yet; call again with more */
    WS_E_PROTOCOL = -1002,     /* the peer broke the framing rules */
    WS_E_INVALID_DATA = -1007, /* a text message or close reason that is not UTF-8 */
    WS_E_TOO_BIG = -1009,      /* a message above the configured limit */
};

/* Longest possible header: 2 bytes, 8 of extended length, 4 of mask. */
#define WS_FRAME_MAX_HEADER 14
/* Longest header of a frame the server sends (never masked). */
#define WS_FRAME_MAX_SERVER_HEADER 10
/* Control frames carry at most this many payload bytes and are never fragmented. */
#define WS_CONTROL_MAX_PAYLOAD 125

struct ws_frame_header {
    uint64_t payload_len;
    uint8_t opcode;
    uint8_t rsv;       /* the reserved bits, in place (WS_RSV1 | ...) */
    bool fin;
    bool masked;
    uint8_t mask[4];
    uint8_t header_len; /* 2..14 */
};

static inline bool ws_opcode_is_control(unsigned opcode) { return (opcode & 0x8) != 0; }

/* Parses the frame header at p[0..len) as a server: client frames must be masked.
 * allowed_rsv: the reserved bits an extension negotiated for this connection (0 without one);
 * the bits are checked on every frame, the extension decides what they mean.
 * Returns the header length (2..14) and fills *h; WS_NEED_MORE when len is too short (nothing is
 * filled); or WS_E_PROTOCOL with *why set to a static sentence, for: reserved bits not allowed,
 * reserved opcodes (3-7, B-F), control frames fragmented or longer than 125 bytes, unmasked
 * frames, lengths not in their shortest encoding, and 64-bit lengths with the top bit set.
 * Lengths are not limited here: the message reader checks them against the configured maximum. */
int ws_frame_parse_header(const uint8_t *p, size_t len, unsigned allowed_rsv,
                          struct ws_frame_header *h, const char **why);

/* XORs p[0..len) with the mask in place. offset is how many payload bytes of the same frame were
 * unmasked before (the mask repeats every four bytes), so a payload split across reads can be
 * unmasked piece by piece. Works a word at a time and never touches bytes outside p[0..len). */
void ws_frame_unmask(uint8_t *p, size_t len, const uint8_t mask[4], uint64_t offset);

/* Writes the header of an unmasked (server) frame into out, which must hold
 * WS_FRAME_MAX_SERVER_HEADER bytes, using the shortest length encoding.
 * rsv: reserved bits to set (WS_RSV1 for a compressed message). Returns the header length. */
size_t ws_frame_build_header(uint8_t *out, bool fin, unsigned rsv, unsigned opcode,
                             uint64_t payload_len);

#endif
