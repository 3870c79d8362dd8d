/* How a connection moves bytes: plain TCP, or TLS over it. The connection embeds a struct tio
 * and calls these; nothing above this interface knows which one it has, and nothing below it
 * knows what a connection is. */
#ifndef MOONWIRE_TRANSPORT_H
#define MOONWIRE_TRANSPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct tio;
struct tls_context;

struct transport {
    const char *name; /* "tcp" or "tls", for log lines */
    /* Reads up to len bytes into buf. Returns the count (> 0); 0 at the end of the stream; or
     * -1 with errno: EAGAIN when nothing can be read now (with TLS, t->wants may then ask for
     * the socket to be writable first), anything else when the connection failed (TLS errors
     * are EPROTO, with OpenSSL's reason in t->error). */
    ssize_t (*read)(struct tio *t, void *buf, size_t len);
    /* Writes from iov[0..n). Returns the bytes written (> 0), or -1 with errno: EAGAIN when
     * nothing could be written now (see wants), anything else when the connection failed.
     * After EAGAIN the next call must offer the same bytes first (TLS retries records). */
    ssize_t (*writev)(struct tio *t, const struct iovec *iov, int n);
    /* True when bytes are ready to read that the socket's readiness will not announce: TLS
     * holds decrypted or undecrypted records in its own buffer. */
    bool (*pending)(const struct tio *t);
    /* Ends our direction of the stream (TLS sends close_notify first). */
    void (*shutdown)(struct tio *t);
    /* Releases the transport's state and closes the socket. */
    void (*close)(struct tio *t);
};

/* t->wants: what a TLS operation that returned EAGAIN needs before it can go on. */
enum {
    IO_READ_WANTS_WRITE = 1, /* a read waits for the socket to be writable */
    IO_WRITE_WANTS_READ = 2, /* a write waits for the socket to be readable */
};

/* One connection's byte stream, embedded in its owner. */
struct tio {
    int fd;
    const struct transport *ops;
    void *tls;                   /* the TLS state (an SSL *), or NULL */
    struct tls_context *tls_ctx; /* the certificates it was accepted with (a reference) */
    const char *error;           /* why the last operation failed with EPROTO: static text */
    uint8_t wants;               /* IO_READ_WANTS_WRITE, IO_WRITE_WANTS_READ */
};

extern const struct transport transport_tcp;

/* Makes t plain TCP on the connected socket fd. */
static inline void tio_init_tcp(struct tio *t, int fd)
{
    *t = (struct tio){ .fd = fd, .ops = &transport_tcp };
}

#endif
