/* Tests for the base64 and hex codecs (core/codec.h): RFC 4648's vectors in both alphabets,
 * every spelling the strict decoder must refuse, and round trips of every byte; each input ends
 * at a guard page, so reading one byte past it crashes the test. */
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include <criterion/criterion.h>

#include "codec.h"
#include "guard.h"

struct b64_case {
    const char *name;
    const char *bytes;
    const char *std;
    const char *url;
};

/* RFC 4648 section 10, and the two characters where the alphabets differ. */
static const struct b64_case b64_cases[] = {
    { "empty", "", "", "" },
    { "f", "f", "Zg==", "Zg" },
    { "fo", "fo", "Zm8=", "Zm8" },
    { "foo", "foo", "Zm9v", "Zm9v" },
    { "foob", "foob", "Zm9vYg==", "Zm9vYg" },
    { "fooba", "fooba", "Zm9vYmE=", "Zm9vYmE" },
    { "foobar", "foobar", "Zm9vYmFy", "Zm9vYmFy" },
    { "62 and 63", "\xfb\xff", "+/8=", "-_8" },
    { "62 and 63, whole quantum", "\xfb\xef\xff", "++//", "--__" },
};

static void check_decodes(const char *text, bool url, bool pad_ok, const char *want,
                          const char *name)
{
    struct guard g;
    size_t len = strlen(text);
    const char *in = guard_copy_str(&g, text, len);
    unsigned char out[64];
    cr_assert_leq(codec_b64_decoded_max(len), sizeof out);
    size_t n = codec_b64_decode(in, len, out, url, pad_ok);
    cr_assert_neq(n, CODEC_INVALID, "%s: %s refused", name, text);
    cr_assert_eq(n, strlen(want), "%s: %zu bytes", name, n);
    cr_assert_eq(memcmp(out, want, n), 0, "%s", name);
    guard_free(&g);
}

Test(codec, b64_vectors)
{
    for (size_t i = 0; i < sizeof b64_cases / sizeof b64_cases[0]; i++) {
        const struct b64_case *c = &b64_cases[i];
        size_t len = strlen(c->bytes);
        struct guard g;
        const unsigned char *in = guard_copy(&g, c->bytes, len);
        char out[64];
        for (int url = 0; url <= 1; url++) {
            const char *want = url ? c->url : c->std;
            cr_assert_eq(codec_b64_encoded_len(len, url), strlen(want), "%s", c->name);
            size_t n = codec_b64_encode(in, len, out, url);
            cr_assert_eq(n, strlen(want), "%s (url %d)", c->name, url);
            cr_assert_eq(memcmp(out, want, n), 0, "%s (url %d)", c->name, url);
        }
        guard_free(&g);
        check_decodes(c->std, false, true, c->bytes, c->name);
        check_decodes(c->url, true, true, c->bytes, c->name);
        check_decodes(c->url, true, false, c->bytes, c->name);
        /* the url alphabet takes padding when asked to */
        if (strcmp(c->url, c->std) != 0 && strchr(c->std, '=') && !strpbrk(c->std, "+/"))
            check_decodes(c->std, true, true, c->bytes, c->name);
    }
}

struct bad_case {
    const char *name;
    const char *text;
    bool url, pad_ok;
};

static const struct bad_case b64_bad[] = {
    { "one character", "Z", false, true },
    { "five characters", "Zm9vY", true, true },
    { "missing padding (standard)", "Zg", false, true },
    { "short padding (standard)", "Zg=", false, true },
    { "padding where none belongs", "Zm9v=", false, true },
    { "three padding characters", "Z===", false, true },
    { "only padding", "==", false, true },
    { "padding in the middle", "Zg==Zg==", false, true },
    { "padding when pad_ok is false (JWT)", "Zg==", true, false },
    { "padding that does not complete a quantum (url)", "Zg=", true, true },
    { "spare bits set, 1 byte", "Zh==", false, true },
    { "spare bits set, 2 bytes", "Zm9=", false, true },
    { "spare bits set, url", "Zh", true, false },
    { "whitespace", "Zm9v YmFy", false, true },
    { "a line break", "Zm9v\nYmFy", false, true },
    { "url characters in standard", "-_8=", false, true },
    { "standard characters in url", "+/8", true, true },
    { "a NUL", "Zm\0v", false, true },
    { "a high byte", "Zm\xc3\xa9", false, true },
};

Test(codec, b64_refuses)
{
    for (size_t i = 0; i < sizeof b64_bad / sizeof b64_bad[0]; i++) {
        const struct bad_case *c = &b64_bad[i];
        size_t len = strcmp(c->name, "a NUL") == 0 ? 4 : strlen(c->text);
        struct guard g;
        const char *in = guard_copy_str(&g, c->text, len);
        unsigned char out[64];
        cr_assert_eq(codec_b64_decode(in, len, out, c->url, c->pad_ok), CODEC_INVALID, "%s",
                     c->name);
        guard_free(&g);
    }
}

Test(codec, b64_round_trips_every_length_and_byte)
{
    unsigned char bytes[300], back[304];
    char text[400];
    for (size_t i = 0; i < sizeof bytes; i++) bytes[i] = (unsigned char)(i * 7 + 3);
    for (size_t len = 0; len <= sizeof bytes; len++) {
        for (int url = 0; url <= 1; url++) {
            size_t n = codec_b64_encode(bytes, len, text, url);
            cr_assert_eq(n, codec_b64_encoded_len(len, url));
            cr_assert_leq(codec_b64_decoded_max(n), sizeof back);
            cr_assert_eq(codec_b64_decode(text, n, back, url, !url), len, "len %zu url %d", len,
                         url);
            cr_assert_eq(memcmp(back, bytes, len), 0);
        }
    }
}

Test(codec, hex)
{
    char out[8];
    codec_hex_encode((const unsigned char *)"\x00\x01\xfe\xff", 4, out);
    cr_assert_eq(memcmp(out, "0001feff", 8), 0);
    static const struct { const char *name, *text; size_t want; } cases[] = {
        { "empty", "", 0 },
        { "lower case", "0001feff", 4 },
        { "mixed case", "0001FEff", 4 },
        { "odd length", "abc", CODEC_INVALID },
        { "not a digit", "zz", CODEC_INVALID },
        { "a space", "00 1", CODEC_INVALID },
        { "0x prefix", "0x01", CODEC_INVALID },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct guard g;
        size_t len = strlen(cases[i].text);
        const char *in = guard_copy_str(&g, cases[i].text, len);
        unsigned char bytes[8];
        size_t n = codec_hex_decode(in, len, bytes);
        cr_assert_eq(n, cases[i].want, "%s", cases[i].name);
        if (n == 4) cr_assert_eq(memcmp(bytes, "\x00\x01\xfe\xff", 4), 0, "%s", cases[i].name);
        guard_free(&g);
    }
}
