/* wsload's connections and event loop: connect, handshake, frames in and out, close.
 *
 * One thread, one edge-triggered epoll set. Each turn reads every ready socket dry into one
 * big shared buffer, parses the frames in place and hands each complete data message to the
 * mode through run->on_message; whatever the turn queued for a connection (replies, pongs,
 * closes) is written at the end of the turn in a single write. Control frames are answered
 * here; the modes only see data messages. Connections live in one array for the whole run and
 * are never freed while it runs, so a pointer to one stays valid after it closes. */
#ifndef WSLOAD_LOOP_H
#define WSLOAD_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "histogram.h"
#include "payload.h"
#include "wsclient.h"

#define NS_PER_S 1000000000LL
#define LOOP_MAX_EVENTS 1024
/* Error details printed per run; the rest are only counted. */
#define LOOP_MAX_REPORTED 5

enum mode { MODE_ECHO, MODE_BROADCAST, MODE_CONNECT };
enum conn_state { CS_UNUSED, CS_CONNECTING, CS_HANDSHAKE, CS_OPEN, CS_CLOSING, CS_CLOSED };
enum role { ROLE_ECHO, ROLE_SUB, ROLE_PUB, ROLE_IDLE };

/* The command line (wsload.c fills it). */
struct options {
    enum mode mode;
    const char *url;
    const char *publish_url; /* broadcast: the publisher connects here (default: url) */
    uint32_t conns, depth, window;
    size_t size;
    bool binary, quiet;
    double warmup, duration, hold, rate;
    uint32_t src_first, src_last; /* --sources, host order; src_first == 0: none */
    long server_pid;
    int cpu;
};

struct conn {
    int fd;
    uint32_t id; /* index in run->conns; echo payloads carry it */
    uint8_t state, role;
    bool dirty;    /* in run->dirty: to be written at the end of the turn */
    int64_t deadline;
    /* Output waiting for the socket: out[out_off .. out_len). */
    uint8_t *out;
    size_t out_off, out_len, out_cap;
    /* The unfinished frame (or handshake response) the last read ended in. */
    uint8_t *stash;
    size_t stash_len, stash_cap;
    /* A fragmented message being put together; rare, so allocated on first use. */
    uint8_t *frag;
    size_t frag_len;
    uint8_t frag_op;
    bool in_frag;
    char key[WSC_KEY_LEN + 1];
    /* Messages sent with a send time to record: sequences [stamped, sent) get the time of the
     * write that carries them, in stamps[seq & run->ring_mask] (echo only; stamps NULL else). */
    uint64_t sent, stamped;
    int64_t *stamps;
    struct pl_seqtrack track; /* sequences received */
};

struct run;
/* A complete data message (op is WSC_OP_TEXT or WSC_OP_BINARY) that arrived at time now. */
typedef void (*loop_message_fn)(struct run *r, struct conn *c, const uint8_t *p, size_t n,
                                unsigned op, int64_t now);
/* Called once a turn, before the writes: the place to queue traffic driven by the clock. */
typedef void (*loop_turn_fn)(struct run *r);

struct run {
    struct options o;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char host[280]; /* the Host field */
    char path[1024];
    int ep;
    bool no_pwait2;
    loop_message_fn on_message;
    loop_turn_fn on_turn;
    struct conn *conns;
    uint32_t nconns;
    struct conn **dirty;
    uint32_t ndirty;
    uint8_t *rbuf; /* every read lands here, behind the connection's stash */
    size_t rbuf_cap;
    size_t max_payload; /* frames and messages longer than this are refused */
    uint8_t data_op;
    struct pl_pattern pat;
    uint64_t rng;
    uint64_t ring_mask; /* send-time ring: a power of two >= depth, minus one */
    struct hist *hist;
    bool measuring, sending;
    uint32_t next_to_open, pending; /* pending: between connect() and the 101 */
    /* Problems, counted over the whole run (warm-up included). */
    uint64_t failed_open, conn_errors, close_failures;
    uint64_t corrupt, duplicated, reordered, unexpected, pub_errors;
    uint64_t pings; /* answered with a pong */
    unsigned reported;
    /* Counted in the measured window only. */
    uint64_t msgs, bytes;
    /* echo: sent but not yet echoed */
    uint64_t outstanding;
    /* broadcast: completed = publishes whose copy (or a later one) came back */
    struct conn *publisher;
    int64_t pub_t0;
    uint64_t published, completed, pub_measured, sub_unique;
    struct epoll_event events[LOOP_MAX_EVENTS];
};

/* CLOCK_MONOTONIC in nanoseconds. */
int64_t loop_now_ns(void);

/* Prints "wsload: what" and exits with status 1. */
_Noreturn void loop_die(const char *what);

/* realloc that dies when memory runs out. */
void *loop_xrealloc(void *p, size_t n);

/* Prints one error detail to stderr, up to LOOP_MAX_REPORTED a run. */
void loop_report(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A fresh 4-byte frame mask. */
void loop_random_mask(struct run *r, uint8_t mask[4]);

/* Room for n more bytes at c->out + c->out_len; the caller writes them, adds n to out_len and
 * calls loop_mark_dirty. */
uint8_t *loop_out_reserve(struct conn *c, size_t n);

/* Puts c on the list of connections written at the end of this turn. */
void loop_mark_dirty(struct run *r, struct conn *c);

/* Writes every connection on the dirty list (loop_turn does this itself). */
void loop_flush(struct run *r);

/* One turn: waits up to timeout_ns for events, handles them, calls on_turn, writes. */
void loop_turn(struct run *r, int64_t timeout_ns);

/* Opens connections [first, last) with a bounded number in progress and waits for all of them
 * (each has 10 s). Returns how many failed (each also counted in r->failed_open). */
uint32_t loop_open_range(struct run *r, uint32_t first, uint32_t last);

/* Sends close 1000 on every open connection and waits up to 5 s for the server's close frames;
 * a connection without one counts in r->close_failures. */
void loop_close_all(struct run *r);

#endif
