/* Incremental UTF-8 validator: a nine-state automaton over twelve byte classes, with an
 * eight-bytes-at-a-time fast path for ASCII, which is most of what chat and JSON traffic holds. */
#include "utf8.h"

#include <string.h>

/* Byte classes. The second byte of E0, ED, F0 and F4 sequences is restricted (no overlongs, no
 * surrogates, nothing above U+10FFFF), so continuation bytes split into three ranges. */
enum {
    C_ASCII,    /* 00..7F */
    C_CONT_LO,  /* 80..8F */
    C_CONT_MID, /* 90..9F */
    C_CONT_HI,  /* A0..BF */
    C_LEAD2,    /* C2..DF */
    C_E0,       /* E0: second byte A0..BF */
    C_LEAD3,    /* E1..EC, EE..EF */
    C_ED,       /* ED: second byte 80..9F (no surrogates) */
    C_F0,       /* F0: second byte 90..BF */
    C_LEAD4,    /* F1..F3 */
    C_F4,       /* F4: second byte 80..8F (nothing above U+10FFFF) */
    C_BAD,      /* C0, C1, F5..FF: never valid */
    CLASS_COUNT
};

/* States: how much of the current sequence is still owed, and what the next byte may be. */
enum {
    S_ACCEPT = UTF8_ACCEPT,
    S_NEED1,     /* one continuation byte */
    S_NEED2,     /* two continuation bytes */
    S_NEED3,     /* three continuation bytes */
    S_E0,        /* A0..BF, then one more */
    S_ED,        /* 80..9F, then one more */
    S_F0,        /* 90..BF, then two more */
    S_F4,        /* 80..8F, then two more */
    S_REJECT,
    STATE_COUNT
};

static uint8_t byte_class[256];
static uint8_t next_state[STATE_COUNT][CLASS_COUNT];

/* The tables are built once from the rules above rather than typed as opaque numbers, so the
 * rules stay readable. The constructor runs before main and before any test. */
__attribute__((constructor)) static void utf8_build_tables(void)
{
    for (int b = 0; b < 256; b++) {
        uint8_t c;
        if (b < 0x80) c = C_ASCII;
        else if (b < 0x90) c = C_CONT_LO;
        else if (b < 0xA0) c = C_CONT_MID;
        else if (b < 0xC0) c = C_CONT_HI;
        else if (b < 0xC2) c = C_BAD;
        else if (b < 0xE0) c = C_LEAD2;
        else if (b == 0xE0) c = C_E0;
        else if (b == 0xED) c = C_ED;
        else if (b < 0xF0) c = C_LEAD3;
        else if (b == 0xF0) c = C_F0;
        else if (b < 0xF4) c = C_LEAD4;
        else if (b == 0xF4) c = C_F4;
        else c = C_BAD;
        byte_class[b] = c;
    }
    memset(next_state, S_REJECT, sizeof next_state);

    uint8_t *s = next_state[S_ACCEPT];
    s[C_ASCII] = S_ACCEPT;
    s[C_LEAD2] = S_NEED1;
    s[C_E0] = S_E0;
    s[C_LEAD3] = S_NEED2;
    s[C_ED] = S_ED;
    s[C_F0] = S_F0;
    s[C_LEAD4] = S_NEED3;
    s[C_F4] = S_F4;

    static const uint8_t after_cont[] = { [S_NEED1] = S_ACCEPT, [S_NEED2] = S_NEED1,
                                          [S_NEED3] = S_NEED2 };
    for (int st = S_NEED1; st <= S_NEED3; st++)
        for (int c = C_CONT_LO; c <= C_CONT_HI; c++) next_state[st][c] = after_cont[st];

    next_state[S_E0][C_CONT_HI] = S_NEED1;
    next_state[S_ED][C_CONT_LO] = S_NEED1;
    next_state[S_ED][C_CONT_MID] = S_NEED1;
    next_state[S_F0][C_CONT_MID] = S_NEED2;
    next_state[S_F0][C_CONT_HI] = S_NEED2;
    next_state[S_F4][C_CONT_LO] = S_NEED2;
}

bool utf8_validate(uint32_t *state, const uint8_t *p, size_t len)
{
    uint32_t st = *state;
    size_t i = 0;
    while (i < len) {
        /* Between characters, skip whole words of ASCII. memcpy keeps the load legal at any
         * alignment and compiles to a single instruction. */
        if (st == S_ACCEPT) {
            while (i + 8 <= len) {
                uint64_t w;
                memcpy(&w, p + i, 8);
                if (w & 0x8080808080808080ull) break;
                i += 8;
            }
            if (i == len) break;
        }
        st = next_state[st][byte_class[p[i]]];
        if (st == S_REJECT) return false;
        i++;
    }
    *state = st;
    return true;
}

size_t utf8_boundary(const uint8_t *p, size_t len)
{
    uint32_t st = UTF8_ACCEPT;
    size_t good = 0;
    for (size_t i = 0; i < len; i++) {
        st = next_state[st][byte_class[p[i]]];
        if (st == S_REJECT) break;
        if (st == S_ACCEPT) good = i + 1;
    }
    return good;
}
