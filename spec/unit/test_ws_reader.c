/* Tests for the message reader (core/ws_reader.h). Each case is a stream of client frames fed
 * whole, one byte per call, and split in two at every position, every call from a guard-page
 * copy; the callbacks are recorded and must come out the same in every feeding mode. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <criterion/criterion.h>

#include "guard.h"
#include "utf8.h"
#include "ws_frame.h"
#include "ws_reader.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- Client streams ------------------------------------------------------------------------ */

#define MAX_FRAMES 8

/* A byte stream as a client sends it, with where each frame lies. */
struct stream {
    uint8_t *bytes;
    size_t len, cap;
    size_t nframes;
    size_t frame_start[MAX_FRAMES];
    size_t payload_start[MAX_FRAMES];
    size_t frame_end[MAX_FRAMES];
    uint8_t opcode[MAX_FRAMES];
};

static void stream_reserve(struct stream *s, size_t more)
{
    if (s->len + more <= s->cap) return;
    size_t cap = s->cap ? s->cap : 256;
    while (cap < s->len + more) cap *= 2;
    uint8_t *b = realloc(s->bytes, cap);
    cr_assert_not_null(b, "out of memory");
    s->bytes = b;
    s->cap = cap;
}

static void stream_raw(struct stream *s, const void *p, size_t len)
{
    stream_reserve(s, len);
    if (len) memcpy(s->bytes + s->len, p, len);
    s->len += len;
}

/* The mask of frame i: different for every frame, so a mask kept from the previous frame shows. */
static void frame_mask(size_t i, uint8_t mask[4])
{
    static const uint8_t base[4] = { 0x37, 0xFA, 0x21, 0x3D };
    for (size_t j = 0; j < 4; j++) mask[j] = (uint8_t)(base[j] + 0x29 * i);
}

/* Appends a masked frame header declaring declared_len payload bytes, shortest length encoding,
 * and returns nothing of the payload; stream_payload adds it. */
static void stream_header(struct stream *s, uint8_t b0, uint64_t declared_len)
{
    cr_assert_lt(s->nframes, MAX_FRAMES, "too many frames in a test stream");
    size_t i = s->nframes++;
    s->frame_start[i] = s->len;
    s->opcode[i] = b0 & 0x0F;
    uint8_t h[WS_FRAME_MAX_HEADER];
    size_t n = 0;
    h[n++] = b0;
    if (declared_len < 126) {
        h[n++] = (uint8_t)(0x80 | declared_len);
    } else if (declared_len <= 0xFFFF) {
        h[n++] = 0x80 | 126;
        h[n++] = (uint8_t)(declared_len >> 8);
        h[n++] = (uint8_t)declared_len;
    } else {
        h[n++] = 0x80 | 127;
        for (int k = 7; k >= 0; k--) h[n++] = (uint8_t)(declared_len >> (8 * k));
    }
    frame_mask(i, h + n);
    n += 4;
    stream_raw(s, h, n);
    s->payload_start[i] = s->frame_end[i] = s->len;
}

/* Appends payload bytes of the last frame, masked. */
static void stream_payload(struct stream *s, const void *payload, size_t len)
{
    size_t i = s->nframes - 1;
    uint8_t mask[4];
    frame_mask(i, mask);
    size_t done = s->len - s->payload_start[i];
    stream_reserve(s, len);
    const uint8_t *p = payload;
    for (size_t k = 0; k < len; k++) s->bytes[s->len + k] = p[k] ^ mask[(done + k) % 4];
    s->len += len;
    s->frame_end[i] = s->len;
}

static void stream_frame(struct stream *s, uint8_t b0, const void *payload, size_t len)
{
    stream_header(s, b0, len);
    stream_payload(s, payload, len);
}

static void stream_free(struct stream *s)
{
    free(s->bytes);
    memset(s, 0, sizeof *s);
}

/* Payload bytes of data frames that lie before stream offset end. */
static size_t data_bytes_before(const struct stream *s, size_t end)
{
    size_t n = 0;
    for (size_t i = 0; i < s->nframes; i++) {
        if (ws_opcode_is_control(s->opcode[i])) continue;
        size_t a = s->payload_start[i], b = s->frame_end[i];
        if (a < end) n += (b < end ? b : end) - a;
    }
    return n;
}

/* ---- Recording the callbacks --------------------------------------------------------------- */

enum { EV_DATA = 1, EV_CONTROL = 2 };

/* Consecutive data pieces of one message are merged into one event, so a message fed one byte
 * at a time records the same as one fed whole; control frames stay where they came. */
struct event {
    int kind;
    unsigned opcode;
    bool first, last;
    size_t off, len; /* bytes in the recorder's store */
};

#define MAX_EVENTS 64

struct recorder {
    struct event ev[MAX_EVENTS];
    size_t nev;
    uint8_t *store;
    size_t store_len, store_cap;
    size_t calls;          /* callbacks so far */
    size_t data_calls;
    size_t stop_at;        /* the callback (1-based) that returns nonzero; 0 for none */
    bool in_message;       /* a data message has started and not ended */
    unsigned msg_opcode;
    uint32_t utf8;         /* validation of the text message in progress, as a cross-check */
    const uint8_t *buf;    /* the buffer of the current ws_reader_feed call */
    size_t buf_len;
    size_t problems;       /* contract violations seen by the callbacks */
    char problem[200];     /* the first of them */
};

static void rec_init(struct recorder *rec)
{
    memset(rec, 0, sizeof *rec);
    rec->store_cap = 1024;
    rec->store = malloc(rec->store_cap);
    cr_assert_not_null(rec->store);
}

static void rec_free(struct recorder *rec)
{
    free(rec->store);
    rec->store = NULL;
}

static void rec_problem(struct recorder *rec, const char *what)
{
    if (rec->problems++ == 0) snprintf(rec->problem, sizeof rec->problem, "%s", what);
}

static void rec_bytes(struct recorder *rec, const uint8_t *data, size_t len)
{
    if (rec->store_len + len > rec->store_cap) {
        while (rec->store_len + len > rec->store_cap) rec->store_cap *= 2;
        rec->store = realloc(rec->store, rec->store_cap);
        cr_assert_not_null(rec->store);
    }
    if (len) memcpy(rec->store + rec->store_len, data, len);
    rec->store_len += len;
}

static void rec_event(struct recorder *rec, int kind, unsigned opcode, const uint8_t *data,
                      size_t len, bool first, bool last)
{
    struct event *prev = rec->nev ? &rec->ev[rec->nev - 1] : NULL;
    /* The previous event's bytes end the store, so appending extends them. */
    if (kind == EV_DATA && prev && prev->kind == EV_DATA && !prev->last && !first &&
        prev->opcode == opcode) {
        rec_bytes(rec, data, len);
        prev->len += len;
        prev->last = last;
        return;
    }
    cr_assert_lt(rec->nev, MAX_EVENTS, "too many events");
    struct event *e = &rec->ev[rec->nev++];
    e->kind = kind;
    e->opcode = opcode;
    e->first = first;
    e->last = last;
    e->off = rec->store_len;
    e->len = len;
    rec_bytes(rec, data, len);
}

/* The callbacks check what the contract promises about every call, then record it. */
static int on_data(void *ud, unsigned opcode, uint8_t *data, size_t len, bool first, bool last)
{
    struct recorder *rec = ud;
    rec->calls++;
    rec->data_calls++;
    if (opcode != WS_OP_TEXT && opcode != WS_OP_BINARY) rec_problem(rec, "on_data: bad opcode");
    if (first == rec->in_message)
        rec_problem(rec, first ? "on_data: first inside a message" : "on_data: no first piece");
    if (!first && opcode != rec->msg_opcode) rec_problem(rec, "on_data: opcode changed");
    /* Data is passed in place: it lies inside the buffer given to this ws_reader_feed call. */
    if (len && (data < rec->buf || data + len > rec->buf + rec->buf_len))
        rec_problem(rec, "on_data: bytes outside the fed buffer");
    if (first) rec->utf8 = UTF8_ACCEPT;
    if (opcode == WS_OP_TEXT && !utf8_validate(&rec->utf8, data, len))
        rec_problem(rec, "on_data: text piece is not UTF-8");
    if (opcode == WS_OP_TEXT && last && !utf8_complete(rec->utf8))
        rec_problem(rec, "on_data: text message ends inside a character");
    rec->in_message = !last;
    rec->msg_opcode = opcode;
    rec_event(rec, EV_DATA, opcode, data, len, first, last);
    return rec->calls == rec->stop_at;
}

static int on_control(void *ud, unsigned opcode, uint8_t *data, size_t len)
{
    struct recorder *rec = ud;
    rec->calls++;
    if (opcode != WS_OP_PING && opcode != WS_OP_PONG && opcode != WS_OP_CLOSE)
        rec_problem(rec, "on_control: bad opcode");
    if (len > WS_CONTROL_MAX_PAYLOAD) rec_problem(rec, "on_control: payload over 125 bytes");
    rec_event(rec, EV_CONTROL, opcode, data, len, false, false);
    return rec->calls == rec->stop_at;
}

static const struct ws_reader_callbacks callbacks = { on_data, on_control };

/* Compares two recorded logs; on a difference writes which into why. */
static bool same_log(const struct recorder *a, const struct recorder *b, char *why, size_t cap)
{
    size_t n = a->nev < b->nev ? a->nev : b->nev;
    for (size_t i = 0; i < n; i++) {
        const struct event *x = &a->ev[i], *y = &b->ev[i];
        if (x->kind != y->kind || x->opcode != y->opcode || x->first != y->first ||
            x->last != y->last || x->len != y->len ||
            memcmp(a->store + x->off, b->store + y->off, x->len) != 0) {
            snprintf(why, cap,
                     "event %zu differs: %s op %u first %d last %d len %zu, want %s op %u "
                     "first %d last %d len %zu",
                     i, x->kind == EV_DATA ? "data" : "control", x->opcode, x->first, x->last,
                     x->len, y->kind == EV_DATA ? "data" : "control", y->opcode, y->first,
                     y->last, y->len);
            return false;
        }
    }
    if (a->nev != b->nev) {
        snprintf(why, cap, "%zu events, want %zu", a->nev, b->nev);
        return false;
    }
    return true;
}

static size_t rec_data_bytes(const struct recorder *rec)
{
    size_t n = 0;
    for (size_t i = 0; i < rec->nev; i++)
        if (rec->ev[i].kind == EV_DATA) n += rec->ev[i].len;
    return n;
}

/* ---- Feeding --------------------------------------------------------------------------------- */

/* One ws_reader_feed call on a guard-page copy of src[0..len): the reader may neither read past
 * the piece nor keep pointers into it (the copy is unmapped afterwards). */
static ssize_t feed_piece(struct ws_reader *r, struct recorder *rec, const uint8_t *src,
                          size_t len)
{
    struct guard g;
    uint8_t *p = guard_copy(&g, src, len);
    rec->buf = p;
    rec->buf_len = len;
    ssize_t rc = ws_reader_feed(r, p, len, &callbacks, rec);
    rec->buf = NULL;
    rec->buf_len = 0;
    guard_free(&g);
    return rc;
}

enum mode { WHOLE, BYTES, SPLIT };

struct run {
    ssize_t error;          /* 0, or the negative result of the call that failed */
    const char *why;        /* r.error after a failure */
    size_t error_from;      /* stream offset of the piece that failed */
    size_t error_to;        /* and where it ended */
    size_t consumed;        /* stream bytes consumed before a failure or a short return */
    bool short_return;      /* a call consumed less than it was given */
    bool closed;
    size_t after_close;     /* bytes consumed, or callbacks made, by calls after the close */
};

/* Feeds the stream in the pieces the mode says, with a fresh reader. After a short return (a
 * close), the remaining pieces are still fed: they must be refused. */
static struct run run_stream(const struct stream *s, uint64_t max_message, unsigned allowed_rsv,
                             enum mode mode, size_t k, struct recorder *rec)
{
    struct ws_reader r;
    ws_reader_init(&r, max_message, allowed_rsv);
    struct run out = { 0 };
    size_t cuts[3], ncuts = 0;
    cuts[ncuts++] = 0;
    if (mode == SPLIT) cuts[ncuts++] = k;
    cuts[ncuts++] = s->len;

    size_t a = 0;
    size_t piece = 0;
    while (a < s->len || (mode == SPLIT && piece == 0)) {
        size_t b = mode == BYTES ? a + 1 : cuts[piece + 1];
        piece++;
        size_t calls_before = rec->calls;
        ssize_t rc = feed_piece(&r, rec, s->bytes + a, b - a);
        if (out.short_return) {
            out.after_close += (size_t)(rc > 0 ? rc : 0) + (rec->calls - calls_before);
        } else if (rc < 0) {
            out.error = rc;
            out.why = r.error;
            out.error_from = a;
            out.error_to = b;
            break;
        } else if ((size_t)rc < b - a) {
            out.short_return = true;
            out.consumed = a + (size_t)rc;
        } else {
            out.consumed = b;
        }
        a = b;
    }
    out.closed = r.closed;
    return out;
}

/* ---- Table of streams that are read without error ------------------------------------------ */

#define TEXT_FIN 0x81
#define TEXT_MORE 0x01
#define BIN_FIN 0x82
#define BIN_MORE 0x02
#define CONT_MORE 0x00
#define CONT_FIN 0x80
#define CLOSE 0x88
#define PING 0x89
#define PONG 0x8A

struct fspec {
    uint8_t b0;          /* FIN, RSV and opcode */
    const char *payload; /* NULL ends the list */
    size_t len;
};
#define F(b0, str) { b0, str, sizeof(str) - 1 }

struct want_ev {
    int kind; /* 0 ends the list */
    unsigned opcode;
    const char *bytes;
    size_t len;
    bool first, last;
};
#define D(op, str, first, last) { EV_DATA, op, str, sizeof(str) - 1, first, last }
#define C(op, str) { EV_CONTROL, op, str, sizeof(str) - 1, false, false }

#define S25 "abcdefghijklmnopqrstuvwxy"
#define S125 S25 S25 S25 S25 S25

struct good_case {
    const char *name;
    uint64_t max_message;
    unsigned allowed_rsv;
    struct fspec frames[MAX_FRAMES];
    struct want_ev want[MAX_EVENTS / 4];
};

static const struct good_case good[] = {
    { "text, one frame", 0, 0, { F(TEXT_FIN, "hello") }, { D(WS_OP_TEXT, "hello", 1, 1) } },
    { "binary that is not UTF-8 is not checked", 0, 0,
      { F(BIN_FIN, "\xFF\xFE\xC0\x80\xED\xA0\x80\xF5") },
      { D(WS_OP_BINARY, "\xFF\xFE\xC0\x80\xED\xA0\x80\xF5", 1, 1) } },
    { "binary fragments ending inside a 'character'", 0, 0,
      { F(BIN_MORE, "\xE2"), F(CONT_FIN, "\x82") }, { D(WS_OP_BINARY, "\xE2\x82", 1, 1) } },
    { "empty text message, delivered once", 0, 0, { F(TEXT_FIN, "") },
      { D(WS_OP_TEXT, "", 1, 1) } },
    { "empty binary message", 0, 0, { F(BIN_FIN, "") }, { D(WS_OP_BINARY, "", 1, 1) } },
    { "text in three fragments", 0, 0,
      { F(TEXT_MORE, "Hel"), F(CONT_MORE, "lo, "), F(CONT_FIN, "world") },
      { D(WS_OP_TEXT, "Hello, world", 1, 1) } },
    { "ping between fragments goes to on_control", 0, 0,
      { F(TEXT_MORE, "Hel"), F(PING, "p"), F(CONT_FIN, "lo") },
      { D(WS_OP_TEXT, "Hel", 1, 0), C(WS_OP_PING, "p"), D(WS_OP_TEXT, "lo", 0, 1) } },
    { "ping and pong between binary fragments", 0, 0,
      { F(BIN_MORE, "a"), F(PING, ""), F(CONT_MORE, "b"), F(PONG, "q"), F(CONT_FIN, "c") },
      { D(WS_OP_BINARY, "a", 1, 0), C(WS_OP_PING, ""), D(WS_OP_BINARY, "b", 0, 0),
        C(WS_OP_PONG, "q"), D(WS_OP_BINARY, "c", 0, 1) } },
    { "unsolicited pong goes to on_control", 0, 0, { F(PONG, "x") }, { C(WS_OP_PONG, "x") } },
    { "empty ping", 0, 0, { F(PING, "") }, { C(WS_OP_PING, "") } },
    { "ping of 125 bytes", 0, 0, { F(PING, S125) }, { C(WS_OP_PING, S125) } },
    { "empty first fragment", 0, 0, { F(TEXT_MORE, ""), F(CONT_FIN, "abc") },
      { D(WS_OP_TEXT, "abc", 1, 1) } },
    { "empty middle fragment", 0, 0, { F(TEXT_MORE, "ab"), F(CONT_MORE, ""), F(CONT_FIN, "c") },
      { D(WS_OP_TEXT, "abc", 1, 1) } },
    { "empty last fragment", 0, 0, { F(TEXT_MORE, "abc"), F(CONT_FIN, "") },
      { D(WS_OP_TEXT, "abc", 1, 1) } },
    { "all fragments empty: one empty message", 0, 0,
      { F(TEXT_MORE, ""), F(CONT_MORE, ""), F(CONT_FIN, "") }, { D(WS_OP_TEXT, "", 1, 1) } },
    { "empty last fragment after a ping", 0, 0,
      { F(TEXT_MORE, "abc"), F(PING, ""), F(CONT_FIN, "") },
      { D(WS_OP_TEXT, "abc", 1, 0), C(WS_OP_PING, ""), D(WS_OP_TEXT, "", 0, 1) } },
    { "2-byte character split across fragments", 0, 0,
      { F(TEXT_MORE, "\xC3"), F(CONT_FIN, "\xA9") }, { D(WS_OP_TEXT, "\xC3\xA9", 1, 1) } },
    { "4-byte character across three fragments and a ping", 0, 0,
      { F(TEXT_MORE, "a\xF0"), F(CONT_MORE, "\x9F"), F(PING, "!"), F(CONT_FIN, "\x98\x80z") },
      { D(WS_OP_TEXT, "a\xF0\x9F", 1, 0), C(WS_OP_PING, "!"), D(WS_OP_TEXT, "\x98\x80z", 0, 1) } },
    { "messages and control frames back to back", 0, 0,
      { F(TEXT_FIN, "one"), F(PING, "1"), F(BIN_FIN, "two"), F(PONG, "2"), F(TEXT_FIN, "") },
      { D(WS_OP_TEXT, "one", 1, 1), C(WS_OP_PING, "1"), D(WS_OP_BINARY, "two", 1, 1),
        C(WS_OP_PONG, "2"), D(WS_OP_TEXT, "", 1, 1) } },
    { "RSV1 accepted when negotiated", 0, WS_RSV1, { F(0xC1, "abc"), F(0xC2, "\xFF") },
      { D(WS_OP_TEXT, "abc", 1, 1), D(WS_OP_BINARY, "\xFF", 1, 1) } },
    { "messages of exactly max_message, control frames not counted", 5, 0,
      { F(TEXT_FIN, "12345"), F(BIN_MORE, "12"), F(PING, "longer than the limit"),
        F(CONT_MORE, ""), F(CONT_FIN, "345") },
      { D(WS_OP_TEXT, "12345", 1, 1), D(WS_OP_BINARY, "12", 1, 0),
        C(WS_OP_PING, "longer than the limit"), D(WS_OP_BINARY, "345", 0, 1) } },
};

static void build_stream(struct stream *s, const struct fspec *frames)
{
    memset(s, 0, sizeof *s);
    for (size_t i = 0; i < MAX_FRAMES && frames[i].payload; i++)
        stream_frame(s, frames[i].b0, frames[i].payload, frames[i].len);
}

static void build_want(struct recorder *want, const struct want_ev *ev)
{
    rec_init(want);
    for (size_t i = 0; ev[i].kind; i++)
        rec_event(want, ev[i].kind, ev[i].opcode, (const uint8_t *)ev[i].bytes, ev[i].len,
                  ev[i].first, ev[i].last);
}

/* Runs one feeding mode and checks it read everything, with the wanted callbacks. */
static void check_good_run(const char *name, const struct stream *s, uint64_t max_message,
                           unsigned allowed_rsv, enum mode mode, size_t k,
                           const struct recorder *want)
{
    static const char *mode_names[] = { "whole", "byte by byte", "split" };
    struct recorder rec;
    rec_init(&rec);
    struct run run = run_stream(s, max_message, allowed_rsv, mode, k, &rec);
    char why[300] = "";
    cr_expect_eq(run.error, 0, "%s, %s %zu: error %zd (%s)", name, mode_names[mode], k,
                 run.error, run.why ? run.why : "");
    cr_expect_eq(run.consumed, s->len, "%s, %s %zu: consumed %zu of %zu", name, mode_names[mode],
                 k, run.consumed, s->len);
    cr_expect_eq(rec.problems, 0, "%s, %s %zu: %s", name, mode_names[mode], k, rec.problem);
    cr_expect(same_log(&rec, want, why, sizeof why), "%s, %s %zu: %s", name, mode_names[mode], k,
              why);
    rec_free(&rec);
}

Test(ws_reader, good_streams_whole_bytewise_and_every_split)
{
    for (size_t i = 0; i < N(good); i++) {
        const struct good_case *c = &good[i];
        struct stream s;
        build_stream(&s, c->frames);
        struct recorder want;
        build_want(&want, c->want);
        check_good_run(c->name, &s, c->max_message, c->allowed_rsv, WHOLE, 0, &want);
        check_good_run(c->name, &s, c->max_message, c->allowed_rsv, BYTES, 0, &want);
        for (size_t k = 0; k <= s.len; k++)
            check_good_run(c->name, &s, c->max_message, c->allowed_rsv, SPLIT, k, &want);
        rec_free(&want);
        stream_free(&s);
    }
}

/* A message that arrives whole in one call is one piece with first and last set; an empty
 * message is delivered exactly once. Checks the raw calls, not the merged log. */
Test(ws_reader, whole_message_in_one_call_is_one_piece)
{
    static const struct {
        const char *name;
        struct fspec frames[4];
        size_t data_calls;
    } cases[] = {
        { "one frame", { F(TEXT_FIN, "hello") }, 1 },
        { "empty message", { F(TEXT_FIN, "") }, 1 },
        { "empty message in three empty fragments",
          { F(TEXT_MORE, ""), F(CONT_MORE, ""), F(CONT_FIN, "") }, 1 },
        { "empty first fragment", { F(BIN_MORE, ""), F(CONT_FIN, "x") }, 1 },
    };
    for (size_t i = 0; i < N(cases); i++) {
        struct stream s;
        build_stream(&s, cases[i].frames);
        struct recorder rec;
        rec_init(&rec);
        struct run run = run_stream(&s, 0, 0, WHOLE, 0, &rec);
        cr_expect_eq(run.error, 0, "%s: error %zd", cases[i].name, run.error);
        cr_expect_eq(rec.data_calls, cases[i].data_calls, "%s: %zu on_data calls, want %zu",
                     cases[i].name, rec.data_calls, cases[i].data_calls);
        cr_expect(rec.nev == 1 && rec.ev[0].first && rec.ev[0].last,
                  "%s: not one piece with first and last", cases[i].name);
        rec_free(&rec);
        stream_free(&s);
    }
}

/* ---- Table of streams that fail ------------------------------------------------------------ */

/* Where the error must be reported, as a position in the bad frame. */
#define AT_HEADER (-1)     /* somewhere in its header, once enough of it is known */
#define AT_HEADER_END (-2) /* exactly when its header is complete */
#define AT_FRAME_END (-3)  /* exactly at its last byte */
/* n >= 0: exactly at payload byte n of the frame */

struct bad_case {
    const char *name;
    uint64_t max_message;
    unsigned allowed_rsv;
    struct fspec frames[MAX_FRAMES];
    ssize_t want_error;
    size_t bad_frame;
    int at;
    struct want_ev before[MAX_EVENTS / 4]; /* callbacks before the error, when fed whole */
};

static const struct bad_case bad[] = {
    { "continuation without a message", 0, 0, { F(CONT_FIN, "abc") }, WS_E_PROTOCOL, 0,
      AT_HEADER, { { 0 } } },
    { "continuation after a finished message", 0, 0, { F(TEXT_FIN, "a"), F(CONT_FIN, "b") },
      WS_E_PROTOCOL, 1, AT_HEADER, { D(WS_OP_TEXT, "a", 1, 1) } },
    { "text inside a fragmented text message", 0, 0, { F(TEXT_MORE, "a"), F(TEXT_FIN, "b") },
      WS_E_PROTOCOL, 1, AT_HEADER, { D(WS_OP_TEXT, "a", 1, 0) } },
    { "binary inside a fragmented text message", 0, 0, { F(TEXT_MORE, "a"), F(BIN_MORE, "b") },
      WS_E_PROTOCOL, 1, AT_HEADER, { D(WS_OP_TEXT, "a", 1, 0) } },
    { "text inside a fragmented binary message, after a ping", 0, 0,
      { F(BIN_MORE, "a"), F(PING, ""), F(TEXT_FIN, "b") }, WS_E_PROTOCOL, 2, AT_HEADER,
      { D(WS_OP_BINARY, "a", 1, 0), C(WS_OP_PING, "") } },
    { "invalid byte in a single text frame", 0, 0, { F(TEXT_FIN, "ab\xFF" "cd") },
      WS_E_INVALID_DATA, 0, 2, { { 0 } } },
    { "invalid byte in a non-final first fragment", 0, 0,
      { F(TEXT_MORE, "ab\xFF"), F(CONT_FIN, "cd") }, WS_E_INVALID_DATA, 0, 2, { { 0 } } },
    { "overlong in the second fragment", 0, 0, { F(TEXT_MORE, "abc"), F(CONT_MORE, "d\xC0\x80") },
      WS_E_INVALID_DATA, 1, 1, { D(WS_OP_TEXT, "abc", 1, 0) } },
    { "surrogate split across fragments", 0, 0, { F(TEXT_MORE, "\xED"), F(CONT_FIN, "\xA0\x80") },
      WS_E_INVALID_DATA, 1, 0, { D(WS_OP_TEXT, "\xED", 1, 0) } },
    { "overlong split by a ping", 0, 0,
      { F(TEXT_MORE, "\xE0"), F(PING, "x"), F(CONT_FIN, "\x80\x80") }, WS_E_INVALID_DATA, 2, 0,
      { D(WS_OP_TEXT, "\xE0", 1, 0), C(WS_OP_PING, "x") } },
    { "truncated character at the end of a single frame", 0, 0, { F(TEXT_FIN, "a\xC3") },
      WS_E_INVALID_DATA, 0, AT_FRAME_END, { { 0 } } },
    { "truncated character, then an empty final fragment", 0, 0,
      { F(TEXT_MORE, "\xE2\x82"), F(CONT_FIN, "") }, WS_E_INVALID_DATA, 1, AT_FRAME_END,
      { D(WS_OP_TEXT, "\xE2\x82", 1, 0) } },
    { "truncated character at the end of the last fragment", 0, 0,
      { F(TEXT_MORE, "ok"), F(CONT_FIN, "\xF0\x9F\x98") }, WS_E_INVALID_DATA, 1, AT_FRAME_END,
      { D(WS_OP_TEXT, "ok", 1, 0) } },
    { "close with a 1-byte payload", 0, 0, { F(CLOSE, "\x03") }, WS_E_PROTOCOL, 0,
      AT_FRAME_END, { { 0 } } },
    { "close code 0", 0, 0, { F(CLOSE, "\x00\x00") }, WS_E_PROTOCOL, 0, AT_FRAME_END,
      { { 0 } } },
    { "close code 999", 0, 0, { F(CLOSE, "\x03\xE7") }, WS_E_PROTOCOL, 0, AT_FRAME_END,
      { { 0 } } },
    { "close code 1005", 0, 0, { F(CLOSE, "\x03\xED") }, WS_E_PROTOCOL, 0, AT_FRAME_END,
      { { 0 } } },
    { "close code 1006", 0, 0, { F(CLOSE, "\x03\xEE") }, WS_E_PROTOCOL, 0, AT_FRAME_END,
      { { 0 } } },
    { "close code 1015", 0, 0, { F(CLOSE, "\x03\xF7") }, WS_E_PROTOCOL, 0, AT_FRAME_END,
      { { 0 } } },
    { "close code 2999", 0, 0, { F(CLOSE, "\x0B\xB7") }, WS_E_PROTOCOL, 0, AT_FRAME_END,
      { { 0 } } },
    { "close code 5000", 0, 0, { F(CLOSE, "\x13\x88") }, WS_E_PROTOCOL, 0, AT_FRAME_END,
      { { 0 } } },
    { "close reason not UTF-8", 0, 0, { F(TEXT_FIN, "x"), F(CLOSE, "\x03\xE8" "a\xFF") },
      WS_E_INVALID_DATA, 1, AT_FRAME_END, { D(WS_OP_TEXT, "x", 1, 1) } },
    { "close reason ends inside a character", 0, 0, { F(CLOSE, "\x03\xE8\xC3") },
      WS_E_INVALID_DATA, 0, AT_FRAME_END, { { 0 } } },
    { "RSV1 without an extension", 0, 0, { F(0xC1, "a") }, WS_E_PROTOCOL, 0, AT_HEADER,
      { { 0 } } },
    { "RSV2 when only RSV1 is negotiated", 0, WS_RSV1, { F(0xA2, "a") }, WS_E_PROTOCOL, 0,
      AT_HEADER, { { 0 } } },
    { "RSV1 on a ping though negotiated", 0, WS_RSV1, { F(0xC9, "") }, WS_E_PROTOCOL, 0,
      AT_HEADER, { { 0 } } },
    { "reserved opcode 3", 0, 0, { F(0x83, "") }, WS_E_PROTOCOL, 0, AT_HEADER, { { 0 } } },
    { "reserved opcode 0xB after a message", 0, 0, { F(TEXT_FIN, "a"), F(0x8B, "") },
      WS_E_PROTOCOL, 1, AT_HEADER, { D(WS_OP_TEXT, "a", 1, 1) } },
    { "fragmented ping", 0, 0, { F(0x09, "") }, WS_E_PROTOCOL, 0, AT_HEADER, { { 0 } } },
    { "ping of 126 bytes", 0, 0, { F(PING, S125 "z") }, WS_E_PROTOCOL, 0, AT_HEADER,
      { { 0 } } },
    { "single frame over max_message", 4, 0, { F(TEXT_FIN, "12345") }, WS_E_TOO_BIG, 0,
      AT_HEADER_END, { { 0 } } },
    { "fragments summing over max_message", 5, 0, { F(BIN_MORE, "123"), F(CONT_FIN, "456") },
      WS_E_TOO_BIG, 1, AT_HEADER_END, { D(WS_OP_BINARY, "123", 1, 0) } },
    { "empty fragments and a ping do not reset the sum", 3, 0,
      { F(TEXT_MORE, ""), F(CONT_MORE, "12"), F(PING, "abcd"), F(CONT_MORE, ""),
        F(CONT_FIN, "34") },
      WS_E_TOO_BIG, 4, AT_HEADER_END, { D(WS_OP_TEXT, "12", 1, 0), C(WS_OP_PING, "abcd") } },
    { "second message over max_message", 3, 0, { F(TEXT_FIN, "123"), F(TEXT_FIN, "1234") },
      WS_E_TOO_BIG, 1, AT_HEADER_END, { D(WS_OP_TEXT, "123", 1, 1) } },
};

/* The window of stream offsets at which the error of c must be returned. */
static void error_window(const struct bad_case *c, const struct stream *s, size_t *lo,
                         size_t *hi)
{
    size_t f = c->bad_frame;
    switch (c->at) {
    case AT_HEADER:
        *lo = s->frame_start[f];
        *hi = s->payload_start[f] - 1;
        break;
    case AT_HEADER_END:
        *lo = *hi = s->payload_start[f] - 1;
        break;
    case AT_FRAME_END:
        *lo = *hi = s->frame_end[f] - 1;
        break;
    default:
        *lo = *hi = s->payload_start[f] + (size_t)c->at;
        break;
    }
}

Test(ws_reader, bad_streams_fail_at_the_right_byte)
{
    for (size_t i = 0; i < N(bad); i++) {
        const struct bad_case *c = &bad[i];
        struct stream s;
        build_stream(&s, c->frames);
        cr_assert_lt(c->bad_frame, s.nframes, "%s: bad_frame out of range", c->name);
        size_t lo, hi;
        error_window(c, &s, &lo, &hi);

        /* Whole: the error, after exactly the callbacks before the bad frame. */
        struct recorder want, rec;
        build_want(&want, c->before);
        rec_init(&rec);
        struct run run = run_stream(&s, c->max_message, c->allowed_rsv, WHOLE, 0, &rec);
        char why[300] = "";
        cr_expect_eq(run.error, c->want_error, "%s, whole: returned %zd, want %zd", c->name,
                     run.error, c->want_error);
        cr_expect_not_null(run.why, "%s, whole: r->error not set", c->name);
        cr_expect(same_log(&rec, &want, why, sizeof why), "%s, whole: %s", c->name, why);
        cr_expect_eq(rec.problems, 0, "%s, whole: %s", c->name, rec.problem);
        rec_free(&rec);
        rec_free(&want);

        /* Byte by byte: every byte before the window is accepted, the error comes inside it,
         * and every data byte before the error was delivered (data is passed in place, so
         * the reader cannot hold it back). */
        rec_init(&rec);
        run = run_stream(&s, c->max_message, c->allowed_rsv, BYTES, 0, &rec);
        cr_expect_eq(run.error, c->want_error, "%s, bytes: returned %zd", c->name, run.error);
        cr_expect(run.error_from >= lo && run.error_from <= hi,
                  "%s, bytes: error at byte %zu, want %zu..%zu", c->name, run.error_from, lo, hi);
        cr_expect_eq(rec_data_bytes(&rec), data_bytes_before(&s, run.error_from),
                     "%s, bytes: %zu data bytes delivered, want %zu", c->name,
                     rec_data_bytes(&rec), data_bytes_before(&s, run.error_from));
        cr_expect_eq(rec.problems, 0, "%s, bytes: %s", c->name, rec.problem);
        rec_free(&rec);

        /* Split in two: the error is in the piece that holds the byte. */
        for (size_t k = 0; k <= s.len; k++) {
            rec_init(&rec);
            run = run_stream(&s, c->max_message, c->allowed_rsv, SPLIT, k, &rec);
            cr_expect_eq(run.error, c->want_error, "%s, split %zu: returned %zd", c->name, k,
                         run.error);
            if (k > hi)
                cr_expect_eq(run.error_from, 0, "%s, split %zu: error not in the first piece",
                             c->name, k);
            if (k <= lo)
                cr_expect_eq(run.error_from, k, "%s, split %zu: error not in the second piece",
                             c->name, k);
            cr_expect_eq(rec.problems, 0, "%s, split %zu: %s", c->name, k, rec.problem);
            rec_free(&rec);
        }
        stream_free(&s);
    }
}

/* ---- Requirements spelled out on their own --------------------------------------------------- */

/* UTF-8 is checked as the bytes arrive: a prefix holding an invalid byte, of a frame that is
 * neither complete nor final, already fails. */
Test(ws_reader, invalid_utf8_fails_before_the_message_ends)
{
    struct stream s = { 0 };
    stream_header(&s, TEXT_MORE, 5);
    stream_payload(&s, "ab\xFF" "cd", 5);
    size_t upto_bad = s.payload_start[0] + 3; /* header, 'a', 'b', 0xFF */

    struct ws_reader r;
    ws_reader_init(&r, 0, 0);
    struct recorder rec;
    rec_init(&rec);
    ssize_t rc = feed_piece(&r, &rec, s.bytes, upto_bad);
    cr_expect_eq(rc, WS_E_INVALID_DATA, "prefix through the bad byte: returned %zd", rc);
    cr_expect_eq(rec.calls, 0, "invalid bytes were passed on");
    rec_free(&rec);

    /* The same in two calls: the valid part is passed on, the bad byte alone fails. */
    ws_reader_init(&r, 0, 0);
    rec_init(&rec);
    rc = feed_piece(&r, &rec, s.bytes, upto_bad - 1);
    cr_expect_eq(rc, (ssize_t)(upto_bad - 1), "prefix before the bad byte: returned %zd", rc);
    cr_expect(rec.nev == 1 && rec.ev[0].len == 2 && memcmp(rec.store, "ab", 2) == 0 &&
                  rec.ev[0].first && !rec.ev[0].last,
              "valid prefix not passed on as the first piece");
    rc = feed_piece(&r, &rec, s.bytes + upto_bad - 1, 1);
    cr_expect_eq(rc, WS_E_INVALID_DATA, "the bad byte alone: returned %zd", rc);
    rec_free(&rec);
    stream_free(&s);
}

/* The size limit is judged from the declared length: only the header is fed, no payload. */
Test(ws_reader, too_big_right_after_the_header)
{
    static const struct {
        const char *name;
        uint64_t max_message;
        uint8_t b0;
        uint64_t declared;
        ssize_t want;
    } cases[] = {
        { "7-bit length one over", 10, TEXT_FIN, 11, WS_E_TOO_BIG },
        { "7-bit length at the limit", 10, TEXT_FIN, 10, 0 },
        { "16-bit length one over", 1000, BIN_FIN, 1001, WS_E_TOO_BIG },
        { "16-bit length at the limit", 1000, BIN_FIN, 1000, 0 },
        { "64-bit length far over", 1u << 20, BIN_FIN, 1ull << 62, WS_E_TOO_BIG },
        { "64-bit length one over", 65536, BIN_MORE, 65537, WS_E_TOO_BIG },
        { "largest length, largest limit", 0x7FFFFFFFFFFFFFFFull, BIN_FIN, 0x7FFFFFFFFFFFFFFFull,
          0 },
        { "largest length, no limit", 0, TEXT_FIN, 0x7FFFFFFFFFFFFFFFull, 0 },
        { "non-final fragment over", 10, TEXT_MORE, 11, WS_E_TOO_BIG },
        { "ping of 125 bytes is not a message", 10, PING, 125, 0 },
    };
    for (size_t i = 0; i < N(cases); i++) {
        struct stream s = { 0 };
        stream_header(&s, cases[i].b0, cases[i].declared);
        struct ws_reader r;
        struct recorder rec;

        /* The header in one call. */
        ws_reader_init(&r, cases[i].max_message, 0);
        rec_init(&rec);
        ssize_t rc = feed_piece(&r, &rec, s.bytes, s.len);
        ssize_t want = cases[i].want ? cases[i].want : (ssize_t)s.len;
        cr_expect_eq(rc, want, "%s: returned %zd, want %zd", cases[i].name, rc, want);
        cr_expect_eq(rec.calls, 0, "%s: callbacks before any payload", cases[i].name);
        rec_free(&rec);

        /* The header one byte at a time: the error comes with its last byte. */
        ws_reader_init(&r, cases[i].max_message, 0);
        rec_init(&rec);
        for (size_t k = 0; k < s.len; k++) {
            rc = feed_piece(&r, &rec, s.bytes + k, 1);
            ssize_t want_k = k + 1 == s.len && cases[i].want ? cases[i].want : 1;
            cr_expect_eq(rc, want_k, "%s, header byte %zu: returned %zd", cases[i].name, k, rc);
            if (rc < 0) break;
        }
        rec_free(&rec);
        stream_free(&s);
    }
}

/* Across fragments the sizes add up: the second fragment's header alone is refused. */
Test(ws_reader, too_big_across_fragments_from_the_header)
{
    struct stream s = { 0 };
    stream_frame(&s, TEXT_MORE, "123456", 6);
    stream_header(&s, CONT_FIN, 5);
    struct ws_reader r;
    ws_reader_init(&r, 10, 0);
    struct recorder rec;
    rec_init(&rec);
    ssize_t rc = feed_piece(&r, &rec, s.bytes, s.len);
    cr_expect_eq(rc, WS_E_TOO_BIG, "6 + 5 with max 10: returned %zd", rc);
    cr_expect_eq(rec.data_calls, 1, "the first fragment was not passed on");
    rec_free(&rec);
    stream_free(&s);

    /* 6 + 4 fits exactly. */
    memset(&s, 0, sizeof s);
    stream_frame(&s, TEXT_MORE, "123456", 6);
    stream_header(&s, CONT_FIN, 4);
    ws_reader_init(&r, 10, 0);
    rec_init(&rec);
    rc = feed_piece(&r, &rec, s.bytes, s.len);
    cr_expect_eq(rc, (ssize_t)s.len, "6 + 4 with max 10: returned %zd", rc);
    rec_free(&rec);
    stream_free(&s);
}

/* A valid close: on_control sees it, the return value counts bytes up to and including it,
 * nothing after it is consumed, in any feeding mode, and later calls consume nothing. */
Test(ws_reader, close_ends_the_stream)
{
    static const struct {
        const char *name;
        struct fspec frames[4];
        struct want_ev want[4];
    } cases[] = {
        { "close with code and reason after a message",
          { F(TEXT_FIN, "hi"), F(CLOSE, "\x03\xE8" "bye") },
          { D(WS_OP_TEXT, "hi", 1, 1), C(WS_OP_CLOSE, "\x03\xE8" "bye") } },
        { "empty close", { F(CLOSE, "") }, { C(WS_OP_CLOSE, "") } },
        { "close inside a fragmented message", { F(BIN_MORE, "ab"), F(CLOSE, "\x0F\xA0") },
          { D(WS_OP_BINARY, "ab", 1, 0), C(WS_OP_CLOSE, "\x0F\xA0") } },
    };
    for (size_t i = 0; i < N(cases); i++) {
        struct stream s;
        build_stream(&s, cases[i].frames);
        size_t close_end = s.len;
        /* What follows the close is not read: a valid frame, then bytes that are no frame. */
        stream_frame(&s, TEXT_FIN, "after", 5);
        stream_raw(&s, "\xFF\xFF\xFF", 3);
        struct recorder want;
        build_want(&want, cases[i].want);

        for (int mode = WHOLE; mode <= SPLIT; mode++) {
            size_t kmax = mode == SPLIT ? s.len : 0;
            for (size_t k = 0; k <= kmax; k++) {
                struct recorder rec;
                rec_init(&rec);
                struct run run = run_stream(&s, 0, 0, (enum mode)mode, k, &rec);
                char why[300] = "";
                cr_expect_eq(run.error, 0, "%s, mode %d/%zu: error %zd (%s)", cases[i].name,
                             mode, k, run.error, run.why ? run.why : "");
                cr_expect(run.closed, "%s, mode %d/%zu: not closed", cases[i].name, mode, k);
                cr_expect_eq(run.consumed, close_end, "%s, mode %d/%zu: consumed %zu, want %zu",
                             cases[i].name, mode, k, run.consumed, close_end);
                cr_expect_eq(run.after_close, 0, "%s, mode %d/%zu: read after the close",
                             cases[i].name, mode, k);
                cr_expect(same_log(&rec, &want, why, sizeof why), "%s, mode %d/%zu: %s",
                          cases[i].name, mode, k, why);
                rec_free(&rec);
            }
        }
        rec_free(&want);
        stream_free(&s);
    }
}

/* Once closed, a whole new buffer is refused too, and no callback runs. */
Test(ws_reader, nothing_consumed_after_close)
{
    struct stream s = { 0 };
    stream_frame(&s, CLOSE, "\x03\xE8", 2);
    struct stream next = { 0 };
    stream_frame(&next, TEXT_FIN, "x", 1);
    struct ws_reader r;
    ws_reader_init(&r, 0, 0);
    struct recorder rec;
    rec_init(&rec);
    cr_expect_eq(feed_piece(&r, &rec, s.bytes, s.len), (ssize_t)s.len);
    cr_expect_eq(rec.calls, 1);
    for (int round = 0; round < 3; round++)
        cr_expect_eq(feed_piece(&r, &rec, next.bytes, next.len), 0, "round %d", round);
    cr_expect_eq(rec.calls, 1, "callbacks after the close");
    rec_free(&rec);
    stream_free(&s);
    stream_free(&next);
}

/* A callback returning nonzero makes the call return at once; feeding the rest later goes on
 * where it stopped. Tried for every callback of a stream, fed whole and byte by byte. */
Test(ws_reader, callback_stop_and_resume)
{
    static const struct fspec frames[] = {
        F(TEXT_MORE, "Hel"), F(PING, "p"), F(CONT_MORE, ""), F(CONT_FIN, "lo"),
        F(PONG, ""), F(BIN_FIN, "\x01\x02\x03"), F(TEXT_FIN, ""), { 0, NULL, 0 },
    };
    struct stream s;
    build_stream(&s, frames);
    struct recorder want;
    rec_init(&want);
    run_stream(&s, 0, 0, WHOLE, 0, &want);
    size_t total_calls = want.calls;
    cr_assert_geq(total_calls, 6, "the stream makes %zu callbacks", total_calls);

    for (size_t stop = 1; stop <= total_calls; stop++) {
        /* Whole: the first call returns short, the rest is fed from where it stopped. */
        struct ws_reader r;
        ws_reader_init(&r, 0, 0);
        struct recorder rec;
        rec_init(&rec);
        rec.stop_at = stop;
        struct guard g;
        uint8_t *buf = guard_copy(&g, s.bytes, s.len);
        rec.buf = buf;
        rec.buf_len = s.len;
        ssize_t rc = ws_reader_feed(&r, buf, s.len, &callbacks, &rec);
        cr_expect_geq(rc, 0, "stop at %zu: error %zd", stop, rc);
        cr_expect_eq(rec.calls, stop, "stop at %zu: %zu callbacks ran", stop, rec.calls);
        if (stop < total_calls)
            cr_expect_lt(rc, (ssize_t)s.len, "stop at %zu: consumed everything", stop);
        size_t pos = rc > 0 ? (size_t)rc : 0;
        for (int rounds = 0; pos < s.len && rounds < 10; rounds++) {
            rc = ws_reader_feed(&r, buf + pos, s.len - pos, &callbacks, &rec);
            cr_expect_gt(rc, 0, "stop at %zu: resume returned %zd", stop, rc);
            if (rc <= 0) break;
            pos += (size_t)rc;
        }
        cr_expect_eq(pos, s.len, "stop at %zu: resumed to %zu of %zu", stop, pos, s.len);
        char why[300] = "";
        cr_expect(same_log(&rec, &want, why, sizeof why), "stop at %zu: %s", stop, why);
        cr_expect_eq(rec.problems, 0, "stop at %zu: %s", stop, rec.problem);
        guard_free(&g);
        rec_free(&rec);

        /* Byte by byte: the byte that triggered the stop was consumed. */
        ws_reader_init(&r, 0, 0);
        rec_init(&rec);
        rec.stop_at = stop;
        for (size_t k = 0; k < s.len; k++) {
            /* Every callback is about bytes already read in the same call, so a call of one
             * byte that stops has still consumed that byte. */
            rc = feed_piece(&r, &rec, s.bytes + k, 1);
            cr_expect_eq(rc, 1, "stop at %zu, byte %zu: returned %zd", stop, k, rc);
            if (rc != 1) break;
        }
        cr_expect(same_log(&rec, &want, why, sizeof why), "stop at %zu, bytes: %s", stop, why);
        rec_free(&rec);
    }
    rec_free(&want);
    stream_free(&s);
}

/* Stopping on the close frame's callback still ends the stream. */
Test(ws_reader, callback_stop_on_close)
{
    struct stream s = { 0 };
    stream_frame(&s, CLOSE, "\x03\xE8", 2);
    size_t close_end = s.len;
    stream_frame(&s, TEXT_FIN, "x", 1);
    struct ws_reader r;
    ws_reader_init(&r, 0, 0);
    struct recorder rec;
    rec_init(&rec);
    rec.stop_at = 1;
    ssize_t rc = feed_piece(&r, &rec, s.bytes, s.len);
    cr_expect_eq(rc, (ssize_t)close_end, "returned %zd, want %zu", rc, close_end);
    rc = feed_piece(&r, &rec, s.bytes + close_end, s.len - close_end);
    cr_expect_eq(rc, 0, "after the close: returned %zd", rc);
    cr_expect_eq(rec.calls, 1);
    rec_free(&rec);
    stream_free(&s);
}

/* Long payloads: 16-bit and 64-bit lengths, text and binary, with every byte value pattern the
 * mask can produce; delivered intact in every feeding mode (splits near the header and the end,
 * and spread over the payload). */
Test(ws_reader, long_messages)
{
    static const struct {
        const char *name;
        uint8_t b0;
        size_t len;
    } cases[] = {
        { "126 bytes, 16-bit length", TEXT_FIN, 126 },
        { "200 bytes, 16-bit length", BIN_FIN, 200 },
        { "65535 bytes, 16-bit length", TEXT_FIN, 65535 },
        { "70000 bytes, 64-bit length", BIN_FIN, 70000 },
        { "70001 bytes of text, 64-bit length", TEXT_FIN, 70001 },
    };
    for (size_t i = 0; i < N(cases); i++) {
        size_t len = cases[i].len;
        uint8_t *payload = malloc(len);
        cr_assert_not_null(payload);
        /* Text: repeating "abc...", with a 2-byte character now and then. Binary: every value. */
        for (size_t k = 0; k < len; k++) {
            if (cases[i].b0 == TEXT_FIN)
                payload[k] = (k % 50 == 48 && k + 1 < len) ? 0xC3
                             : (k % 50 == 49 && k > 0)     ? 0xA9
                                                           : (uint8_t)('a' + k % 26);
            else
                payload[k] = (uint8_t)(k * 31 + 7);
        }
        struct stream s = { 0 };
        stream_frame(&s, cases[i].b0, payload, len);
        struct recorder want;
        rec_init(&want);
        rec_event(&want, EV_DATA, cases[i].b0 & 0x0F, payload, len, true, true);

        check_good_run(cases[i].name, &s, 0, 0, WHOLE, 0, &want);
        check_good_run(cases[i].name, &s, len, 0, WHOLE, 0, &want);
        if (len <= 200) {
            check_good_run(cases[i].name, &s, 0, 0, BYTES, 0, &want);
            for (size_t k = 0; k <= s.len; k++)
                check_good_run(cases[i].name, &s, 0, 0, SPLIT, k, &want);
        } else {
            for (size_t k = 0; k <= 20; k++) {
                check_good_run(cases[i].name, &s, 0, 0, SPLIT, k, &want);
                check_good_run(cases[i].name, &s, 0, 0, SPLIT, s.len - k, &want);
            }
            for (size_t k = 21; k < s.len; k += 997)
                check_good_run(cases[i].name, &s, 0, 0, SPLIT, k, &want);
        }
        rec_free(&want);
        stream_free(&s);
        free(payload);
    }
}

/* Byte by byte for one long message, without a guard copy per byte (70000 mappings would be
 * slow); every data byte must come out unmasked at its offset. */
Test(ws_reader, long_message_byte_by_byte)
{
    size_t len = 70000;
    uint8_t *payload = malloc(len);
    cr_assert_not_null(payload);
    for (size_t k = 0; k < len; k++) payload[k] = (uint8_t)(k ^ (k >> 8));
    struct stream s = { 0 };
    stream_frame(&s, BIN_FIN, payload, len);
    struct ws_reader r;
    ws_reader_init(&r, 0, 0);
    struct recorder rec;
    rec_init(&rec);
    for (size_t k = 0; k < s.len; k++) {
        rec.buf = s.bytes + k;
        rec.buf_len = 1;
        ssize_t rc = ws_reader_feed(&r, s.bytes + k, 1, &callbacks, &rec);
        if (rc != 1) {
            cr_expect_eq(rc, 1, "byte %zu: returned %zd", k, rc);
            break;
        }
    }
    cr_expect(rec.nev == 1 && rec.ev[0].len == len && memcmp(rec.store, payload, len) == 0,
              "payload fed byte by byte came out different");
    cr_expect_eq(rec.problems, 0, "%s", rec.problem);
    rec_free(&rec);
    stream_free(&s);
    free(payload);
}

/* Unmasking of payloads split anywhere: a data frame and a 125-byte control frame (which the
 * reader collects itself) cut into three pieces at every pair of positions. */
Test(ws_reader, unmasking_split_at_every_offset)
{
    static const struct {
        const char *name;
        uint8_t b0;
        unsigned opcode;
        int kind;
        size_t len;
    } cases[] = {
        { "binary, 41 bytes", BIN_FIN, WS_OP_BINARY, EV_DATA, 41 },
        { "ping, 125 bytes", PING, WS_OP_PING, EV_CONTROL, 125 },
    };
    for (size_t i = 0; i < N(cases); i++) {
        uint8_t payload[125];
        for (size_t k = 0; k < cases[i].len; k++) payload[k] = (uint8_t)(0x5A + 13 * k);
        struct stream s = { 0 };
        stream_frame(&s, cases[i].b0, payload, cases[i].len);
        struct recorder want;
        rec_init(&want);
        rec_event(&want, cases[i].kind, cases[i].opcode, payload, cases[i].len, true, true);
        if (cases[i].kind == EV_CONTROL) want.ev[0].first = want.ev[0].last = false;

        for (size_t a = 0; a <= s.len; a++) {
            for (size_t b = a; b <= s.len; b++) {
                struct ws_reader r;
                ws_reader_init(&r, 0, 0);
                struct recorder rec;
                rec_init(&rec);
                size_t cuts[] = { 0, a, b, s.len };
                bool ok = true;
                for (size_t p = 0; p < 3 && ok; p++) {
                    size_t n = cuts[p + 1] - cuts[p];
                    ok = feed_piece(&r, &rec, s.bytes + cuts[p], n) == (ssize_t)n;
                }
                char why[300] = "";
                if (!ok || !same_log(&rec, &want, why, sizeof why))
                    cr_expect(false, "%s, cut at %zu and %zu: %s", cases[i].name, a, b,
                              ok ? why : "feed failed");
                rec_free(&rec);
            }
        }
        rec_free(&want);
        stream_free(&s);
    }
}

/* The examples of RFC 6455 section 5.7, as bytes from the RFC rather than from our builder. */
Test(ws_reader, rfc6455_examples)
{
    static const struct {
        const char *name;
        uint8_t bytes[16];
        size_t len;
        ssize_t want_rc;
        int kind;
        unsigned opcode;
    } cases[] = {
        { "single-frame masked text", { 0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51,
          0x58 }, 11, 11, EV_DATA, WS_OP_TEXT },
        { "masked pong", { 0x8A, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58 }, 11,
          11, EV_CONTROL, WS_OP_PONG },
        /* Servers must refuse unmasked frames, such as the RFC's unmasked examples. */
        { "single-frame unmasked text", { 0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F }, 7,
          WS_E_PROTOCOL, 0, 0 },
        { "unmasked first fragment", { 0x01, 0x03, 0x48, 0x65, 0x6C }, 5, WS_E_PROTOCOL, 0, 0 },
        { "unmasked ping", { 0x89, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F }, 7, WS_E_PROTOCOL, 0, 0 },
    };
    for (size_t i = 0; i < N(cases); i++) {
        struct ws_reader r;
        ws_reader_init(&r, 0, 0);
        struct recorder rec;
        rec_init(&rec);
        ssize_t rc = feed_piece(&r, &rec, cases[i].bytes, cases[i].len);
        cr_expect_eq(rc, cases[i].want_rc, "%s: returned %zd", cases[i].name, rc);
        if (cases[i].want_rc > 0) {
            cr_expect(rec.nev == 1 && rec.ev[0].kind == cases[i].kind &&
                          rec.ev[0].opcode == cases[i].opcode && rec.ev[0].len == 5 &&
                          memcmp(rec.store, "Hello", 5) == 0,
                      "%s: \"Hello\" not delivered", cases[i].name);
        } else {
            cr_expect_eq(rec.calls, 0, "%s: callbacks before the error", cases[i].name);
            cr_expect_not_null(r.error, "%s: r.error not set", cases[i].name);
        }
        rec_free(&rec);
    }
}

/* Header errors the frame codec finds reach the caller unchanged, whichever way the header was
 * split between calls (the reader keeps partial headers itself). */
Test(ws_reader, header_errors_through_the_reader)
{
    static const struct {
        const char *name;
        uint8_t bytes[WS_FRAME_MAX_HEADER];
        size_t len;
    } cases[] = {
        { "16-bit length for 5 bytes", { 0x82, 0xFE, 0x00, 0x05, 1, 2, 3, 4 }, 8 },
        { "64-bit length for 65535 bytes", { 0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 1, 2, 3, 4 },
          14 },
        { "64-bit length with the top bit", { 0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4 },
          14 },
        { "close of 126 bytes", { 0x88, 0xFE, 0x00, 0x7E, 1, 2, 3, 4 }, 8 },
    };
    for (size_t i = 0; i < N(cases); i++) {
        for (size_t k = 0; k <= cases[i].len; k++) {
            struct ws_reader r;
            ws_reader_init(&r, 0, 0);
            struct recorder rec;
            rec_init(&rec);
            ssize_t rc = feed_piece(&r, &rec, cases[i].bytes, k);
            if (rc >= 0) rc = feed_piece(&r, &rec, cases[i].bytes + k, cases[i].len - k);
            cr_expect_eq(rc, WS_E_PROTOCOL, "%s, split at %zu: returned %zd", cases[i].name, k,
                         rc);
            rec_free(&rec);
        }
    }
}

/* An empty call does nothing, before and inside a frame. */
Test(ws_reader, empty_feed)
{
    struct stream s = { 0 };
    stream_frame(&s, TEXT_FIN, "abc", 3);
    struct ws_reader r;
    ws_reader_init(&r, 0, 0);
    struct recorder rec;
    rec_init(&rec);
    cr_expect_eq(feed_piece(&r, &rec, s.bytes, 0), 0, "empty call at the start");
    cr_expect_eq(feed_piece(&r, &rec, s.bytes, 7), 7, "header and one byte");
    cr_expect_eq(feed_piece(&r, &rec, s.bytes + 7, 0), 0, "empty call inside the payload");
    cr_expect_eq(feed_piece(&r, &rec, s.bytes + 7, 2), 2, "the rest");
    cr_expect(rec.nev == 1 && rec.ev[0].len == 3 && memcmp(rec.store, "abc", 3) == 0 &&
                  rec.ev[0].last,
              "message not delivered whole");
    rec_free(&rec);
    stream_free(&s);
}
