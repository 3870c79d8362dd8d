/* wsload payloads: see payload.h for the layout. */
#include "payload.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char letters[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* Most significant letter first, so headers read like numbers in a hex dump; each letter XORed
 * with mask[i % 4] (every number starts at a multiple of 4 in the payload, so the mask phase is
 * i). Unrolled: the loops are short, fixed and run for every message. */
static inline void put_number(uint8_t *dst, unsigned digits, uint64_t v, const uint8_t mask[4])
{
#pragma GCC unroll 12
    for (unsigned i = digits; i-- > 0;) {
        dst[i] = (uint8_t)letters[v & 63] ^ mask[i & 3];
        v >>= 6;
    }
}

/* Table lookups rather than branches. */
static inline int get_number(const struct pl_pattern *p, const uint8_t *src, unsigned digits,
                             uint64_t *v)
{
    uint64_t n = 0;
    int bad = 0;
#pragma GCC unroll 12
    for (unsigned i = 0; i < digits; i++) {
        int d = p->digit[src[i]];
        bad |= d;
        n = n << 6 | (uint64_t)(d & 63);
    }
    *v = n;
    return bad < 0 ? PL_E_HEADER : 0;
}

/* Chat lines are drawn from these, by the same xorshift as the other patterns. */
static const char *const chat_who[] = { "alice", "bob", "carol", "dave", "erin", "frank",
                                        "grace", "heidi", "ivan", "judy" };
static const char *const chat_says[] = {
    "did the deploy finish?", "yes, all green on staging", "can you review my pull request",
    "lunch at noon?", "the build is red again", "looks good to me, merging now",
    "who broke the tests", "restarting the worker, one minute", "thanks!",
    "meeting moved to 3 pm", "see the dashboard, latency is back to normal",
    "ok", "I will take the on-call shift tonight", "the new release is out",
};

static void chat_fill(uint8_t *dst, size_t n, uint64_t x)
{
    size_t i = 0;
    while (i < n) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        char line[160];
        int len = snprintf(line, sizeof line, "[%02u:%02u] %s: %s ", (unsigned)(x >> 8) % 24,
                           (unsigned)(x >> 16) % 60,
                           chat_who[(x >> 24) % (sizeof chat_who / sizeof *chat_who)],
                           chat_says[(x >> 32) % (sizeof chat_says / sizeof *chat_says)]);
        for (int k = 0; k < len && i < n; k++) dst[i++] = (uint8_t)line[k];
    }
}

int pl_pattern_init(struct pl_pattern *p, size_t body_max, enum pl_kind kind)
{
    size_t n = body_max + PL_SPAN;
    p->bytes = malloc(n);
    if (!p->bytes) return -1;
    p->body_max = body_max;
    memset(p->digit, -1, sizeof p->digit);
    for (int i = 0; i < 64; i++) p->digit[(uint8_t)letters[i]] = (int8_t)i;
    /* xorshift64: any fixed sequence will do, it only has to look unlike its neighbours. */
    uint64_t x = 0x2545F4914F6CDD1Du;
    if (kind == PL_CHAT) {
        chat_fill(p->bytes, n, x);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p->bytes[i] = kind == PL_BYTES ? (uint8_t)(x >> 24) : (uint8_t)letters[(x >> 24) & 63];
    }
    return 0;
}

void pl_pattern_free(struct pl_pattern *p)
{
    free(p->bytes);
    p->bytes = NULL;
}

void pl_echo_header(uint8_t dst[PL_ECHO_HEADER], uint32_t conn, uint64_t seq,
                    const uint8_t mask[4])
{
    put_number(dst, 4, conn, mask);
    put_number(dst + 4, 8, seq, mask);
}

int pl_echo_check(const struct pl_pattern *p, const uint8_t *msg, size_t len, size_t size,
                  uint32_t *conn, uint64_t *seq)
{
    if (len != size || len < PL_ECHO_HEADER) return PL_E_LENGTH;
    uint64_t id;
    if (get_number(p, msg, 4, &id) < 0 || get_number(p, msg + 4, 8, seq) < 0) return PL_E_HEADER;
    *conn = (uint32_t)id;
    const uint8_t *body = pl_body(p, id, *seq);
    if (memcmp(msg + PL_ECHO_HEADER, body, len - PL_ECHO_HEADER) != 0) return PL_E_BODY;
    return 0;
}

void pl_bcast_header(uint8_t dst[PL_BCAST_HEADER], uint64_t seq, uint64_t sent_ns,
                     const uint8_t mask[4])
{
    put_number(dst, 8, seq, mask);
    put_number(dst + 8, 12, sent_ns, mask);
}

int pl_bcast_check(const struct pl_pattern *p, const uint8_t *msg, size_t len, size_t size,
                   uint64_t *seq, uint64_t *sent_ns)
{
    if (len != size || len < PL_BCAST_HEADER) return PL_E_LENGTH;
    if (get_number(p, msg, 8, seq) < 0 || get_number(p, msg + 8, 12, sent_ns) < 0)
        return PL_E_HEADER;
    const uint8_t *body = pl_body(p, *seq, *sent_ns);
    if (memcmp(msg + PL_BCAST_HEADER, body, len - PL_BCAST_HEADER) != 0) return PL_E_BODY;
    return 0;
}

size_t pl_first_difference(const struct pl_pattern *p, const uint8_t *msg, size_t len,
                           bool bcast)
{
    size_t head = bcast ? PL_BCAST_HEADER : PL_ECHO_HEADER;
    if (len < head) return 0;
    for (size_t i = 0; i < head; i++)
        if (p->digit[msg[i]] < 0) return i;
    uint64_t a, b;
    if (bcast) {
        get_number(p, msg, 8, &a);
        get_number(p, msg + 8, 12, &b);
    } else {
        get_number(p, msg, 4, &a);
        get_number(p, msg + 4, 8, &b);
    }
    const uint8_t *body = pl_body(p, a, b);
    size_t n = len - head < p->body_max ? len - head : p->body_max;
    for (size_t i = 0; i < n; i++)
        if (msg[head + i] != body[i]) return head + i;
    return len;
}

const char *pl_strerror(int err)
{
    switch (err) {
    case PL_E_LENGTH: return "wrong length";
    case PL_E_HEADER: return "garbled header";
    case PL_E_BODY: return "body differs";
    default: return "ok";
    }
}

int pl_seq_track(struct pl_seqtrack *t, uint64_t s)
{
    if (s == t->next) {
        t->seen = t->seen << 1 | 1;
        t->next++;
        t->unique++;
        return PL_SEQ_IN_ORDER;
    }
    if (s > t->next) {
        /* The ones jumped over are missing for now: lost if they never come, late if they do. */
        uint64_t skip = s - t->next;
        t->seen = skip >= 63 ? 1 : (t->seen << (skip + 1)) | 1;
        t->next = s + 1;
        t->unique++;
        return PL_SEQ_AHEAD;
    }
    uint64_t back = t->next - 1 - s;
    if (back >= 64) return PL_SEQ_DUPLICATE; /* too far back to tell; a repeat is likelier */
    uint64_t bit = (uint64_t)1 << back;
    if (t->seen & bit) return PL_SEQ_DUPLICATE;
    t->seen |= bit;
    t->unique++;
    return PL_SEQ_LATE;
}
