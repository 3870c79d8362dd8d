/* An HTTP/1.x response parser for the outbound client: fed the bytes as they arrive, it keeps
 * the head and the body (up to a cap) and says when the response is complete. No I/O, no
 * clock: the client feeds it, the unit tests and fuzzers too.
 *
 * It handles the status line, header fields (names lower-cased, repeated fields joined with
 * ", " except set-cookie), Content-Length, chunked transfer coding (extensions and trailers
 * skipped), a body read until the connection closes, no body for HEAD, 1xx, 204 and 304, and
 * interim 1xx responses (skipped; 101 is an error since the client never asks to switch). */
#ifndef MOONWIRE_HTTP_RESPONSE_H
#define MOONWIRE_HTTP_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>

#define HR_MAX_HEAD (64 * 1024) /* status line and fields, bytes */
#define HR_MAX_FIELDS 128

enum {
    HR_NEED_MORE = 0,       /* feed more bytes (or hr_eof when the stream ends) */
    HR_DONE = 1,            /* the response is complete */
    HR_ERR_PROTOCOL = -1,   /* not a valid HTTP/1.x response: see error */
    HR_ERR_TOO_LARGE = -2,  /* the body passes max_body */
    HR_ERR_NO_MEMORY = -3,
    HR_ERR_INCOMPLETE = -4, /* (hr_eof) the stream ended before the response did */
};

enum hr_state { HR_HEAD, HR_BODY_LENGTH, HR_BODY_CHUNKED, HR_BODY_UNTIL_CLOSE, HR_COMPLETE };

struct hr {
    /* The result, valid once HR_DONE was returned (status and fields once the head is in). */
    int status;
    const char **fields; /* name, value, ... (pairs) */
    size_t nfields;
    char *body;          /* body_len bytes and a NUL */
    size_t body_len;
    bool keep_alive;     /* the connection may carry another request after this response */
    const char *error;   /* why the last call failed: static text */

    /* Parser state. */
    enum hr_state state;
    bool head_request;
    bool started;        /* a byte has been fed */
    size_t max_body;
    char *head;          /* the head as received, then cut into NUL-terminated strings */
    size_t head_len;
    char **joined;       /* values made by joining repeated fields */
    size_t njoined;
    size_t body_cap;
    unsigned long long remaining; /* bytes left of the body or of the current chunk */
    int chunk_state;
    size_t chunk_line;   /* bytes of the current size or trailer line */
    size_t trailer_len;
};

/* Prepares p for one response. head_request: the request was HEAD (no body follows).
 * max_body: the largest body accepted. */
void hr_init(struct hr *p, bool head_request, size_t max_body);

/* Feeds len bytes. Sets *used to the bytes taken (fewer than len only with HR_DONE, when the
 * rest belongs to whatever follows, or with an error). Returns HR_NEED_MORE, HR_DONE or an
 * HR_ERR_ code (p->error says why). */
int hr_feed(struct hr *p, const char *data, size_t len, size_t *used);

/* The stream ended. Returns HR_DONE when that completes the response (a body read until
 * close), HR_ERR_INCOMPLETE otherwise (p->error says what was missing). */
int hr_eof(struct hr *p);

/* True once any byte of the response has been fed. */
bool hr_started(const struct hr *p);

/* Frees what the parser holds; p may then be hr_init'ed again. */
void hr_free(struct hr *p);

#endif
