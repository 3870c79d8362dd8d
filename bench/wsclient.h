/* The client side of RFC 6455 for wsload: the opening handshake and the frame codec.
 *
 * Pure: bytes in, results out. No sockets, no clock, no allocation; randomness (the key bytes,
 * the masks) comes from the caller. Parsers return bytes consumed, WSC_NEED_MORE, or a negative
 * WSC_E_* error that wsc_strerror names. */
#ifndef WSLOAD_WSCLIENT_H
#define WSLOAD_WSCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum wsc_opcode {
    WSC_OP_CONTINUATION = 0x0,
    WSC_OP_TEXT = 0x1,
    WSC_OP_BINARY = 0x2,
    WSC_OP_CLOSE = 0x8,
    WSC_OP_PING = 0x9,
    WSC_OP_PONG = 0xA,
};

enum {
    WSC_NEED_MORE = 0,
    WSC_E_RESERVED = -1,     /* RSV2 or RSV3 is set (no extension we offer defines them) */
    WSC_E_OPCODE = -2,       /* an opcode RFC 6455 does not define */
    WSC_E_CONTROL = -3,      /* a control frame that is fragmented or longer than 125 bytes */
    WSC_E_MASKED = -4,       /* a server frame with a mask (RFC 6455 5.1: the client must fail) */
    WSC_E_LENGTH = -5,       /* a 64-bit length with the top bit set */
    WSC_E_STATUS = -10,      /* the handshake response is not "HTTP/1.1 101" */
    WSC_E_UPGRADE = -11,     /* Upgrade: websocket or Connection: Upgrade is missing */
    WSC_E_ACCEPT = -12,      /* Sec-WebSocket-Accept is missing or wrong */
    WSC_E_EXTENSION = -13,   /* the server chose an extension or parameter we never offered */
    WSC_E_HEAD_TOO_BIG = -14, /* no end of the response head within WSC_MAX_RESPONSE bytes */
    WSC_E_NO_DEFLATE = -15,  /* permessage-deflate was offered and the server declined it */
};

/* RSV1 in a frame's first byte: the message is compressed (permessage-deflate, RFC 7692). */
#define WSC_RSV1 0x40

/* permessage-deflate as offered and as the server answered (RFC 7692 section 7). */
struct wsc_pmd {
    bool offered;               /* we sent an offer: the answer must accept it */
    bool server_no_context;     /* server_no_context_takeover in the answer */
    bool client_no_context;     /* client_no_context_takeover: reset our deflater per message */
    uint8_t server_window_bits; /* server_max_window_bits, 15 when not given */
    uint8_t client_window_bits; /* client_max_window_bits, 15 when not given */
};

/* The offers wsload can make: the one browsers send (context takeover both ways, the server
 * may cap our window), and one asking for no context takeover in either direction. */
#define WSC_OFFER_CONTEXT "permessage-deflate; client_max_window_bits"
#define WSC_OFFER_NO_CONTEXT \
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover"


/* Longest frame header a client writes: 2 bytes, 8 of extended length, 4 of mask. */
#define WSC_MAX_HEADER 14
/* Sec-WebSocket-Key is the base64 of 16 random bytes: 24 characters. */
#define WSC_KEY_LEN 24
/* A handshake response head longer than this is refused. */
#define WSC_MAX_RESPONSE 8192

/* One frame header as the server sent it. */
struct wsc_frame {
    bool fin;
    bool rsv1; /* compressed (only valid when permessage-deflate was negotiated) */
    uint8_t opcode;
    uint64_t len; /* payload bytes that follow the header */
};

/* Short English name of an error code (a WSC_E_* value). */
const char *wsc_strerror(int err);

/* Writes the Sec-WebSocket-Key for 16 random bytes: WSC_KEY_LEN characters and a NUL. */
void wsc_make_key(char key[WSC_KEY_LEN + 1], const uint8_t random16[16]);

/* Writes the upgrade request for ws://host/path into dst (host as it goes into the Host field,
 * with ":port" when not 80), with a Sec-WebSocket-Extensions field when extensions is not
 * NULL. Returns its length, or 0 when it does not fit in cap. */
size_t wsc_build_request(char *dst, size_t cap, const char *host, const char *path,
                         const char key[WSC_KEY_LEN + 1], const char *extensions);

/* Checks the handshake response in buf[0..len) against the key we sent. pmd is NULL when we
 * offered no extension (then any extension in the answer is an error); otherwise pmd->offered
 * is set and the server's permessage-deflate parameters are filled in. Returns the length of
 * the head (through the blank line; bytes after it are already frames), WSC_NEED_MORE when the
 * head is not complete yet, or WSC_E_STATUS, WSC_E_UPGRADE, WSC_E_ACCEPT, WSC_E_EXTENSION,
 * WSC_E_NO_DEFLATE or WSC_E_HEAD_TOO_BIG. */
int wsc_check_response(const char *buf, size_t len, const char key[WSC_KEY_LEN + 1],
                       struct wsc_pmd *pmd);

/* Parses the header of one server frame at buf[0..len). Returns the header's length (2, 4 or
 * 10) with *f filled (RSV1 is reported in f->rsv1, not refused: the caller knows whether
 * permessage-deflate was negotiated), WSC_NEED_MORE when the header is cut short, or
 * WSC_E_RESERVED, WSC_E_OPCODE, WSC_E_CONTROL, WSC_E_MASKED or WSC_E_LENGTH. The payload is not looked at:
 * the caller checks that f->len bytes follow. */
int wsc_parse_header(const uint8_t *buf, size_t len, struct wsc_frame *f);

/* Writes a masked client frame header for a len-byte payload, with the 4 mask bytes at its end.
 * dst needs WSC_MAX_HEADER bytes. Returns the header's length (6, 8 or 14). */
size_t wsc_put_header(uint8_t *dst, unsigned opcode, bool fin, uint64_t len,
                      const uint8_t mask[4]);

/* dst[i] = src[i] ^ mask[i % 4] for n bytes, eight bytes at a time. dst and src may be the same
 * buffer but must not otherwise overlap. A payload written in pieces stays correctly masked when
 * every piece but the last has a length that is a multiple of 4. */
void wsc_mask_copy(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t mask[4]);

#endif
