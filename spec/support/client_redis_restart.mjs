// N moonwire.js clients (node's WebSocket) on node A through A's restart, with the Redis engine
// keeping the history: a publisher on node B sends 1..COUNT to the history topic h:feed at a
// steady rate all along. The spec restarts A (SIGTERM drain, then a new process on the same
// port) once this script has written "ready" to STATE. Each client must see exactly 1..COUNT,
// in order, each once, with no resync: what it missed while A was down comes from Redis.
//   node client_redis_restart.mjs MODULE PORT_A PORT_B N COUNT STATE
// Prints one JSON line.
import fs from "node:fs";

const [moduleUrl, portA, portB, n, count, state] = [process.argv[2], +process.argv[3],
    +process.argv[4], +process.argv[5], +process.argv[6], process.argv[7]];
const { Moonwire } = await import(moduleUrl);

const clients = [];
for (let i = 0; i < n; i++) {
    const rec = { got: [], resyncs: 0, subscribed: 0, recovered: 0 };
    rec.c = new Moonwire(`ws://127.0.0.1:${portA}/`);
    const sub = rec.c.subscribe("h:feed", (data) => rec.got.push(+data));
    sub.on("resync", () => rec.resyncs++);
    sub.on("subscribed", (e) => { rec.subscribed++; if (e.recovered && e.wasRecovering) rec.recovered++; });
    clients.push(rec);
}
const until = async (cond, ms) => {
    const deadline = Date.now() + ms;
    while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return cond();
};
const fail = (why) => {
    console.log(JSON.stringify({ ok: false, why }));
    process.exit(0);
};

if (!await until(() => clients.every((r) => r.subscribed === 1), 15000)) fail("not all subscribed");
await new Promise((r) => setTimeout(r, 300)); // A's SUBSCRIBE reaches Redis
const pub = new Moonwire(`ws://127.0.0.1:${portB}/`);
await until(() => pub.state === "open", 5000);
pub.send(`start ${count}`);
if (!await until(() => clients.every((r) => r.got.length >= 20), 10000)) fail("1..20 not received");
fs.writeFileSync(state, "ready\n");
if (!await until(() => clients.every((r) => r.subscribed === 2), 40000))
    fail(`${clients.filter((r) => r.subscribed < 2).length} clients did not come back`);
await until(() => clients.every((r) => r.got.length >= count), 30000);
await new Promise((r) => setTimeout(r, 300));

const want = JSON.stringify([...Array(count).keys()].map((i) => i + 1));
const wrong = clients.filter((r) => JSON.stringify(r.got) !== want);
const resyncs = clients.map((r) => r.resyncs);
console.log(JSON.stringify({ ok: true, clients: n, wrong: wrong.length,
                             example: wrong.length ? wrong[0].got.length : 0,
                             recovered: clients.filter((r) => r.recovered === 1).length,
                             resync_max: Math.max(...resyncs) }));
for (const r of clients) r.c.close();
pub.close();
process.exit(0);
