/* Fuzz target for the frame decoder and message assembler (core/ws_reader.h, over ws_frame.h and
 * ws_close.h). One client byte stream is decoded three ways:
 *   - by a reference written here: the whole stream at once, frame by frame, the RFC 6455 rules
 *     spelled out plainly, unmasking byte by byte and checking text with the reference UTF-8
 *     decoder of fuzz.h;
 *   - by ws_reader_feed given the whole stream in one call;
 *   - by ws_reader_feed given the stream chopped where the input's split plan says, with the
 *     callbacks asking now and then to stop (the caller feeds the rest again).
 * The callbacks check the contract of ws_reader.h as they go; the three recordings, results and
 * byte counts must then agree.
 *
 * Input: 13 bytes of settings, then the stream:
 *   [0..1] max_message base (little endian), [2] shift: max_message = base << (shift % 64),
 *          0 meaning no limit; [3] allowed_rsv (& 0x70); [4] pause: in the chopped feeding,
 *          every pause-th callback returns nonzero (0: never); [5..12] the split plan. */
#include "fuzz.h"

#include <sys/types.h>

#include "ws_close.h"
#include "ws_frame.h"
#include "ws_reader.h"

#define SETTINGS_LEN (5 + FUZZ_PLAN_LEN)

/* ---- Recording ------------------------------------------------------------------------------
 * Pieces are merged into whole messages so recordings compare across chunkings: the log holds
 * one record per finished message and per control frame, in order; the message in progress
 * stays in msg. A record: kind ('M' or 'C'), opcode, 8 bytes of length, the bytes. */

struct bytes {
    uint8_t *p;
    size_t len, cap;
};

static void bytes_add(struct bytes *b, const void *p, size_t len)
{
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + len) cap *= 2;
        uint8_t *grown = realloc(b->p, cap);
        FUZZ_CHECK(grown, "out of memory");
        b->p = grown;
        b->cap = cap;
    }
    if (len) memcpy(b->p + b->len, p, len);
    b->len += len;
}

struct recorder {
    const char *mode;      /* for messages: "whole", "chopped" or "reference" */
    struct bytes log;
    struct bytes msg;      /* the data message in progress */
    bool in_msg;
    unsigned msg_opcode;
    struct ref_utf8 utf8;  /* the text message in progress, checked independently */
    bool closed;           /* a close frame was delivered */
    uint64_t max_message;
    unsigned calls, pause; /* every pause-th callback returns nonzero; 0: never */
    const uint8_t *buf;    /* the buffer of the ws_reader_feed call under way */
    size_t buf_len;
};

static void rec_record(struct recorder *rec, uint8_t kind, unsigned opcode, const uint8_t *p,
                       size_t len)
{
    uint8_t head[10] = { kind, (uint8_t)opcode };
    for (int i = 0; i < 8; i++) head[2 + i] = (uint8_t)((uint64_t)len >> (8 * i));
    bytes_add(&rec->log, head, sizeof head);
    bytes_add(&rec->log, p, len);
}

static void rec_free(struct recorder *rec)
{
    free(rec->log.p);
    free(rec->msg.p);
}

/* The contract of on_data, then the recording. Shared by the reader's callback and the
 * reference, so the reference is held to the same rules. */
static void rec_data(struct recorder *rec, unsigned opcode, const uint8_t *data, size_t len,
                     bool first, bool last)
{
    FUZZ_CHECK(!rec->closed, "%s: data after a close frame", rec->mode);
    FUZZ_CHECK(opcode == WS_OP_TEXT || opcode == WS_OP_BINARY, "%s: data opcode %u", rec->mode,
               opcode);
    FUZZ_CHECK(first == !rec->in_msg, "%s: first=%d while a message is %s", rec->mode, first,
               rec->in_msg ? "in progress" : "not in progress");
    FUZZ_CHECK(len > 0 || last, "%s: empty piece that does not end a message", rec->mode);
    if (first) {
        rec->in_msg = true;
        rec->msg_opcode = opcode;
        rec->msg.len = 0;
        memset(&rec->utf8, 0, sizeof rec->utf8);
    }
    FUZZ_CHECK(opcode == rec->msg_opcode, "%s: piece of type %u in a message of type %u",
               rec->mode, opcode, rec->msg_opcode);
    if (opcode == WS_OP_TEXT) {
        for (size_t i = 0; i < len; i++)
            FUZZ_CHECK(ref_utf8_byte(&rec->utf8, data[i]),
                       "%s: text piece not UTF-8 at byte %zu of the message", rec->mode,
                       rec->msg.len + i);
        FUZZ_CHECK(!last || ref_utf8_at_boundary(&rec->utf8),
                   "%s: text message ends inside a character", rec->mode);
    }
    bytes_add(&rec->msg, data, len);
    FUZZ_CHECK(!rec->max_message || rec->msg.len <= rec->max_message,
               "%s: message of %zu bytes above max_message %llu", rec->mode, rec->msg.len,
               (unsigned long long)rec->max_message);
    if (last) {
        rec_record(rec, 'M', opcode, rec->msg.p, rec->msg.len);
        rec->in_msg = false;
        rec->msg.len = 0;
    }
}

static void rec_control(struct recorder *rec, unsigned opcode, const uint8_t *data, size_t len)
{
    FUZZ_CHECK(!rec->closed, "%s: control frame after a close frame", rec->mode);
    FUZZ_CHECK(opcode == WS_OP_CLOSE || opcode == WS_OP_PING || opcode == WS_OP_PONG,
               "%s: control opcode %u", rec->mode, opcode);
    FUZZ_CHECK(len <= WS_CONTROL_MAX_PAYLOAD, "%s: control payload of %zu bytes", rec->mode,
               len);
    if (opcode == WS_OP_CLOSE) {
        unsigned code;
        const uint8_t *reason;
        size_t reason_len;
        const char *why = NULL;
        FUZZ_CHECK(ws_close_parse(data, len, &code, &reason, &reason_len, &why) == 0,
                   "%s: delivered close payload fails ws_close_parse: %s", rec->mode, why);
        /* And by the reference rules. */
        FUZZ_CHECK(len != 1, "%s: 1-byte close payload", rec->mode);
        if (len >= 2) {
            unsigned c = (unsigned)data[0] << 8 | data[1];
            FUZZ_CHECK(ref_close_code_valid(c), "%s: close code %u delivered", rec->mode, c);
            struct ref_utf8 u = { 0 };
            for (size_t i = 2; i < len; i++)
                FUZZ_CHECK(ref_utf8_byte(&u, data[i]), "%s: close reason not UTF-8",
                           rec->mode);
            FUZZ_CHECK(ref_utf8_at_boundary(&u), "%s: close reason cut in a character",
                       rec->mode);
        }
        rec->closed = true;
    }
    rec_record(rec, 'C', opcode, data, len);
}

/* The callbacks also check that data lies in the buffer being fed. */
static int cb_data(void *ud, unsigned opcode, uint8_t *data, size_t len, bool first, bool last)
{
    struct recorder *rec = ud;
    FUZZ_CHECK(rec->buf && data >= rec->buf && len <= rec->buf_len &&
                   (size_t)(data - rec->buf) <= rec->buf_len - len,
               "%s: on_data bytes outside the fed buffer", rec->mode);
    rec_data(rec, opcode, data, len, first, last);
    return rec->pause && ++rec->calls % rec->pause == 0;
}

static int cb_control(void *ud, unsigned opcode, uint8_t *data, size_t len)
{
    struct recorder *rec = ud;
    FUZZ_CHECK(rec->buf, "%s: callback outside ws_reader_feed", rec->mode);
    rec_control(rec, opcode, data, len);
    return rec->pause && ++rec->calls % rec->pause == 0;
}

static const struct ws_reader_callbacks callbacks = { cb_data, cb_control };

/* What a decoding ended with. */
struct outcome {
    int error;       /* 0, or WS_E_PROTOCOL, WS_E_INVALID_DATA, WS_E_TOO_BIG */
    size_t consumed; /* bytes taken before the error, the close, or the end */
};

/* ---- The reference ------------------------------------------------------------------------- */

static bool ref_opcode_known(unsigned op) { return op <= 2 || (op >= 8 && op <= 10); }

static struct outcome ref_decode(struct recorder *rec, const uint8_t *in, size_t len,
                                 uint64_t max_message, unsigned allowed_rsv)
{
    struct outcome out = { 0, len };
    unsigned msg_opcode = 0; /* the fragmented message in progress */
    uint64_t msg_len = 0;
    struct ref_utf8 u = { 0 };
    uint8_t *payload = malloc(len ? len : 1);
    FUZZ_CHECK(payload, "out of memory");
    size_t pos = 0;
    while (pos < len) {
        /* The first two bytes are judged alone: bad ones fail at once. */
        if (len - pos < 2) break;
        unsigned b0 = in[pos], b1 = in[pos + 1];
        bool fin = b0 & 0x80, masked = b1 & 0x80;
        unsigned rsv = b0 & 0x70, op = b0 & 0x0F, len7 = b1 & 0x7F;
        bool control = op >= 8;
        if ((rsv & ~allowed_rsv) || !ref_opcode_known(op) ||
            (control && (!fin || len7 > 125 || rsv)) || !masked) {
            out.error = WS_E_PROTOCOL;
            break;
        }
        size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
        if (len - pos < 2 + ext + 4) break;
        uint64_t plen = len7;
        if (ext) {
            plen = 0;
            for (size_t i = 0; i < ext; i++) plen = plen << 8 | in[pos + 2 + i];
            /* Shortest encoding only; 63-bit lengths. */
            if ((ext == 2 && plen < 126) || (ext == 8 && (plen <= 0xFFFF || plen >> 63))) {
                out.error = WS_E_PROTOCOL;
                break;
            }
        }
        const uint8_t *mask = in + pos + 2 + ext;
        pos += 2 + ext + 4;
        size_t avail = len - pos < plen ? len - pos : (size_t)plen;
        for (size_t i = 0; i < avail; i++) payload[i] = in[pos + i] ^ mask[i % 4];

        if (control) {
            if (avail < plen) break; /* control payloads are delivered whole */
            pos += avail;
            if (op == WS_OP_CLOSE && plen) {
                unsigned code = plen >= 2 ? (unsigned)payload[0] << 8 | payload[1] : 0;
                if (plen == 1 || !ref_close_code_valid(code)) {
                    out.error = WS_E_PROTOCOL;
                    break;
                }
                struct ref_utf8 r = { 0 };
                bool text_ok = true;
                for (size_t i = 2; i < avail && text_ok; i++)
                    text_ok = ref_utf8_byte(&r, payload[i]);
                if (!text_ok || !ref_utf8_at_boundary(&r)) {
                    out.error = WS_E_INVALID_DATA;
                    break;
                }
            }
            rec_control(rec, op, payload, avail);
            if (op == WS_OP_CLOSE) {
                out.consumed = pos;
                break;
            }
            continue;
        }

        if (op == WS_OP_CONTINUATION) {
            if (!msg_opcode || rsv) {
                out.error = WS_E_PROTOCOL;
                break;
            }
        } else {
            if (msg_opcode) {
                out.error = WS_E_PROTOCOL;
                break;
            }
            msg_opcode = op;
            msg_len = 0;
            memset(&u, 0, sizeof u);
        }
        /* msg_len <= max_message here, and max_message may be close to 2^64: subtract. */
        if (max_message && plen > max_message - msg_len) {
            out.error = WS_E_TOO_BIG;
            break;
        }
        msg_len += plen;
        bool last = fin && avail == plen;
        if (msg_opcode == WS_OP_TEXT) {
            bool text_ok = true;
            for (size_t i = 0; i < avail && text_ok; i++) text_ok = ref_utf8_byte(&u, payload[i]);
            if (!text_ok || (last && !ref_utf8_at_boundary(&u))) {
                out.error = WS_E_INVALID_DATA;
                break;
            }
        }
        /* An empty piece is only passed on when it ends the message. */
        if (avail || last) rec_data(rec, msg_opcode, payload, avail, !rec->in_msg, last);
        if (last) msg_opcode = 0;
        pos += avail;
    }
    free(payload);
    return out;
}

/* ---- The reader ---------------------------------------------------------------------------- */

/* One ws_reader_feed call, with the checks every call gets. */
static ssize_t feed(struct ws_reader *r, struct recorder *rec, uint8_t *buf, size_t len)
{
    rec->buf = buf;
    rec->buf_len = len;
    bool was_closed = r->closed;
    ssize_t rc = ws_reader_feed(r, buf, len, &callbacks, rec);
    rec->buf = NULL;
    FUZZ_CHECK(rc == WS_E_PROTOCOL || rc == WS_E_INVALID_DATA || rc == WS_E_TOO_BIG ||
                   (rc >= 0 && (size_t)rc <= len),
               "%s: ws_reader_feed returned %zd for %zu bytes", rec->mode, rc, len);
    if (rc < 0) FUZZ_CHECK(r->error, "%s: error %zd without a reason", rec->mode, rc);
    if (was_closed) FUZZ_CHECK(rc == 0, "%s: consumed %zd bytes after the close", rec->mode, rc);
    FUZZ_CHECK(r->closed == rec->closed, "%s: reader closed=%d, close delivered=%d", rec->mode,
               r->closed, rec->closed);
    return rc;
}

static struct outcome reader_whole(struct recorder *rec, const uint8_t *in, size_t len,
                                   uint64_t max_message, unsigned allowed_rsv)
{
    struct ws_reader r;
    ws_reader_init(&r, max_message, allowed_rsv);
    uint8_t *buf = fuzz_guard_copy(0, in, len);
    struct outcome out = { 0, 0 };
    ssize_t rc = feed(&r, rec, buf, len);
    if (rc < 0) {
        out.error = (int)rc;
        return out;
    }
    out.consumed = (size_t)rc;
    /* Without pauses only a close stops short; what follows it is refused. */
    if (!r.closed) FUZZ_CHECK(out.consumed == len, "whole: stopped at %zu of %zu without a "
                              "close or a pause", out.consumed, len);
    if (out.consumed < len) feed(&r, rec, buf + out.consumed, len - out.consumed);
    return out;
}

static struct outcome reader_chopped(struct recorder *rec, const uint8_t *in, size_t len,
                                     uint64_t max_message, unsigned allowed_rsv,
                                     const uint8_t plan_bytes[FUZZ_PLAN_LEN])
{
    struct ws_reader r;
    ws_reader_init(&r, max_message, allowed_rsv);
    struct fuzz_plan plan;
    fuzz_plan_init(&plan, plan_bytes);
    struct outcome out = { 0, 0 };
    size_t off = 0;
    while (off < len) {
        size_t n = fuzz_plan_piece(&plan, len - off);
        uint8_t *buf = fuzz_guard_copy(0, in + off, n);
        size_t done = 0;
        /* A pause returns early: feed the rest of the piece again, as a server would once the
         * application is ready. After the close every call must take nothing. */
        while (done < n) {
            ssize_t rc = feed(&r, rec, buf + done, n - done);
            if (rc < 0) {
                out.error = (int)rc;
                return out;
            }
            if (r.closed && rc == 0) break;
            FUZZ_CHECK(rc > 0, "chopped: no progress on %zu bytes at offset %zu", n - done,
                       off + done);
            done += (size_t)rc;
            out.consumed += (size_t)rc;
        }
        /* An empty read between pieces takes nothing (and must not touch the buffer: the
         * empty copy starts at the guard page). */
        ssize_t rc = feed(&r, rec, fuzz_guard_copy(0, NULL, 0), 0);
        if (rc < 0) {
            out.error = (int)rc;
            return out;
        }
        FUZZ_CHECK(rc == 0, "chopped: an empty feed returned %zd", rc);
        off += n;
    }
    return out;
}

/* ---- The comparison ------------------------------------------------------------------------ */

/* memcmp, for buffers that may be NULL when empty. */
static bool same_bytes(const uint8_t *a, const uint8_t *b, size_t len)
{
    return len == 0 || memcmp(a, b, len) == 0;
}

/* strict: a and b both got the stream in one piece, so even after an error they must hold
 * the same message in progress. */
static void check_same(const struct recorder *a, const struct outcome *oa,
                       const struct recorder *b, const struct outcome *ob, bool strict)
{
    FUZZ_CHECK(oa->error == ob->error, "%s ended with %d, %s with %d", a->mode, oa->error,
               b->mode, ob->error);
    if (!oa->error)
        FUZZ_CHECK(oa->consumed == ob->consumed, "%s consumed %zu, %s %zu", a->mode,
                   oa->consumed, b->mode, ob->consumed);
    FUZZ_CHECK(a->log.len == b->log.len && same_bytes(a->log.p, b->log.p, a->log.len),
               "%s and %s recorded different messages or control frames (%zu vs %zu bytes)",
               a->mode, b->mode, a->log.len, b->log.len);
    FUZZ_CHECK(a->closed == b->closed, "closed: %s %d, %s %d", a->mode, a->closed, b->mode,
               b->closed);
    /* Without an error, the message in progress has all the bytes that arrived. A text frame
     * that fails UTF-8 is refused whole when it comes in one call, while in pieces its valid
     * start went out before: then b may have a message in progress where a has none, or a
     * longer one, never a different one. */
    if (!oa->error || strict)
        FUZZ_CHECK(a->in_msg == b->in_msg && a->msg.len == b->msg.len,
                   "message in progress: %s %d with %zu bytes, %s %d with %zu", a->mode,
                   a->in_msg, a->msg.len, b->mode, b->in_msg, b->msg.len);
    if (!a->in_msg) return;
    FUZZ_CHECK(b->in_msg && a->msg_opcode == b->msg_opcode && a->msg.len <= b->msg.len,
               "message in progress: %s has %zu bytes, %s %s", a->mode, a->msg.len, b->mode,
               b->in_msg ? "a shorter or different one" : "none");
    FUZZ_CHECK(same_bytes(a->msg.p, b->msg.p, a->msg.len),
               "message in progress: %s and %s have different bytes", a->mode, b->mode);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < SETTINGS_LEN) return 0;
    uint64_t base = (uint64_t)data[0] | (uint64_t)data[1] << 8;
    uint64_t max_message = base << (data[2] % 64);
    unsigned allowed_rsv = data[3] & 0x70u;
    unsigned pause = data[4];
    const uint8_t *in = data + SETTINGS_LEN;
    size_t len = size - SETTINGS_LEN;

    struct recorder ref = { .mode = "reference", .max_message = max_message };
    struct recorder whole = { .mode = "whole", .max_message = max_message };
    struct recorder chopped = { .mode = "chopped", .max_message = max_message, .pause = pause };

    struct outcome o_ref = ref_decode(&ref, in, len, max_message, allowed_rsv);
    struct outcome o_whole = reader_whole(&whole, in, len, max_message, allowed_rsv);
    struct outcome o_chopped = reader_chopped(&chopped, in, len, max_message, allowed_rsv,
                                              data + 5);

    check_same(&ref, &o_ref, &whole, &o_whole, true);
    check_same(&whole, &o_whole, &chopped, &o_chopped, false);

    rec_free(&ref);
    rec_free(&whole);
    rec_free(&chopped);
    return 0;
}
