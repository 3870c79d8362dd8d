/* Connections: the HTTP upgrade, the WebSocket session and the close handshake of each client,
 * and the table of one loop's connections.
 *
 * Lifecycle:  HANDSHAKE --101--> OPEN --we send close--> CLOSING --peer's close--> LINGER --> DEAD
 *                 |                |--peer's close / protocol error -------------> LINGER
 *                 '-- HTTP error response ---------------------------------------> LINGER
 *                 '-- app.http answer, keep-alive: back to HANDSHAKE for the next request
 * LINGER flushes what is queued, shuts down our side (FIN) and discards input until the peer
 * closes too or close_timeout passes; closing at once could turn unread input into a reset that
 * destroys the close frame or error response still in flight. Losing the socket in any state
 * goes straight to DEAD.
 *
 * The layer above talks to connections through two small tables of callbacks, never the other
 * way round: the owner of the loop (the server) answers "who serves this request?" and hears
 * when a connection is freed (struct conn_host); whoever serves a path (an app) hears what
 * happens on its connections (struct conn_handler): the upgrade request, the open, each read's
 * batch of messages, the end, the close, the drain and the free. One indirect call per read
 * batch, never one per message.
 *
 * A connection is never freed inside one of its own callbacks: DEAD connections, and those whose
 * handler must hear about the close, wait on the loop's pending list for the sweep that runs
 * before the loop blocks (conn_loop's prepare watcher). */
#ifndef MOONWIRE_CONN_H
#define MOONWIRE_CONN_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "config.h"
#include "counters.h"
#include "handshake.h"
#include "http.h"
#include "outq.h"
#include "pmdz.h"
#include "ratelimit.h"
#include "topics.h"
#include "transport.h"
#include "ws_reader.h"

struct conn;
struct conn_loop;
struct sf_stream;
struct tls_context;

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
    PAUSE_HANDLER = 4,      /* the handler holds input back (conn_hold_input) */
};

/* A handler's upgrade verdict status, or its http callback's result: the answer comes later,
 * through conn_answer. */
#define CONN_WAIT 1

/* Results of conn_send_message and conn_send_shared. */
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

/* ---- what the layer above provides --------------------------------------------------------- */

/* One whole message, pointing into the loop's read buffer or a reassembled message. */
struct conn_message {
    const uint8_t *data;
    size_t len;
    bool binary;
};

/* What a handler's upgrade callback decided. status 0: accept, with protocol (if protocol_len)
 * to answer in Sec-WebSocket-Protocol. Otherwise refuse with status and reason (the response
 * body); failed says the handler itself failed (counted as an error, not a refusal). Either
 * way, headers holds extra "Name: value\r\n" lines for the response (may be empty).
 * status CONN_WAIT: the handler decides later, with conn_answer. */
struct conn_verdict {
    int status;
    bool failed;
    char reason[256];
    char headers[1024];
    char protocol[128];
    size_t protocol_len;
    /* When protocol is empty: this subprotocol, if the client offered it ("" for none). The
     * handler's default, e.g. moonwire.v1 for an app with channels. */
    char fallback_protocol[32];
};

/* A handler's answer to a plain HTTP request. body is malloc'd (or NULL when empty); the
 * connection frees it. headers: extra "Name: value\r\n" lines, or NULL. content_type and
 * headers may point into text, room for what the handler composes (the response is zeroed
 * before the call). A Cache-Control line in headers replaces the default "no-store". */
struct conn_response {
    int status;
    const char *content_type;
    const char *headers;
    char *body;
    size_t body_len;
    char text[1280];
};

/* What serves a path (an app), with ctx its first argument. After any callback the connection
 * may have changed state (the callback may have closed it): the connection re-checks. */
struct conn_handler {
    /* A plain request (not an upgrade) on the handler's path: fill resp (zeroed) and return
     * 0, or return -1 to have the connection answer as without this callback (static files,
     * else 426, or 405 for a method other than GET and HEAD). NULL: always the latter.
     * Without serves_http, or while it says false, only GET and HEAD come here, their body
     * unread. While it says true, every method comes here, with its Content-Length body
     * (up to limits.max_http_body) in conn_request_body; a static file still answers a GET
     * or HEAD it exists for. */
    int (*http)(void *ctx, struct conn *c, const struct http_request *req,
                const struct hs_upgrade *up, struct conn_response *resp);
    /* (http may also return CONN_WAIT: the response comes later through conn_answer; the
     * request's body must have been copied by then, as resp.) */
    /* Whether http answers every plain request now (an app that defines app.http). May be
     * NULL. Asked before the body is read, so it must not run application code. */
    bool (*serves_http)(void *ctx);
    /* A valid upgrade request: fill v (zeroed before the call). */
    void (*upgrade)(void *ctx, struct conn *c, const struct http_request *req,
                    const struct hs_upgrade *up, struct conn_verdict *v);
    /* The 101 is out. Return 0, or -1 when the handler failed: the connection closes with 1011. */
    int (*open)(void *ctx, struct conn *c);
    /* The whole messages of one read, in order. Return 0, or -1 as open. */
    int (*messages)(void *ctx, struct conn *c, const struct conn_message *msgs, size_t n);
    /* The WebSocket has ended (at once, from inside the event that ended it): drop what counts
     * the connection as a member (subscriptions). No application code may run here. */
    void (*ended)(void *ctx, struct conn *c);
    /* Later, at the sweep: how it ended, for the application. */
    void (*close)(void *ctx, struct conn *c, unsigned code, const char *reason, size_t len);
    /* The send queue went back under send_buffer after a send reported backpressure. */
    void (*drain)(void *ctx, struct conn *c);
    /* The connection is about to be freed: let go of everything that refers to it. */
    void (*gone)(void *ctx, struct conn *c);
};

/* The server's answer to "who serves this request?". */
struct conn_route {
    const struct conn_handler *handler;
    void *ctx;
    const char *public_dir; /* static files for plain GET/HEAD, or NULL */
    size_t mount_len;       /* bytes of the path the mount covers: "/chat" 5, "/" 0 */
    /* When refused (route returned a status): why, what to count, extra response headers. */
    const char *why;
    enum ctr_refusal reason;
    const char *headers;
    char text[400]; /* room for a why that has to be composed */
};

struct conn_host {
    /* A complete request: an upgrade (upgrade true, already validated) or a plain GET/HEAD.
     * Fill r and return 0, or return an HTTP status (with r->why, r->reason) to refuse. */
    int (*route)(void *ctx, struct conn *c, const struct hs_upgrade *up, bool upgrade,
                 struct conn_route *r);
    /* c has left the table and is about to be freed; conn_count already excludes it. */
    void (*freed)(void *ctx, struct conn *c);
    /* c's buffer for a message arriving in pieces goes from before to after bytes. Return 0 to
     * allow it, or a close code (with *why) to refuse a growth; shrinking is always allowed.
     * Bounds the memory that unfinished messages pin, per address and in all. */
    int (*buffering)(void *ctx, struct conn *c, size_t before, size_t after, const char **why);
    /* Only after route returned CONN_ROUTE_ELSEWHERE (NULL otherwise): c's request belongs to
     * another loop. bytes[0..len) is all c has read from the start of that request (its head,
     * and whatever came after it). Take c's socket (conn_give_away) and return 0, or return an
     * HTTP status to answer instead (with *why). Called with c in HANDSHAKE, never open. */
    int (*hand_over)(void *ctx, struct conn *c, const uint8_t *bytes, size_t len,
                     const char **why);
};

/* route's answer for a request served by another loop (an app pinned to one worker): the
 * connection is handed over (conn_host.hand_over) before anything of the request is answered. */
#define CONN_ROUTE_ELSEWHERE 1

/* ---- one connection ------------------------------------------------------------------------ */

struct conn {
    struct conn_loop *cl;
    uint64_t id;            /* unique for the life of the loop; what Lua holds */
    uint32_t slot;          /* index in the loop's connection table */
    struct tio tr;          /* TCP, or TLS over it */
    ev_io io;               /* one watcher; its events follow update_io in conn.c */
    ev_timer timer;         /* armed for the earliest of deadline and throttle_until */
    double deadline;        /* the state's: handshake, idle check or close; 0: none */
    double throttle_until;  /* when a throttling pause ends; 0: none */
    ev_tstamp last_rx;      /* when bytes last arrived (idle detection) */
    ev_tstamp started;      /* when it was accepted (access log: durations, lifetime) */
    uint64_t messages_in;   /* whole messages received, and sent (access log) */
    uint64_t messages_out;
    uint8_t state;          /* enum conn_state */
    uint8_t paused;         /* why reading is stopped: PAUSE_* bits, 0 when it is not */
    bool wr_shut;           /* our side is shut down (FIN sent) */
    bool ping_sent;         /* an idle ping is outstanding */
    bool write_blocked;     /* output waits for the socket to be writable */
    bool app_open;          /* the handler's open ran: its close is owed */
    bool notify_close;      /* the handler's close is due at the next sweep */
    bool pending;           /* on the loop's pending list */
    bool want_drain;        /* a send reported backpressure: the handler's drain is owed */
    bool dirty;             /* on the loop's list of connections to flush */
    bool envelope;          /* speaks moonwire.v1: publications reach it as envelopes
                             * (pubsub.c), its handler wraps what it sends (lua_channels.c) */
    union conn_addr peer;

    /* Refused by admission: answered with refuse_status once its request has arrived. */
    uint16_t refuse_status;
    const char *refuse_why;
    /* The owner's record for this connection (the server's admission entry, and which of its
     * listeners it came through); never read here. */
    void *host_data;
    bool host_flag;
    uint8_t host_tag;

    /* Rates: messages and bytes. */
    struct bucket messages;
    struct bucket bytes;

    /* Handshake: the request head while it arrives in pieces, and then the body of a plain
     * request for the handler's http: request_len is head and body together once the head
     * has said how long the body is (0 before), and the body is in head until both are in. */
    char *head;
    uint32_t head_len;
    uint32_t head_cap;
    uint32_t head_scan;
    uint32_t request_len;
    uint8_t requests;       /* plain requests answered on this connection (keep-alive) */
    const char *body;       /* during the handler's http: the request body */
    size_t body_len;

    /* permessage-deflate, when negotiated: CONN_PMD_* bits, the windows agreed (the server's
     * and the client's), and the connection's own zlib streams in context mode (NULL until
     * first used; shared mode never has any). */
    uint8_t pmd;
    uint8_t pmd_server_bits;
    uint8_t pmd_client_bits;
    struct pmdz_conn *z;

    /* WebSocket: the reader, and a message arriving in pieces. */
    struct ws_reader reader;
    uint8_t *msg;
    size_t msg_len;
    size_t msg_cap;

    struct outq outq;
    struct sf_stream *file; /* a static file being sent after its headers, or NULL */
    struct topic_set topics; /* the topics this connection is subscribed to (pub/sub's) */

    /* Who serves it (from the route), and the handler's own handle for it (the Lua side keeps
     * a registry reference here). */
    const struct conn_handler *handler;
    void *handler_ctx;
    int handler_ref;
    void *handler_data;     /* the handler's own record, or NULL (never read here) */
    /* A handler's answer that came later (conn_answer): a conn_verdict for an upgrade, a
     * conn_response for a plain request; the request is read again from c->head to use it. */
    void *answer;
    bool awaiting;          /* the handler decides later: the request is kept, reading held */
    bool answer_http;       /* what is awaited is a conn_response (else a conn_verdict) */
    char *path;             /* request path, without the query */
    char *protocol;         /* negotiated subprotocol, or NULL */

    /* Why the WebSocket closed, for the handler's close. */
    uint16_t close_code;
    char *close_reason;

    struct conn *next_pending;
    struct conn *next_dirty;
};

/* conn->pmd bits. */
enum {
    CONN_PMD_ON = 1,             /* permessage-deflate negotiated */
    CONN_PMD_SERVER_CONTEXT = 2, /* our compressor keeps its window between messages */
    CONN_PMD_CLIENT_CONTEXT = 4, /* the client's does: we keep an inflater for it */
};

/* conn->handler_ref of a connection whose handler has not given it one (Lua's LUA_NOREF). */
#define CONN_NO_REF (-2)

/* Takes over an accepted, non-blocking socket; with tls, the connection speaks TLS on it.
 * Returns the connection (in HANDSHAKE, in the table, with its watchers started), or NULL when
 * out of memory (the socket is then closed). */
struct conn *conn_new(struct conn_loop *cl, int fd, const union conn_addr *peer,
                      struct tls_context *tls);

/* Takes c's socket away from it (conn_host.hand_over): c stops watching it, ends as if dropped
 * (without a close, and without its handler hearing anything) and is freed by the sweep; the
 * socket stays open for whoever took it. Returns the socket, or -1 when c has none to give (it
 * speaks TLS, or is not in HANDSHAKE). */
int conn_give_away(struct conn *c);

/* Marks c, just made, to be answered with status and why (and closed) once its request has
 * arrived, instead of upgraded (the caller has counted the refusal). It gets a short
 * deadline: a refusal is not worth waiting for. */
void conn_refuse(struct conn *c, int status, const char *why);

/* Sends a text or binary message. Returns CONN_SENT, CONN_BACKPRESSURE (queued past
 * send_buffer: stop sending until the drain callback) or CONN_CLOSED (nothing sent). */
int conn_send_message(struct conn *c, const void *data, size_t len, bool binary);

/* Queues a frame built once for many receivers (a publish): the queue holds a reference, not a
 * copy. Returns as conn_send_message. The caller counts what it sends this way (one addition
 * per publish instead of one per receiver). */
int conn_send_shared(struct conn *c, struct obuf *frame);

/* A publish's frames, built once per loop and shared by every receiver: the plain frame, and
 * compressed ones made on first need, one per server window size (receivers that negotiated
 * permessage-deflate get the one for their window; see docs/design.md). */
struct conn_fanout {
    struct obuf *plain;
    struct obuf *packed[16]; /* by window bits; NULL: not made yet */
    bool tried[16];          /* made or found not worth it */
};

/* conn_send_shared for a publish: picks (and makes, once) the frame c can take, and keeps a
 * context-mode compressor in step with what its client's inflater saw. */
int conn_send_fanout(struct conn *c, struct conn_fanout *f);
/* Releases the compressed frames (not plain). */
void conn_fanout_done(struct conn_fanout *f);

/* Starts the close handshake with code (a valid close code, or 0 for none) and reason. Does
 * nothing unless the connection is open. */
void conn_close(struct conn *c, unsigned code, const char *reason, size_t reason_len);

/* The answer to a request whose handler returned CONN_WAIT: answer is a malloc'd conn_verdict
 * (upgrade) or conn_response (plain request), which c takes (and frees, also when it is gone
 * by then: pass it anyway, or free it when conn_find no longer finds c). The request is then
 * handled as if the handler had answered at once. */
void conn_answer(struct conn *c, void *answer);

/* Stops (hold) or restarts reading from c for its handler: one that is still busy with earlier
 * messages and has queued enough of the later ones. */
void conn_hold_input(struct conn *c, bool hold);

/* Drops the connection at once, without a close handshake (server shutdown past its timeout). */
void conn_abort(struct conn *c);

/* Writes the peer's address as text ("127.0.0.1", "::1") into buf. */
void conn_format_ip(const struct conn *c, char *buf, size_t len);

/* What the layers above may read. */
static inline uint64_t conn_id(const struct conn *c) { return c->id; }
static inline uint32_t conn_slot(const struct conn *c) { return c->slot; }
static inline bool conn_is_open(const struct conn *c) { return c->state == CONN_OPEN; }
/* Open, and its handler's open has run (so its close is owed): what apps count as theirs. */
static inline bool conn_is_established(const struct conn *c)
{
    return c->state == CONN_OPEN && c->app_open;
}
static inline const char *conn_path(const struct conn *c) { return c->path; }
static inline const char *conn_protocol(const struct conn *c) { return c->protocol; }
static inline void *conn_handler_ctx(const struct conn *c) { return c->handler_ctx; }
static inline int conn_handler_ref(const struct conn *c) { return c->handler_ref; }
static inline void conn_set_handler_ref(struct conn *c, int ref) { c->handler_ref = ref; }
static inline void *conn_handler_data(const struct conn *c) { return c->handler_data; }
static inline void conn_set_handler_data(struct conn *c, void *p) { c->handler_data = p; }
static inline struct topic_set *conn_topics(struct conn *c) { return &c->topics; }
/* During the handler's http: the request body (len 0 when there is none). It points into the
 * connection's buffer: copy what must outlive the call. */
static inline const char *conn_request_body(const struct conn *c, size_t *len)
{
    *len = c->body_len;
    return c->body ? c->body : "";
}

/* ---- the loop's connections ---------------------------------------------------------------- */

#define CONN_READ_BUFFER (64 * 1024)
/* Whole messages of one read handed to the handler in one call. */
#define CONN_BATCH 256

/* Everything the connections of one loop share: the loop, the limits, the counters, the table
 * of connections by slot, the lists of connections to flush and to sweep, and the scratch
 * every connection reads into (64 KiB), so an idle connection needs no buffer of its own. */
struct conn_loop {
    struct ev_loop *loop;
    const struct cfg_limits *limits;
    struct counters *counters;
    const struct conn_host *host;
    void *host_ctx;
    bool access_log;          /* a line per upgrade and per close (log.access) */

    /* Connections by slot; ids are never reused, slots are. */
    struct conn **slots;
    uint32_t nslots;
    uint32_t *free_slots;
    uint32_t nfree;
    uint64_t next_id;
    size_t count;

    /* Connections with work for the sweep (the handler's close to call, memory to free), and
     * connections with output to flush; both are handled before the loop blocks. */
    struct conn *pending_head;
    struct conn *pending_tail;
    struct conn *dirty_head;
    ev_prepare before_block;

    size_t queued_bytes;      /* in every connection's send queue (a gauge for metrics) */
    /* permessage-deflate: the config (NULL or disabled: offers declined) and this loop's zlib
     * streams without context. Set by the owner after conn_loop_init. */
    const struct cfg_deflate *deflate;
    struct pmdz_loop z;
    size_t inflated;          /* bytes inflated in the current read (conn_read yields past 4 MiB) */
    size_t files;             /* static files being sent (each an open descriptor) */
    size_t nbatch;
    struct conn_message batch[CONN_BATCH]; /* of the connection being read; into rbuf */
    uint8_t rbuf[CONN_READ_BUFFER];
};

/* Prepares cl on loop (starting its prepare watcher). limits and counters must outlive it.
 * Access lines are on (cl->access_log). Returns 0. */
int conn_loop_init(struct conn_loop *cl, struct ev_loop *loop, const struct cfg_limits *limits,
                   struct counters *counters, const struct conn_host *host, void *host_ctx);

/* Drops every connection, runs the sweep (handlers hear their closes) and frees the table. */
void conn_loop_destroy(struct conn_loop *cl);

/* Flushes what this turn queued and runs the sweep (the prepare watcher does it before the
 * loop blocks; tests and shutdown call it directly). */
void conn_loop_settle(struct conn_loop *cl);

/* The connection in slot with id, or NULL when it is gone. */
struct conn *conn_find(const struct conn_loop *cl, uint32_t slot, uint64_t id);

/* Iterates the connections: conn_first, then conn_next until NULL. */
struct conn *conn_first(const struct conn_loop *cl);
struct conn *conn_next(const struct conn_loop *cl, const struct conn *c);

static inline size_t conn_count(const struct conn_loop *cl) { return cl->count; }

#endif
