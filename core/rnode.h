/* The Redis engine: topics across nodes (processes) through Redis pub/sub, and the command
 * connections behind mw.redis.call.
 *
 * One rnode per worker (its loop, its own connections: per shard a pipelined command connection
 * and a subscriber connection), so nothing here crosses threads. Per app it wraps the app's
 * engine (the workers' bus, or none) as another ps_engine:
 *
 * - a topic's channel, <prefix>:t:<app path>:<topic>, on the shard its jump hash picks, is
 *   subscribed while this worker has local subscribers, and for `linger` seconds after the last
 *   leaves (churn costs nothing); (un)subscribes are batched, up to 512 channels a command;
 * - a publish goes to local subscribers and the other workers (the wrapped engine) at once,
 *   and to Redis as PUBLISH of a 16-byte header (this process's node id, flags) and the
 *   payload; every worker of this process drops its own node's echo (the bus brought it
 *   already), the other nodes' workers deliver it to their local subscribers. One command
 *   connection per shard per worker keeps a publisher's messages in order per topic;
 * - after a subscriber connection comes back, every wanted channel is subscribed again;
 * - liveness: each worker subscribes to its own node channel on every shard; when a subscriber
 *   connection has heard nothing for probe_interval, a probe is published there; nothing for
 *   2.5 x probe_interval drops the connection (a half-open link, a frozen proxy);
 * - /readyz is not ready while any connection of any worker is down (rnode_all_up). */
#ifndef MOONWIRE_RNODE_H
#define MOONWIRE_RNODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "redis.h"

struct ev_loop;
struct lb_app;
struct rds;
struct rnode;

/* This process's node id (random per start), as 16 hex digits. */
const char *rnode_node_id(void);

/* Starts the connections of one worker. Returns NULL with the reason in err. */
struct rnode *rnode_new(struct ev_loop *loop, const struct cfg_redis *cfg, unsigned worker,
                        char *err, size_t errlen);
void rnode_free(struct rnode *n);

/* Makes app `index` (mounted at path) of this worker publish and subscribe through Redis: wraps
 * the engine ps has now (set it first). Returns 0, or -1 when out of memory. */
int rnode_attach(struct rnode *n, struct lb_app *app, unsigned index, const char *path);

/* The command connection for key (its shard). */
struct rds *rnode_command_conn(struct rnode *n, const char *key, size_t len);

/* History kept in Redis (when redis is configured, history topics live there, for every
 * node): reads app's topic after since (a decimal offset; NULL: all), creating its stream's
 * epoch when there is none. done gets { epoch, top offset, [[id, [field, data]], ...] } or a
 * failure ("unavailable" while the connection or its run_id is missing). Returns NULL when the
 * app or topic has no history here, or out of memory. */
struct rds_cmd *rnode_history_read(struct rnode *n, struct lb_app *app, const char *topic,
                                   size_t len, const char *since, rds_done done, void *ud);

/* Recovery from the history in Redis must read only once the topic's channel is subscribed
 * here, so that every publication after the read arrives live. Call it while the topic has a
 * local subscriber (its channel is wanted). Returns 1 when Redis has confirmed the channel's
 * SUBSCRIBE on the current subscriber connection (nothing waits), 0 when *wait will call
 * ready(ud) once it does (after a reconnect too), -1 when the topic has no channel here (name
 * too long) or out of memory. A wait is freed once ready is called, or by rnode_wait_cancel
 * (which must come while its topic still has a local subscriber). */
struct rnode_wait;
int rnode_when_subscribed(struct rnode *n, struct lb_app *app, const char *topic, size_t len,
                          void (*ready)(void *ud), void *ud, struct rnode_wait **wait);
void rnode_wait_cancel(struct rnode_wait *w);

/* Whether a history stream entry's fields ([d, data, b, 1]) mark a binary publication. */
bool rnode_entry_binary(const redisReply *fields);

/* Presence: connection c (conn_id) of app is in topic with info (conn:subscribe(topic,
 * { presence = info })), kept in Redis and refreshed until c leaves the topic. Returns 0, or -1
 * when out of memory. */
struct conn;
int rnode_presence_join(struct rnode *n, struct lb_app *app, struct conn *c, uint64_t conn_id,
                        const char *topic, size_t len, const char *info, size_t info_len);
/* Reads the presence of app's topic on every node: done gets [field, info, ...] (entries
 * past their ttl, or of nodes whose lease is gone, dropped). NULL when out of memory. */
struct rds_cmd *rnode_presence_read(struct rnode *n, struct lb_app *app, const char *topic,
                                    size_t len, rds_done done, void *ud);

/* Every connection of every worker of the process is up (for /readyz). */
bool rnode_all_up(void);

/* Counters of the process (every worker). */
struct rnode_stats {
    uint64_t published, received, echoes_dropped, publish_failed, resubscribes, probes,
        reconnects, gap_fills;
};
void rnode_stats_read(struct rnode_stats *out);

/* Jump consistent hash (Lamping and Veach): key's bucket of n. */
uint32_t rnode_jump(uint64_t key, uint32_t n);

#endif
