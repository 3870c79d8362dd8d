/* RFC 6455 rules across frames: fragmentation (5.4), control frames between fragments (5.5),
 * UTF-8 of text messages checked as the bytes arrive (8.1), the close frame ending the stream
 * (5.5.1), and the message size limit checked from declared lengths. */
#include "ws_reader.h"

#include <string.h>

#include "utf8.h"
#include "ws_close.h"

void ws_reader_init(struct ws_reader *r, uint64_t max_message, unsigned allowed_rsv)
{
    memset(r, 0, sizeof *r);
    r->max_message = max_message;
    r->allowed_rsv = (uint8_t)allowed_rsv;
}

static int fail(struct ws_reader *r, int code, const char *why)
{
    r->error = why;
    return code;
}

/* Checks a frame whose header just completed against the message in progress. */
static int begin_frame(struct ws_reader *r)
{
    const struct ws_frame_header *f = &r->frame;
    r->frame_left = f->payload_len;
    r->frame_done = 0;
    r->control_len = 0;
    r->in_payload = true;
    if (ws_opcode_is_control(f->opcode)) return 0;

    if (f->opcode == WS_OP_CONTINUATION) {
        if (!r->message_opcode)
            return fail(r, WS_E_PROTOCOL, "continuation frame without a message to continue");
        if (f->rsv) return fail(r, WS_E_PROTOCOL, "reserved bits set on a continuation frame");
    } else {
        if (r->message_opcode)
            return fail(r, WS_E_PROTOCOL, "new data frame inside a fragmented message");
        r->message_opcode = f->opcode;
        r->compressed = (f->rsv & WS_RSV1) != 0;
        r->message_len = 0;
        r->utf8_state = UTF8_ACCEPT;
        r->first_pending = true;
    }
    /* Written so that it cannot overflow: message_len <= max_message always holds here. */
    if (r->max_message && f->payload_len > r->max_message - r->message_len)
        return fail(r, WS_E_TOO_BIG, "message larger than max_message");
    r->message_len += f->payload_len;
    return 0;
}

/* Completes a header from the bytes kept from earlier calls plus buf. Returns bytes of buf used,
 * WS_NEED_MORE (all of buf kept), or an error. */
static int take_header(struct ws_reader *r, const uint8_t *buf, size_t len)
{
    int n;
    if (r->header_len == 0) {
        n = ws_frame_parse_header(buf, len, r->allowed_rsv, &r->frame, &r->error);
        if (n == WS_NEED_MORE) {
            memcpy(r->header, buf, len); /* len < WS_FRAME_MAX_HEADER here */
            r->header_len = (uint8_t)len;
        }
        return n;
    }
    size_t kept = r->header_len;
    size_t take = WS_FRAME_MAX_HEADER - kept;
    if (take > len) take = len;
    memcpy(r->header + kept, buf, take);
    n = ws_frame_parse_header(r->header, kept + take, r->allowed_rsv, &r->frame, &r->error);
    if (n == WS_NEED_MORE) {
        r->header_len = (uint8_t)(kept + take);
        return n;
    }
    if (n < 0) return n;
    r->header_len = 0;
    return n - (int)kept;
}

/* Payload bytes of a control frame collect in r->control; the frame is handled when complete. */
static int control_payload(struct ws_reader *r, const uint8_t *p, size_t n,
                           const struct ws_reader_callbacks *cb, void *ud)
{
    memcpy(r->control + r->control_len, p, n);
    ws_frame_unmask(r->control + r->control_len, n, r->frame.mask, r->frame_done);
    r->control_len = (uint8_t)(r->control_len + n);
    r->frame_done += n;
    r->frame_left -= n;
    if (r->frame_left) return 0;

    r->in_payload = false;
    if (r->frame.opcode == WS_OP_CLOSE) {
        unsigned code;
        const uint8_t *reason;
        size_t reason_len;
        int rc = ws_close_parse(r->control, r->control_len, &code, &reason, &reason_len,
                                &r->error);
        if (rc < 0) return rc;
        r->closed = true;
    }
    return cb->on_control(ud, r->frame.opcode, r->control, r->control_len) ? 1 : 0;
}

static int data_payload(struct ws_reader *r, uint8_t *p, size_t n,
                        const struct ws_reader_callbacks *cb, void *ud)
{
    ws_frame_unmask(p, n, r->frame.mask, r->frame_done);
    r->frame_done += n;
    r->frame_left -= n;
    bool frame_end = r->frame_left == 0;
    bool last = frame_end && r->frame.fin;
    unsigned opcode = r->message_opcode;

    if (opcode == WS_OP_TEXT && !r->compressed) {
        if (!utf8_validate(&r->utf8_state, p, n))
            return fail(r, WS_E_INVALID_DATA, "text message is not valid UTF-8");
        if (last && !utf8_complete(r->utf8_state))
            return fail(r, WS_E_INVALID_DATA, "text message ends inside a UTF-8 sequence");
    }
    if (frame_end) r->in_payload = false;
    if (last) r->message_opcode = 0;
    /* Empty pieces only matter when they end a message (an empty message, or an empty final
     * fragment); otherwise there is nothing to pass on. */
    if (n == 0 && !last) return 0;

    bool first = r->first_pending;
    r->first_pending = false;
    return cb->on_data(ud, opcode, p, n, first, last) ? 1 : 0;
}

ssize_t ws_reader_feed(struct ws_reader *r, uint8_t *buf, size_t len,
                       const struct ws_reader_callbacks *cb, void *ud)
{
    if (r->closed) return 0;
    size_t pos = 0;
    for (;;) {
        if (!r->in_payload) {
            if (pos == len) break;
            int n = take_header(r, buf + pos, len - pos);
            if (n == WS_NEED_MORE) return (ssize_t)len;
            if (n < 0) return n;
            pos += (size_t)n;
            int rc = begin_frame(r);
            if (rc < 0) return rc;
        }
        /* Zero-length payloads go through here too: they end frames and messages. */
        size_t avail = len - pos;
        size_t n = r->frame_left < avail ? (size_t)r->frame_left : avail;
        int rc = ws_opcode_is_control(r->frame.opcode)
                     ? control_payload(r, buf + pos, n, cb, ud)
                     : data_payload(r, buf + pos, n, cb, ud);
        pos += n;
        if (rc < 0) return rc;
        if (rc > 0 || r->closed) break;
        if (r->in_payload) break; /* the frame continues in a later call */
    }
    return (ssize_t)pos;
}
