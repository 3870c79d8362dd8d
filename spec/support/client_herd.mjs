// N moonwire.js clients (node's WebSocket) through a server restart: the spec restarts the
// server (SIGTERM drain, then a new process on the same port) once this script has written
// "ready" to STATE. Each client is subscribed to the history topic h:feed and has seen 1..10;
// the new server has no history, so each must get resync exactly once, then 1..20 published
// after the restart. Reports when each client came back, to see that the reconnects spread.
//   node client_herd.mjs MODULE PORT N STATE
// Prints one JSON line.
import fs from "node:fs";

const [moduleUrl, port, n, state] = [process.argv[2], +process.argv[3], +process.argv[4],
                                     process.argv[5]];
const { Moonwire } = await import(moduleUrl);

const clients = [];
for (let i = 0; i < n; i++) {
    const rec = { got: [], resyncs: 0, opens: [], subscribed: 0 };
    rec.c = new Moonwire(`ws://127.0.0.1:${port}/`);
    rec.c.on("state", (s) => { if (s === "open") rec.opens.push(Date.now()); });
    const sub = rec.c.subscribe("h:feed", (data) => rec.got.push(+data));
    sub.on("resync", () => rec.resyncs++);
    sub.on("subscribed", () => rec.subscribed++);
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
clients[0].c.send("start 10");
if (!await until(() => clients.every((r) => r.got.length === 10), 10000)) fail("1..10 not received");
const restartAt = Date.now();
fs.writeFileSync(state, "ready\n");
if (!await until(() => clients.every((r) => r.subscribed === 2), 40000))
    fail(`${clients.filter((r) => r.subscribed < 2).length} clients did not come back`);
clients[0].c.send("start 20");
await until(() => clients.every((r) => r.got.length === 30), 10000);
await new Promise((r) => setTimeout(r, 200));

const want = [...Array(10).keys()].map((i) => i + 1).concat([...Array(20).keys()].map((i) => i + 1));
const wrong = clients.filter((r) => JSON.stringify(r.got) !== JSON.stringify(want)).length;
const resyncs = clients.map((r) => r.resyncs);
const back = clients.map((r) => r.opens[1] - restartAt).sort((a, b) => a - b);
let busiest = 0;
for (let i = 0, j = 0; i < back.length; i++) {
    while (back[j] < back[i] - 100) j++;
    busiest = Math.max(busiest, i - j + 1);
}
console.log(JSON.stringify({ ok: true, clients: n, wrong, resync_min: Math.min(...resyncs),
                             resync_max: Math.max(...resyncs), busiest_100ms: busiest,
                             first_back_ms: back[0], last_back_ms: back[back.length - 1] }));
for (const r of clients) r.c.close();
process.exit(0);
