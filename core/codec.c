/* Base64 and hex, strict (codec.h). Decoding refuses every spelling but the canonical one, so
 * a JWT signature cannot be altered by flipping the spare bits of its last character. */
#include "codec.h"

static const char b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t codec_b64_encoded_len(size_t len, bool url)
{
    if (!url) return (len + 2) / 3 * 4;
    return len / 3 * 4 + (len % 3 ? len % 3 + 1 : 0);
}

size_t codec_b64_encode(const unsigned char *in, size_t len, char *out, bool url)
{
    const char *abc = url ? b64_url : b64_std;
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        out[o++] = abc[v >> 18];
        out[o++] = abc[(v >> 12) & 63];
        out[o++] = abc[(v >> 6) & 63];
        out[o++] = abc[v & 63];
    }
    size_t rest = len - i;
    if (rest) {
        unsigned v = (unsigned)in[i] << 16 | (rest == 2 ? (unsigned)in[i + 1] << 8 : 0u);
        out[o++] = abc[v >> 18];
        out[o++] = abc[(v >> 12) & 63];
        if (rest == 2) out[o++] = abc[(v >> 6) & 63];
        if (!url) {
            out[o++] = '=';
            if (rest == 1) out[o++] = '=';
        }
    }
    return o;
}

size_t codec_b64_decoded_max(size_t len) { return (len / 4 + 1) * 3; }

static int b64_value(char c, bool url)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == (url ? '-' : '+')) return 62;
    if (c == (url ? '_' : '/')) return 63;
    return -1;
}

size_t codec_b64_decode(const char *in, size_t len, unsigned char *out, bool url, bool pad_ok)
{
    size_t pad = 0;
    while (len > 0 && in[len - 1] == '=' && pad < 2) {
        len--;
        pad++;
    }
    if (pad && !pad_ok) return CODEC_INVALID;
    if (len % 4 == 1) return CODEC_INVALID;
    /* Padding, when there is any (always for the standard alphabet), completes a quantum. */
    if ((pad || !url) && (len + pad) % 4 != 0) return CODEC_INVALID;
    size_t o = 0;
    unsigned v = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int d = b64_value(in[i], url);
        if (d < 0) return CODEC_INVALID;
        v = (v << 6 | (unsigned)d) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(v >> bits);
        }
    }
    if (bits > 0 && (v & ((1u << bits) - 1)) != 0) return CODEC_INVALID;
    return o;
}

void codec_hex_encode(const unsigned char *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

size_t codec_hex_decode(const char *in, size_t len, unsigned char *out)
{
    if (len % 2) return CODEC_INVALID;
    for (size_t i = 0; i < len; i += 2) {
        int hi = hex_value(in[i]), lo = hex_value(in[i + 1]);
        if (hi < 0 || lo < 0) return CODEC_INVALID;
        out[i / 2] = (unsigned char)(hi << 4 | lo);
    }
    return len / 2;
}
