/* How a connection moves bytes: plain TCP, or TLS over it. The connection code calls these and
 * never the socket directly, so nothing above this interface knows which one it has. */
#ifndef MOONWIRE_TRANSPORT_H
#define MOONWIRE_TRANSPORT_H

#include <stdbool.h>
#include <sys/types.h>
#include <sys/uio.h>

struct conn;

struct transport {
    const char *name; /* "tcp" or "tls", for log lines */
    /* Reads up to len bytes into buf. Returns the count (> 0); 0 at the end of the stream; or
     * -1 with errno: EAGAIN when nothing can be read now (with TLS, c->io_wants may then ask
     * for the socket to be writable first), anything else when the connection failed (TLS
     * errors are EPROTO, already logged with their reason). */
    ssize_t (*read)(struct conn *c, void *buf, size_t len);
    /* Writes from iov[0..n). Returns the bytes written (> 0), or -1 with errno: EAGAIN when
     * nothing could be written now (see io_wants), anything else when the connection failed.
     * After EAGAIN the next call must offer the same bytes first (TLS retries records). */
    ssize_t (*writev)(struct conn *c, const struct iovec *iov, int n);
    /* True when bytes are ready to read that the socket's readiness will not announce: TLS
     * holds decrypted or undecrypted records in its own buffer. */
    bool (*pending)(const struct conn *c);
    /* Ends our direction of the stream (TLS sends close_notify first). */
    void (*shutdown)(struct conn *c);
    /* Releases the transport's state and closes the socket. */
    void (*close)(struct conn *c);
};

/* c->io_wants: what a TLS operation that returned EAGAIN needs before it can go on. */
enum {
    IO_READ_WANTS_WRITE = 1, /* a read waits for the socket to be writable */
    IO_WRITE_WANTS_READ = 2, /* a write waits for the socket to be readable */
};

extern const struct transport transport_tcp;

#endif
