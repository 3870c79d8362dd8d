/* What one loop context has done, as plain 64-bit counters: accepts, refusals by reason, opens,
 * closes by code, messages and bytes in each direction, handler failures by kind, backpressure
 * pauses and slow consumers.
 *
 * Each layer increments the counters where it makes the decision (the server where it admits,
 * the connection where it closes, the Lua side where a handler fails), through a pointer it was
 * given: no locks and no atomics, because only the loop's own thread writes them. A reader on
 * another thread (a metrics endpoint) may see a value a few increments old, never a torn one on
 * the 64-bit machines we run on. Nothing here serves them: that is the metrics module's job. */
#ifndef MOONWIRE_COUNTERS_H
#define MOONWIRE_COUNTERS_H

#include <stdint.h>

/* Why a connection was refused before it became a WebSocket. */
enum ctr_refusal {
    CTR_REFUSED_ORIGIN,      /* 403: origin not allowed */
    CTR_REFUSED_AUTH,        /* app.upgrade said no (any status it chose) */
    CTR_REFUSED_LIMIT,       /* 429/503: per-address or total connection limits */
    CTR_REFUSED_RATE,        /* 429: new connections per second from one address */
    CTR_REFUSED_TIMEOUT,     /* 408, or a TLS handshake that never finished */
    CTR_REFUSED_BAD_REQUEST, /* 400, 405, 426, 431, 505: not a valid upgrade */
    CTR_REFUSED_NOT_FOUND,   /* 404: no app at that path */
    CTR_REFUSED_DRAINING,    /* 503: the server is shutting down */
    CTR_REFUSED_ERROR,       /* 500/503: the server failed (out of memory, a handler raised) */
    CTR_REFUSALS
};

/* How a handler call failed (the sandbox's classification). */
enum ctr_failure {
    CTR_FAILED_ERROR,  /* the code raised */
    CTR_FAILED_BUDGET, /* instruction budget */
    CTR_FAILED_MEMORY, /* memory cap */
    CTR_FAILED_TIME,   /* time limit */
    CTR_FAILURES
};

/* Close codes 1000 to 1015 are counted one by one, the rest (3000-4999 of apps) together. */
#define CTR_CLOSE_FIRST 1000
#define CTR_CLOSE_CODES 17 /* 1000..1015, then "other" */

static inline unsigned ctr_close_index(unsigned code)
{
    return code >= CTR_CLOSE_FIRST && code < CTR_CLOSE_FIRST + CTR_CLOSE_CODES - 1
               ? code - CTR_CLOSE_FIRST
               : CTR_CLOSE_CODES - 1;
}

struct counters {
    uint64_t accepted;              /* TCP connections accepted */
    uint64_t refused[CTR_REFUSALS]; /* connections refused, by reason */
    uint64_t opened;                /* WebSockets opened (101 sent) */
    uint64_t closed[CTR_CLOSE_CODES]; /* WebSockets ended, by the code reported to the app */
    uint64_t messages_in;           /* whole messages received */
    uint64_t bytes_in;              /* bytes read from sockets (TLS: decrypted) */
    uint64_t messages_out;          /* messages queued to connections (each receiver counts) */
    uint64_t bytes_out;             /* bytes written to sockets (TLS: before encryption) */
    uint64_t handler_failures[CTR_FAILURES];
    uint64_t backpressure_pauses;   /* reading paused because the send queue was too long */
    uint64_t slow_consumer_closes;  /* closed with 1008 past max_send_buffer */
    uint64_t publishes;             /* mw.publish calls */
    uint64_t deliveries;            /* messages a publish queued to subscribers */
    uint64_t http_requests;         /* plain HTTP requests answered (static files, 404, 426) */
    uint64_t deflate_compressions;  /* messages compressed (a publish: once per window size) */
    uint64_t inflations;            /* compressed messages received and inflated */
    uint64_t inflate_limit_closes;  /* closed with 1009: a message passed max_message inflated */
};

#endif
