// Unit tests of moonwire.js with a fake WebSocket (node --test): the backoff distribution
// (Kolmogorov-Smirnov against the uniform law), reconnect rules (drain window, do-not-come-back
// codes, heartbeat death), subscriptions restored with their offsets, dedupe and order, resync
// once, and the offline queue.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Moonwire, backoffDelay, retryWindow } from "../../core/client/moonwire.js";

class FakeWS {
    static all = [];
    constructor(url, protocol) {
        this.url = url;
        this.offered = protocol;
        this.protocol = "";
        this.sent = [];
        this.closed = null;
        FakeWS.all.push(this);
    }
    send(d) { this.sent.push(typeof d === "string" ? JSON.parse(d) : d); }
    close(code) { this.closed = code ?? 1005; }
    // The server's side:
    accept(hb = 25000) {
        this.protocol = "moonwire.v1";
        this.onopen && this.onopen({});
        this.push(["W", { v: 1, hb }]);
    }
    push(env) { this.onmessage && this.onmessage({ data: JSON.stringify(env) }); }
    drop(code = 1006, reason = "") { this.onclose && this.onclose({ code, reason }); }
    static last() { return FakeWS.all[FakeWS.all.length - 1]; }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function client(opts = {}) {
    FakeWS.all = [];
    return new Moonwire("ws://x/", { WebSocket: FakeWS, minDelay: 20, maxDelay: 200, ...opts });
}

// A seeded generator (mulberry32): the test draws the same numbers on every run, so a
// statistical test at alpha 0.01 cannot fail one run in a hundred by chance.
function seeded(seed) {
    return () => {
        seed = (seed + 0x6d2b79f5) | 0;
        let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
        t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
}

test("full-jitter backoff is uniform on [0, min(max, base*2^n)] (Kolmogorov-Smirnov)", () => {
    const random = seeded(20261205);
    for (const attempt of [0, 3, 10]) {
        const cap = Math.min(20000, 500 * 2 ** attempt);
        const n = 4000;
        const xs = Array.from({ length: n }, () => backoffDelay(attempt, 500, 20000, random) / cap)
            .sort((a, b) => a - b);
        let d = 0;
        xs.forEach((x, i) => { d = Math.max(d, Math.abs(x - i / n), Math.abs(x - (i + 1) / n)); });
        assert.ok(d < 1.63 / Math.sqrt(n), `attempt ${attempt}: D = ${d}`); // alpha 0.01
        assert.ok(xs[n - 1] <= 1 && xs[0] >= 0);
    }
    // The first retry is within 0.5 s; the cap is 20 s and the jitter is never clipped away.
    assert.ok(backoffDelay(0, 500, 20000, () => 0.999) < 500);
    assert.equal(backoffDelay(40, 500, 20000, () => 0.5), 10000);
});

test("retry window from a drain close reason", () => {
    assert.deepEqual(retryWindow("going away; retry=500-5000"), [500, 5000]);
    assert.equal(retryWindow("going away"), null);
    assert.equal(retryWindow("retry=9-3"), null);
});

test("states, subscribe on open, and publications delivered once and in order", async () => {
    const c = client();
    const states = [];
    c.on("state", (s) => states.push(s));
    const got = [];
    const sub = c.subscribe("t", (data, ctx) => got.push([data, ctx.offset]));
    const ws = FakeWS.last();
    assert.equal(ws.offered, "moonwire.v1");
    ws.accept();
    assert.deepEqual(ws.sent[0], ["s", 1, "t"]);
    ws.push(["S", 1, { recovered: true, o: 10, e: "ep" }]);
    for (const o of [11, 12, 12, 11, 13]) ws.push(["p", "t", o, "ep", "d" + o]);
    assert.deepEqual(got, [["d11", 11], ["d12", 12], ["d13", 13]]);
    assert.equal(sub.offset, 13);
    assert.deepEqual(states, ["open"]);
    c.close();
    assert.equal(c.state, "closed");
});

test("after a drop: resubscribes from the last offset; recovered ones are not duplicated", async () => {
    const c = client();
    const got = [];
    const events = [];
    const sub = c.subscribe("t", (d, ctx) => got.push(ctx.offset));
    sub.on("subscribed", (e) => events.push(["subscribed", e.recovered, e.wasRecovering]));
    sub.on("resync", (e) => events.push(["resync", e.offset]));
    let ws = FakeWS.last();
    ws.accept();
    ws.push(["S", 1, { recovered: true, o: 0, e: "ep" }]);
    for (let o = 1; o <= 5; o++) ws.push(["p", "t", o, "ep", "x"]);
    ws.drop(1006);
    assert.equal(c.state, "offline");
    await sleep(60); // first retry within minDelay (20 ms)
    ws = FakeWS.last();
    assert.equal(FakeWS.all.length, 2);
    ws.accept();
    assert.deepEqual(ws.sent[0], ["s", 2, "t", { o: 5, e: "ep" }]);
    ws.push(["S", 2, { recovered: true, o: 8, e: "ep" }]);
    for (const o of [4, 5, 6, 7, 8, 9]) ws.push(["p", "t", o, "ep", "x"]);
    assert.deepEqual(got, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.deepEqual(events, [["subscribed", true, false], ["subscribed", true, true]]);
    c.close();
});

test("resync exactly once when the server cannot recover, then live from the new position", async () => {
    const c = client();
    const got = [];
    let resyncs = 0;
    const sub = c.subscribe("t", (d, ctx) => got.push(ctx.offset));
    sub.on("resync", () => resyncs++);
    let ws = FakeWS.last();
    ws.accept();
    ws.push(["S", 1, { recovered: true, o: 3, e: "a" }]);
    ws.push(["p", "t", 4, "a", "x"]);
    ws.drop(1006);
    await sleep(60);
    ws = FakeWS.last();
    ws.accept();
    ws.push(["S", 2, { recovered: false, o: 1, e: "b" }]);
    ws.push(["p", "t", 2, "b", "x"]);
    ws.push(["p", "t", 3, "b", "x"]);
    assert.equal(resyncs, 1);
    assert.deepEqual(got, [4, 2, 3]);
    c.close();
});

test("the server's ['R'] (history lost while subscribed): resync once, then from its position", async () => {
    const c = client();
    const got = [];
    const resyncs = [];
    const sub = c.subscribe("t", (d, ctx) => got.push([ctx.epoch, ctx.offset]));
    sub.on("resync", (e) => resyncs.push([e.epoch, e.offset]));
    let ws = FakeWS.last();
    ws.accept();
    ws.push(["S", 1, { recovered: true, o: 3, e: "a" }]);
    ws.push(["p", "t", 4, "a", "x"]);
    ws.push(["R", "t", { o: 0, e: "b" }]);
    ws.push(["R", "t", { o: 0, e: "b" }]); // the same position again: no second resync
    ws.push(["p", "t", 1, "b", "x"]);
    ws.push(["p", "t", 2, "b", "x"]);
    ws.push(["p", "t", 2, "b", "x"]);
    assert.deepEqual(resyncs, [["b", 0]]);
    assert.deepEqual(got, [["a", 4], ["b", 1], ["b", 2]]);
    ws.drop(1006);
    await sleep(60);
    ws = FakeWS.last();
    ws.accept();
    assert.deepEqual(ws.sent[0], ["s", 2, "t", { o: 2, e: "b" }]);
    c.close();
});

test("unsubscribe stops deliveries at once, even mid-stream", () => {
    const c = client();
    const got = [];
    const sub = c.subscribe("t", (d, ctx) => { got.push(ctx.offset); if (ctx.offset === 2) sub.unsubscribe(); });
    const ws = FakeWS.last();
    ws.accept();
    ws.push(["S", 1, { recovered: true, o: 0, e: "e" }]);
    for (let o = 1; o <= 4; o++) ws.push(["p", "t", o, "e", "x"]);
    assert.deepEqual(got, [1, 2]);
    assert.deepEqual(ws.sent[1].slice(0, 1).concat(ws.sent[1].slice(2)), ["u", "t"]);
    c.close();
});

test("send returns false while not open, by default", () => {
    const c = client();
    assert.equal(c.send("x"), false);
    assert.equal(c.publish("t", "x"), false);
    FakeWS.last().accept();
    assert.equal(c.send("x"), true);
    assert.deepEqual(FakeWS.last().sent.at(-1), ["m", "x"]);
    c.close();
});

test("offline queue: kept in order, flushed after the subscribes, overflow reported", async () => {
    const dropped = [];
    const c = client({ queue: { max: 3, onDrop: (d) => dropped.push(d.data) } });
    c.subscribe("t", () => {});
    assert.equal(c.send("1"), true);
    assert.equal(c.publish("t", "2"), true);
    assert.equal(c.send("3"), true);
    assert.equal(c.send("4"), false);
    assert.deepEqual(dropped, ["4"]);
    const ws = FakeWS.last();
    ws.accept();
    assert.deepEqual(ws.sent.map((e) => e[0]), ["s", "m", "p", "m"]);
    assert.deepEqual([ws.sent[1][1], ws.sent[2][3], ws.sent[3][1]], ["1", "2", "3"]);
    c.close();
});

test("binary messages carry 'm' and the bytes", () => {
    const c = client();
    const ws = FakeWS.last();
    ws.accept();
    c.send(new Uint8Array([1, 2]));
    assert.deepEqual([...ws.sent.at(-1)], [0x6d, 1, 2]);
    let got;
    c.on("message", (m) => { got = m; });
    ws.onmessage({ data: new Uint8Array([0x6d, 9, 8]).buffer });
    assert.deepEqual([...got], [9, 8]);
    c.close();
});

test("close codes 4000-4099 stop reconnecting", async () => {
    const c = client();
    FakeWS.last().accept();
    FakeWS.last().drop(4001, "banned");
    assert.equal(c.state, "closed");
    await sleep(60);
    assert.equal(FakeWS.all.length, 1);
});

test("a drain close (1001) waits within the server's retry window", async () => {
    const c = client({ random: () => 0.5 });
    FakeWS.last().accept();
    FakeWS.last().drop(1001, "going away; retry=100-140");
    await sleep(60);
    assert.equal(FakeWS.all.length, 1, "not before the window");
    await sleep(120);
    assert.equal(FakeWS.all.length, 2, "within it");
    c.close();
});

test("a silent connection is declared dead after heartbeat + margin, and replaced", async () => {
    const c = client({ heartbeatMargin: 30 });
    const ws = FakeWS.last();
    ws.accept(50);
    assert.equal(c.state, "open");
    await sleep(40);
    ws.push(["h"]);
    await sleep(60);
    assert.equal(c.state, "open", "a heartbeat keeps it alive");
    await sleep(80);
    assert.notEqual(c.state, "open");
    assert.equal(ws.closed, 1000, "the dead socket is let go");
    await sleep(250);
    assert.equal(FakeWS.all.length >= 2, true, "and replaced");
    c.close();
});

test("a handshake that never completes counts as a failure", async () => {
    const c = client({ connectTimeout: 30 });
    await sleep(80);
    assert.ok(FakeWS.all.length >= 2);
    c.close();
});

test("the server's errors reach the subscription and the client", () => {
    const c = client();
    const errs = [];
    c.on("error", (e) => errs.push(e.code));
    const sub = c.subscribe("secret", () => {});
    let subErr;
    sub.on("error", (e) => { subErr = e; });
    const ws = FakeWS.last();
    ws.accept();
    ws.push(["E", 1, 103, "no"]);
    assert.deepEqual(subErr, { code: 103, reason: "no" });
    assert.equal(sub.active, false);
    assert.deepEqual(errs, [103]);
    c.close();
});

test("publications of topics the app subscribed the connection to reach 'publication'", () => {
    const c = client();
    const got = [];
    c.on("publication", (p) => got.push([p.topic, p.data]));
    const ws = FakeWS.last();
    ws.accept();
    ws.push(["p", "lobby", 0, "", "x"]);
    assert.deepEqual(got, [["lobby", "x"]]);
    c.close();
});

test("paused while the browser is offline; back online, it retries within a second", async () => {
    const target = new EventTarget();
    const saved = Object.getOwnPropertyDescriptor(globalThis, "navigator");
    const [add, remove] = [globalThis.addEventListener, globalThis.removeEventListener];
    Object.defineProperty(globalThis, "navigator", { value: { onLine: true }, configurable: true,
                                                     writable: true });
    globalThis.addEventListener = target.addEventListener.bind(target);
    globalThis.removeEventListener = target.removeEventListener.bind(target);
    try {
        const c = client({ random: () => 0.05 });
        FakeWS.last().accept();
        globalThis.navigator.onLine = false;
        FakeWS.last().drop(1006);
        assert.equal(c.state, "offline");
        await sleep(120);
        assert.equal(FakeWS.all.length, 1, "no attempt while offline");
        globalThis.navigator.onLine = true;
        target.dispatchEvent(new Event("online"));
        await sleep(120); // 0.05 of a second
        assert.equal(FakeWS.all.length, 2, "retried once online");
        c.close();
    } finally {
        if (saved) Object.defineProperty(globalThis, "navigator", saved);
        else delete globalThis.navigator;
        globalThis.addEventListener = add;
        globalThis.removeEventListener = remove;
    }
});

test("queued sends older than maxAge are reported as expired, not sent", async () => {
    const drops = [];
    const c = client({ queue: { max: 10, maxAge: 20 } });
    c.on("drop", (d) => drops.push([d.data, d.why]));
    c.send("old");
    await sleep(40);
    c.send("new");
    const ws = FakeWS.last();
    ws.accept();
    assert.deepEqual(drops, [["old", "expired"]]);
    assert.deepEqual(ws.sent.map((e) => e[1]), ["new"]);
    c.close();
});
