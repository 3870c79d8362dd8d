/* Internal to conn.c and conn_http.c: the two halves of a connection call each other through
 * these. Nothing else includes this. */
#ifndef MOONWIRE_CONN_INTERNAL_H
#define MOONWIRE_CONN_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conn.h"

/* A short tag for log lines: "conn 12 127.0.0.1". */
#define CONN_FMT "conn %llu %s"
#define CONN_ARGS(c, ip) (unsigned long long)(c)->id, ip

static inline const struct cfg_limits *conn_limits(const struct conn *c) { return c->cl->limits; }

/* Keeps the loop's total of queued bytes up to date after the queue changed from before bytes
 * (modular arithmetic: a shrink subtracts). */
static inline void conn_queue_changed(struct conn *c, size_t before)
{
    c->cl->queued_bytes += c->outq.bytes - before;
}

/* conn.c */
void conn_write(struct conn *c, const void *p, size_t len); /* queued for the next flush */
void conn_flush(struct conn *c);                            /* writes out the queue */
void conn_drop(struct conn *c, const char *why);            /* gone now, no close handshake */
void conn_linger(struct conn *c);                           /* flush, FIN, wait for the peer's */
void conn_arm_timer(struct conn *c, double after);
void conn_shut_write_if_done(struct conn *c);
void conn_read_frames(struct conn *c, uint8_t *data, size_t len);

/* conn_http.c */
void conn_read_head(struct conn *c, uint8_t *data, size_t len);
void conn_respond_error(struct conn *c, int status, const char *why, const char *headers,
                        enum ctr_refusal reason);
bool conn_feed_file(struct conn *c); /* false: the connection was dropped */
void conn_end_file(struct conn *c);
/* Frees the kept request head (and body), giving its bytes back to the server's bounds. */
void conn_release_head(struct conn *c);

#endif
