/* Base64 (RFC 4648, standard and URL-safe) and hex, strict both ways. Pure: no allocation, no
 * I/O; the caller sizes the output with the _len helpers. Used by mw.base64, mw.hex and mw.jwt
 * (lua_crypto.c), where a token's parts must have exactly one spelling. */
#ifndef MOONWIRE_CODEC_H
#define MOONWIRE_CODEC_H

#include <stdbool.h>
#include <stddef.h>

/* Bytes codec_b64_encode writes for len input bytes: 4 * ceil(len / 3) padded, fewer for url
 * (no padding). len must be below SIZE_MAX / 2. */
size_t codec_b64_encoded_len(size_t len, bool url);

/* Encodes in[0..len) into out (codec_b64_encoded_len(len, url) bytes; no NUL added): the
 * standard alphabet with '=' padding, or with url the URL-safe one ('-', '_') without. Returns
 * the bytes written. */
size_t codec_b64_encode(const unsigned char *in, size_t len, char *out, bool url);

/* Room codec_b64_decode needs in out for len input characters: 3 * ceil(len / 4). */
size_t codec_b64_decoded_max(size_t len);

/* Decodes in[0..len) into out (codec_b64_decoded_max(len) bytes). Strict: only the alphabet
 * (standard, or URL-safe with url), no whitespace, the unused bits of the last character zero.
 * The standard alphabet needs its '=' padding; the URL-safe one takes it or leaves it out, or,
 * with pad_ok false, must leave it out (JWT). Returns the bytes written, or CODEC_INVALID. */
#define CODEC_INVALID ((size_t)-1)
size_t codec_b64_decode(const char *in, size_t len, unsigned char *out, bool url, bool pad_ok);

/* Writes 2 * len lower-case hex digits of in[0..len) to out. */
void codec_hex_encode(const unsigned char *in, size_t len, char *out);

/* Decodes len hex digits (either case) into len / 2 bytes of out. Returns len / 2, or
 * CODEC_INVALID for an odd length or a character that is not a hex digit. */
size_t codec_hex_decode(const char *in, size_t len, unsigned char *out);

#endif
