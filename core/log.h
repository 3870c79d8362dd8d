/* One line per event on stderr: a UTC timestamp, a level and a sentence, or (log.format =
 * "json") one JSON object per line for log shippers. Operators read these lines first, so each
 * says what happened, to whom, and what to do when there is something to do.
 *
 * Lines about an app start "app NAME: ", lines about a connection "conn ID ADDRESS: "; the JSON
 * format turns those prefixes into the fields "app", "conn" and "ip". Access lines carry fields
 * of their own (log_fields). The last warnings, errors and notable events (reloads) are kept
 * for the admin dashboard (log_recent).
 *
 * The level, format and the list of recent events are the process's: set once at start, before
 * any loop runs; the list is guarded by a mutex of this module, since every loop writes it. */
#ifndef MOONWIRE_LOG_H
#define MOONWIRE_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Lines below min are dropped. The default is LOG_INFO. */
void log_set_level(enum log_level min);
bool log_enabled(enum log_level level);

/* Text (the default) or JSON lines. */
void log_set_json(bool json);
/* Names the calling thread's worker in its lines (" worker=2", "worker":2); set by each worker
 * thread when there are several. */
void log_set_worker(int id);

/* Where lines go instead of stderr: moonwire test keeps each server's lines for its spec to
 * read. fn gets the level and the line's text without time and level (the sentence, then any
 * fields as " key=value"), and returns true when it took the line; otherwise (or with fn NULL,
 * the default) the line goes to stderr. Process-wide, like the level: set before loops run. */
typedef bool (*log_sink_fn)(void *ud, enum log_level level, const char *text);
void log_set_sink(log_sink_fn fn, void *ud);

/* Parses "debug", "info", "warn" or "error". Returns 0, or -1 for anything else. */
int log_parse_level(const char *name, enum log_level *out);
const char *log_level_name(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Like log_msg, and the line joins the dashboard's recent events even below warn (a reload). */
void log_notable(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* A field of a structured line: a string, or a number when str is NULL. */
struct log_field {
    const char *key;
    const char *str;
    double num;
};

/* A line with fields: in text they follow the sentence as "key=value"; in JSON each is a
 * member of the object. */
void log_fields(enum log_level level, const struct log_field *fields, size_t n, const char *fmt,
                ...) __attribute__((format(printf, 4, 5)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

/* A recent event, for the dashboard. */
struct log_event {
    double time; /* unix seconds */
    enum log_level level;
    char text[240];
};

/* Copies up to n of the most recent warnings, errors and notable lines, oldest first. Returns
 * how many. */
size_t log_recent(struct log_event *out, size_t n);

#endif
