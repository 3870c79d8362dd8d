/* zlib for permessage-deflate. Raw deflate streams (negative windowBits), flushed with
 * Z_SYNC_FLUSH at the end of each message, whose trailing empty block 00 00 FF FF is taken off
 * before sending and put back before inflating (RFC 7692 sections 7.2.1 and 7.2.2). */
#include "pmdz.h"

#include <stdlib.h>
#include <string.h>

#include "ws_frame.h"

/* Every zlib allocation carries its size in front, so the process-wide total is exact. */
static size_t memory_total;

size_t pmdz_memory(void) { return __atomic_load_n(&memory_total, __ATOMIC_RELAXED); }

static voidpf z_alloc(voidpf opaque, uInt items, uInt size)
{
    (void)opaque;
    size_t n = (size_t)items * size;
    size_t *p = malloc(n + sizeof(size_t) * 2);
    if (!p) return Z_NULL;
    p[0] = n;
    __atomic_fetch_add(&memory_total, n, __ATOMIC_RELAXED);
    return p + 2;
}

static void z_free(voidpf opaque, voidpf address)
{
    (void)opaque;
    if (!address) return;
    size_t *p = (size_t *)address - 2;
    __atomic_fetch_sub(&memory_total, p[0], __ATOMIC_RELAXED);
    free(p);
}

z_stream *pmdz_deflater_new(int window_bits, int level)
{
    z_stream *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->zalloc = z_alloc;
    s->zfree = z_free;
    /* memLevel follows the window, as zlib's own memory formula suggests: a 2 KiB window (11)
     * with memLevel 4 costs about 22 KB, against 268 KB for zlib's defaults. */
    int mem_level = window_bits >= 15 ? 8 : window_bits - 7 < 1 ? 1 : window_bits - 7;
    if (deflateInit2(s, level, Z_DEFLATED, -window_bits, mem_level, Z_DEFAULT_STRATEGY) != Z_OK) {
        free(s);
        return NULL;
    }
    return s;
}

z_stream *pmdz_inflater_new(int window_bits)
{
    z_stream *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->zalloc = z_alloc;
    s->zfree = z_free;
    if (inflateInit2(s, -window_bits) != Z_OK) {
        free(s);
        return NULL;
    }
    return s;
}

void pmdz_deflater_free(z_stream *s)
{
    if (!s) return;
    deflateEnd(s);
    free(s);
}

void pmdz_inflater_free(z_stream *s)
{
    if (!s) return;
    inflateEnd(s);
    free(s);
}

void pmdz_conn_free(struct pmdz_conn *zc)
{
    pmdz_deflater_free(zc->def);
    pmdz_inflater_free(zc->inf);
    zc->def = zc->inf = NULL;
}

void pmdz_loop_init(struct pmdz_loop *zl, int level)
{
    memset(zl, 0, sizeof *zl);
    zl->level = level;
}

void pmdz_loop_free(struct pmdz_loop *zl)
{
    for (size_t i = 0; i < sizeof zl->def / sizeof zl->def[0]; i++) pmdz_deflater_free(zl->def[i]);
    pmdz_inflater_free(zl->inf);
    memset(zl->def, 0, sizeof zl->def);
    zl->inf = NULL;
}

z_stream *pmdz_loop_deflater(struct pmdz_loop *zl, int window_bits)
{
    if (window_bits < 9 || window_bits > 15) window_bits = 15;
    if (!zl->def[window_bits]) zl->def[window_bits] = pmdz_deflater_new(window_bits, zl->level);
    return zl->def[window_bits];
}

z_stream *pmdz_loop_inflater(struct pmdz_loop *zl)
{
    if (!zl->inf) zl->inf = pmdz_inflater_new(15);
    else inflateReset(zl->inf);
    return zl->inf;
}

size_t pmdz_payload_offset(const struct obuf *frame)
{
    unsigned len7 = frame->data[1] & 0x7F;
    return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
}

struct obuf *pmdz_frame(z_stream *s, bool reset, unsigned opcode, const void *data, size_t len)
{
    /* deflateBound covers one finished stream; a sync flush adds at most 5 bytes plus a block
     * header, and the slack absorbs the rest. */
    size_t bound = deflateBound(s, (uLong)len) + 16;
    struct obuf *b = obuf_new(WS_FRAME_MAX_SERVER_HEADER + bound);
    if (!b) return NULL;
    uint8_t *out = b->data + WS_FRAME_MAX_SERVER_HEADER;
    s->next_in = (Bytef *)(uintptr_t)data;
    s->avail_in = (uInt)len;
    s->next_out = out;
    s->avail_out = (uInt)bound;
    int rc = deflate(s, Z_SYNC_FLUSH);
    size_t n = bound - s->avail_out;
    bool ok = (rc == Z_OK || rc == Z_BUF_ERROR) && s->avail_in == 0 && s->avail_out > 0 && n >= 4;
    if (reset) deflateReset(s);
    if (!ok || (reset && n - 4 >= len)) {
        obuf_unref(b);
        return NULL;
    }
    n -= 4; /* the empty stored block 00 00 FF FF that ends the sync flush */
    uint8_t hdr[WS_FRAME_MAX_SERVER_HEADER];
    size_t hl = ws_frame_build_header(hdr, true, WS_RSV1, opcode, n);
    memcpy(b->data, hdr, hl);
    memmove(b->data + hl, out, n);
    b->len = hl + n;
    return b;
}

int pmdz_sync(z_stream *s, const void *data, size_t len)
{
    /* Only the last window's worth matters, and zlib keeps only that. */
    size_t window = 1u << 15;
    if (len > window) {
        data = (const uint8_t *)data + (len - window);
        len = window;
    }
    return deflateSetDictionary(s, data, (uInt)len) == Z_OK ? 0 : -1;
}

ssize_t pmdz_inflate(z_stream *s, const uint8_t *in, size_t len, uint64_t max, uint8_t **out)
{
    static const uint8_t tail[4] = { 0x00, 0x00, 0xFF, 0xFF };
    *out = NULL;
    size_t cap = len * 4 < 16384 ? 16384 : len * 4;
    if (max && cap > max + 1) cap = (size_t)max + 1;
    uint8_t *buf = malloc(cap);
    if (!buf) return PMDZ_E_NOMEM;
    size_t have = 0;
    s->next_in = (Bytef *)(uintptr_t)in;
    s->avail_in = (uInt)len;
    bool tail_fed = false;
    for (;;) {
        if (s->avail_in == 0 && !tail_fed) {
            s->next_in = (Bytef *)(uintptr_t)tail;
            s->avail_in = sizeof tail;
            tail_fed = true;
        }
        if (have == cap) {
            /* One byte over max is enough to know the message is too big: never more. */
            if (max && have > max) goto too_big;
            size_t ncap = cap * 2;
            if (max && ncap > max + 1) ncap = (size_t)max + 1;
            uint8_t *p = realloc(buf, ncap);
            if (!p) {
                free(buf);
                return PMDZ_E_NOMEM;
            }
            buf = p;
            cap = ncap;
        }
        s->next_out = buf + have;
        s->avail_out = (uInt)(cap - have);
        int rc = inflate(s, Z_SYNC_FLUSH);
        have = cap - s->avail_out;
        if (max && have > max) goto too_big;
        if (rc == Z_STREAM_END) {
            /* A final block (BFINAL) ends the deflate stream: the client may do that, but then
             * any bytes after it are not part of it. Start over for the next message. */
            inflateReset(s);
            if (s->avail_in == 0 || tail_fed) break;
            continue;
        }
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            free(buf);
            return PMDZ_E_DATA;
        }
        if (tail_fed && s->avail_in == 0 && s->avail_out > 0) break;
    }
    if (have == 0) {
        free(buf);
        return 0;
    }
    *out = buf;
    return (ssize_t)have;

too_big:
    free(buf);
    return PMDZ_E_TOO_BIG;
}
