/* Close codes and payloads. The code ranges follow RFC 6455 section 7.4 and the IANA WebSocket
 * Close Code Number Registry (1012-1014 were registered after the RFC). */
#include "ws_close.h"

#include <string.h>

#include "utf8.h"
#include "ws_frame.h"

bool ws_close_code_is_valid(unsigned code)
{
    if (code >= 1000 && code <= 1003) return true;
    if (code >= 1007 && code <= 1014) return true;
    return code >= 3000 && code <= 4999;
}

int ws_close_parse(const uint8_t *p, size_t len, unsigned *code, const uint8_t **reason,
                   size_t *reason_len, const char **why)
{
    if (len == 0) {
        *code = WS_CLOSE_NO_STATUS;
        *reason = p;
        *reason_len = 0;
        return 0;
    }
    if (len == 1) {
        *why = "close frame with a 1-byte payload";
        return WS_E_PROTOCOL;
    }
    unsigned c = (unsigned)p[0] << 8 | p[1];
    if (!ws_close_code_is_valid(c)) {
        *why = "close frame with an invalid status code";
        return WS_E_PROTOCOL;
    }
    if (!utf8_valid(p + 2, len - 2)) {
        *why = "close reason is not valid UTF-8";
        return WS_E_INVALID_DATA;
    }
    *code = c;
    *reason = p + 2;
    *reason_len = len - 2;
    return 0;
}

size_t ws_close_build(uint8_t *out, unsigned code, const char *reason, size_t reason_len)
{
    if (code == 0) return 0;
    out[0] = (uint8_t)(code >> 8);
    out[1] = (uint8_t)code;
    if (reason_len > WS_CLOSE_MAX_REASON) reason_len = WS_CLOSE_MAX_REASON;
    reason_len = utf8_boundary((const uint8_t *)reason, reason_len);
    memcpy(out + 2, reason, reason_len);
    return 2 + reason_len;
}
