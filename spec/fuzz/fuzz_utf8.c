/* Fuzz target for the UTF-8 validator (core/utf8.h): utf8_validate fed whole and in pieces
 * chosen by the input must agree with each other and with the reference decoder in fuzz.h, reject
 * at exactly the first impossible byte, and utf8_boundary must return the longest well-formed
 * prefix. ws_close_build, the one user of utf8_boundary, must write reasons ws_close_parse takes.
 *
 * Input: FUZZ_PLAN_LEN bytes of split plan (the first two also give a close code), then text. */
#include "fuzz.h"

#include "utf8.h"
#include "ws_close.h"
#include "ws_frame.h"

/* What the reference says about text: where the first impossible byte is (len when none),
 * whether the text ends on a character boundary, and the longest well-formed prefix. */
struct ref_text {
    size_t bad;
    bool complete;
    size_t boundary;
};

static struct ref_text ref_text(const uint8_t *p, size_t len)
{
    struct ref_text t = { len, true, 0 };
    struct ref_utf8 u = { 0 };
    for (size_t i = 0; i < len; i++) {
        if (!ref_utf8_byte(&u, p[i])) {
            t.bad = i;
            break;
        }
        if (ref_utf8_at_boundary(&u)) t.boundary = i + 1;
    }
    t.complete = t.bad == len && ref_utf8_at_boundary(&u);
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < FUZZ_PLAN_LEN) return 0;
    const uint8_t *text = data + FUZZ_PLAN_LEN;
    size_t len = size - FUZZ_PLAN_LEN;
    struct ref_text want = ref_text(text, len);

    /* Whole. */
    const uint8_t *buf = fuzz_guard_copy(0, text, len);
    uint32_t st = UTF8_ACCEPT;
    bool ok = utf8_validate(&st, buf, len);
    FUZZ_CHECK(ok == (want.bad == len), "whole: validate says %d, reference's first bad byte %zu"
               " of %zu", ok, want.bad, len);
    if (ok)
        FUZZ_CHECK(utf8_complete(st) == want.complete, "whole: complete %d, reference %d",
                   utf8_complete(st), want.complete);

    /* The first impossible byte: everything before it passes, it does not. Checked from a
     * fresh state and also from a state carried over a split just before it. */
    if (!ok) {
        st = UTF8_ACCEPT;
        buf = fuzz_guard_copy(0, text, want.bad);
        FUZZ_CHECK(utf8_validate(&st, buf, want.bad), "prefix before the bad byte %zu rejected",
                   want.bad);
        buf = fuzz_guard_copy(0, text + want.bad, 1);
        FUZZ_CHECK(!utf8_validate(&st, buf, 1), "bad byte %zu (0x%02X) accepted after a split",
                   want.bad, text[want.bad]);
        st = UTF8_ACCEPT;
        buf = fuzz_guard_copy(0, text, want.bad + 1);
        FUZZ_CHECK(!utf8_validate(&st, buf, want.bad + 1), "bad byte %zu accepted", want.bad);
    }

    /* In pieces, the state carried: fails in the piece holding the bad byte, else agrees. */
    struct fuzz_plan plan;
    fuzz_plan_init(&plan, data);
    st = UTF8_ACCEPT;
    size_t off = 0;
    bool pieces_ok = true;
    struct ref_utf8 ref = { 0 }; /* the reference over the same bytes, for the state checks */
    while (off < len) {
        size_t n = fuzz_plan_piece(&plan, len - off);
        buf = fuzz_guard_copy(0, text + off, n);
        bool piece_ok = utf8_validate(&st, buf, n);
        bool want_ok = want.bad >= off + n;
        FUZZ_CHECK(piece_ok == want_ok, "piece [%zu, %zu): validate %d, reference bad byte %zu",
                   off, off + n, piece_ok, want.bad);
        off += n;
        if (!piece_ok) {
            pieces_ok = false;
            break;
        }
        /* At every split the state must say whether the text so far ends on a boundary. */
        for (size_t i = off - n; i < off; i++) ref_utf8_byte(&ref, text[i]);
        FUZZ_CHECK(utf8_complete(st) == ref_utf8_at_boundary(&ref), "after %zu bytes: complete"
                   " %d, reference %d", off, utf8_complete(st), ref_utf8_at_boundary(&ref));
    }
    FUZZ_CHECK(pieces_ok == ok, "pieces and whole disagree");

    /* utf8_boundary: the longest prefix that is well-formed and complete. */
    buf = fuzz_guard_copy(0, text, len);
    size_t b = utf8_boundary(buf, len);
    FUZZ_CHECK(b == want.boundary, "boundary %zu, reference %zu (len %zu)", b, want.boundary,
               len);
    st = UTF8_ACCEPT;
    FUZZ_CHECK(utf8_validate(&st, buf, b) && utf8_complete(st),
               "prefix up to the boundary %zu is not complete UTF-8", b);

    /* ws_close_build cuts the reason at a boundary; ws_close_parse must take what it wrote. */
    unsigned code = (unsigned)data[0] << 8 | data[1];
    FUZZ_CHECK(ws_close_code_is_valid(code) == ref_close_code_valid(code),
               "ws_close_code_is_valid(%u) says %d", code, ws_close_code_is_valid(code));
    uint8_t out[WS_CONTROL_MAX_PAYLOAD];
    size_t reason_len = len < WS_CLOSE_MAX_REASON ? len : WS_CLOSE_MAX_REASON;
    size_t n = ws_close_build(out, code, (const char *)buf, len);
    if (code == 0) {
        FUZZ_CHECK(n == 0, "code 0 wrote %zu bytes", n);
    } else {
        size_t want_reason = ref_text(text, reason_len).boundary;
        FUZZ_CHECK(n == 2 + want_reason, "close payload %zu bytes, want 2 + %zu", n,
                   want_reason);
        FUZZ_CHECK(memcmp(out + 2, text, want_reason) == 0, "close reason differs");
        unsigned got_code = 0;
        const uint8_t *reason = NULL;
        size_t got_len = 0;
        const char *why = NULL;
        const uint8_t *payload = fuzz_guard_copy(1, out, n);
        int rc = ws_close_parse(payload, n, &got_code, &reason, &got_len, &why);
        if (ref_close_code_valid(code)) {
            FUZZ_CHECK(rc == 0, "code %u: parse of a built payload failed: %s", code, why);
            FUZZ_CHECK(got_code == code && reason == payload + 2 && got_len == want_reason,
                       "code %u: parse returned code %u, reason length %zu", code, got_code,
                       got_len);
        } else {
            FUZZ_CHECK(rc == WS_E_PROTOCOL && why, "invalid code %u: parse returned %d", code,
                       rc);
        }
    }
    return 0;
}
