/* Presence without Redis: conn:subscribe(topic, { presence = info }) on one node, kept in a
 * process-wide table under a lock (every worker's connections of an app count together).
 * Entries leave with their connection (unsubscribe, close). Bounded by the subscriptions. */
#ifndef MOONWIRE_LPRESENCE_H
#define MOONWIRE_LPRESENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct conn;

/* Connection c (conn_id) of the app numbered app_ns is in topic with info (replaces an older
 * info). Returns 0, or -1 when out of memory. */
int lpres_join(unsigned app_ns, const struct conn *c, uint64_t conn_id, const char *topic,
               size_t len, const char *info, size_t info_len);
/* c leaves topic; a no-op when it was not present. Cheap when no one is present anywhere. */
void lpres_left(const struct conn *c, const char *topic, size_t len);
/* Calls each(ud, id, id_len, info, info_len) for every entry of the app's topic, under the lock
 * (each must not call back in). Returns the count. */
size_t lpres_each(unsigned app_ns, const char *topic, size_t len,
                  void (*each)(void *ud, const char *id, size_t id_len, const char *info,
                               size_t info_len),
                  void *ud);

#endif
