/* Pub/sub membership and fan-out: see pubsub.h. */
#include "pubsub.h"

#include "lpresence.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "channels.h"
#include "conn.h"
#include "ws_frame.h"

void ps_init(struct pubsub *ps, struct counters *counters, size_t max_subscriptions,
             size_t max_topic_bytes)
{
    memset(ps, 0, sizeof *ps);
    ps->counters = counters;
    ps->max_subscriptions = max_subscriptions;
    ps->topics.max_bytes = max_topic_bytes;
}

void ps_set_engine(struct pubsub *ps, const struct ps_engine *engine, void *ctx)
{
    ps->engine = engine;
    ps->engine_ctx = ctx;
}

void ps_free(struct pubsub *ps) { topic_table_free(&ps->topics); }

int ps_subscribe(struct pubsub *ps, struct conn *c, const char *topic, size_t len)
{
    struct topic_set *set = conn_topics(c);
    if (ps->max_subscriptions && set->count >= ps->max_subscriptions) return PS_E_LIMIT;
    bool first = ps->engine && !topic_find(&ps->topics, topic, len);
    int rc = topic_subscribe(&ps->topics, set, c, topic, len);
    if (rc == TOPIC_E_FULL) return PS_E_FULL;
    if (rc < 0) return PS_E_NOMEM;
    if (rc == 1 && first && ps->engine->first_subscriber)
        ps->engine->first_subscriber(ps->engine_ctx, topic, len);
    if (rc == 1 && ps->engine && ps->engine->changed)
        ps->engine->changed(ps->engine_ctx, topic, len, 1, topic_find(&ps->topics, topic,
                                                                      len)->count);
    return rc;
}

/* Ends the hold of c's membership of t, if any (c leaves t). */
static void end_hold(struct topic *t, uint32_t index)
{
    struct topic_member *m = &t->members[index];
    if (!m->hold_ops) return;
    const struct ps_hold_ops *ops = m->hold_ops;
    void *hold = m->hold;
    m->hold_ops = NULL;
    m->hold = NULL;
    ops->end(hold);
}

/* Tells the engine that a subscriber leaves t (and when it is the last), before it is gone;
 * with keep_presence, not what it keeps per connection and topic. */
static void tell_last(struct pubsub *ps, const struct topic *t, struct conn *c,
                      bool keep_presence)
{
    if (!keep_presence && ps->engine && ps->engine->left)
        ps->engine->left(ps->engine_ctx, c, t->name, t->name_len);
    if (ps->engine && ps->engine->changed)
        ps->engine->changed(ps->engine_ctx, t->name, t->name_len, -1, t->count - 1);
    if (ps->engine && ps->engine->last_subscriber && t->count == 1)
        ps->engine->last_subscriber(ps->engine_ctx, t->name, t->name_len);
}

static int unsubscribe(struct pubsub *ps, struct conn *c, const char *topic, size_t len,
                       bool keep_presence)
{
    struct topic_set *set = conn_topics(c);
    for (uint32_t i = 0; i < set->count; i++) {
        struct topic *t = set->refs[i].topic;
        if (t->name_len == len && memcmp(t->name, topic, len) == 0) {
            end_hold(t, set->refs[i].index);
            if (ps->engine) tell_last(ps, t, c, keep_presence);
            break;
        }
    }
    if (!keep_presence) lpres_left(c, topic, len);
    return topic_unsubscribe(&ps->topics, set, topic, len);
}

int ps_unsubscribe(struct pubsub *ps, struct conn *c, const char *topic, size_t len)
{
    return unsubscribe(ps, c, topic, len, false);
}

int ps_unsubscribe_keep_presence(struct pubsub *ps, struct conn *c, const char *topic,
                                 size_t len)
{
    return unsubscribe(ps, c, topic, len, true);
}

void ps_presence_left(struct pubsub *ps, struct conn *c, const char *topic, size_t len)
{
    if (ps->engine && ps->engine->left) ps->engine->left(ps->engine_ctx, c, topic, len);
    lpres_left(c, topic, len);
}

void ps_leave_all(struct pubsub *ps, struct conn *c)
{
    struct topic_set *set = conn_topics(c);
    for (uint32_t i = 0; i < set->count; i++) end_hold(set->refs[i].topic, set->refs[i].index);
    if (ps->engine)
        for (uint32_t i = 0; i < set->count; i++) tell_last(ps, set->refs[i].topic, c, false);
    for (uint32_t i = 0; i < set->count; i++)
        lpres_left(c, set->refs[i].topic->name, set->refs[i].topic->name_len);
    topic_leave_all(&ps->topics, set);
}

size_t ps_subscribers(const struct pubsub *ps, const char *topic, size_t len)
{
    if (ps->engine && ps->engine->subscribers)
        return ps->engine->subscribers(ps->engine_ctx, topic, len);
    const struct topic *t = topic_find(&ps->topics, topic, len);
    return t ? t->count : 0;
}

const char *ps_frame_payload(const struct obuf *frame, size_t *len)
{
    size_t n = frame->data[1] & 0x7f, h = 2;
    if (n == 126) {
        n = ((size_t)frame->data[2] << 8) | frame->data[3];
        h = 4;
    } else if (n == 127) {
        n = 0;
        for (int i = 2; i < 10; i++) n = (n << 8) | frame->data[i];
        h = 10;
    }
    *len = n;
    return (const char *)frame->data + h;
}

/* The moonwire.v1 envelope of a publication (channels.h), from its plain frame. */
static struct obuf *envelope_of(const char *topic, size_t len, const struct obuf *frame,
                                const struct hist_pos *pos)
{
    size_t dlen;
    const char *data = ps_frame_payload(frame, &dlen);
    bool binary = (frame->data[0] & 0x0F) == WS_OP_BINARY;
    return ch_publication_frame(topic, len, pos ? pos->offset : 0, pos ? pos->epoch : "", data,
                                dlen, binary);
}

/* ps_deliver to the subscribers of t, found already (the name is topic[0..len)). */
static int deliver_to(struct pubsub *ps, const struct topic *t, const char *topic, size_t len,
                      struct obuf *frame, const struct hist_pos *pos, size_t *sent)
{
    *sent = 0;
    /* A send can end a connection (a slow consumer past its limit), which ends its
     * subscriptions and so changes the member array: walk a copy. Connections are only freed
     * between events, so the pointers in the copy stay valid. A member that recovery has
     * already sent this offset to is left out here (its copy is NULL). */
    uint32_t n = t->count;
    struct conn *local[256];
    struct conn **members = n <= 256 ? local : malloc(n * sizeof *members);
    if (!members) return PS_E_NOMEM;
    uint64_t offset = pos ? pos->offset : 0;
    for (uint32_t i = 0; i < n; i++) {
        const struct topic_member *m = &t->members[i];
        bool sent_already = offset && m->skip_to >= offset &&
                            strcmp(m->skip_epoch, pos->epoch) == 0;
        members[i] = sent_already ? NULL : m->member;
        if (members[i] && m->hold_ops) {
            m->hold_ops->deliver(m->hold, frame, pos);
            members[i] = NULL;
        }
    }
    /* moonwire.v1 subscribers get the envelope, framed once on first need. */
    struct obuf *envelope = NULL;
    bool no_envelope = false;
    size_t count = 0;
    /* Receivers that negotiated permessage-deflate share a frame compressed once per window
     * size (conn_send_fanout): one set for the plain frame, one for the envelope. */
    struct conn_fanout fan = { .plain = frame }, efan = { .plain = NULL };
    for (uint32_t i = 0; i < n; i++) {
        struct conn *c = members[i];
        if (!c) continue;
        struct conn_fanout *f = &fan;
        if (c->envelope) {
            if (!envelope && !no_envelope)
                no_envelope = !(envelope = envelope_of(topic, len, frame, pos));
            if (!envelope) continue; /* out of memory: this publication misses them */
            efan.plain = envelope;
            f = &efan;
        }
        if (conn_send_fanout(c, f) != CONN_CLOSED) count++;
    }
    conn_fanout_done(&fan);
    conn_fanout_done(&efan);
    if (envelope) obuf_unref(envelope);
    if (members != local) free(members);
    ps->counters->deliveries += count;
    ps->counters->messages_out += count;
    *sent = count;
    return 0;
}

int ps_deliver(struct pubsub *ps, const char *topic, size_t len, struct obuf *frame,
               const struct hist_pos *pos, size_t *sent)
{
    *sent = 0;
    const struct topic *t = topic_find(&ps->topics, topic, len);
    return t ? deliver_to(ps, t, topic, len, frame, pos, sent) : 0;
}

void ps_skip_to(struct pubsub *ps, struct conn *c, const char *topic, size_t len,
                uint64_t offset, const char *epoch)
{
    const struct topic_set *set = conn_topics(c);
    for (uint32_t i = 0; i < set->count; i++) {
        struct topic *t = set->refs[i].topic;
        if (t->name_len == len && memcmp(t->name, topic, len) == 0) {
            struct topic_member *m = &t->members[set->refs[i].index];
            m->skip_to = offset;
            snprintf(m->skip_epoch, sizeof m->skip_epoch, "%s", epoch ? epoch : "");
            return;
        }
    }
    (void)ps;
}

bool ps_hold(struct pubsub *ps, struct conn *c, const char *topic, size_t len,
             const struct ps_hold_ops *ops, void *hold)
{
    (void)ps;
    const struct topic_set *set = conn_topics(c);
    for (uint32_t i = 0; i < set->count; i++) {
        struct topic *t = set->refs[i].topic;
        if (t->name_len == len && memcmp(t->name, topic, len) == 0) {
            struct topic_member *m = &t->members[set->refs[i].index];
            m->hold_ops = ops;
            m->hold = ops ? hold : NULL;
            return true;
        }
    }
    return false;
}

size_t ps_history_lost(struct pubsub *ps, const char *topic, size_t len,
                       const struct hist_pos *pos)
{
    const struct topic *t = topic_find(&ps->topics, topic, len);
    if (!t || !t->count) return 0;
    size_t elen = strnlen(pos->epoch, HIST_EPOCH_LEN);
    size_t cap = WS_FRAME_MAX_SERVER_HEADER + sizeof "[\"R\",,{\"o\":,\"e\":}]" + 20 +
                 ch_json_length(topic, len) + ch_json_length(pos->epoch, elen);
    struct obuf *f = obuf_new(cap);
    if (!f) return 0;
    char *out = (char *)f->data + WS_FRAME_MAX_SERVER_HEADER;
    size_t n = 0;
    memcpy(out, "[\"R\",", 5);
    n = 5;
    n += ch_json_write(out + n, topic, len);
    n += (size_t)sprintf(out + n, ",{\"o\":%llu,\"e\":", (unsigned long long)pos->offset);
    n += ch_json_write(out + n, pos->epoch, elen);
    memcpy(out + n, "}]", 2);
    n += 2;
    size_t h = ws_frame_build_header(f->data, true, 0, WS_OP_TEXT, n);
    memmove(f->data + h, out, n);
    f->len = h + n;
    /* Sends can end connections (and change the member array): walk a copy. */
    uint32_t count = t->count;
    struct conn *local[256];
    struct conn **members = count <= 256 ? local : malloc(count * sizeof *members);
    if (!members) {
        obuf_unref(f);
        return 0;
    }
    for (uint32_t i = 0; i < count; i++) {
        struct topic_member *m = &t->members[i];
        struct conn *c = m->member;
        m->skip_to = 0; /* offsets start again in the new epoch */
        members[i] = c->envelope && !m->hold_ops ? c : NULL;
    }
    size_t told = 0;
    for (uint32_t i = 0; i < count; i++)
        if (members[i] && conn_send_shared(members[i], f) != CONN_CLOSED) told++;
    if (members != local) free(members);
    obuf_unref(f);
    return told;
}

static struct obuf *frame_of(const void *data, size_t data_len, bool binary)
{
    struct obuf *frame = obuf_new(WS_FRAME_MAX_SERVER_HEADER + data_len);
    if (!frame) return NULL;
    frame->len = ws_frame_build_header(frame->data, true, 0, binary ? WS_OP_BINARY : WS_OP_TEXT,
                                       data_len);
    memcpy(frame->data + frame->len, data, data_len);
    frame->len += data_len;
    return frame;
}

static double monotonic_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A publish on a history topic: stored (which gives its offset), then handed on while the
 * lock is held so that every worker's inbox has the publications in offset order. */
static int publish_history(struct pubsub *ps, const char *topic, size_t len, const void *data,
                           size_t data_len, bool binary, size_t *sent, struct hist_pos *out)
{
    struct obuf *frame = frame_of(data, data_len, binary);
    if (!frame) return PS_E_NOMEM;
    struct hist_pos pos;
    bool via_engine = ps->engine && ps->engine->publish_history;
    int rc = 0;
    history_lock(ps->history);
    int hr = history_append(ps->history, ps->history_ns, topic, len, data, data_len, binary,
                            monotonic_seconds(), &pos);
    if (hr == 0 && via_engine &&
        ps->engine->publish_history(ps->engine_ctx, topic, len, frame, &pos) < 0)
        rc = PS_E_REMOTE;
    history_unlock(ps->history);
    if (hr < 0) {
        obuf_unref(frame);
        return hr == HIST_E_NOMEM ? PS_E_NOMEM : PS_E_HISTORY;
    }
    if (out) *out = pos;
    if (via_engine) {
        const struct topic *t = topic_find(&ps->topics, topic, len);
        *sent = t ? t->count : 0; /* they get it from the inbox, in order */
    } else {
        int d = ps_deliver(ps, topic, len, frame, &pos, sent);
        if (d < 0) rc = d;
        if (ps->engine && ps->engine->publish &&
            ps->engine->publish(ps->engine_ctx, topic, len, frame) < 0 && rc == 0)
            rc = PS_E_REMOTE;
    }
    obuf_unref(frame);
    return rc;
}

int ps_publish(struct pubsub *ps, const char *topic, size_t len, const void *data,
               size_t data_len, bool binary, size_t *sent, struct hist_pos *pos)
{
    *sent = 0;
    if (pos) pos->offset = 0;
    ps->counters->publishes++;
    if (ps->history && ps->history->nrules && history_rule(ps->history, topic, len)) {
        if (!ps->engine || !ps->engine->publish_stored)
            return publish_history(ps, topic, len, data, data_len, binary, sent, pos);
        struct obuf *frame = frame_of(data, data_len, binary);
        if (!frame) return PS_E_NOMEM;
        int rc = ps->engine->publish_stored(ps->engine_ctx, topic, len, frame);
        obuf_unref(frame);
        if (rc < 0) return PS_E_STORE;
        const struct topic *t = topic_find(&ps->topics, topic, len);
        *sent = t ? t->count : 0; /* once stored, in offset order */
        return 0;
    }
    const struct topic *t = topic_find(&ps->topics, topic, len);
    if (!t && !ps->engine) return 0; /* nobody to frame it for */
    struct obuf *frame = frame_of(data, data_len, binary);
    if (!frame) return PS_E_NOMEM;
    int rc = t ? deliver_to(ps, t, topic, len, frame, NULL, sent) : 0;
    if (ps->engine && ps->engine->publish &&
        ps->engine->publish(ps->engine_ctx, topic, len, frame) < 0 && rc == 0)
        rc = PS_E_REMOTE;
    obuf_unref(frame);
    return rc;
}
