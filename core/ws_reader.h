/* The receiving half of a WebSocket connection: turns a byte stream into message pieces and
 * control frames, enforcing every RFC 6455 rule that spans frames.
 *
 * Pure and incremental: feed it whatever the socket returned, in pieces of any size (down to one
 * byte); it keeps a partial header and a partial control payload itself (at most 139 bytes), and
 * hands data payload bytes to the caller in place, unmasked, so a message that arrives whole in
 * one read is never copied. Its only exits are two callbacks, which makes it easy to fuzz. */
#ifndef MOONWIRE_WS_READER_H
#define MOONWIRE_WS_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ws_frame.h"

struct ws_reader_callbacks {
    /* A piece of a data message. opcode is WS_OP_TEXT or WS_OP_BINARY (the message's type, also
     * for pieces of continuation frames); first: the piece starts a message; last: it ends one.
     * A single-frame message that arrived whole in one call comes as a single piece with first
     * and last set (a fragmented one comes as one piece per non-empty fragment). Empty pieces
     * occur (empty messages, empty fragments at the end). Text pieces were validated as UTF-8
     * before the call, unless r->compressed (the caller checks them once inflated). The bytes are the caller's own buffer, unmasked, and may be modified.
     * Return 0 to go on, nonzero to make ws_reader_feed return at once. */
    int (*on_data)(void *ud, unsigned opcode, uint8_t *data, size_t len, bool first, bool last);
    /* A whole ping, pong or close frame (payload unmasked, at most 125 bytes). A close payload
     * was checked with ws_close_parse before the call. After a close frame the reader accepts
     * nothing more. Return 0 to go on, nonzero to make ws_reader_feed return at once. */
    int (*on_control)(void *ud, unsigned opcode, uint8_t *data, size_t len);
};

struct ws_reader {
    uint64_t max_message;  /* largest message in bytes; 0: no limit */
    uint64_t message_len;  /* bytes of the data message in progress so far */
    uint64_t frame_left;   /* payload bytes of the current frame still to come */
    uint64_t frame_done;   /* payload bytes of the current frame already passed on */
    struct ws_frame_header frame;
    uint32_t utf8_state;
    uint8_t message_opcode; /* WS_OP_TEXT/BINARY while a message is in progress, else 0 */
    uint8_t allowed_rsv;    /* reserved bits an extension negotiated */
    bool in_payload;        /* frame header done, payload (or its end) still to come */
    bool first_pending;     /* the message's first piece is not passed on yet */
    bool closed;            /* a close frame was received */
    bool compressed;        /* the message in progress (or last) had RSV1 on its first frame:
                             * permessage-deflate; its UTF-8 is checked after inflating */
    uint8_t header_len;     /* bytes of a split header kept in header[] */
    uint8_t header[WS_FRAME_MAX_HEADER];
    uint8_t control_len;    /* bytes of a split control payload kept in control[] */
    uint8_t control[WS_CONTROL_MAX_PAYLOAD];
    const char *error;      /* why the last negative result happened (a static sentence) */
};

/* Prepares r for a new connection. max_message: 0 for no limit. allowed_rsv: reserved bits an
 * extension negotiated (0 without one). */
void ws_reader_init(struct ws_reader *r, uint64_t max_message, unsigned allowed_rsv);

/* Consumes buf[0..len), unmasking data in place and calling the callbacks.
 * Returns how many bytes were consumed: len, or fewer when a callback returned nonzero (feed the
 * rest later to go on) or a close frame ended the stream (bytes after it are not WebSocket data;
 * once closed, ws_reader_feed consumes nothing and returns 0); or a negative close code
 * (WS_E_PROTOCOL, WS_E_INVALID_DATA, WS_E_TOO_BIG) with r->error set, after which the connection
 * must be failed and the reader not fed again.
 * Size: a frame whose declared length would take its message past max_message is refused as
 * WS_E_TOO_BIG as soon as its header is complete, before any of its payload is passed on. */
ssize_t ws_reader_feed(struct ws_reader *r, uint8_t *buf, size_t len,
                       const struct ws_reader_callbacks *cb, void *ud);

#endif
