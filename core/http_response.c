/* The outbound client's response parser (see http_response.h). The head is gathered whole (it
 * is small and bounded), then cut in place into NUL-terminated names and values; the body goes
 * straight into a buffer that never grows past max_body, so a huge answer costs its cap and no
 * more, and is refused as soon as it is known to be too big (at once from Content-Length, or
 * when the next chunk would pass the cap). */
#include "http_response.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
    CH_SIZE, CH_EXT, CH_SIZE_LF, CH_DATA, CH_DATA_CR, CH_DATA_LF, CH_TRAILER_START,
    CH_TRAILER_LINE, CH_END_LF,
};

#define MAX_CHUNK_LINE 4096
#define MAX_TRAILERS (16 * 1024)

void hr_init(struct hr *p, bool head_request, size_t max_body)
{
    memset(p, 0, sizeof *p);
    p->head_request = head_request;
    p->max_body = max_body;
    p->state = HR_HEAD;
}

static void free_fields(struct hr *p)
{
    for (size_t i = 0; i < p->njoined; i++) free(p->joined[i]);
    free(p->joined);
    free(p->fields);
    p->joined = NULL;
    p->njoined = 0;
    p->fields = NULL;
    p->nfields = 0;
}

void hr_free(struct hr *p)
{
    free_fields(p);
    free(p->head);
    free(p->body);
    p->head = p->body = NULL;
}

bool hr_started(const struct hr *p)
{
    return p->started;
}

static int fail(struct hr *p, int code, const char *why)
{
    p->error = why;
    return code;
}

static bool tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Is token tok (case-insensitive) in the comma-separated list? */
static bool list_has(const char *list, const char *tok)
{
    size_t n = strlen(tok);
    const char *s = list;
    while (*s) {
        while (*s == ' ' || *s == '\t' || *s == ',') s++;
        const char *e = s;
        while (*e && *e != ',') e++;
        const char *t = e;
        while (t > s && (t[-1] == ' ' || t[-1] == '\t')) t--;
        if ((size_t)(t - s) == n && strncasecmp(s, tok, n) == 0) return true;
        s = e;
    }
    return false;
}

/* The last coding of a Transfer-Encoding list is chunked. */
static bool last_is_chunked(const char *list)
{
    const char *last = strrchr(list, ',');
    last = last ? last + 1 : list;
    while (*last == ' ' || *last == '\t') last++;
    size_t n = strlen(last);
    while (n && (last[n - 1] == ' ' || last[n - 1] == '\t')) n--;
    return n == 7 && strncasecmp(last, "chunked", 7) == 0;
}

/* Content-Length: digits, or a list of the same digits (a field repeated, then joined). */
static int parse_length(const char *v, unsigned long long *out)
{
    bool have = false;
    unsigned long long first = 0;
    const char *s = v;
    for (;;) {
        while (*s == ' ' || *s == '\t') s++;
        if (*s < '0' || *s > '9') return -1;
        unsigned long long n = 0;
        while (*s >= '0' && *s <= '9') {
            if (n > (UINT64_MAX - 9) / 10) return -1;
            n = n * 10 + (unsigned)(*s++ - '0');
        }
        while (*s == ' ' || *s == '\t') s++;
        if (have && n != first) return -1;
        first = n;
        have = true;
        if (*s == '\0') break;
        if (*s++ != ',') return -1;
    }
    *out = first;
    return 0;
}

static int add_field(struct hr *p, char *name, char *value)
{
    if (strcmp(name, "set-cookie") != 0) {
        for (size_t i = 0; i < p->nfields; i++) {
            if (strcmp(p->fields[2 * i], name) != 0) continue;
            size_t a = strlen(p->fields[2 * i + 1]), b = strlen(value);
            char *j = malloc(a + 2 + b + 1);
            char **list = realloc(p->joined, (p->njoined + 1) * sizeof *list);
            if (!j || !list) {
                free(j);
                if (list) p->joined = list;
                return fail(p, HR_ERR_NO_MEMORY, "out of memory");
            }
            p->joined = list;
            memcpy(j, p->fields[2 * i + 1], a);
            memcpy(j + a, ", ", 2);
            memcpy(j + a + 2, value, b + 1);
            p->joined[p->njoined++] = j;
            p->fields[2 * i + 1] = j;
            return 0;
        }
    }
    p->fields[2 * p->nfields] = name;
    p->fields[2 * p->nfields + 1] = value;
    p->nfields++;
    return 0;
}

static const char *field(const struct hr *p, const char *name)
{
    for (size_t i = 0; i < p->nfields; i++)
        if (strcmp(p->fields[2 * i], name) == 0) return p->fields[2 * i + 1];
    return NULL;
}

static int reserve_body(struct hr *p, size_t want)
{
    if (want + 1 <= p->body_cap) return 0;
    size_t cap = p->body_cap ? p->body_cap : 4096;
    while (cap < want + 1) cap *= 2;
    if (cap > p->max_body + 1) cap = p->max_body + 1;
    char *b = realloc(p->body, cap);
    if (!b) return fail(p, HR_ERR_NO_MEMORY, "out of memory");
    p->body = b;
    p->body_cap = cap;
    return 0;
}

static int append_body(struct hr *p, const char *data, size_t n)
{
    if (n > p->max_body - p->body_len)
        return fail(p, HR_ERR_TOO_LARGE, "the response body is larger than max_response");
    int r = reserve_body(p, p->body_len + n);
    if (r) return r;
    memcpy(p->body + p->body_len, data, n);
    p->body_len += n;
    return 0;
}

static int complete(struct hr *p)
{
    if (reserve_body(p, p->body_len)) return HR_ERR_NO_MEMORY;
    p->body[p->body_len] = '\0';
    p->state = HR_COMPLETE;
    return HR_DONE;
}

/* Cuts the complete head (head_len bytes, ending in CRLF CRLF) into status and fields, and
 * decides how the body is framed. */
static int parse_head(struct hr *p)
{
    char *s = p->head, *end = p->head + p->head_len;
    if (p->head_len < 14 || memcmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1') ||
        s[8] != ' ')
        return fail(p, HR_ERR_PROTOCOL, "the answer does not start with HTTP/1.0 or HTTP/1.1");
    bool http11 = s[7] == '1';
    if (s[9] < '1' || s[9] > '9' || s[10] < '0' || s[10] > '9' || s[11] < '0' || s[11] > '9' ||
        (s[12] != ' ' && s[12] != '\r'))
        return fail(p, HR_ERR_PROTOCOL, "the status line has no three-digit status");
    p->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    char *line = memchr(s, '\n', (size_t)(end - s));
    if (!line || line[-1] != '\r') return fail(p, HR_ERR_PROTOCOL, "a line does not end in CRLF");
    for (char *c = s + 12; c < line - 1; c++)
        if ((unsigned char)*c < 0x20 && *c != '\t')
            return fail(p, HR_ERR_PROTOCOL, "the status line holds a control character");
    line++;

    free_fields(p);
    p->fields = malloc(2 * HR_MAX_FIELDS * sizeof *p->fields);
    if (!p->fields) return fail(p, HR_ERR_NO_MEMORY, "out of memory");
    while (line < end - 2) { /* the last line is the empty one */
        char *nl = memchr(line, '\n', (size_t)(end - line));
        if (nl == line || nl[-1] != '\r')
            return fail(p, HR_ERR_PROTOCOL, "a header line does not end in CRLF");
        nl[-1] = '\0';
        if (*line == ' ' || *line == '\t')
            return fail(p, HR_ERR_PROTOCOL, "a header field is folded over lines (obsolete)");
        char *colon = line;
        while (tchar((unsigned char)*colon)) {
            if (*colon >= 'A' && *colon <= 'Z') *colon = (char)(*colon - 'A' + 'a');
            colon++;
        }
        if (*colon != ':' || colon == line)
            return fail(p, HR_ERR_PROTOCOL, "a header field has no valid name and colon");
        *colon = '\0';
        char *v = colon + 1, *ve = nl - 1;
        while (*v == ' ' || *v == '\t') v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        *ve = '\0';
        for (char *c = v; c < ve; c++)
            if (((unsigned char)*c < 0x20 && *c != '\t') || *c == 0x7f)
                return fail(p, HR_ERR_PROTOCOL, "a header value holds a control character");
        if (p->nfields == HR_MAX_FIELDS)
            return fail(p, HR_ERR_PROTOCOL, "the response has more than 128 header fields");
        int r = add_field(p, line, v);
        if (r) return r;
        line = nl + 1;
    }

    const char *conn = field(p, "connection");
    p->keep_alive = http11 && !(conn && list_has(conn, "close"));
    if (p->status == 101)
        return fail(p, HR_ERR_PROTOCOL, "the server switched protocols (101) unasked");
    if (p->status < 200) return HR_NEED_MORE; /* an interim answer: the real one follows */
    if (p->head_request || p->status == 204 || p->status == 304) return complete(p);

    const char *te = field(p, "transfer-encoding");
    const char *cl = field(p, "content-length");
    if (te) {
        /* Both framings at once is how requests get smuggled: read this one by its chunks
         * (RFC 9112 6.3) and never trust the connection again. */
        if (cl) p->keep_alive = false;
        if (last_is_chunked(te)) {
            p->state = HR_BODY_CHUNKED;
            p->chunk_state = CH_SIZE;
            return HR_NEED_MORE;
        }
        p->keep_alive = false;
        p->state = HR_BODY_UNTIL_CLOSE;
        return HR_NEED_MORE;
    }
    if (cl) {
        if (parse_length(cl, &p->remaining) < 0)
            return fail(p, HR_ERR_PROTOCOL, "the Content-Length is not a number");
        if (p->remaining > p->max_body)
            return fail(p, HR_ERR_TOO_LARGE, "the response body is larger than max_response");
        if (reserve_body(p, (size_t)p->remaining)) return HR_ERR_NO_MEMORY;
        if (p->remaining == 0) return complete(p);
        p->state = HR_BODY_LENGTH;
        return HR_NEED_MORE;
    }
    p->keep_alive = false;
    p->state = HR_BODY_UNTIL_CLOSE;
    return HR_NEED_MORE;
}

static int feed_head(struct hr *p, const char *data, size_t len, size_t *used)
{
    size_t room = HR_MAX_HEAD - p->head_len;
    size_t take = len < room ? len : room;
    if (!p->head) {
        p->head = malloc(HR_MAX_HEAD);
        if (!p->head) return fail(p, HR_ERR_NO_MEMORY, "out of memory");
    }
    size_t from = p->head_len > 3 ? p->head_len - 3 : 0;
    memcpy(p->head + p->head_len, data, take);
    p->head_len += take;
    char *e = memmem(p->head + from, p->head_len - from, "\r\n\r\n", 4);
    if (!e) {
        *used = take;
        if (p->head_len == HR_MAX_HEAD)
            return fail(p, HR_ERR_PROTOCOL, "the response head is larger than 64 KiB");
        return HR_NEED_MORE;
    }
    size_t head_end = (size_t)(e + 4 - p->head);
    *used = take - (p->head_len - head_end);
    p->head_len = head_end;
    int r = parse_head(p);
    if (r == HR_NEED_MORE && p->state == HR_HEAD) { /* a 1xx: start over with what follows */
        free_fields(p);
        p->head_len = 0;
    }
    return r;
}

static int feed_chunked(struct hr *p, const char *data, size_t len, size_t *used)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)data[i];
        switch (p->chunk_state) {
        case CH_SIZE: {
            int v = c >= '0' && c <= '9' ? c - '0'
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
            if (v >= 0) {
                if (p->remaining > p->max_body / 16) { /* this digit passes the cap */
                    *used = i;
                    return fail(p, HR_ERR_TOO_LARGE,
                                "the response body is larger than max_response");
                }
                p->remaining = p->remaining * 16 + (unsigned)v;
                p->chunk_line++;
                i++;
                break;
            }
            if (p->chunk_line == 0) {
                *used = i;
                return fail(p, HR_ERR_PROTOCOL, "a chunk does not start with its size in hex");
            }
            if (p->remaining > p->max_body - p->body_len) {
                *used = i;
                return fail(p, HR_ERR_TOO_LARGE, "the response body is larger than max_response");
            }
            p->chunk_state = c == '\r' ? CH_SIZE_LF : CH_EXT;
            if (c != '\r' && c != ';' && c != ' ' && c != '\t') {
                *used = i;
                return fail(p, HR_ERR_PROTOCOL, "a chunk size is followed by garbage");
            }
            i++;
            break;
        }
        case CH_EXT:
            if (++p->chunk_line > MAX_CHUNK_LINE) {
                *used = i;
                return fail(p, HR_ERR_PROTOCOL, "a chunk size line is longer than 4 KiB");
            }
            if (c == '\r') p->chunk_state = CH_SIZE_LF;
            i++;
            break;
        case CH_SIZE_LF:
            if (c != '\n') {
                *used = i;
                return fail(p, HR_ERR_PROTOCOL, "a chunk size line does not end in CRLF");
            }
            i++;
            p->chunk_line = 0;
            p->chunk_state = p->remaining ? CH_DATA : CH_TRAILER_START;
            break;
        case CH_DATA: {
            size_t n = len - i;
            if (n > p->remaining) n = (size_t)p->remaining;
            int r = append_body(p, data + i, n);
            if (r) {
                *used = i;
                return r;
            }
            i += n;
            p->remaining -= n;
            if (p->remaining == 0) p->chunk_state = CH_DATA_CR;
            break;
        }
        case CH_DATA_CR:
        case CH_DATA_LF:
            if (c != (p->chunk_state == CH_DATA_CR ? '\r' : '\n')) {
                *used = i;
                return fail(p, HR_ERR_PROTOCOL, "a chunk's data does not end in CRLF");
            }
            p->chunk_state = p->chunk_state == CH_DATA_CR ? CH_DATA_LF : CH_SIZE;
            i++;
            break;
        case CH_TRAILER_START:
        case CH_TRAILER_LINE:
            if (++p->trailer_len > MAX_TRAILERS) {
                *used = i;
                return fail(p, HR_ERR_PROTOCOL, "the chunked trailer is longer than 16 KiB");
            }
            if (p->chunk_state == CH_TRAILER_START && c == '\r') p->chunk_state = CH_END_LF;
            else if (c == '\n') p->chunk_state = CH_TRAILER_START;
            else p->chunk_state = CH_TRAILER_LINE;
            i++;
            break;
        case CH_END_LF:
            if (c != '\n') {
                *used = i;
                return fail(p, HR_ERR_PROTOCOL, "the chunked body does not end in CRLF");
            }
            *used = i + 1;
            return complete(p);
        }
    }
    *used = len;
    return HR_NEED_MORE;
}

int hr_feed(struct hr *p, const char *data, size_t len, size_t *used)
{
    *used = 0;
    if (len) p->started = true;
    size_t total = 0;
    while (total < len || p->state == HR_HEAD) {
        size_t n = 0;
        int r;
        switch (p->state) {
        case HR_HEAD:
            if (total == len) return HR_NEED_MORE;
            r = feed_head(p, data + total, len - total, &n);
            break;
        case HR_BODY_LENGTH:
            n = len - total;
            if (n > p->remaining) n = (size_t)p->remaining;
            r = append_body(p, data + total, n);
            if (r == 0) {
                p->remaining -= n;
                r = p->remaining ? HR_NEED_MORE : complete(p);
            }
            break;
        case HR_BODY_CHUNKED:
            r = feed_chunked(p, data + total, len - total, &n);
            break;
        case HR_BODY_UNTIL_CLOSE:
            n = len - total;
            r = append_body(p, data + total, n);
            if (r) n = 0;
            break;
        case HR_COMPLETE:
        default:
            *used = total;
            return HR_DONE;
        }
        total += n;
        *used = total;
        if (r != HR_NEED_MORE) return r;
    }
    return p->state == HR_COMPLETE ? HR_DONE : HR_NEED_MORE;
}

int hr_eof(struct hr *p)
{
    switch (p->state) {
    case HR_COMPLETE:
        return HR_DONE;
    case HR_BODY_UNTIL_CLOSE:
        return complete(p);
    case HR_HEAD:
        return fail(p, HR_ERR_INCOMPLETE, p->started
                                              ? "the connection closed within the response head"
                                              : "the connection closed before any answer");
    default:
        return fail(p, HR_ERR_INCOMPLETE, "the connection closed before the body was complete");
    }
}
