/* moonwire.v1 envelopes: see channels.h and docs/protocol.md.
 *
 * The parser is a small recursive-descent reader of exactly the JSON an envelope may hold: one
 * array of strings, non-negative integers and at most one flat object. Anything else is
 * malformed, so no input can make it recurse or allocate. */
#include "channels.h"

#include <string.h>

#include "ws_frame.h"

const uint8_t ch_heartbeat_frame[7] = { 0x81, 0x05, '[', '"', 'h', '"', ']' };

struct cursor {
    const char *p, *end;
    const char *why;
};

static void skip_ws(struct cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static bool fail(struct cursor *c, const char *why)
{
    if (!c->why) c->why = why;
    return false;
}

static bool expect(struct cursor *c, char ch, const char *why)
{
    skip_ws(c);
    if (c->p >= c->end || *c->p != ch) return fail(c, why);
    c->p++;
    return true;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static bool hex4(const char *p, const char *end, unsigned *out)
{
    if (end - p < 4) return false;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0) return false;
        v = v << 4 | (unsigned)h;
    }
    *out = v;
    return true;
}

/* Reads a JSON string, checking every escape (a \u escape must make valid UTF-8: surrogates
 * only in pairs). The text between the escapes is valid UTF-8 already. */
static bool read_string(struct cursor *c, struct ch_str *s)
{
    skip_ws(c);
    if (c->p >= c->end || *c->p != '"') return fail(c, "a string was expected");
    const char *p = ++c->p;
    s->escaped = false;
    while (p < c->end && *p != '"') {
        unsigned char ch = (unsigned char)*p;
        if (ch < 0x20) return fail(c, "a string holds a raw control character");
        if (ch != '\\') {
            p++;
            continue;
        }
        s->escaped = true;
        if (++p >= c->end) break;
        if (strchr("\"\\/bfnrt", *p) && *p) {
            p++;
            continue;
        }
        unsigned u;
        if (*p != 'u' || !hex4(p + 1, c->end, &u)) return fail(c, "a string has a bad escape");
        p += 5;
        if (u >= 0xDC00 && u <= 0xDFFF) return fail(c, "a string has a lone surrogate");
        if (u >= 0xD800 && u <= 0xDBFF) {
            unsigned lo;
            if (c->end - p < 6 || p[0] != '\\' || p[1] != 'u' || !hex4(p + 2, c->end, &lo) ||
                lo < 0xDC00 || lo > 0xDFFF)
                return fail(c, "a string has a lone surrogate");
            p += 6;
        }
    }
    if (p >= c->end) return fail(c, "a string is not terminated");
    s->p = c->p;
    s->len = (size_t)(p - c->p);
    c->p = p + 1;
    return true;
}

/* A non-negative integer without sign, fraction or exponent, at most CH_MAX_INTEGER. */
static bool read_integer(struct cursor *c, uint64_t *out)
{
    skip_ws(c);
    const char *p = c->p;
    if (p >= c->end || *p < '0' || *p > '9') return fail(c, "a non-negative integer was expected");
    if (*p == '0' && p + 1 < c->end && p[1] >= '0' && p[1] <= '9')
        return fail(c, "an integer has a leading zero");
    uint64_t v = 0;
    while (p < c->end && *p >= '0' && *p <= '9') {
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > CH_MAX_INTEGER) return fail(c, "an integer is larger than 2^53 - 1");
        p++;
    }
    if (p < c->end && (*p == '.' || *p == 'e' || *p == 'E'))
        return fail(c, "a non-negative integer was expected");
    c->p = p;
    *out = v;
    return true;
}

static bool read_id(struct cursor *c, struct ch_request *req)
{
    if (!expect(c, ',', "the envelope is too short for its op")) return false;
    if (!read_integer(c, &req->id)) return false;
    if (req->id == 0) return fail(c, "a request id must be at least 1");
    return true;
}

static bool read_topic(struct cursor *c, struct ch_request *req)
{
    return expect(c, ',', "the envelope is too short for its op") && read_string(c, &req->topic);
}

/* Skips a scalar value (string, number, true, false, null) of an unknown key. */
static bool skip_scalar(struct cursor *c)
{
    skip_ws(c);
    if (c->p < c->end && *c->p == '"') {
        struct ch_str s;
        return read_string(c, &s);
    }
    const char *start = c->p;
    while (c->p < c->end && strchr("0123456789+-.eEtruefalsn", *c->p) && *c->p) c->p++;
    if (c->p == start) return fail(c, "the recovery object holds a value that is not a scalar");
    return true;
}

/* {"o": offset, "e": epoch}: both optional, other keys (scalars) ignored. */
static bool read_since(struct cursor *c, struct ch_request *req)
{
    if (!expect(c, '{', "the fourth element of a subscribe must be an object")) return false;
    req->has_since = true;
    skip_ws(c);
    if (c->p < c->end && *c->p == '}') {
        c->p++;
        return true;
    }
    for (;;) {
        struct ch_str key;
        if (!read_string(c, &key) || !expect(c, ':', "a ':' was expected in an object"))
            return false;
        if (key.len == 1 && key.p[0] == 'o') {
            if (!read_integer(c, &req->since)) return false;
        } else if (key.len == 1 && key.p[0] == 'e') {
            if (!read_string(c, &req->epoch)) return false;
            if (req->epoch.escaped || req->epoch.len > CH_MAX_EPOCH)
                return fail(c, "an epoch is at most 32 characters without escapes");
        } else if (!skip_scalar(c)) {
            return false;
        }
        skip_ws(c);
        if (c->p < c->end && *c->p == ',') {
            c->p++;
            continue;
        }
        return expect(c, '}', "a '}' or ',' was expected in an object");
    }
}

int ch_parse(const char *buf, size_t len, struct ch_request *req, const char **why)
{
    memset(req, 0, sizeof *req);
    struct cursor c = { buf, buf + len, NULL };
    struct ch_str op;
    int rc = CH_MALFORMED;
    if (!expect(&c, '[', "an envelope is a JSON array") || !read_string(&c, &op)) goto out;
    if (op.len != 1 || op.escaped || !strchr("supm", op.p[0])) {
        rc = CH_UNKNOWN_OP;
        c.why = "unknown op (the ops are \"s\", \"u\", \"p\" and \"m\")";
        /* Its id, when it has one, still goes with the error. */
        uint64_t id;
        skip_ws(&c);
        if (c.p < c.end && *c.p == ',') {
            c.p++;
            if (read_integer(&c, &id)) req->id = id;
        }
        goto out;
    }
    req->op = op.p[0];
    bool ok;
    switch (req->op) {
    case 's':
        ok = read_id(&c, req) && read_topic(&c, req);
        skip_ws(&c);
        if (ok && c.p < c.end && *c.p == ',') {
            c.p++;
            ok = read_since(&c, req);
        }
        break;
    case 'u':
        ok = read_id(&c, req) && read_topic(&c, req);
        break;
    case 'p':
        ok = read_id(&c, req) && read_topic(&c, req) &&
             expect(&c, ',', "the envelope is too short for its op") &&
             read_string(&c, &req->data);
        break;
    default: /* 'm' */
        ok = expect(&c, ',', "the envelope is too short for its op") &&
             read_string(&c, &req->data);
        break;
    }
    if (!ok) goto out;
    if (!expect(&c, ']', "the envelope has more elements than its op takes")) goto out;
    skip_ws(&c);
    if (c.p != c.end) {
        c.why = "text follows the envelope";
        goto out;
    }
    return 0;
out:
    *why = c.why ? c.why : "malformed envelope";
    return rc;
}

/* Writes code point u as UTF-8. */
static size_t put_utf8(char *out, unsigned u)
{
    if (u < 0x80) {
        out[0] = (char)u;
        return 1;
    }
    if (u < 0x800) {
        out[0] = (char)(0xC0 | u >> 6);
        out[1] = (char)(0x80 | (u & 0x3F));
        return 2;
    }
    if (u < 0x10000) {
        out[0] = (char)(0xE0 | u >> 12);
        out[1] = (char)(0x80 | (u >> 6 & 0x3F));
        out[2] = (char)(0x80 | (u & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | u >> 18);
    out[1] = (char)(0x80 | (u >> 12 & 0x3F));
    out[2] = (char)(0x80 | (u >> 6 & 0x3F));
    out[3] = (char)(0x80 | (u & 0x3F));
    return 4;
}

size_t ch_unescape(const struct ch_str *s, char *out)
{
    if (!s->escaped) {
        if (s->len) memcpy(out, s->p, s->len);
        return s->len;
    }
    const char *p = s->p, *end = s->p + s->len;
    size_t n = 0;
    while (p < end) {
        if (*p != '\\') {
            out[n++] = *p++;
            continue;
        }
        p++;
        char e = *p++;
        switch (e) {
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case 'n': out[n++] = '\n'; break;
        case 'r': out[n++] = '\r'; break;
        case 't': out[n++] = '\t'; break;
        case 'u': {
            unsigned u = 0, lo = 0;
            hex4(p, end, &u);
            p += 4;
            if (u >= 0xD800 && u <= 0xDBFF) {
                hex4(p + 2, end, &lo);
                p += 6;
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
            }
            n += put_utf8(out + n, u);
            break;
        }
        default: out[n++] = e; break; /* " \ / */
        }
    }
    return n;
}

/* What a byte becomes in a JSON string: 0 as it is, else the length of its escape. */
static size_t escape_len(unsigned char ch)
{
    if (ch == '"' || ch == '\\' || ch == '\n' || ch == '\r' || ch == '\t' || ch == '\b' ||
        ch == '\f')
        return 2;
    return ch < 0x20 ? 6 : 0;
}

size_t ch_json_length(const char *s, size_t len)
{
    size_t n = len + 2;
    for (size_t i = 0; i < len; i++) {
        size_t e = escape_len((unsigned char)s[i]);
        if (e) n += e - 1;
    }
    return n;
}

size_t ch_json_write(char *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    out[n++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        size_t e = escape_len(ch);
        if (!e) {
            out[n++] = (char)ch;
            continue;
        }
        out[n++] = '\\';
        switch (ch) {
        case '"': out[n++] = '"'; break;
        case '\\': out[n++] = '\\'; break;
        case '\n': out[n++] = 'n'; break;
        case '\r': out[n++] = 'r'; break;
        case '\t': out[n++] = 't'; break;
        case '\b': out[n++] = 'b'; break;
        case '\f': out[n++] = 'f'; break;
        default:
            out[n++] = 'u';
            out[n++] = '0';
            out[n++] = '0';
            out[n++] = hex[ch >> 4];
            out[n++] = hex[ch & 15];
            break;
        }
    }
    out[n++] = '"';
    return n;
}

static size_t put_u64(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0, k = 0;
    do {
        tmp[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (k) out[n++] = tmp[--k];
    return n;
}

struct obuf *ch_publication_frame(const char *topic, size_t topic_len, uint64_t offset,
                                  const char *epoch, const void *data, size_t data_len,
                                  bool binary)
{
    size_t epoch_len = epoch ? strnlen(epoch, CH_MAX_EPOCH) : 0;
    size_t payload;
    if (binary) {
        if (topic_len > 0xFFFF) return NULL;
        payload = 1 + 2 + topic_len + 8 + 1 + epoch_len + data_len;
    } else {
        payload = sizeof "[\"p\",,,,]" - 1 + ch_json_length(topic, topic_len) + 20 +
                  ch_json_length(epoch, epoch_len) + ch_json_length(data, data_len);
    }
    struct obuf *b = obuf_new(WS_FRAME_MAX_SERVER_HEADER + payload);
    if (!b) return NULL;
    char *out = (char *)b->data + WS_FRAME_MAX_SERVER_HEADER;
    size_t n = 0;
    if (binary) {
        out[n++] = 'p';
        out[n++] = (char)(topic_len >> 8);
        out[n++] = (char)(topic_len & 0xFF);
        memcpy(out + n, topic, topic_len);
        n += topic_len;
        for (int i = 7; i >= 0; i--) out[n++] = (char)(offset >> (8 * i) & 0xFF);
        out[n++] = (char)epoch_len;
        memcpy(out + n, epoch, epoch_len);
        n += epoch_len;
        if (data_len) memcpy(out + n, data, data_len);
        n += data_len;
    } else {
        memcpy(out, "[\"p\",", 5);
        n = 5;
        n += ch_json_write(out + n, topic, topic_len);
        out[n++] = ',';
        n += put_u64(out + n, offset);
        out[n++] = ',';
        n += ch_json_write(out + n, epoch ? epoch : "", epoch_len);
        out[n++] = ',';
        n += ch_json_write(out + n, data, data_len);
        out[n++] = ']';
    }
    /* The header goes right before the payload: its length is only known now. */
    uint8_t head[WS_FRAME_MAX_SERVER_HEADER];
    size_t h = ws_frame_build_header(head, true, 0, binary ? WS_OP_BINARY : WS_OP_TEXT, n);
    memmove(b->data + h, out, n);
    memcpy(b->data, head, h);
    b->len = h + n;
    return b;
}
