/* One client connection: the HTTP upgrade, the WebSocket session and the close handshake.
 *
 * Lifecycle:  HANDSHAKE --101--> OPEN --we send close--> CLOSING --peer's close--> LINGER --> DEAD
 *                 |                |--peer's close / protocol error -------------> LINGER
 *                 '-- HTTP error response ---------------------------------------> LINGER
 * LINGER flushes what is queued, shuts down our side (FIN) and discards input until the peer
 * closes too or close_timeout passes; closing at once could turn unread input into a reset that
 * destroys the close frame or error response still in flight. Losing the socket in any state
 * goes straight to DEAD.
 * A connection is never freed inside one of its own callbacks: DEAD connections, and those whose
 * app must hear about the close, wait on the server's pending list for the sweep that runs before
 * the loop blocks (server.c). */
#ifndef MOONWIRE_CONN_H
#define MOONWIRE_CONN_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "outq.h"
#include "ratelimit.h"
#include "topics.h"
#include "transport.h"
#include "ws_reader.h"

struct server;
struct lb_app;
struct sf_stream;
struct tls_context;
struct ip_entry;

enum conn_state {
    CONN_HANDSHAKE, /* reading the HTTP request */
    CONN_OPEN,      /* WebSocket open */
    CONN_CLOSING,   /* we sent a close frame and wait for the peer's */
    CONN_LINGER,    /* nothing more to say: flush, half-close, wait for the peer's FIN */
    CONN_DEAD,      /* socket closed; freed by the sweep */
};

/* Why reading is paused (bits of conn->paused). */
enum {
    PAUSE_BACKPRESSURE = 1, /* the send queue is past send_buffer */
    PAUSE_THROTTLE = 2,     /* over a rate with limits.throttle, or over bytes_per_second */
};

/* Results of conn_send_message. */
enum {
    CONN_SENT = 0,          /* written or queued, queue under send_buffer */
    CONN_BACKPRESSURE = 1,  /* queued, but the queue is now past send_buffer */
    CONN_CLOSED = -1,       /* not open: nothing was sent */
};

union conn_addr {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
};

struct conn {
    struct server *srv;
    uint64_t id;            /* unique for the life of the process; what Lua holds */
    uint32_t slot;          /* index in the server's connection table */
    int fd;
    const struct transport *tr; /* TCP, or TLS over it */
    void *tls;                  /* the transport's TLS state (an SSL *), or NULL */
    struct tls_context *tls_ctx;
    uint8_t io_wants;           /* IO_READ_WANTS_WRITE, IO_WRITE_WANTS_READ (transport.h) */
    ev_io io;               /* one watcher; its events follow update_io in conn.c */
    ev_timer timer;         /* armed for the earliest of deadline and throttle_until */
    double deadline;        /* the state's: handshake, idle check or close; 0: none */
    double throttle_until;  /* when a throttling pause ends; 0: none */
    ev_tstamp last_rx;      /* when bytes last arrived (idle detection) */
    uint8_t state;          /* enum conn_state */
    uint8_t paused;         /* why reading is stopped: PAUSE_* bits, 0 when it is not */
    bool wr_shut;           /* our side is shut down (FIN sent) */
    bool ping_sent;         /* an idle ping is outstanding */
    bool write_blocked;     /* output waits for the socket to be writable */
    bool app_open;          /* app.open ran: app.close is owed */
    bool notify_close;      /* app.close is due at the next sweep */
    bool pending;           /* on the server's pending list */
    bool want_drain;        /* a send reported backpressure: app.drain is owed */
    bool dirty;             /* on the server's list of connections to flush */
    union conn_addr peer;

    /* Admission: the address entry this connection counts against, either as one of its
     * connections (counted) or as one being refused with refuse_status once its request has
     * arrived. */
    struct ip_entry *ip;
    bool counted;
    uint16_t refuse_status;
    const char *refuse_why;

    /* Rates: messages and bytes. */
    struct bucket messages;
    struct bucket bytes;

    /* Handshake: the request head while it arrives in pieces. */
    char *head;
    uint32_t head_len;
    uint32_t head_cap;
    uint32_t head_scan;

    /* WebSocket: the reader, and a message arriving in pieces. */
    struct ws_reader reader;
    uint8_t *msg;
    size_t msg_len;
    size_t msg_cap;

    struct outq outq;
    struct sf_stream *file; /* a static file being sent after its headers, or NULL */
    struct topic_set topics; /* the topics this connection is subscribed to */

    /* The app serving this connection and its Lua-side handle (a registry reference). */
    struct lb_app *app;
    int lua_ref;
    char *path;             /* request path, without the query */
    char *protocol;         /* negotiated subprotocol, or NULL */

    /* Why the WebSocket closed, for app.close. */
    uint16_t close_code;
    char *close_reason;

    struct conn *next_pending;
    struct conn *next_dirty;
};

/* Takes over an accepted, non-blocking socket; with tls, the connection speaks TLS on it.
 * Returns the connection (in HANDSHAKE, with its watchers started), or NULL when out of memory
 * (the socket is then closed). */
struct conn *conn_new(struct server *srv, int fd, const union conn_addr *peer,
                      struct tls_context *tls);

/* Marks c, just made, to be answered with status and why (and closed) once its request has
 * arrived, instead of upgraded. It gets a short deadline: a refusal is not worth waiting for. */
void conn_refuse(struct conn *c, int status, const char *why);

/* Frees a DEAD connection. Only the server's sweep calls this. */
void conn_free(struct conn *c);

/* Sends a text or binary message. Returns CONN_SENT, CONN_BACKPRESSURE (queued past
 * send_buffer: stop sending until app.drain) or CONN_CLOSED (nothing sent). */
int conn_send_message(struct conn *c, const void *data, size_t len, bool binary);

/* Queues a frame built once for many receivers (a publish): the queue holds a reference, not a
 * copy. Returns as conn_send_message. */
int conn_send_shared(struct conn *c, struct obuf *frame);

/* Writes out the queue (the server calls this for every connection marked dirty, before the
 * loop blocks, and libev when the socket is writable again). */
void conn_flush(struct conn *c);

/* Starts the close handshake with code (a valid close code, or 0 for none) and reason. Does
 * nothing unless the connection is open. */
void conn_close(struct conn *c, unsigned code, const char *reason, size_t reason_len);

/* Drops the connection at once, without a close handshake (server shutdown past its timeout). */
void conn_abort(struct conn *c);

/* The sweep's work for this connection: app.close if owed, then the free if DEAD.
 * Returns true when c was freed. */
bool conn_sweep(struct conn *c);

/* Writes the peer's address as text ("127.0.0.1", "::1") into buf. */
void conn_format_ip(const struct conn *c, char *buf, size_t len);

#endif
