/* Logging to stderr. Each line is written with one write(2), so lines never interleave mid-line
 * even when several threads log. */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Set once at start (log.h): read-only while loops run. */
static enum log_level min_level = LOG_INFO;
static bool json_lines;
static log_sink_fn sink;
static void *sink_ud;
static const char *const level_names[] = { "debug", "info", "warn", "error" };
/* Which worker thread logs (log_set_worker); -1: the only one, not named. */
static _Thread_local int worker_id = -1;

/* The dashboard's recent events: a ring, shared by every loop of the process. */
#define RECENT 32
static struct {
    pthread_mutex_t lock;
    struct log_event ring[RECENT];
    size_t next;
    size_t count;
} recent = { .lock = PTHREAD_MUTEX_INITIALIZER };

void log_set_level(enum log_level min) { min_level = min; }
bool log_enabled(enum log_level level) { return level >= min_level; }
void log_set_json(bool json) { json_lines = json; }
void log_set_sink(log_sink_fn fn, void *ud)
{
    sink = fn;
    sink_ud = ud;
}
void log_set_worker(int id) { worker_id = id; }
const char *log_level_name(enum log_level level) { return level_names[level]; }

int log_parse_level(const char *name, enum log_level *out)
{
    for (int i = LOG_DEBUG; i <= LOG_ERROR; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

static void remember(double now, enum log_level level, const char *text)
{
    pthread_mutex_lock(&recent.lock);
    struct log_event *e = &recent.ring[recent.next];
    e->time = now;
    e->level = level;
    size_t len = strlen(text);
    if (len >= sizeof e->text) {
        len = sizeof e->text - 1;
        /* Not inside a UTF-8 sequence: the dashboard sends this as WebSocket text. */
        while (len && ((unsigned char)text[len] & 0xC0) == 0x80) len--;
    }
    memcpy(e->text, text, len);
    e->text[len] = '\0';
    recent.next = (recent.next + 1) % RECENT;
    if (recent.count < RECENT) recent.count++;
    pthread_mutex_unlock(&recent.lock);
}

size_t log_recent(struct log_event *out, size_t n)
{
    pthread_mutex_lock(&recent.lock);
    if (n > recent.count) n = recent.count;
    for (size_t i = 0; i < n; i++)
        out[i] = recent.ring[(recent.next + RECENT - n + i) % RECENT];
    pthread_mutex_unlock(&recent.lock);
    return n;
}

/* Appends s to line as the inside of a JSON string. */
static size_t put_json(char *line, size_t n, size_t cap, const char *s, size_t len)
{
    for (size_t i = 0; i < len && n + 7 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            line[n++] = '\\';
            line[n++] = (char)c;
        } else if (c < 0x20 || c == 0x7F) {
            n += (size_t)snprintf(line + n, cap - n, "\\u%04x", c);
        } else {
            line[n++] = (char)c;
        }
    }
    return n;
}

/* The JSON line: {"time":...,"level":...,"app":...,"conn":...,"ip":...,"msg":...,fields}. The
 * "app NAME: " and "conn ID ADDRESS: " prefixes of the message become fields. */
static size_t format_json(char *line, size_t cap, const char *stamp, enum log_level level,
                          const char *msg, const struct log_field *fields, size_t nfields)
{
    size_t n = (size_t)snprintf(line, cap, "{\"time\":\"%s\",\"level\":\"%s\"", stamp,
                                level_names[level]);
    const char *m = msg;
    if (strncmp(m, "app ", 4) == 0) {
        const char *colon = strstr(m + 4, ": ");
        if (colon) {
            n += (size_t)snprintf(line + n, cap - n, ",\"app\":\"");
            n = put_json(line, n, cap, m + 4, (size_t)(colon - m - 4));
            n += (size_t)snprintf(line + n, cap - n, "\"");
            m = colon + 2;
        }
    }
    unsigned long long id;
    int used = 0;
    const char *end;
    /* "conn 12 ::1: ...": the address runs to the first ": " (IPv6 has colons, not ": "). */
    if (sscanf(m, "conn %llu %n", &id, &used) == 1 && used > 0 && (end = strstr(m + used, ": "))) {
        n += (size_t)snprintf(line + n, cap - n, ",\"conn\":%llu,\"ip\":\"", id);
        n = put_json(line, n, cap, m + used, (size_t)(end - m - used));
        n += (size_t)snprintf(line + n, cap - n, "\"");
        m = end + 2;
    }
    n += (size_t)snprintf(line + n, cap - n, ",\"msg\":\"");
    n = put_json(line, n, cap, m, strlen(m));
    n += (size_t)snprintf(line + n, cap - n, "\"");
    for (size_t i = 0; i < nfields && n < cap; i++) {
        n += (size_t)snprintf(line + n, cap - n, ",\"%s\":", fields[i].key);
        if (n >= cap) break;
        if (fields[i].str) {
            line[n++] = '"';
            n = put_json(line, n, cap, fields[i].str, strlen(fields[i].str));
            n += (size_t)snprintf(line + n, cap - n, "\"");
        } else {
            n += (size_t)snprintf(line + n, cap - n, "%.15g", fields[i].num);
        }
    }
    if (worker_id >= 0 && n < cap) n += (size_t)snprintf(line + n, cap - n, ",\"worker\":%d",
                                                         worker_id);
    if (n > cap - 3) n = cap - 3;
    line[n++] = '}';
    line[n++] = '\n';
    return n;
}

static void emit(enum log_level level, bool notable, const struct log_field *fields,
                 size_t nfields, const char *fmt, va_list ap)
{
    if (level < min_level) return;
    char msg[1536];
    int m = vsnprintf(msg, sizeof msg, fmt, ap);
    if (m < 0) msg[0] = '\0';
    /* Messages quote what clients and apps sent; a newline in there must not forge a line. */
    for (char *p = msg; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7F) *p = ' ';

    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    char stamp[40];
    size_t sn = strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + sn, sizeof stamp - sn, ".%03ldZ", ts.tv_nsec / 1000000);

    char line[2560];
    size_t n;
    if (sink) {
        /* The sentence and its fields, as in a text line after the level. */
        n = (size_t)snprintf(line, sizeof line, "%s", msg);
        for (size_t i = 0; i < nfields && n < sizeof line; i++)
            n += (size_t)(fields[i].str ? snprintf(line + n, sizeof line - n, " %s=%s",
                                                   fields[i].key, fields[i].str)
                                        : snprintf(line + n, sizeof line - n, " %s=%.15g",
                                                   fields[i].key, fields[i].num));
        if (sink(sink_ud, level, line)) return;
    }
    if (json_lines) {
        n = format_json(line, sizeof line, stamp, level, msg, fields, nfields);
    } else {
        n = (size_t)snprintf(line, sizeof line - 2, "%s %-5s %s", stamp, level_names[level], msg);
        if (n > sizeof line - 2) n = sizeof line - 2;
        for (size_t i = 0; i < nfields && n < sizeof line - 2; i++) {
            int w = fields[i].str
                        ? snprintf(line + n, sizeof line - 2 - n, " %s=%s", fields[i].key,
                                   fields[i].str)
                        : snprintf(line + n, sizeof line - 2 - n, " %s=%.15g", fields[i].key,
                                   fields[i].num);
            if (w < 0) break;
            n += (size_t)w;
        }
        if (worker_id >= 0 && n < sizeof line - 2)
            n += (size_t)snprintf(line + n, sizeof line - 2 - n, " worker=%d", worker_id);
        if (n > sizeof line - 2) n = sizeof line - 2;
        line[n++] = '\n';
    }
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w; /* nowhere left to report a failing stderr */
    if (notable || level >= LOG_WARN)
        remember((double)ts.tv_sec + (double)ts.tv_nsec / 1e9, level, msg);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit(level, false, NULL, 0, fmt, ap);
    va_end(ap);
}

void log_notable(enum log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit(level, true, NULL, 0, fmt, ap);
    va_end(ap);
}

void log_fields(enum log_level level, const struct log_field *fields, size_t n, const char *fmt,
                ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit(level, false, fields, n, fmt, ap);
    va_end(ap);
}
