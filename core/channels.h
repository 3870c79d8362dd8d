/* The moonwire.v1 subprotocol's envelopes (docs/protocol.md): parsing what a client sends and
 * writing what the server sends.
 *
 * Pure: no I/O, no Lua, no allocation but the frames the builders return. The parser points
 * into the caller's buffer and never reads past len; strings keep their JSON escapes until
 * ch_unescape copies them out, so a message without escapes costs no copy at all. */
#ifndef MOONWIRE_CHANNELS_H
#define MOONWIRE_CHANNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "outq.h"

#define CH_PROTOCOL "moonwire.v1"
#define CH_PROTOCOL_LEN 11

/* The largest id or offset a client may send: what a JavaScript number holds exactly. */
#define CH_MAX_INTEGER 9007199254740991ULL
/* An epoch longer than this is malformed (the server's are 8 characters). */
#define CH_MAX_EPOCH 32

/* Error codes of ["E", id, code, reason] (docs/protocol.md lists them). */
enum ch_code {
    CH_MALFORMED = 100,       /* not an envelope: bad JSON, wrong shape or types */
    CH_UNKNOWN_OP = 101,      /* an envelope whose op this server does not know */
    CH_BAD_TOPIC = 102,       /* empty, or longer than limits.max_topic_length */
    CH_SUBSCRIBE_DENIED = 103,
    CH_PUBLISH_DENIED = 104,
    CH_TOO_MANY_SUBSCRIPTIONS = 105, /* limits.max_subscriptions, or the app's topic memory */
    CH_ALREADY_SUBSCRIBED = 107,
    CH_HISTORY = 108,         /* a history publication could not be stored */
    CH_INTERNAL = 110,        /* the app's handler failed, or the server ran out of memory */
};

/* A JSON string as it appears in the envelope: the bytes between its quotes. */
struct ch_str {
    const char *p;
    size_t len;
    bool escaped; /* has backslash escapes: ch_unescape it before use */
};

/* What a client asked for. op is one of 's' (subscribe), 'u' (unsubscribe), 'p' (publish),
 * 'm' (an app message). */
struct ch_request {
    char op;
    uint64_t id;          /* 's', 'u', 'p': the client's request id (1 .. CH_MAX_INTEGER) */
    struct ch_str topic;  /* 's', 'u', 'p' */
    struct ch_str data;   /* 'p', 'm' */
    bool has_since;       /* 's': recover from since/epoch */
    uint64_t since;
    struct ch_str epoch;  /* 's' with has_since: may be empty (unknown) */
};

/* Parses the text message buf[0..len) (valid UTF-8: the frame reader checked it) as a client
 * envelope. Returns 0 with *req filled, or CH_MALFORMED / CH_UNKNOWN_OP with *why saying what
 * is wrong (a static string); req->id is then the request's id when it could be read, else 0. */
int ch_parse(const char *buf, size_t len, struct ch_request *req, const char **why);

/* Copies s's text, escapes decoded, into out (at least s->len bytes). Returns its length. Only
 * for strings ch_parse accepted (it checked every escape). */
size_t ch_unescape(const struct ch_str *s, char *out);

/* Bytes s[0..len) take as a JSON string, quotes included. */
size_t ch_json_length(const char *s, size_t len);
/* Writes s[0..len) as a JSON string (quotes included) at out, which has room for
 * ch_json_length(s, len) bytes; returns that length. */
size_t ch_json_write(char *out, const char *s, size_t len);

/* The publication envelope, framed once for every v1 subscriber: a text frame
 * ["p", topic, offset, epoch, data] for a text publication, a binary frame
 * 'p' | u16 topic length | topic | u64 offset | u8 epoch length | epoch | data (big-endian) for
 * a binary one. offset 0 and epoch "" on a topic without history. Returns the frame (one
 * reference), or NULL when out of memory or the topic is longer than 65535 bytes. */
struct obuf *ch_publication_frame(const char *topic, size_t topic_len, uint64_t offset,
                                  const char *epoch, const void *data, size_t data_len,
                                  bool binary);

/* The heartbeat frame ["h"] (a whole text frame; static: never freed). */
extern const uint8_t ch_heartbeat_frame[7];

#endif
