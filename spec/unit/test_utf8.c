/* Tests for the incremental UTF-8 validator (core/utf8.h): tables of well-formed and ill-formed
 * sequences at every boundary of Unicode table 3-7, each also fed in pieces with the state
 * carried, the ASCII fast path, and a cross-check against a plain decoder written here. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <criterion/criterion.h>

#include "guard.h"
#include "utf8.h"

#define MAX_SAMPLE 16

struct sample {
    const char *name;
    uint8_t bytes[MAX_SAMPLE];
    size_t len;
};

/* Well-formed text, complete: validate is true and the state ends at a boundary. */
static const struct sample valid[] = {
    { "empty", { 0 }, 0 },
    { "ASCII word", { 'h', 'e', 'l', 'l', 'o' }, 5 },
    { "NUL and DEL are ASCII", { 0x00, 0x7F }, 2 },
    { "U+0080, first 2-byte", { 0xC2, 0x80 }, 2 },
    { "U+07FF, last 2-byte", { 0xDF, 0xBF }, 2 },
    { "U+0800, first 3-byte", { 0xE0, 0xA0, 0x80 }, 3 },
    { "U+0FFF, E0 with top second byte", { 0xE0, 0xBF, 0xBF }, 3 },
    { "U+1000, first E1", { 0xE1, 0x80, 0x80 }, 3 },
    { "U+D7FF, just below the surrogates", { 0xED, 0x9F, 0xBF }, 3 },
    { "U+E000, just above the surrogates", { 0xEE, 0x80, 0x80 }, 3 },
    { "U+FFFD replacement character", { 0xEF, 0xBF, 0xBD }, 3 },
    { "U+FFFF, last 3-byte", { 0xEF, 0xBF, 0xBF }, 3 },
    { "U+10000, first 4-byte", { 0xF0, 0x90, 0x80, 0x80 }, 4 },
    { "U+3FFFF, F0 with top second byte", { 0xF0, 0xBF, 0xBF, 0xBF }, 4 },
    { "U+40000, first F1", { 0xF1, 0x80, 0x80, 0x80 }, 4 },
    { "U+FFFFF, last F3", { 0xF3, 0xBF, 0xBF, 0xBF }, 4 },
    { "U+100000, first F4", { 0xF4, 0x80, 0x80, 0x80 }, 4 },
    { "U+10FFFF, last code point", { 0xF4, 0x8F, 0xBF, 0xBF }, 4 },
    { "Greek kosme, mixed lengths",
      { 0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5 }, 11 },
    { "ASCII around a 4-byte character", { 'a', 0xF0, 0x9F, 0x98, 0x80, 'b' }, 6 },
};

/* Ill-formed text. bad_at is the index of the first byte that cannot belong to well-formed text:
 * the validator must accept every shorter prefix and reject the prefix that includes it. */
struct bad_sample {
    const char *name;
    uint8_t bytes[MAX_SAMPLE];
    size_t len;
    size_t bad_at;
};

static const struct bad_sample invalid[] = {
    { "C0 80, overlong NUL", { 0xC0, 0x80 }, 2, 0 },
    { "C1 BF, overlong U+007F", { 0xC1, 0xBF }, 2, 0 },
    { "E0 80 80, overlong 3-byte NUL", { 0xE0, 0x80, 0x80 }, 3, 1 },
    { "E0 9F BF, overlong U+07FF", { 0xE0, 0x9F, 0xBF }, 3, 1 },
    { "F0 80 80 80, overlong 4-byte NUL", { 0xF0, 0x80, 0x80, 0x80 }, 4, 1 },
    { "F0 8F BF BF, overlong U+FFFF", { 0xF0, 0x8F, 0xBF, 0xBF }, 4, 1 },
    { "ED A0 80, surrogate U+D800", { 0xED, 0xA0, 0x80 }, 3, 1 },
    { "ED BF BF, surrogate U+DFFF", { 0xED, 0xBF, 0xBF }, 3, 1 },
    { "ED AF BF ED B0 80, surrogate pair", { 0xED, 0xAF, 0xBF, 0xED, 0xB0, 0x80 }, 6, 1 },
    { "F4 90 80 80, U+110000", { 0xF4, 0x90, 0x80, 0x80 }, 4, 1 },
    { "F4 BF BF BF, far above U+10FFFF", { 0xF4, 0xBF, 0xBF, 0xBF }, 4, 1 },
    { "F5 80 80 80", { 0xF5, 0x80, 0x80, 0x80 }, 4, 0 },
    { "F7 BF BF BF", { 0xF7, 0xBF, 0xBF, 0xBF }, 4, 0 },
    { "F8 88 80 80 80, old 5-byte form", { 0xF8, 0x88, 0x80, 0x80, 0x80 }, 5, 0 },
    { "FC 84 80 80 80 80, old 6-byte form", { 0xFC, 0x84, 0x80, 0x80, 0x80, 0x80 }, 6, 0 },
    { "FE", { 0xFE }, 1, 0 },
    { "FF", { 0xFF }, 1, 0 },
    { "lone continuation 80", { 0x80 }, 1, 0 },
    { "lone continuation BF", { 0xBF }, 1, 0 },
    { "continuation after ASCII", { 'a', 0x80 }, 2, 1 },
    { "extra continuation after 2-byte", { 0xC2, 0x80, 0x80 }, 3, 2 },
    { "extra continuation after 4-byte", { 0xF0, 0x90, 0x80, 0x80, 0x80 }, 5, 4 },
    { "2-byte lead then ASCII", { 0xC2, 'A' }, 2, 1 },
    { "3-byte lead, one continuation, ASCII", { 0xE1, 0x80, 'A' }, 3, 2 },
    { "4-byte lead, two continuations, ASCII", { 0xF1, 0x80, 0x80, 'A' }, 4, 3 },
    { "two 2-byte leads", { 0xC2, 0xC2 }, 2, 1 },
    { "3-byte lead then a new lead", { 0xE2, 0x82, 0xE2 }, 3, 2 },
    { "bad byte after valid text", { 'o', 'k', 0xC3, 0xA9, 0xFF }, 5, 4 },
};

/* Well-formed so far but ending inside a character: validate true, utf8_complete false. */
static const struct sample truncated[] = {
    { "2-byte lead alone", { 0xC2 }, 1 },
    { "E0 A0, 3-byte missing one", { 0xE0, 0xA0 }, 2 },
    { "E1 alone", { 0xE1 }, 1 },
    { "ED 9F, before the surrogates, missing one", { 0xED, 0x9F }, 2 },
    { "F0 90 80, 4-byte missing one", { 0xF0, 0x90, 0x80 }, 3 },
    { "F4 8F BF, U+10FFFF missing one", { 0xF4, 0x8F, 0xBF }, 3 },
    { "F1 alone", { 0xF1 }, 1 },
    { "ASCII then euro sign missing one", { 'a', 'b', 'c', 0xE2, 0x82 }, 5 },
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* Runs the validator over p[0..len) in one call, on a guard-page copy so that a read past the
 * end crashes. Returns the result and stores the final state. */
static bool validate_guarded(uint32_t *state, const uint8_t *p, size_t len)
{
    struct guard g;
    const uint8_t *copy = guard_copy(&g, p, len);
    guard_seal(&g);
    bool ok = utf8_validate(state, copy, len);
    guard_free(&g);
    return ok;
}

Test(utf8, valid_samples_whole)
{
    for (size_t i = 0; i < N(valid); i++) {
        const struct sample *s = &valid[i];
        uint32_t st = UTF8_ACCEPT;
        cr_expect(validate_guarded(&st, s->bytes, s->len), "%s: rejected", s->name);
        cr_expect(utf8_complete(st), "%s: not complete at the end", s->name);
    }
}

Test(utf8, invalid_samples_whole_and_first_bad_byte)
{
    for (size_t i = 0; i < N(invalid); i++) {
        const struct bad_sample *s = &invalid[i];
        uint32_t st = UTF8_ACCEPT;
        cr_expect_not(validate_guarded(&st, s->bytes, s->len), "%s: accepted", s->name);

        /* Rejection happens at the first bad byte, not before and not later. */
        st = UTF8_ACCEPT;
        cr_expect(validate_guarded(&st, s->bytes, s->bad_at), "%s: prefix before byte %zu rejected",
                  s->name, s->bad_at);
        st = UTF8_ACCEPT;
        cr_expect_not(validate_guarded(&st, s->bytes, s->bad_at + 1),
                      "%s: prefix through byte %zu accepted", s->name, s->bad_at);
    }
}

Test(utf8, truncated_samples_are_valid_but_incomplete)
{
    for (size_t i = 0; i < N(truncated); i++) {
        const struct sample *s = &truncated[i];
        uint32_t st = UTF8_ACCEPT;
        cr_expect(validate_guarded(&st, s->bytes, s->len), "%s: rejected", s->name);
        cr_expect_not(utf8_complete(st), "%s: reported complete", s->name);
    }
}

/* Feeds p[0..len) as two pieces split at k, carrying the state. Returns false as soon as a piece
 * is rejected; *rejected_in says which piece (1 or 2). */
static bool validate_split(const uint8_t *p, size_t len, size_t k, uint32_t *st, int *rejected_in)
{
    *st = UTF8_ACCEPT;
    *rejected_in = 0;
    if (!validate_guarded(st, p, k)) {
        *rejected_in = 1;
        return false;
    }
    if (!validate_guarded(st, p + k, len - k)) {
        *rejected_in = 2;
        return false;
    }
    return true;
}

Test(utf8, valid_samples_split_at_every_position)
{
    for (size_t i = 0; i < N(valid); i++) {
        const struct sample *s = &valid[i];
        for (size_t k = 0; k <= s->len; k++) {
            uint32_t st;
            int piece;
            cr_expect(validate_split(s->bytes, s->len, k, &st, &piece),
                      "%s split at %zu: rejected in piece %d", s->name, k, piece);
            cr_expect(utf8_complete(st), "%s split at %zu: not complete", s->name, k);
        }
    }
}

Test(utf8, invalid_samples_split_at_every_position)
{
    for (size_t i = 0; i < N(invalid); i++) {
        const struct bad_sample *s = &invalid[i];
        for (size_t k = 0; k <= s->len; k++) {
            uint32_t st;
            int piece;
            cr_expect_not(validate_split(s->bytes, s->len, k, &st, &piece),
                          "%s split at %zu: accepted", s->name, k);
            /* The piece holding the first bad byte is the one rejected. */
            int want = k > s->bad_at ? 1 : 2;
            cr_expect_eq(piece, want, "%s split at %zu: rejected in piece %d, want %d", s->name,
                         k, piece, want);
        }
    }
}

Test(utf8, truncated_samples_split_at_every_position)
{
    for (size_t i = 0; i < N(truncated); i++) {
        const struct sample *s = &truncated[i];
        for (size_t k = 0; k <= s->len; k++) {
            uint32_t st;
            int piece;
            cr_expect(validate_split(s->bytes, s->len, k, &st, &piece),
                      "%s split at %zu: rejected in piece %d", s->name, k, piece);
            cr_expect_not(utf8_complete(st), "%s split at %zu: reported complete", s->name, k);
        }
    }
}

/* One byte per call, the way a slow peer delivers a text message. */
Test(utf8, samples_fed_byte_by_byte)
{
    for (size_t i = 0; i < N(valid); i++) {
        const struct sample *s = &valid[i];
        uint32_t st = UTF8_ACCEPT;
        bool ok = true;
        for (size_t k = 0; k < s->len && ok; k++) ok = validate_guarded(&st, s->bytes + k, 1);
        cr_expect(ok && utf8_complete(st), "%s: byte by byte not accepted", s->name);
    }
    for (size_t i = 0; i < N(invalid); i++) {
        const struct bad_sample *s = &invalid[i];
        uint32_t st = UTF8_ACCEPT;
        size_t k = 0;
        while (k < s->len && validate_guarded(&st, s->bytes + k, 1)) k++;
        cr_expect_eq(k, s->bad_at, "%s: byte by byte rejected at %zu, want %zu", s->name, k,
                     s->bad_at);
    }
}

/* A 32-byte block of ASCII with one bad byte at each position, starting at each alignment:
 * the eight-byte fast path must not skip over it, wherever it falls within a word. */
Test(utf8, bad_byte_at_every_position_of_ascii_block)
{
    static const uint8_t bad[] = { 0x80, 0xBF, 0xC0, 0xF5, 0xFF };
    uint8_t buf[32 + 8];
    for (size_t align = 0; align < 8; align++) {
        for (size_t pos = 0; pos < 32; pos++) {
            for (size_t b = 0; b < N(bad); b++) {
                memset(buf, 'x', sizeof buf);
                uint8_t *block = buf + align;
                block[pos] = bad[b];
                uint32_t st = UTF8_ACCEPT;
                cr_expect_not(utf8_validate(&st, block, 32),
                              "align %zu, byte %02X at %zu: accepted", align, bad[b], pos);
                /* Everything before the bad byte is still fine. */
                st = UTF8_ACCEPT;
                cr_expect(utf8_validate(&st, block, pos),
                          "align %zu, byte %02X at %zu: prefix rejected", align, bad[b], pos);
            }
        }
    }
}

/* The same block with a well-formed multi-byte character at each position must pass, so the
 * fast path hands over to the automaton correctly and resumes after the character. */
Test(utf8, multibyte_char_at_every_position_of_ascii_block)
{
    static const struct sample chars[] = {
        { "U+00E9", { 0xC3, 0xA9 }, 2 },
        { "U+20AC", { 0xE2, 0x82, 0xAC }, 3 },
        { "U+1F600", { 0xF0, 0x9F, 0x98, 0x80 }, 4 },
    };
    uint8_t block[32];
    for (size_t c = 0; c < N(chars); c++) {
        for (size_t pos = 0; pos + chars[c].len <= 32; pos++) {
            memset(block, 'y', sizeof block);
            memcpy(block + pos, chars[c].bytes, chars[c].len);
            uint32_t st = UTF8_ACCEPT;
            cr_expect(validate_guarded(&st, block, 32) && utf8_complete(st),
                      "%s at %zu: rejected", chars[c].name, pos);
            /* Cut inside the character: valid but incomplete. */
            st = UTF8_ACCEPT;
            cr_expect(validate_guarded(&st, block, pos + 1) && !utf8_complete(st),
                      "%s at %zu cut after its lead byte: wrong result", chars[c].name, pos);
        }
    }
}

/* A piece that ends inside a character followed by a piece of plain ASCII: the fast path must
 * only run between characters, or it would accept "C2" + "abcdefgh". */
Test(utf8, ascii_word_after_incomplete_sequence)
{
    static const uint8_t leads[] = { 0xC2, 0xE1, 0xF1 };
    static const uint8_t ascii[16] = "abcdefghijklmnop";
    for (size_t i = 0; i < N(leads); i++) {
        uint32_t st = UTF8_ACCEPT;
        cr_assert(utf8_validate(&st, &leads[i], 1), "lead %02X rejected", leads[i]);
        cr_expect_not(validate_guarded(&st, ascii, sizeof ascii),
                      "lead %02X then 16 ASCII bytes: accepted", leads[i]);
    }
}

/* Long valid text: the fast path over many words, then a bad byte near the end. */
Test(utf8, long_ascii_run)
{
    static uint8_t text[4099];
    memset(text, 'a', sizeof text);
    uint32_t st = UTF8_ACCEPT;
    cr_expect(validate_guarded(&st, text, sizeof text) && utf8_complete(st), "4099 ASCII bytes");
    for (size_t pos = sizeof text - 17; pos < sizeof text; pos++) {
        text[pos] = 0x80;
        st = UTF8_ACCEPT;
        cr_expect_not(validate_guarded(&st, text, sizeof text), "0x80 at %zu accepted", pos);
        text[pos] = 'a';
    }
}

/* An independent decoder, written from the definition rather than from a table: decode each
 * sequence to its code point and check its range. Returns 1 valid, 0 incomplete, -1 invalid. */
static int reference_check(const uint8_t *p, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t b = p[i];
        size_t need;
        uint32_t cp, min;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xE0) == 0xC0) {
            need = 1, cp = b & 0x1Fu, min = 0x80;
        } else if ((b & 0xF0) == 0xE0) {
            need = 2, cp = b & 0x0Fu, min = 0x800;
        } else if ((b & 0xF8) == 0xF0) {
            need = 3, cp = b & 0x07u, min = 0x10000;
        } else {
            return -1;
        }
        size_t k;
        for (k = 1; k <= need && i + k < len; k++) {
            if ((p[i + k] & 0xC0) != 0x80) return -1;
            cp = cp << 6 | (p[i + k] & 0x3Fu);
        }
        if (k <= need) {
            /* The text ends inside the sequence: valid so far only if some continuation bytes
             * could still complete it, i.e. if the range of code points it can still become,
             * [lo, hi], holds one that is not overlong, not a surrogate and not too large. */
            uint32_t lo = cp, hi = cp;
            for (size_t r = k; r <= need; r++) {
                lo = lo << 6;
                hi = hi << 6 | 0x3F;
            }
            uint32_t a = lo > min ? lo : min;
            if (a <= hi && a <= 0xD7FF) return 0;
            uint32_t b2 = lo > 0xE000 ? lo : 0xE000;
            if (b2 < min) b2 = min;
            if (b2 <= hi && b2 <= 0x10FFFF) return 0;
            return -1;
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
        i += need + 1;
    }
    return 1;
}

/* Every 1-, 2- and 3-byte input, and every 4-byte input that starts with a 4-byte lead and
 * continues with interesting bytes, against the reference. */
Test(utf8, exhaustive_against_reference)
{
    uint8_t p[4];
    size_t mismatches = 0;
    for (uint32_t v = 0; v < (1u << 24); v++) {
        p[0] = (uint8_t)(v >> 16), p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)v;
        for (size_t len = 1; len <= 3; len++) {
            /* Shorter inputs only once: when the unused low bytes are zero. */
            if (len < 3 && (v & ((1u << (8 * (3 - len))) - 1))) continue;
            int want = reference_check(p, len);
            uint32_t st = UTF8_ACCEPT;
            bool ok = utf8_validate(&st, p, len);
            int got = !ok ? -1 : utf8_complete(st) ? 1 : 0;
            if (got != want && mismatches++ < 10)
                cr_expect_eq(got, want, "%zu bytes %02X %02X %02X: got %d, want %d", len, p[0],
                             p[1], p[2], got, want);
        }
    }
    static const uint8_t tails[] = { 0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0,
                                     0xC2, 0xE0, 0xF0, 0xF4, 0xF5, 0xFF };
    for (unsigned lead = 0xF0; lead <= 0xFF; lead++)
        for (size_t a = 0; a < N(tails); a++)
            for (size_t b = 0; b < N(tails); b++)
                for (size_t c = 0; c < N(tails); c++) {
                    p[0] = (uint8_t)lead, p[1] = tails[a], p[2] = tails[b], p[3] = tails[c];
                    int want = reference_check(p, 4);
                    uint32_t st = UTF8_ACCEPT;
                    bool ok = utf8_validate(&st, p, 4);
                    int got = !ok ? -1 : utf8_complete(st) ? 1 : 0;
                    if (got != want && mismatches++ < 10)
                        cr_expect_eq(got, want, "%02X %02X %02X %02X: got %d, want %d", p[0],
                                     p[1], p[2], p[3], got, want);
                }
    cr_expect_eq(mismatches, 0, "%zu inputs disagree with the reference", mismatches);
}

struct boundary_case {
    const char *name;
    uint8_t bytes[MAX_SAMPLE];
    size_t len;
    size_t want;
};

static const struct boundary_case boundaries[] = {
    { "empty", { 0 }, 0, 0 },
    { "ASCII", { 'a', 'b', 'c' }, 3, 3 },
    { "2-byte complete", { 'a', 'b', 0xC3, 0xA9 }, 4, 4 },
    { "2-byte cut after lead", { 'a', 'b', 0xC3 }, 3, 2 },
    { "3-byte cut after two", { 'a', 'b', 0xE2, 0x82 }, 4, 2 },
    { "3-byte cut after lead", { 'a', 0xE2 }, 2, 1 },
    { "3-byte complete", { 'a', 'b', 0xE2, 0x82, 0xAC }, 5, 5 },
    { "4-byte cut after three", { 'a', 0xF0, 0x9F, 0x98 }, 4, 1 },
    { "4-byte complete", { 'a', 0xF0, 0x9F, 0x98, 0x80 }, 5, 5 },
    { "only a lead byte", { 0xF0 }, 1, 0 },
    { "only a continuation byte", { 0x80 }, 1, 0 },
    { "stops at an invalid byte", { 'a', 'b', 0xFF, 'c', 'd' }, 5, 2 },
    { "stops at a surrogate", { 'a', 0xED, 0xA0, 0x80, 'b' }, 5, 1 },
    { "two characters, second cut", { 0xC3, 0xA9, 0xC3, 0xA9, 0xC3 }, 5, 4 },
};

Test(utf8, boundary_table)
{
    for (size_t i = 0; i < N(boundaries); i++) {
        const struct boundary_case *c = &boundaries[i];
        struct guard g;
        const uint8_t *copy = guard_copy(&g, c->bytes, c->len);
        guard_seal(&g);
        size_t got = utf8_boundary(copy, c->len);
        guard_free(&g);
        cr_expect_eq(got, c->want, "%s: got %zu, want %zu", c->name, got, c->want);
    }
}

/* For every prefix of every valid sample the boundary is a prefix that validates completely,
 * and no longer complete prefix exists. */
Test(utf8, boundary_of_every_prefix_is_longest_complete_prefix)
{
    for (size_t i = 0; i < N(valid); i++) {
        const struct sample *s = &valid[i];
        for (size_t k = 0; k <= s->len; k++) {
            size_t b = utf8_boundary(s->bytes, k);
            cr_expect_leq(b, k, "%s[0..%zu): boundary %zu past the end", s->name, k, b);
            size_t longest = 0;
            for (size_t j = 0; j <= k; j++) {
                uint32_t st = UTF8_ACCEPT;
                if (utf8_validate(&st, s->bytes, j) && utf8_complete(st)) longest = j;
            }
            cr_expect_eq(b, longest, "%s[0..%zu): boundary %zu, want %zu", s->name, k, b,
                         longest);
        }
    }
}
