/* HTTP/1.1 request heads (RFC 9112): a parser for the upgrade request and plain GETs, and the
 * formatting of simple responses.
 *
 * Pure: the parser allocates nothing and points into the caller's buffer, which must stay put
 * while the result is used. It is incremental in the way that matters against slow clients: the
 * caller keeps appending bytes and calling again, and the search for the end of the head resumes
 * where it stopped, so a head trickled one byte at a time costs linear time. */
#ifndef MOONWIRE_HTTP_H
#define MOONWIRE_HTTP_H

#include <stdbool.h>
#include <stddef.h>

/* The most header fields a request may have (limits.max_headers may ask for fewer). */
#define HTTP_MAX_HEADER_FIELDS 256

/* Results: parsers return the bytes consumed (> 0), HTTP_NEED_MORE, or the negated HTTP status
 * to answer with. */
enum {
    HTTP_NEED_MORE = -1,
    HTTP_E_BAD_REQUEST = -400,
    HTTP_E_TOO_LARGE = -431,  /* head longer than the limit, or too many header fields */
    HTTP_E_VERSION = -505,    /* an HTTP version other than 1.x */
};

struct http_header {
    const char *name;
    size_t name_len;
    const char *value; /* without leading and trailing blanks */
    size_t value_len;
};

/* The request target comes in two forms (RFC 7230 section 5.3, RFC 9112 section 3.2):
 * origin-form, "/path?query", what clients send to an origin server; and absolute-form,
 * "scheme://host[:port]/path?query", which servers must accept too (RFC 7230 section 5.3.2) and
 * RFC 6455 allows for ws and wss URIs. Authority-form (CONNECT) and asterisk-form (OPTIONS *)
 * are refused: they are for proxies and for a method we do not serve. */
struct http_request {
    const char *method;
    size_t method_len;
    const char *target;    /* the request target as sent, in either form */
    size_t target_len;
    const char *authority; /* absolute-form: the target's host[:port], never empty ("[::1]:80"
                            * for an IPv6 literal); NULL for origin-form */
    size_t authority_len;
    const char *resource;  /* path and query: all of an origin-form target (starting with '/');
                            * in absolute-form what follows the authority, which may be empty
                            * or start with '?' when the URI has no path */
    size_t resource_len;
    int minor_version;  /* HTTP/1.x */
    struct http_header *headers; /* set by the caller: room for max_headers */
    size_t max_headers;
    size_t num_headers;
};

/* State kept between calls on the same request. Zero it before the first call. */
struct http_scan {
    size_t pos; /* where the search for the blank line resumes */
};

/* Parses the request head in buf[0..len), the bytes received so far.
 * max_len: the most bytes the head may take, blank line included; req->headers and
 * req->max_headers must be set.
 * Returns the length of the head (the bytes after it belong to the next protocol) with *req
 * filled; HTTP_NEED_MORE when the head is incomplete (call again with the same buffer grown);
 * HTTP_E_TOO_LARGE when the head exceeds max_len or has more than max_headers fields;
 * HTTP_E_VERSION for a version other than HTTP/1.x; HTTP_E_BAD_REQUEST for anything malformed:
 * a line not ending in CRLF, a bad request line, a field name that is not a token or is
 * followed by blanks, a continuation line (obsolete line folding), control characters in a
 * value, or a bad target: one in neither origin- nor absolute-form, and in absolute-form a
 * scheme other than http, https, ws and wss (any case), no "//" and host, user info
 * ("user@host"), a fragment ('#'), or a host or port that is malformed (a port is 1 to 65535).
 * *why then holds a static sentence saying which. */
int http_parse_request(const char *buf, size_t len, size_t max_len, struct http_scan *scan,
                       struct http_request *req, const char **why);

/* Case-insensitive comparison of a counted string with a NUL-terminated one. */
bool http_token_equals(const char *s, size_t len, const char *lit);

/* Finds the value of the only field called name. Returns 1 and sets *value and *len when there is
 * exactly one, 0 when there is none, -1 when there are several. */
int http_find_header(const struct http_request *req, const char *name, const char **value,
                     size_t *len);

/* True when a comma-separated list field (all lines called name, as HTTP allows splitting one
 * list across lines) contains the token, compared case-insensitively: "keep-alive, Upgrade"
 * contains "upgrade". */
bool http_list_contains(const struct http_request *req, const char *name, const char *token);

/* Iterates the elements of comma-separated list fields: call with *pos = 0 first. Skips empty
 * elements and blanks. Returns true and sets *elem and *elem_len for each element, false at the end.
 * *pos encodes the field index and offset. */
bool http_list_next(const struct http_request *req, const char *name, size_t *pos,
                    const char **elem, size_t *elem_len);

/* The reason phrase of a status code ("Bad Request"), or "Error" when unknown. */
const char *http_status_text(int status);

#endif
