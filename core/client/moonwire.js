// moonwire.js: the client of moonwire's moonwire.v1 protocol (docs/protocol.md, docs/client.md).
// One file, no dependencies; an ES module (the server also serves a plain-script build that sets
// globalThis.Moonwire). Reconnects with full-jitter backoff, restores subscriptions from the
// last offset seen (each publication reaches the callback at most once, in offset order),
// says "resync" once when the server could not recover, declares a silent connection dead
// after the server's heartbeat interval plus a margin, and never drops a send silently.

const PROTOCOL = "moonwire.v1";
const dec = new TextDecoder();

// Full jitter: uniform in [0, min(max, base * 2^attempt)], drawn afresh every time, so clients
// never fall back into lockstep (no clipping of the jitter at the cap).
export function backoffDelay(attempt, base = 500, max = 20000, random = Math.random) {
    return random() * Math.min(max, base * Math.pow(2, Math.min(attempt, 30)));
}

// The retry window a draining server gives in its close reason: "...retry=500-5000".
export function retryWindow(reason) {
    const m = /retry=(\d+)-(\d+)/.exec(reason || "");
    return m && +m[1] <= +m[2] ? [+m[1], +m[2]] : null;
}

class Emitter {
    constructor() { this._h = {}; }
    on(event, fn) { (this._h[event] ||= []).push(fn); return this; }
    off(event, fn) { this._h[event] = (this._h[event] || []).filter((f) => f !== fn); return this; }
    _emit(event, arg) {
        for (const fn of this._h[event] || []) {
            try { fn(arg); } catch (e) { setTimeout(() => { throw e; }); }
        }
    }
}

export class Subscription extends Emitter {
    constructor(client, topic, onPublication) {
        super();
        this.client = client;
        this.topic = topic;
        this.offset = 0;     // the last offset delivered (0: none yet)
        this.epoch = "";
        this.active = true;
        this._fn = onPublication;
        this._id = 0;        // the pending subscribe's id
    }
    unsubscribe() {
        if (!this.active) return;
        this.active = false;
        const c = this.client;
        c._subs.delete(this.topic);
        if (c._ws && c.state === "open") c._raw(["u", c._nextId++, this.topic]);
    }
    // One publication: at most once, in offset order, in one epoch.
    _deliver(offset, epoch, data) {
        if (!this.active) return;
        if (offset > 0) {
            if (this.epoch && epoch !== this.epoch) {
                this.epoch = epoch;
                this.offset = offset;
                this._emit("resync", { offset, epoch });
            } else if (offset <= this.offset) {
                return;
            }
            this.offset = offset;
            this.epoch = epoch;
        }
        this._fn && this._fn(data, { topic: this.topic, offset, epoch });
    }
}

export class Moonwire extends Emitter {
    constructor(url, options = {}) {
        super();
        this.url = url;
        this.options = options;
        this._WS = options.WebSocket || globalThis.WebSocket;
        if (!this._WS)
            throw new Error("moonwire: this runtime has no WebSocket; pass options.WebSocket " +
                            "(on Node 20, the ws package's WebSocket)");
        this._base = options.minDelay ?? 500;
        this._max = options.maxDelay ?? 20000;
        this._random = options.random || Math.random;
        this._connectTimeout = options.connectTimeout ?? 10000;
        this._queueMax = options.queue ? options.queue.max ?? 100 : 0;
        this._queueAge = options.queue ? options.queue.maxAge ?? Infinity : 0;
        this._queue = [];
        this._subs = new Map();
        this._nextId = 1;
        this._attempt = 0;
        this._hb = 25000;
        this._ws = null;
        this._timer = null;
        this._dead = null;
        this.state = "connecting";
        const g = globalThis;
        this._nav = g.navigator;
        if (g.addEventListener && this._nav && "onLine" in this._nav) {
            this._online = () => this._wake();
            this._visible = () => g.document && g.document.visibilityState === "visible" &&
                this._wake();
            g.addEventListener("online", this._online);
            g.addEventListener("visibilitychange", this._visible);
        }
        this._connect();
    }

    // ---- public API -------------------------------------------------------------------------

    subscribe(topic, onPublication) {
        if (this._subs.has(topic)) throw new Error(`moonwire: already subscribed to "${topic}"`);
        const sub = new Subscription(this, topic, onPublication);
        this._subs.set(topic, sub);
        if (this.state === "open") this._sendSubscribe(sub);
        return sub;
    }

    // An app message: to app.message on the server. Returns true when sent or queued; false
    // when not open and there is no queue (or it is full: options.queue.onDrop hears of it).
    send(data) { return this._out(["m", data]); }

    // A publication to topic, authorised by the app's app.publish; refusals come as "error".
    publish(topic, data) { return this._out(["p", 0, topic, data]); }

    close() {
        this._setState("closed");
        this._stop();
        const g = globalThis;
        if (this._online) {
            g.removeEventListener("online", this._online);
            g.removeEventListener("visibilitychange", this._visible);
        }
    }

    // ---- the connection ---------------------------------------------------------------------

    _setState(s) {
        if (this.state === s) return;
        this.state = s;
        this._emit("state", s);
    }

    _clearTimers() {
        clearTimeout(this._timer);
        clearTimeout(this._dead);
        this._timer = this._dead = null;
    }

    _stop() {
        this._clearTimers();
        const ws = this._ws;
        this._ws = null;
        if (ws) {
            ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
            try { ws.close(1000); } catch (e) { /* already closing */ }
        }
    }

    _connect() {
        this._clearTimers();
        if (this.state === "closed") return;
        if (this._nav && this._nav.onLine === false) return this._setState("offline");
        this._setState("connecting");
        let ws;
        try {
            ws = new this._WS(this.url, PROTOCOL);
        } catch (e) {
            return this._lost(1006, String(e));
        }
        ws.binaryType = "arraybuffer";
        this._ws = ws;
        // A handshake that never ends (a frozen server) counts as a failure.
        this._dead = setTimeout(() => this._lost(1006, "connect timeout"), this._connectTimeout);
        ws.onopen = () => {
            if (ws.protocol !== PROTOCOL) {
                this._emit("error", { code: 0, reason: "the server did not accept moonwire.v1 " +
                                      "(enable app.channels or app.subscribe in the app)" });
                this._lost(1006, "no moonwire.v1");
            }
        };
        ws.onmessage = (ev) => this._receive(ev.data);
        ws.onclose = (ev) => this._lost(ev.code, ev.reason);
        ws.onerror = () => {};
    }

    // The connection is gone (closed, failed, or declared dead): when to try again.
    _lost(code, reason) {
        const wasOpen = this.state === "open";
        this._stop();
        if (this.state === "closed") return;
        this._emit("disconnect", { code, reason });
        if (code >= 4000 && code <= 4099) {
            // The server says: do not come back.
            this._setState("closed");
            return;
        }
        let delay;
        const win = (code === 1001 || code === 1012) && retryWindow(reason);
        if (win) {
            delay = win[0] + this._random() * (win[1] - win[0]);
        } else {
            delay = backoffDelay(wasOpen ? 0 : this._attempt, this._base, this._max, this._random);
            this._attempt = wasOpen ? 1 : this._attempt + 1;
        }
        this._setState("offline");
        if (this._nav && this._nav.onLine === false) return; // "online" wakes it
        this._timer = setTimeout(() => this._connect(), delay);
    }

    // Back online, or visible again: retry soon (jittered) unless a try is under way.
    _wake() {
        if (this.state !== "offline" || (this._nav && this._nav.onLine === false)) return;
        clearTimeout(this._timer);
        this._timer = setTimeout(() => this._connect(), this._random() * 1000);
    }

    _alive() {
        clearTimeout(this._dead);
        const margin = this.options.heartbeatMargin ?? Math.max(1000, this._hb * 0.4);
        this._dead = setTimeout(() => this._lost(1006, "heartbeat timeout"), this._hb + margin);
    }

    _raw(env) {
        try {
            this._ws.send(JSON.stringify(env));
            return true;
        } catch (e) {
            return false;
        }
    }

    _sendSubscribe(sub) {
        sub._id = this._nextId++;
        const env = ["s", sub._id, sub.topic];
        if (sub.offset > 0) env.push({ o: sub.offset, e: sub.epoch });
        sub._recovering = sub.offset > 0;
        this._raw(env);
    }

    _write(env) {
        if (env[0] === "p") env = ["p", this._nextId++, env[2], env[3]];
        const data = env[env.length - 1];
        if (env[0] === "m" && typeof data !== "string") {
            const bytes = data instanceof ArrayBuffer ? new Uint8Array(data)
                : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
            const frame = new Uint8Array(bytes.length + 1);
            frame[0] = 0x6d;
            frame.set(bytes, 1);
            try { this._ws.send(frame); return true; } catch (e) { return false; }
        }
        return this._raw(env);
    }

    _out(env) {
        if (this.state === "open") return this._write(env);
        if (this._queueMax > 0) {
            if (this._queue.length < this._queueMax) {
                this._queue.push({ env, at: Date.now() });
                return true;
            }
            this._drop(env, "queue full");
        }
        return false;
    }

    _drop(env, why) {
        const info = { data: env[env.length - 1], topic: env[0] === "p" ? env[2] : undefined, why };
        const q = this.options.queue;
        if (q && q.onDrop) q.onDrop(info);
        this._emit("drop", info);
    }

    // ---- what the server sends --------------------------------------------------------------

    _receive(data) {
        this._alive();
        if (typeof data !== "string") return this._binary(new Uint8Array(data));
        let env;
        try { env = JSON.parse(data); } catch (e) { return; }
        switch (env[0]) {
        case "W": this._welcome(env[1] || {}); break;
        case "p": this._publication(env[1], env[2], env[3], env[4]); break;
        case "S": this._subscribed(env[1], env[2] || {}); break;
        case "R": {
            // The server lost the topic's history: go on from its position (once per loss;
            // a repeat of the position we hold is no new loss).
            const sub = this._subs.get(env[1]);
            const pos = env[2] || {};
            if (sub && !(sub.epoch === pos.e && sub.offset === pos.o)) {
                sub.offset = pos.o;
                sub.epoch = pos.e;
                sub._emit("resync", { offset: sub.offset, epoch: sub.epoch });
            }
            break;
        }
        case "E": this._error(env[1], env[2], env[3]); break;
        case "m": this._emit("message", env[1]); break;
        }
    }

    _welcome(w) {
        this._hb = w.hb || 25000;
        this._alive();
        this._attempt = 0;
        this._setState("open");
        for (const sub of this._subs.values()) this._sendSubscribe(sub);
        // Queued sends go after the subscribes, in order, in this new session.
        const q = this._queue;
        this._queue = [];
        const now = Date.now();
        for (const { env, at } of q) {
            if (now - at > this._queueAge) this._drop(env, "expired");
            else this._write(env);
        }
    }

    _subById(id) {
        for (const sub of this._subs.values()) if (sub._id === id) return sub;
        return null;
    }

    _subscribed(id, info) {
        const sub = this._subById(id);
        if (!sub) return;
        const was = sub._recovering;
        sub._recovering = false;
        if (info.o !== undefined) {
            if (!was || !info.recovered) {
                sub.offset = info.o;
                sub.epoch = info.e;
            } else {
                sub.epoch = info.e;
            }
        }
        sub._emit("subscribed", { recovered: !!info.recovered, wasRecovering: !!was });
        if (was && !info.recovered) sub._emit("resync", { offset: sub.offset, epoch: sub.epoch });
    }

    _error(id, code, reason) {
        const sub = id ? this._subById(id) : null;
        if (sub && code !== 107) {
            sub.active = false;
            this._subs.delete(sub.topic);
            sub._emit("error", { code, reason });
        }
        this._emit("error", { id, code, reason, topic: sub ? sub.topic : undefined });
    }

    _binary(b) {
        if (b[0] === 0x6d) return this._emit("message", b.subarray(1));
        if (b[0] !== 0x70 || b.length < 12) return;
        const tl = (b[1] << 8) | b[2];
        const topic = dec.decode(b.subarray(3, 3 + tl));
        let i = 3 + tl, offset = 0;
        for (let k = 0; k < 8; k++) offset = offset * 256 + b[i++];
        const el = b[i++];
        const epoch = dec.decode(b.subarray(i, i + el));
        this._publication(topic, offset, epoch, b.subarray(i + el));
    }

    // To its subscription; a topic the app subscribed this connection to itself
    // (conn:subscribe) has none here: "publication" hears those.
    _publication(topic, offset, epoch, data) {
        const sub = this._subs.get(topic);
        if (sub) sub._deliver(offset, epoch, data);
        else this._emit("publication", { topic, offset, epoch, data });
    }
}

export default Moonwire;
