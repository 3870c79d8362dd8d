/* The payloads wsload sends, and how it checks them when they come back.
 *
 * A payload is a header of numbers written in a 64-letter alphabet ("A-Za-z0-9-_", 6 bits a
 * byte, all ASCII so text messages stay valid UTF-8), then a body copied from one shared
 * pattern at an offset mixed from those numbers. Sending costs a memcpy; checking costs
 * decoding a dozen letters and one memcmp against the same pattern, yet any changed, lost,
 * duplicated, reordered or misdelivered message is caught: the header names its connection
 * and sequence, and the body differs from one sequence to the next.
 *
 *   echo:      connection id (4 letters, 24 bits), sequence (8 letters, 48 bits), body
 *   broadcast: sequence (8 letters), send time in CLOCK_MONOTONIC ns (12 letters), body
 *
 * Both headers, and the numbers in them, start at multiples of 4 bytes, so the header can be
 * written already masked and the body masked separately from the same mask phase. */
#ifndef WSLOAD_PAYLOAD_H
#define WSLOAD_PAYLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PL_ECHO_HEADER 12
#define PL_BCAST_HEADER 20
#define PL_MAX_CONN_ID ((1u << 24) - 1)
/* Bodies start at one of this many offsets into the pattern (a prime, so the offsets of
 * consecutive sequences do not fall into a short cycle). */
#define PL_SPAN 4093

enum {
    PL_E_LENGTH = -1, /* the message is not the size that was sent */
    PL_E_HEADER = -2, /* a header byte is not a letter of the alphabet */
    PL_E_BODY = -3,   /* the body differs from the pattern its header selects */
};

/* The bytes every body is cut from: PL_SPAN + body_max of them. Text patterns use the 64
 * letters; binary ones every byte value, so a server that mangles bytes >= 0x80 is caught. */
struct pl_pattern {
    uint8_t *bytes;
    size_t body_max;
    int8_t digit[256]; /* the value of each letter of the alphabet, -1 for other bytes */
};

/* What bodies are cut from: the 64 letters (text), every byte value (binary), or chat lines
 * ("alice: did the deploy finish? ...": English-like words, compressible like real chat text,
 * and free of '"' and '\\' so the body can sit inside a JSON string unescaped). */
enum pl_kind { PL_LETTERS, PL_BYTES, PL_CHAT };

/* Fills *p for bodies of up to body_max bytes. Returns 0, or -1 when out of memory. */
int pl_pattern_init(struct pl_pattern *p, size_t body_max, enum pl_kind kind);
void pl_pattern_free(struct pl_pattern *p);

/* The body for the message whose header holds the numbers a and b: body_max bytes (use the
 * first size - header of them) inside the pattern. */
static inline const uint8_t *pl_body(const struct pl_pattern *p, uint64_t a, uint64_t b)
{
    uint64_t h = a * 0x9E3779B97F4A7C15u ^ (b + 1) * 0xC2B2AE3D27D4EB4Fu;
    h ^= h >> 29;
    return p->bytes + h % PL_SPAN;
}

/* Writes the echo header for message seq of connection conn, each byte XORed with
 * mask[i % 4]: already masked, it goes straight into a client frame (zeros: unmasked). */
void pl_echo_header(uint8_t dst[PL_ECHO_HEADER], uint32_t conn, uint64_t seq,
                    const uint8_t mask[4]);

/* Checks an echoed message of len bytes against the size sent. Returns 0 with *conn and *seq
 * taken from its header, or PL_E_LENGTH, PL_E_HEADER or PL_E_BODY. */
int pl_echo_check(const struct pl_pattern *p, const uint8_t *msg, size_t len, size_t size,
                  uint32_t *conn, uint64_t *seq);

/* Writes the broadcast header for publish seq sent at time ns, masked like pl_echo_header. */
void pl_bcast_header(uint8_t dst[PL_BCAST_HEADER], uint64_t seq, uint64_t sent_ns,
                     const uint8_t mask[4]);

/* Checks a broadcast message like pl_echo_check; 0 with *seq and *sent_ns on success. */
int pl_bcast_check(const struct pl_pattern *p, const uint8_t *msg, size_t len, size_t size,
                   uint64_t *seq, uint64_t *sent_ns);

/* Where msg first differs from what its header says it should be (for error reports), or
 * len when it does not. */
size_t pl_first_difference(const struct pl_pattern *p, const uint8_t *msg, size_t len,
                           bool bcast);

const char *pl_strerror(int err);

/* Which sequences of one stream arrived: the next one expected and a bitmap of the 64 before
 * it, so a late arrival can be told from a repeat. Zeroed means "expecting 0". */
struct pl_seqtrack {
    uint64_t next;
    uint64_t seen;   /* bit i: sequence next - 1 - i arrived */
    uint64_t unique; /* distinct sequences that arrived */
};

enum {
    PL_SEQ_IN_ORDER,  /* the one expected */
    PL_SEQ_AHEAD,     /* later than expected: those skipped are missing for now */
    PL_SEQ_LATE,      /* one that was missing: it arrived out of order */
    PL_SEQ_DUPLICATE, /* one that already arrived (or is more than 64 back: most likely) */
};

/* Records the arrival of sequence s; returns one of PL_SEQ_*. */
int pl_seq_track(struct pl_seqtrack *t, uint64_t s);

#endif
