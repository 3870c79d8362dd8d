/* Tests for the pure parts of the Redis engine: redis:// URLs (core/redis.h) as a table of
 * labelled cases, and the jump consistent hash that spreads topics over shards (core/rnode.h):
 * in range, stable, and moving only about 1/(n+1) of the keys when a shard is added. */
#include <stdint.h>
#include <string.h>

#include <criterion/criterion.h>

#include "redis.h"
#include "rnode.h"

struct url_case {
    const char *label, *url;
    int rc;
    const char *host;
    unsigned port;
    const char *user, *password;
    int db;
};

Test(redis, urls)
{
    static const struct url_case cases[] = {
        { "host only", "redis://127.0.0.1", 0, "127.0.0.1", 6379, "", "", 0 },
        { "port", "redis://localhost:7000", 0, "localhost", 7000, "", "", 0 },
        { "db", "redis://h:1/3", 0, "h", 1, "", "", 3 },
        { "trailing slash", "redis://h/", 0, "h", 6379, "", "", 0 },
        { "password", "redis://:s3cret@h:2", 0, "h", 2, "", "s3cret", 0 },
        { "user and password", "redis://app:pw@h", 0, "h", 6379, "app", "pw", 0 },
        { "IPv6", "redis://[::1]:6380/2", 0, "::1", 6380, "", "", 2 },
        { "no scheme", "127.0.0.1:6379", -1, NULL, 0, NULL, NULL, 0 },
        { "rediss", "rediss://h", -1, NULL, 0, NULL, NULL, 0 },
        { "no host", "redis://:6379", -1, NULL, 0, NULL, NULL, 0 },
        { "port 0", "redis://h:0", -1, NULL, 0, NULL, NULL, 0 },
        { "port too big", "redis://h:65536", -1, NULL, 0, NULL, NULL, 0 },
        { "bad db", "redis://h/x", -1, NULL, 0, NULL, NULL, 0 },
        { "unclosed bracket", "redis://[::1:6379", -1, NULL, 0, NULL, NULL, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct url_case *c = &cases[i];
        struct rds_addr a;
        char err[300] = "";
        int rc = rds_parse_url(c->url, &a, err, sizeof err);
        cr_assert_eq(rc, c->rc, "%s: %s", c->label, err);
        if (rc < 0) {
            cr_assert(strstr(err, "redis://"), "%s: the reason shows the form: %s", c->label, err);
            continue;
        }
        cr_assert_str_eq(a.host, c->host, "%s", c->label);
        cr_assert_eq(a.port, c->port, "%s", c->label);
        cr_assert_str_eq(a.user, c->user, "%s", c->label);
        cr_assert_str_eq(a.password, c->password, "%s", c->label);
        cr_assert_eq(a.db, c->db, "%s", c->label);
    }
}

Test(redis, jump_hash_is_consistent)
{
    cr_assert_eq(rnode_jump(12345, 1), 0);
    size_t moved = 0, n = 10000, per[5] = { 0 };
    for (uint64_t k = 0; k < n; k++) {
        uint64_t key = k * 0x9E3779B97F4A7C15ull;
        uint32_t a = rnode_jump(key, 4), b = rnode_jump(key, 5);
        cr_assert_lt(a, 4);
        cr_assert_lt(b, 5);
        cr_assert_eq(a, rnode_jump(key, 4), "stable");
        if (a != b) {
            moved++;
            cr_assert_eq(b, 4, "a key only ever moves to the new shard");
        }
        per[b]++;
    }
    /* About a fifth moves; every shard gets about a fifth. */
    cr_assert(moved > n / 5 - n / 25 && moved < n / 5 + n / 25, "moved %zu", moved);
    for (int i = 0; i < 5; i++) cr_assert(per[i] > n / 5 - n / 25, "shard %d: %zu", i, per[i]);
}
