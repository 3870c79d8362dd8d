/* permessage-deflate's zlib side (RFC 7692 section 7.2): compressing a message into a frame,
 * inflating a received one under a size cap, and the memory all streams hold.
 *
 * Streams come in two kinds. A worker's own (struct pmdz_loop): one inflater, and one deflater
 * per window size in use, reset after every message, so connections without context takeover
 * hold no zlib state at all. A connection's own (struct pmdz_conn, context mode): allocated on
 * first use, with the small window negotiated. Every byte zlib allocates is counted in a
 * process-wide total (pmdz_memory), which the context mode's budget and the metrics read. */
#ifndef MOONWIRE_PMDZ_H
#define MOONWIRE_PMDZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <zlib.h>

#include "outq.h"

/* Results of pmdz_inflate besides a length. */
enum {
    PMDZ_E_TOO_BIG = -1009, /* the inflated message passed max (close 1009) */
    PMDZ_E_DATA = -1002,    /* not a valid deflate stream (close 1002) */
    PMDZ_E_NOMEM = -1011,   /* out of memory (close 1011) */
};

/* A worker's streams without context: one deflater per window size (9..15), made when first
 * needed, and one inflater with the largest window (it can inflate any client's data). */
struct pmdz_loop {
    z_stream *def[16];
    z_stream *inf;
    int level;
};

/* A connection's streams with context takeover; either may be NULL (not made yet, or the
 * deflater freed after a quiet period). */
struct pmdz_conn {
    z_stream *def;
    z_stream *inf;
    bool used;   /* the deflater compressed since the last quiet check */
};

/* Bytes zlib holds now, every stream of every worker together. */
size_t pmdz_memory(void);

void pmdz_loop_init(struct pmdz_loop *zl, int level);
void pmdz_loop_free(struct pmdz_loop *zl);

/* The worker's deflater for window_bits (9..15), made on first use; NULL when out of memory. */
z_stream *pmdz_loop_deflater(struct pmdz_loop *zl, int window_bits);
/* The worker's inflater, reset for a new message; NULL when out of memory. */
z_stream *pmdz_loop_inflater(struct pmdz_loop *zl);

/* Makes a deflater (window_bits 9..15, a small memLevel for small windows) or an inflater
 * (8..15). Returns the stream or NULL when out of memory. */
z_stream *pmdz_deflater_new(int window_bits, int level);
z_stream *pmdz_inflater_new(int window_bits);
void pmdz_deflater_free(z_stream *s);
void pmdz_inflater_free(z_stream *s);
void pmdz_conn_free(struct pmdz_conn *zc);

/* Compresses data[0..len) with s into a new buffer holding a whole server frame (FIN, RSV1,
 * opcode, the compressed payload without its 00 00 FF FF tail). reset: the stream keeps no
 * context (it is reset afterwards). With reset, returns NULL too when compressing does not make
 * the message smaller (send it plain: the stream is back where it was). Without reset (a
 * context stream, whose window now holds data), a frame is always returned unless out of
 * memory or zlib failed; the caller must then drop the stream's context. */
struct obuf *pmdz_frame(z_stream *s, bool reset, unsigned opcode, const void *data, size_t len);

/* Where the payload of a frame built by pmdz_frame or ps_publish starts. */
size_t pmdz_payload_offset(const struct obuf *frame);

/* Tells a context deflater that the client's window now also holds data (a frame compressed
 * elsewhere and sent to it): deflateSetDictionary, legal right after a flushed block on raw
 * deflate. Returns 0, or -1 when zlib refused (then drop the stream). */
int pmdz_sync(z_stream *s, const void *data, size_t len);

/* Inflates in[0..len), a whole compressed message without its tail, with s (reset before a
 * message when there is no context), into a malloc'd buffer *out, stopping as soon as the
 * output passes max bytes. Returns the inflated length (*out to free; NULL for 0 bytes), or a
 * PMDZ_E_* (nothing to free). Memory: the output grows by doubling up to max + 16 KiB. */
ssize_t pmdz_inflate(z_stream *s, const uint8_t *in, size_t len, uint64_t max, uint8_t **out);

#endif
