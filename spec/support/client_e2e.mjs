// moonwire.js end to end, under node (its WebSocket: node 22, or node 20 with
// --experimental-websocket), against a real moonwire on PORT, through a TCP proxy of our own
// that cuts the connection (both sockets destroyed) and freezes it (stops forwarding without
// closing: only the heartbeat can tell). The app publishes 1..N on a history topic at a steady
// rate; the subscription's callback must see exactly 1..N in order.
//   node client_e2e.mjs MODULE PORT N CUTS
// Prints one JSON line: { ok, count, first_bad, resyncs, reconnects, states }.
import net from "node:net";

const [moduleUrl, port, n, cuts] = [process.argv[2], +process.argv[3], +process.argv[4],
                                   +process.argv[5]];
const { Moonwire } = await import(moduleUrl);

const links = new Set();
let frozen = false;
const proxy = net.createServer((down) => {
    const up = net.connect(port, "127.0.0.1");
    const link = { up, down };
    links.add(link);
    const forward = (from, to) => from.on("data", (d) => { if (!link.frozen) to.write(d); });
    forward(down, up);
    forward(up, down);
    const end = () => { links.delete(link); up.destroy(); down.destroy(); };
    up.on("close", end); down.on("close", end);
    up.on("error", end); down.on("error", end);
});
await new Promise((r) => proxy.listen(0, "127.0.0.1", r));

const got = [];
let resyncs = 0, reconnects = 0;
const states = [];
const c = new Moonwire(`ws://127.0.0.1:${proxy.address().port}/`,
                       { minDelay: 50, maxDelay: 400, heartbeatMargin: 300, connectTimeout: 2000 });
c.on("state", (s) => { states.push(s); if (s === "open") reconnects++; });
const sub = c.subscribe("h:feed", (data) => got.push(+data));
sub.on("resync", () => resyncs++);
let started = false;
sub.on("subscribed", () => { if (!started) { started = true; c.send(`start ${n}`); } });

// Five cuts, alternating: the TCP connection dropped, then frozen (later dropped by whoever
// gives up first).
let done = 0;
const cutter = setInterval(() => {
    if (done >= cuts) return clearInterval(cutter);
    done++;
    for (const link of links) {
        if (done % 2) { link.up.destroy(); link.down.destroy(); }
        else link.frozen = true;
    }
}, 700);

const deadline = Date.now() + 40000;
while (got.length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
await new Promise((r) => setTimeout(r, 300)); // anything extra would show now
let firstBad = -1;
for (let i = 0; i < Math.max(got.length, n); i++) if (got[i] !== i + 1) { firstBad = i; break; }
console.log(JSON.stringify({ ok: firstBad === -1 && got.length === n, count: got.length,
                             first_bad: firstBad, resyncs, reconnects, cuts: done,
                             states: states.join(",") }));
c.close();
proxy.close();
for (const link of links) { link.up.destroy(); link.down.destroy(); }
process.exit(0);
