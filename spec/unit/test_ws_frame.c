/* Tests for the frame codec (core/ws_frame.h): every header rule a server enforces, need-more for
 * every truncation, unmasking against a byte-at-a-time reference with canaries around the range,
 * and the shortest length encodings of the server frame header builder. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <criterion/criterion.h>

#include "guard.h"
#include "ws_frame.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* Mask bytes of every test header; distinct so a misplaced mask shows. */
#define MASK 0x37, 0xFA, 0x21, 0x3D

struct good_header {
    const char *name;
    uint8_t bytes[WS_FRAME_MAX_HEADER];
    size_t len;
    unsigned allowed_rsv;
    /* expected */
    uint64_t payload_len;
    uint8_t opcode;
    uint8_t rsv;
    bool fin;
};

static const struct good_header good[] = {
    { "text, empty", { 0x81, 0x80, MASK }, 6, 0, 0, WS_OP_TEXT, 0, true },
    { "text, 1 byte", { 0x81, 0x81, MASK }, 6, 0, 1, WS_OP_TEXT, 0, true },
    { "text, 125 bytes in 7 bits", { 0x81, 0xFD, MASK }, 6, 0, 125, WS_OP_TEXT, 0, true },
    { "binary, 126 bytes in 16 bits", { 0x82, 0xFE, 0x00, 0x7E, MASK }, 8, 0, 126, WS_OP_BINARY,
      0, true },
    { "binary, 256 bytes in 16 bits", { 0x82, 0xFE, 0x01, 0x00, MASK }, 8, 0, 256, WS_OP_BINARY,
      0, true },
    { "binary, 65535 bytes in 16 bits", { 0x82, 0xFE, 0xFF, 0xFF, MASK }, 8, 0, 65535,
      WS_OP_BINARY, 0, true },
    { "binary, 65536 bytes in 64 bits", { 0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, MASK }, 14, 0,
      65536, WS_OP_BINARY, 0, true },
    { "binary, 2^32 bytes in 64 bits", { 0x82, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0, MASK }, 14, 0,
      (uint64_t)1 << 32, WS_OP_BINARY, 0, true },
    { "binary, byte order of 64 bits",
      { 0x82, 0xFF, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, MASK }, 14, 0,
      0x0102030405060708ull, WS_OP_BINARY, 0, true },
    { "binary, 2^63-1 bytes, the largest",
      { 0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, MASK }, 14, 0,
      0x7FFFFFFFFFFFFFFFull, WS_OP_BINARY, 0, true },
    { "text, not final", { 0x01, 0x85, MASK }, 6, 0, 5, WS_OP_TEXT, 0, false },
    { "continuation, not final", { 0x00, 0x83, MASK }, 6, 0, 3, WS_OP_CONTINUATION, 0, false },
    { "continuation, final, 16-bit", { 0x80, 0xFE, 0x12, 0x34, MASK }, 8, 0, 0x1234,
      WS_OP_CONTINUATION, 0, true },
    { "close, empty", { 0x88, 0x80, MASK }, 6, 0, 0, WS_OP_CLOSE, 0, true },
    { "close, 125 bytes", { 0x88, 0xFD, MASK }, 6, 0, 125, WS_OP_CLOSE, 0, true },
    { "ping, 125 bytes", { 0x89, 0xFD, MASK }, 6, 0, 125, WS_OP_PING, 0, true },
    { "pong, 4 bytes", { 0x8A, 0x84, MASK }, 6, 0, 4, WS_OP_PONG, 0, true },
    { "text with RSV1 negotiated", { 0xC1, 0x85, MASK }, 6, WS_RSV1, 5, WS_OP_TEXT, WS_RSV1,
      true },
    { "binary with RSV1 negotiated, not final", { 0x42, 0x85, MASK }, 6, WS_RSV1, 5,
      WS_OP_BINARY, WS_RSV1, false },
    { "text with all RSV bits negotiated", { 0xF1, 0x80, MASK }, 6, WS_RSV1 | WS_RSV2 | WS_RSV3,
      0, WS_OP_TEXT, WS_RSV1 | WS_RSV2 | WS_RSV3, true },
    { "text with RSV2 negotiated", { 0xA1, 0x80, MASK }, 6, WS_RSV2, 0, WS_OP_TEXT, WS_RSV2,
      true },
    { "text without RSV1 though negotiated", { 0x81, 0x80, MASK }, 6, WS_RSV1, 0, WS_OP_TEXT, 0,
      true },
    { "ping without RSV though RSV1 negotiated", { 0x89, 0x80, MASK }, 6, WS_RSV1, 0,
      WS_OP_PING, 0, true },
};

struct bad_header {
    const char *name;
    uint8_t bytes[WS_FRAME_MAX_HEADER];
    size_t len;
    unsigned allowed_rsv;
};

static const struct bad_header bad[] = {
    /* Client frames must be masked (RFC 6455 5.1). */
    { "unmasked text", { 0x81, 0x05, 'H', 'e', 'l', 'l' }, 6, 0 },
    { "unmasked empty text", { 0x81, 0x00 }, 2, 0 },
    { "unmasked ping", { 0x89, 0x00 }, 2, 0 },
    { "unmasked close", { 0x88, 0x02, 0x03, 0xE8 }, 4, 0 },
    { "unmasked 16-bit binary", { 0x82, 0x7E, 0x01, 0x00, 0, 0, 0, 0 }, 8, 0 },
    /* Reserved bits without an extension, or not the negotiated ones. */
    { "RSV1 without extension", { 0xC1, 0x80, MASK }, 6, 0 },
    { "RSV2 without extension", { 0xA1, 0x80, MASK }, 6, 0 },
    { "RSV3 without extension", { 0x91, 0x80, MASK }, 6, 0 },
    { "RSV2 with only RSV1 negotiated", { 0xA1, 0x80, MASK }, 6, WS_RSV1 },
    { "RSV3 with only RSV1 negotiated", { 0x92, 0x80, MASK }, 6, WS_RSV1 },
    { "RSV1 on a continuation without extension", { 0x40, 0x80, MASK }, 6, 0 },
    /* Control frames never carry RSV bits, negotiated or not. */
    { "RSV1 on ping though negotiated", { 0xC9, 0x80, MASK }, 6, WS_RSV1 },
    { "RSV1 on pong though negotiated", { 0xCA, 0x80, MASK }, 6, WS_RSV1 },
    { "RSV1 on close though negotiated", { 0xC8, 0x80, MASK }, 6, WS_RSV1 },
    { "RSV2 on ping though all negotiated", { 0xA9, 0x80, MASK }, 6, 0x70 },
    /* Control frames: final, and at most 125 bytes. */
    { "fragmented ping", { 0x09, 0x80, MASK }, 6, 0 },
    { "fragmented pong", { 0x0A, 0x80, MASK }, 6, 0 },
    { "fragmented close", { 0x08, 0x80, MASK }, 6, 0 },
    { "ping of 126 bytes", { 0x89, 0xFE, 0x00, 0x7E, MASK }, 8, 0 },
    { "close of 126 bytes", { 0x88, 0xFE, 0x00, 0x7E, MASK }, 8, 0 },
    { "pong of 65536 bytes", { 0x8A, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, MASK }, 14, 0 },
    /* Lengths in their shortest encoding only (RFC 6455 5.2). */
    { "16-bit length 0", { 0x82, 0xFE, 0x00, 0x00, MASK }, 8, 0 },
    { "16-bit length 125", { 0x82, 0xFE, 0x00, 0x7D, MASK }, 8, 0 },
    { "64-bit length 0", { 0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0, MASK }, 14, 0 },
    { "64-bit length 125", { 0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0x7D, MASK }, 14, 0 },
    { "64-bit length 126", { 0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0, 0x7E, MASK }, 14, 0 },
    { "64-bit length 65535", { 0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, MASK }, 14, 0 },
    /* The most significant bit of a 64-bit length must be 0. */
    { "64-bit length 2^63", { 0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, MASK }, 14, 0 },
    { "64-bit length 2^64-1",
      { 0x82, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, MASK }, 14, 0 },
    { "64-bit length 2^63+65536", { 0x82, 0xFF, 0x80, 0, 0, 0, 0, 1, 0, 0, MASK }, 14, 0 },
};

/* A header struct full of a recognisable pattern, to see whether the parser wrote to it. */
static void poison(struct ws_frame_header *h) { memset(h, 0xA5, sizeof *h); }

/* Parses bytes[0..len) from a guard-page copy: the header must never be read past len. */
static int parse_guarded(const uint8_t *bytes, size_t len, unsigned allowed_rsv,
                         struct ws_frame_header *h, const char **why)
{
    struct guard g;
    const uint8_t *copy = guard_copy(&g, bytes, len);
    guard_seal(&g);
    int rc = ws_frame_parse_header(copy, len, allowed_rsv, h, why);
    guard_free(&g);
    return rc;
}

Test(ws_frame, parses_valid_headers)
{
    for (size_t i = 0; i < N(good); i++) {
        const struct good_header *c = &good[i];
        struct ws_frame_header h;
        poison(&h);
        const char *why = NULL;
        int rc = parse_guarded(c->bytes, c->len, c->allowed_rsv, &h, &why);
        cr_expect_eq(rc, (int)c->len, "%s: returned %d, want %zu (%s)", c->name, rc, c->len,
                     why ? why : "");
        if (rc != (int)c->len) continue;
        cr_expect_eq(h.header_len, c->len, "%s: header_len %u", c->name, h.header_len);
        cr_expect_eq(h.payload_len, c->payload_len, "%s: payload_len %llu, want %llu", c->name,
                     (unsigned long long)h.payload_len, (unsigned long long)c->payload_len);
        cr_expect_eq(h.opcode, c->opcode, "%s: opcode %u", c->name, h.opcode);
        cr_expect_eq(h.rsv, c->rsv, "%s: rsv %02X", c->name, h.rsv);
        cr_expect_eq(h.fin, c->fin, "%s: fin", c->name);
        cr_expect(h.masked, "%s: masked not set", c->name);
        static const uint8_t mask[4] = { MASK };
        cr_expect_arr_eq(h.mask, mask, 4, "%s: mask", c->name);
    }
}

/* Payload bytes after the header belong to the payload: the header length is returned whatever
 * follows. */
Test(ws_frame, header_followed_by_payload)
{
    for (size_t i = 0; i < N(good); i++) {
        const struct good_header *c = &good[i];
        uint8_t buf[WS_FRAME_MAX_HEADER + 8];
        memcpy(buf, c->bytes, c->len);
        memset(buf + c->len, 0xEE, 8);
        struct ws_frame_header h;
        const char *why = NULL;
        int rc = parse_guarded(buf, c->len + 8, c->allowed_rsv, &h, &why);
        cr_expect_eq(rc, (int)c->len, "%s + 8 payload bytes: returned %d", c->name, rc);
    }
}

/* Every truncation of a valid header asks for more and fills nothing. */
Test(ws_frame, need_more_for_every_truncation)
{
    for (size_t i = 0; i < N(good); i++) {
        const struct good_header *c = &good[i];
        for (size_t k = 0; k < c->len; k++) {
            struct ws_frame_header h, untouched;
            poison(&h);
            poison(&untouched);
            const char *why = NULL;
            int rc = parse_guarded(c->bytes, k, c->allowed_rsv, &h, &why);
            cr_expect_eq(rc, WS_NEED_MORE, "%s cut to %zu bytes: returned %d (%s)", c->name, k,
                         rc, why ? why : "");
            cr_expect(memcmp(&h, &untouched, sizeof h) == 0, "%s cut to %zu bytes: header filled",
                      c->name, k);
        }
    }
}

Test(ws_frame, rejects_invalid_headers)
{
    for (size_t i = 0; i < N(bad); i++) {
        const struct bad_header *c = &bad[i];
        struct ws_frame_header h;
        const char *why = NULL;
        int rc = parse_guarded(c->bytes, c->len, c->allowed_rsv, &h, &why);
        cr_expect_eq(rc, WS_E_PROTOCOL, "%s: returned %d, want WS_E_PROTOCOL", c->name, rc);
        cr_expect_not_null(why, "%s: no reason given", c->name);
    }
}

/* A broken header is refused no later than when it is complete: no prefix of it is accepted
 * as a header, and the complete one is an error however the bytes arrived. */
Test(ws_frame, invalid_headers_never_accepted_when_truncated)
{
    for (size_t i = 0; i < N(bad); i++) {
        const struct bad_header *c = &bad[i];
        for (size_t k = 0; k < c->len; k++) {
            struct ws_frame_header h;
            const char *why = NULL;
            int rc = parse_guarded(c->bytes, k, c->allowed_rsv, &h, &why);
            cr_expect(rc == WS_NEED_MORE || rc == WS_E_PROTOCOL,
                      "%s cut to %zu bytes: returned %d", c->name, k, rc);
        }
    }
}

/* Opcodes 3-7 and B-F are reserved; with every combination of FIN and length form. */
Test(ws_frame, reserved_opcodes)
{
    static const uint8_t len_forms[][WS_FRAME_MAX_HEADER - 1] = {
        { 0x80, MASK },
        { 0xFE, 0x01, 0x00, MASK },
        { 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, MASK },
    };
    static const size_t form_len[] = { 5, 7, 13 };
    for (unsigned op = 0; op < 16; op++) {
        if (op <= 2 || (op >= 8 && op <= 0xA)) continue;
        for (unsigned fin = 0; fin < 2; fin++) {
            for (size_t f = 0; f < N(len_forms); f++) {
                uint8_t buf[WS_FRAME_MAX_HEADER];
                buf[0] = (uint8_t)((fin ? 0x80 : 0) | op);
                memcpy(buf + 1, len_forms[f], form_len[f]);
                struct ws_frame_header h;
                const char *why = NULL;
                int rc = parse_guarded(buf, 1 + form_len[f], 0, &h, &why);
                cr_expect_eq(rc, WS_E_PROTOCOL, "opcode %X fin %u form %zu: returned %d", op,
                             fin, f, rc);
            }
        }
    }
}

/* Every valid opcode with FIN set, masked and empty, parses: the rejection above is about the
 * opcode, not the rest. */
Test(ws_frame, known_opcodes)
{
    static const unsigned ops[] = { WS_OP_CONTINUATION, WS_OP_TEXT, WS_OP_BINARY,
                                    WS_OP_CLOSE,        WS_OP_PING, WS_OP_PONG };
    for (size_t i = 0; i < N(ops); i++) {
        uint8_t buf[] = { (uint8_t)(0x80 | ops[i]), 0x80, MASK };
        struct ws_frame_header h;
        const char *why = NULL;
        int rc = parse_guarded(buf, sizeof buf, 0, &h, &why);
        cr_expect_eq(rc, 6, "opcode %X: returned %d", ops[i], rc);
        cr_expect_eq(h.opcode, ops[i], "opcode %X parsed as %X", ops[i], h.opcode);
        cr_expect_eq(ws_opcode_is_control(ops[i]), ops[i] >= 8, "opcode %X control", ops[i]);
    }
}

/* The reference: one byte at a time, straight from RFC 6455 5.3. */
static void reference_unmask(uint8_t *p, size_t len, const uint8_t mask[4], uint64_t offset)
{
    for (size_t i = 0; i < len; i++) p[i] ^= mask[(offset + i) % 4];
}

#define CANARY 0xC5
#define PAD 16

Test(ws_frame, unmask_matches_reference_and_stays_in_range)
{
    static const uint8_t mask[4] = { 0x12, 0x34, 0x56, 0x78 };
    /* Offsets past 2^32 too, where a 32-bit offset variable would wrap differently. */
    static const uint64_t big_offsets[] = { 0x100000000ull, 0x100000003ull, UINT64_MAX };
    uint8_t got[PAD + 100 + 8 + PAD], want[PAD + 100 + 8 + PAD];
    for (size_t len = 0; len <= 100; len++) {
        for (uint64_t offset = 0; offset < 8 + N(big_offsets); offset++) {
            uint64_t off = offset < 8 ? offset : big_offsets[offset - 8];
            /* Start at each alignment too: word-at-a-time code is most fragile there. */
            for (size_t align = 0; align < 8; align++) {
                memset(got, CANARY, sizeof got);
                for (size_t i = 0; i < len; i++) got[PAD + align + i] = (uint8_t)(i * 7 + 1);
                memcpy(want, got, sizeof got);
                ws_frame_unmask(got + PAD + align, len, mask, off);
                reference_unmask(want + PAD + align, len, mask, off);
                cr_expect(memcmp(got, want, sizeof got) == 0,
                          "len %zu offset %llu align %zu: differs from the reference", len,
                          (unsigned long long)off, align);
                /* The reference never leaves the range, so equality above already implies
                 * this; checked on its own for a clearer message. */
                size_t outside = 0;
                for (size_t i = 0; i < PAD + align; i++) outside += got[i] != CANARY;
                for (size_t i = PAD + align + len; i < sizeof got; i++)
                    outside += got[i] != CANARY;
                cr_expect_eq(outside, 0, "len %zu offset %llu align %zu: %zu canary bytes changed",
                             len, (unsigned long long)off, align, outside);
            }
        }
    }
}

/* The same at the end of a page: a write (or read) past the range crashes. */
Test(ws_frame, unmask_at_guard_page)
{
    static const uint8_t mask[4] = { 0xDE, 0xAD, 0xBE, 0xEF };
    uint8_t src[100], want[100];
    for (size_t i = 0; i < sizeof src; i++) src[i] = (uint8_t)i;
    for (size_t len = 0; len <= sizeof src; len++) {
        for (uint64_t off = 0; off < 4; off++) {
            struct guard g;
            uint8_t *p = guard_copy(&g, src, len);
            ws_frame_unmask(p, len, mask, off);
            memcpy(want, src, len);
            reference_unmask(want, len, mask, off);
            cr_expect(memcmp(p, want, len) == 0, "len %zu offset %llu", len,
                      (unsigned long long)off);
            guard_free(&g);
        }
    }
}

/* Unmasking a payload in two pieces, the second with offset = length of the first, gives the
 * same bytes as unmasking it whole. */
Test(ws_frame, unmask_in_pieces)
{
    static const uint8_t mask[4] = { 0x37, 0xFA, 0x21, 0x3D };
    uint8_t whole[67], pieces[67];
    for (size_t i = 0; i < sizeof whole; i++) whole[i] = (uint8_t)(0xA0 ^ i);
    memcpy(pieces, whole, sizeof whole);
    ws_frame_unmask(whole, sizeof whole, mask, 0);
    for (size_t k = 0; k <= sizeof whole; k++) {
        for (size_t i = 0; i < sizeof pieces; i++) pieces[i] = (uint8_t)(0xA0 ^ i);
        ws_frame_unmask(pieces, k, mask, 0);
        ws_frame_unmask(pieces + k, sizeof pieces - k, mask, k);
        cr_expect(memcmp(whole, pieces, sizeof whole) == 0, "split at %zu differs", k);
    }
}

/* Unmasking twice restores the input: XOR is its own inverse. The RFC 6455 5.7 sample: "Hello"
 * masked with 37 FA 21 3D. */
Test(ws_frame, unmask_rfc_sample)
{
    static const uint8_t mask[4] = { 0x37, 0xFA, 0x21, 0x3D };
    uint8_t p[] = { 0x7F, 0x9F, 0x4D, 0x51, 0x58 };
    ws_frame_unmask(p, sizeof p, mask, 0);
    cr_expect_arr_eq(p, "Hello", 5, "RFC 6455 5.7 masked \"Hello\"");
    ws_frame_unmask(p, sizeof p, mask, 0);
    static const uint8_t masked[] = { 0x7F, 0x9F, 0x4D, 0x51, 0x58 };
    cr_expect_arr_eq(p, masked, 5, "unmasking twice");
}

struct build_case {
    const char *name;
    bool fin;
    unsigned rsv;
    unsigned opcode;
    uint64_t payload_len;
    uint8_t want[WS_FRAME_MAX_SERVER_HEADER];
    size_t want_len;
};

static const struct build_case builds[] = {
    { "text, 0 bytes", true, 0, WS_OP_TEXT, 0, { 0x81, 0x00 }, 2 },
    { "text, 1 byte", true, 0, WS_OP_TEXT, 1, { 0x81, 0x01 }, 2 },
    { "text, 125 bytes, largest 7-bit", true, 0, WS_OP_TEXT, 125, { 0x81, 0x7D }, 2 },
    { "binary, 126 bytes, smallest 16-bit", true, 0, WS_OP_BINARY, 126, { 0x82, 0x7E, 0, 0x7E },
      4 },
    { "binary, 65535 bytes, largest 16-bit", true, 0, WS_OP_BINARY, 65535,
      { 0x82, 0x7E, 0xFF, 0xFF }, 4 },
    { "binary, 65536 bytes, smallest 64-bit", true, 0, WS_OP_BINARY, 65536,
      { 0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0 }, 10 },
    { "binary, 2^32 bytes", true, 0, WS_OP_BINARY, 1ull << 32,
      { 0x82, 0x7F, 0, 0, 0, 1, 0, 0, 0, 0 }, 10 },
    { "binary, byte order", true, 0, WS_OP_BINARY, 0x0102030405060708ull,
      { 0x82, 0x7F, 1, 2, 3, 4, 5, 6, 7, 8 }, 10 },
    { "binary, 2^63-1 bytes", true, 0, WS_OP_BINARY, 0x7FFFFFFFFFFFFFFFull,
      { 0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF }, 10 },
    { "text, not final", false, 0, WS_OP_TEXT, 3, { 0x01, 0x03 }, 2 },
    { "continuation, not final", false, 0, WS_OP_CONTINUATION, 3, { 0x00, 0x03 }, 2 },
    { "continuation, final", true, 0, WS_OP_CONTINUATION, 200, { 0x80, 0x7E, 0x00, 0xC8 }, 4 },
    { "text, RSV1 (compressed)", true, WS_RSV1, WS_OP_TEXT, 5, { 0xC1, 0x05 }, 2 },
    { "binary, RSV1, not final", false, WS_RSV1, WS_OP_BINARY, 5, { 0x42, 0x05 }, 2 },
    { "text, all RSV bits", true, WS_RSV1 | WS_RSV2 | WS_RSV3, WS_OP_TEXT, 0, { 0xF1, 0x00 }, 2 },
    { "close, 2 bytes", true, 0, WS_OP_CLOSE, 2, { 0x88, 0x02 }, 2 },
    { "ping, 125 bytes", true, 0, WS_OP_PING, 125, { 0x89, 0x7D }, 2 },
    { "pong, 0 bytes", true, 0, WS_OP_PONG, 0, { 0x8A, 0x00 }, 2 },
};

Test(ws_frame, build_header_table)
{
    for (size_t i = 0; i < N(builds); i++) {
        const struct build_case *c = &builds[i];
        /* out holds exactly WS_FRAME_MAX_SERVER_HEADER bytes before the guard page. */
        static const uint8_t fill[WS_FRAME_MAX_SERVER_HEADER] = { 0 };
        struct guard g;
        uint8_t *out = guard_copy(&g, fill, sizeof fill);
        size_t n = ws_frame_build_header(out, c->fin, c->rsv, c->opcode, c->payload_len);
        cr_expect_eq(n, c->want_len, "%s: length %zu, want %zu", c->name, n, c->want_len);
        if (n == c->want_len)
            cr_expect_arr_eq(out, c->want, n, "%s: bytes", c->name);
        cr_expect_eq(out[1] & 0x80, 0, "%s: server frames are never masked", c->name);
        guard_free(&g);
    }
}

/* A server header, given a mask bit and mask, is a client header our own parser accepts with the
 * same fields: the two ends agree on every length, including both sides of each boundary. */
Test(ws_frame, build_then_parse_round_trip)
{
    static const uint64_t lens[] = { 0,     1,     124,   125,        126,        127,
                                     255,   256,   65534, 65535,      65536,      65537,
                                     1u << 24, 0xFFFFFFFFull, 1ull << 32, 0x7FFFFFFFFFFFFFFFull };
    for (size_t i = 0; i < N(lens); i++) {
        uint8_t buf[WS_FRAME_MAX_HEADER];
        size_t n = ws_frame_build_header(buf, true, 0, WS_OP_BINARY, lens[i]);
        cr_assert_leq(n, WS_FRAME_MAX_SERVER_HEADER);
        buf[1] |= 0x80;
        static const uint8_t mask[4] = { MASK };
        memcpy(buf + n, mask, 4);
        struct ws_frame_header h;
        const char *why = NULL;
        int rc = parse_guarded(buf, n + 4, 0, &h, &why);
        cr_expect_eq(rc, (int)(n + 4), "length %llu: parse returned %d (%s)",
                     (unsigned long long)lens[i], rc, why ? why : "");
        cr_expect_eq(h.payload_len, lens[i], "length %llu: parsed as %llu",
                     (unsigned long long)lens[i], (unsigned long long)h.payload_len);
        size_t want = lens[i] < 126 ? 2 : lens[i] <= 0xFFFF ? 4 : 10;
        cr_expect_eq(n, want, "length %llu: header of %zu bytes, want %zu",
                     (unsigned long long)lens[i], n, want);
    }
}
