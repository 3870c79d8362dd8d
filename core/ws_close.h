/* Close frames (RFC 6455 section 5.5.1 and 7.4): which status codes may appear on the wire, how
 * a close payload is read and how one is written. Pure. */
#ifndef MOONWIRE_WS_CLOSE_H
#define MOONWIRE_WS_CLOSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ws_close_code {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL_ERROR = 1002,
    WS_CLOSE_UNSUPPORTED = 1003,
    WS_CLOSE_NO_STATUS = 1005,  /* reported locally when a close frame had no code; never sent */
    WS_CLOSE_ABNORMAL = 1006,   /* reported locally when TCP ended without a close; never sent */
    WS_CLOSE_INVALID_DATA = 1007,
    WS_CLOSE_POLICY = 1008,
    WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_INTERNAL_ERROR = 1011,
    WS_CLOSE_TRY_AGAIN_LATER = 1013,
};

/* Longest close reason: a control payload holds 125 bytes, two of them the code. */
#define WS_CLOSE_MAX_REASON 123

/* True for a code that may be sent in a close frame: 1000-1003, 1007-1014 (defined or registered
 * with IANA), 3000-3999 (registered) and 4000-4999 (private). False for everything below 1000,
 * 1004-1006 and 1015 (reserved, never on the wire), 1016-2999 and 5000 and above. */
bool ws_close_code_is_valid(unsigned code);

/* Reads a received close payload p[0..len) (already unmasked).
 * Returns 0 and sets *code (WS_CLOSE_NO_STATUS for an empty payload), *reason pointing into p and
 * *reason_len; or WS_E_PROTOCOL for a 1-byte payload or an invalid code, or WS_E_INVALID_DATA for
 * a reason that is not UTF-8; *why then says which. */
int ws_close_parse(const uint8_t *p, size_t len, unsigned *code, const uint8_t **reason,
                   size_t *reason_len, const char **why);

/* Writes a close payload into out (WS_CONTROL_MAX_PAYLOAD bytes): the code, then the reason cut
 * at a character boundary to fit. code 0 writes an empty payload. Returns the payload length. */
size_t ws_close_build(uint8_t *out, unsigned code, const char *reason, size_t reason_len);

#endif
