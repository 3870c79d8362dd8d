/* One line per event on stderr: a UTC timestamp, a level and a sentence. Operators read these
 * lines first, so each says what happened, to whom, and what to do when there is something to
 * do. */
#ifndef MOONWIRE_LOG_H
#define MOONWIRE_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Lines below min are dropped. The default is LOG_INFO. */
void log_set_level(enum log_level min);

/* Parses "debug", "info", "warn" or "error". Returns 0, or -1 for anything else. */
int log_parse_level(const char *name, enum log_level *out);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
