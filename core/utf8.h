/* Incremental UTF-8 validation (RFC 3629, Unicode table 3-7).
 *
 * Text messages arrive in pieces: split across TCP reads and across fragments. The validator
 * carries its state between pieces so a message is rejected at the first byte that can no longer
 * start or continue a well-formed sequence, not at its end. Pure: no allocation, no I/O. */
#ifndef MOONWIRE_UTF8_H
#define MOONWIRE_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The state between pieces. Start (and restart) every message at UTF8_ACCEPT. */
enum { UTF8_ACCEPT = 0 };

/* Validates p[0..len) continuing from *state and stores the state after the last byte.
 * Returns true when every byte so far can belong to well-formed UTF-8 (the text may still end
 * inside a sequence: ask utf8_complete at the end of the message), false at the first byte that
 * cannot: overlong forms, surrogates (U+D800..U+DFFF), code points above U+10FFFF, stray
 * continuation bytes and the bytes C0, C1, F5..FF. After false, *state is as it was before
 * the call. */
bool utf8_validate(uint32_t *state, const uint8_t *p, size_t len);

/* True when the text validated so far ends on a character boundary. */
static inline bool utf8_complete(uint32_t state) { return state == UTF8_ACCEPT; }

/* True when p[0..len) is well-formed UTF-8, whole. */
static inline bool utf8_valid(const void *p, size_t len)
{
    uint32_t st = UTF8_ACCEPT;
    return utf8_validate(&st, p, len) && utf8_complete(st);
}

/* Length of the longest prefix of p[0..len) that ends on a character boundary of well-formed text
 * (used to cut a close reason without splitting a character). */
size_t utf8_boundary(const uint8_t *p, size_t len);

#endif
