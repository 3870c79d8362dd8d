/* Fuzz target for permessage-deflate negotiation (core/pmd.h). Beyond not crashing on any offer
 * text: a parsed offer has window sizes 8..15 (or -1, "no value", for the client's); an accepted
 * offer gives windows 9..15 for the server and 8..15 for the client, never a server window above
 * what the client capped; and the answer parses back as an offer, names client_max_window_bits
 * only when the offer did, and never takes context the client refused.
 *
 * Input: [0] flags (bit 0: context mode), [1] window bits policy (mod 16), then the offer. */
#include "fuzz.h"

#include <string.h>

#include "pmd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    struct pmd_policy p = { (data[0] & 1) != 0, data[1] % 16 };
    const char *s = (const char *)fuzz_guard_copy(0, data + 2, size - 2);
    size_t len = size - 2;
    struct pmd_offer o;
    const char *why = NULL;
    int rc = pmd_parse_offer(s, len, &o, &why);
    FUZZ_CHECK(rc == PMD_OK || why, "rc %d without a reason", rc);
    if (rc != PMD_OK) return 0;
    FUZZ_CHECK(o.server_max_window_bits == 0 ||
               (o.server_max_window_bits >= 8 && o.server_max_window_bits <= 15),
               "server_max_window_bits %d", o.server_max_window_bits);
    FUZZ_CHECK(o.client_max_window_bits >= -1 && o.client_max_window_bits <= 15 &&
               (o.client_max_window_bits <= 0 || o.client_max_window_bits >= 8),
               "client_max_window_bits %d", o.client_max_window_bits);
    struct pmd_agreement a;
    if (!pmd_accept(&o, &p, &a)) {
        FUZZ_CHECK(o.server_max_window_bits == 8, "declined a valid offer");
        return 0;
    }
    FUZZ_CHECK(a.server_window_bits >= 9 && a.server_window_bits <= 15, "server window %d",
               a.server_window_bits);
    FUZZ_CHECK(!o.server_max_window_bits || a.server_window_bits <= o.server_max_window_bits,
               "server window %d over the cap %d", a.server_window_bits,
               o.server_max_window_bits);
    FUZZ_CHECK(a.client_window_bits >= 8 && a.client_window_bits <= 15, "client window %d",
               a.client_window_bits);
    FUZZ_CHECK(!(a.server_context && o.server_no_context_takeover), "server context refused");
    FUZZ_CHECK(!(a.client_context && o.client_no_context_takeover), "client context refused");
    FUZZ_CHECK(!(a.client_context && !o.client_max_window_bits), "client context uncapped");
    char out[256];
    size_t n = pmd_format_answer(out, sizeof out, &o, &a);
    FUZZ_CHECK(n > 0 && n < sizeof out, "answer length %zu", n);
    FUZZ_CHECK(o.client_max_window_bits || !strstr(out, "client_max_window_bits"),
               "answered client_max_window_bits unoffered: %s", out);
    struct pmd_offer back;
    FUZZ_CHECK(pmd_parse_offer(out, n, &back, &why) == PMD_OK, "answer does not parse: %s", out);
    FUZZ_CHECK(back.server_no_context_takeover == !a.server_context, "answer: %s", out);
    FUZZ_CHECK(back.client_no_context_takeover == !a.client_context, "answer: %s", out);
    return 0;
}
