/* Configuration: built-in defaults, a Lua config file, then command-line flags on top.
 *
 * The file is Lua that sets globals (listen = {...}, limits = {...}), run in an empty
 * environment. Every key is checked: a misspelt one is an error naming the file and line, never
 * a silently ignored setting. */
#ifndef MOONWIRE_CONFIG_H
#define MOONWIRE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CFG_MAX_LISTEN 16
#define CFG_MAX_APPS 32
#define CFG_MAX_CERTS 8

/* A certificate and its private key, PEM files (paths as given: relative to the working
 * folder). */
struct cfg_tls {
    char cert[1024];
    char key[1024];
};

struct cfg_listen {
    char host[256];
    int port; /* 0: any free port (the log line says which) */
    /* TLS when ntls > 0: the first certificate is the default, the others are chosen by SNI. */
    struct cfg_tls tls[CFG_MAX_CERTS];
    size_t ntls;
};

/* Every limit has a default that protects a server exposed to the internet; 0 turns one off. */
struct cfg_limits {
    uint64_t max_message;     /* bytes in one message (1009 past it) */
    size_t max_header_bytes;  /* the whole upgrade request (431 past it) */
    size_t max_headers;       /* header fields in it (431 past it) */
    size_t max_http_body;     /* bytes in a plain request's body, for app.http (413 past it) */
    size_t max_connections;   /* in total (503 past it) */
    size_t per_ip;            /* open connections from one address or IPv6 /64 (429) */
    double connects_per_second; /* new connections per address (429) */
    double messages_per_second; /* per connection, a token bucket ... */
    double burst;             /* ... of this size (1008 past it, or a pause with throttle) */
    double bytes_per_second;  /* per connection: reading pauses to hold the rate */
    bool throttle;            /* over messages_per_second: pause reading instead of 1008 */
    double handshake_timeout; /* seconds to complete the upgrade (408) */
    double idle_timeout;      /* seconds without traffic before a ping, then as long for an answer */
    double close_timeout;     /* seconds to wait for the peer's close or FIN */
    size_t send_buffer;       /* queued bytes before backpressure and paused reading */
    size_t max_send_buffer;   /* queued bytes past which the client is dropped (1008) */
    size_t max_subscriptions; /* topics one connection may be subscribed to */
    size_t max_topic_length;  /* bytes in a topic name (conn:subscribe, mw.publish... raise) */
    size_t max_buffered;      /* bytes of unfinished incoming messages, all clients (1013) */
    size_t max_buffered_per_ip; /* the same, for the clients of one address (1009) */
    size_t max_queued;        /* bytes in every send queue, past which slow readers go */
    size_t shared_memory;     /* bytes mw.shared may hold, every app and worker together */
    size_t history_memory;    /* bytes pub/sub history may hold, every app together */
    double shutdown_timeout;  /* seconds to drain on SIGTERM */
};

struct cfg_sandbox {
    uint64_t instructions; /* per callback */
    size_t memory;         /* bytes per app */
    double time_limit;     /* seconds per callback */
    size_t max_load;       /* bytes of one chunk given to load; 0: no limit */
    size_t topic_memory;   /* bytes of C memory for an app's topics */
    double timer_share;    /* fraction of each second an app's timer callbacks may run */
    double wait_timeout;   /* seconds a handler run may take, its waits included */
};

/* An app mounted at a path: it serves requests for that path and everything below it. */
struct cfg_app {
    char path[256]; /* "/chat"; "/" for every path */
    char dir[1024]; /* a Lua file, or a folder holding app.lua */
};

#define CFG_MAX_ORIGINS 64

/* The admin listener (metrics, probes, dashboard): off unless a port is given. */
struct cfg_admin {
    bool enabled;
    char host[256];  /* default 127.0.0.1: loopback only */
    int port;        /* 0: any free port (logged) */
    char token[256]; /* "": no token; else "Authorization: Bearer TOKEN" on every request */
};

/* Logging. */
struct cfg_log {
    bool access;     /* a line per upgrade (accepted or refused) and per close, at info */
    bool json;       /* one JSON object per line instead of text */
};

#define CFG_MAX_OUTBOUND 64

/* outbound = { "api.example.com", "10.1.0.0/16", ca = ..., ... }: where mw.http.request may
 * go (core/outbound.h has the rules) and how much it may take. */
struct cfg_outbound {
    char entries[CFG_MAX_OUTBOUND][256]; /* none: anywhere but link-local addresses */
    size_t nentries;
    char ca[1024];         /* PEM file of CAs trusted besides the system's; "": none */
    size_t max_response;   /* bytes of one response body */
    size_t max_in_flight;  /* requests one app may have waiting at once */
    double timeout;        /* seconds for a request that names none */
};

/* deflate = true | { mode = "shared" | "context", level, window_bits, min_size, memory }:
 * permessage-deflate (RFC 7692), off by default (offers are then declined). */
struct cfg_deflate {
    bool enabled;
    bool context;       /* "context": per-connection windows; "shared": no context takeover */
    int level;          /* zlib level 1..9 */
    int window_bits;    /* the server's window, 9..15 */
    size_t min_size;    /* messages under this many bytes go uncompressed */
    size_t memory;      /* bytes all zlib streams may hold before new connections get shared */
};

#define CFG_MAX_HISTORY 64

/* history = { ["room:"] = { size = 100, ttl = 300 } }: topics (by prefix) whose publications
 * get offsets and are kept for recovery (core/history.h). */
struct cfg_history {
    char prefix[128];
    unsigned size;   /* publications kept per topic */
    double ttl;      /* seconds each is kept */
};

#define CFG_MAX_REDIS_SHARDS 16

/* redis = "redis://host:port" or { shards = { url, ... }, ... }: the engine that carries topics
 * across nodes (core/rnode.h). */
struct cfg_redis {
    bool enabled;
    char shards[CFG_MAX_REDIS_SHARDS][512]; /* redis:// URLs; topics spread by jump hash */
    size_t nshards;
    char password[256];     /* "": the URL's, if any */
    char prefix[64];        /* of every channel and key: "mw" */
    double connect_timeout; /* seconds */
    double timeout;         /* seconds for a command that names none (mw.redis.call) */
    double probe_interval;  /* seconds of silence on a subscriber connection before a probe */
    double backoff_min, backoff_max; /* seconds: reconnects use full jitter between them */
    double linger;          /* seconds a topic stays subscribed after its last local subscriber */
    size_t max_pending;     /* bytes of commands waiting per connection */
    size_t max_reply;       /* bytes one reply may take (0: 64 MiB) */
    size_t max_in_flight;   /* mw.redis.call calls one app may have waiting */
    double presence_ttl;    /* seconds a presence entry lives unless refreshed (every ttl/3) */
    double node_lease;      /* seconds a node's entries outlive it (renewed every lease/3) */
};

struct config {
    struct cfg_listen listen[CFG_MAX_LISTEN];
    size_t nlisten;
    /* Allowed Origin values ("*" for any); none: only the page's own host. */
    char origins[CFG_MAX_ORIGINS][256];
    size_t norigins;
    bool require_origin;    /* refuse upgrades without an Origin field */
    struct cfg_app apps[CFG_MAX_APPS];
    size_t napps;
    struct cfg_limits limits;
    struct cfg_sandbox sandbox;
    struct cfg_admin admin;
    struct cfg_log log;
    struct cfg_outbound outbound;
    struct cfg_deflate deflate;
    struct cfg_history history[CFG_MAX_HISTORY];
    struct cfg_redis redis;
    size_t nhistory;
    /* Worker threads, each with its own loop, listeners (SO_REUSEPORT) and copy of every app;
     * 0 until resolved: "auto", one per CPU of the affinity mask (cfg_resolve_workers). */
    size_t workers;
    char scripts_dir[1024]; /* where require finds "moonwire.*" */
    bool watch;             /* reload apps when their files change */
};

/* The largest max_message: a server needs a ceiling on what one message may hold. */
#define CFG_MAX_MESSAGE ((uint64_t)1 << 30)

/* Parses a byte count with an optional binary suffix: 1048576, 1024K, 16M, 1G (also KiB, MB...).
 * Returns 0, or -1 when s is not one. The config file and the command line both take these. */
int cfg_parse_size(const char *s, uint64_t *out);

/* At most this many workers: the topic interest sets are 64-bit masks. */
#define CFG_MAX_WORKERS 64

/* Turns workers = "auto" (0) into the CPUs this process may run on (sched_getaffinity), at most
 * CFG_MAX_WORKERS. */
void cfg_resolve_workers(struct config *cfg);

/* Fills in the built-in defaults: one listener on 127.0.0.1:8080 and the limits of
 * docs/configuration.md. */
void cfg_defaults(struct config *cfg);

/* Reads the Lua config file at path over the values in cfg. Returns 0, or -1 with every
 * mistake in err, one a line ("file:line: what"), in the order of their lines (at most 16,
 * then a count). */
int cfg_load_file(struct config *cfg, const char *path, char *err, size_t errlen);

#endif
