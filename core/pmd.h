/* permessage-deflate negotiation (RFC 7692 sections 5 and 7): reads the client's offers from
 * Sec-WebSocket-Extensions, picks the first acceptable one under the server's policy, and writes
 * the answer.
 *
 * Pure: strings in, a decision out. No zlib, no allocation, no globals; unit tested and fuzzed
 * directly (spec/unit/test_pmd.c, spec/fuzz/fuzz_pmd.c). */
#ifndef MOONWIRE_PMD_H
#define MOONWIRE_PMD_H

#include <stdbool.h>
#include <stddef.h>

#include "http.h"

/* What the server is willing to do (from the config's deflate table). */
struct pmd_policy {
    bool context;    /* "context" mode: keep the compressor's window between messages */
    int window_bits; /* the window the server's compressor uses in context mode (9..15) */
};

/* One offer, as the client wrote it. Window bits: 0 when the parameter is absent, -1 when it is
 * present without a value (only client_max_window_bits may be), else 8..15. */
struct pmd_offer {
    bool server_no_context_takeover;
    bool client_no_context_takeover;
    int server_max_window_bits;
    int client_max_window_bits;
};

/* What was agreed for a connection. */
struct pmd_agreement {
    bool server_context;   /* the server keeps its compressor's window between messages */
    bool client_context;   /* the client keeps its compressor's window between messages */
    int server_window_bits; /* the window the server's compressor may use (9..15) */
    int client_window_bits; /* the window the server's inflater needs (8..15; 15 unless capped) */
};

/* Results of pmd_parse_offer. */
enum {
    PMD_OK = 0,
    PMD_OTHER = 1,         /* an offer of another extension: not ours, skip it */
    PMD_E_SYNTAX = -1,     /* not "permessage-deflate *( ; param[=value] )" */
    PMD_E_UNKNOWN = -2,    /* a parameter RFC 7692 does not define */
    PMD_E_DUPLICATE = -3,  /* a parameter given twice */
    PMD_E_VALUE = -4,      /* a value where none is allowed, or a window size not 8..15 */
};

/* Parses one element of the Sec-WebSocket-Extensions list: s[0..len), an extension name and
 * its parameters ("permessage-deflate; client_max_window_bits"). Values may be quoted
 * (RFC 7692 section 7.1: the quoted form must still be a valid value).
 * Returns PMD_OK with *o filled, PMD_OTHER for another extension, or a negative PMD_E_*; *why
 * (may be NULL) then says which rule the offer broke, as a static sentence. */
int pmd_parse_offer(const char *s, size_t len, struct pmd_offer *o, const char **why);

/* Decides whether the server can accept offer o under policy p.
 * Returns true with *a filled, or false when the offer cannot be honoured: a
 * server_max_window_bits of 8 (zlib's deflate cannot use a 256-byte window). Shared mode
 * (!p->context) always agrees on no context takeover in both directions. */
bool pmd_accept(const struct pmd_offer *o, const struct pmd_policy *p, struct pmd_agreement *a);

/* Writes the Sec-WebSocket-Extensions value answering o with a (no "Name:" and no CRLF) into
 * out (cap bytes, NUL included). client_max_window_bits appears only when o offered it, and
 * then always with a value. Returns the length, or 0 when cap is too small. */
size_t pmd_format_answer(char *out, size_t cap, const struct pmd_offer *o,
                         const struct pmd_agreement *a);

/* Goes through every Sec-WebSocket-Extensions element of req in order and takes the first
 * permessage-deflate offer that parses and pmd_accept accepts. Returns true with *a filled and
 * the answer's value in out (cap bytes; 160 are always enough), or false when no offer is
 * acceptable (the connection then goes on without compression, as RFC 7692 section 5 asks). */
bool pmd_negotiate(const struct http_request *req, const struct pmd_policy *p,
                   struct pmd_agreement *a, char *out, size_t cap);

#endif
