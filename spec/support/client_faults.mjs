// moonwire.js (node's WebSocket) against a real moonwire whose pid is PID, for the failures a
// proxy cannot make: the server process stopped (SIGSTOP: only the heartbeat can tell, and a
// new handshake hangs until SIGCONT), and an app that closes with a do-not-reconnect code.
//   node client_faults.mjs MODULE PORT PID
// Prints one JSON line.
const [moduleUrl, port, pid] = [process.argv[2], +process.argv[3], +process.argv[4]];
const { Moonwire } = await import(moduleUrl);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const until = async (cond, ms) => {
    const deadline = Date.now() + ms;
    while (!cond() && Date.now() < deadline) await sleep(10);
    return cond();
};
const out = {};

// 1. Heartbeat death: the app's heartbeat is 0.2 s, the margin 0.3 s.
const c = new Moonwire(`ws://127.0.0.1:${port}/`, { heartbeatMargin: 300, connectTimeout: 500,
                                                    minDelay: 50, maxDelay: 200 });
const states = [];
c.on("state", (s) => states.push([s, Date.now()]));
out.opened = await until(() => c.state === "open", 5000);
await sleep(300);
const stoppedAt = Date.now();
process.kill(pid, "SIGSTOP");
out.detected = await until(() => c.state !== "open", 3000);
out.detected_ms = Date.now() - stoppedAt;
await sleep(800); // handshakes hang meanwhile, and time out
out.open_while_stopped = c.state === "open";
process.kill(pid, "SIGCONT");
out.reopened = await until(() => c.state === "open", 5000);
c.close();

// 2. A close code in 4000-4099: closed for good, no new connection.
const d = new Moonwire(`ws://127.0.0.1:${port}/`, { minDelay: 20, maxDelay: 50 });
let opens = 0;
d.on("state", (s) => { if (s === "open") opens++; });
await until(() => d.state === "open", 5000);
d.send("ban me");
out.banned = await until(() => d.state === "closed", 3000);
await sleep(300);
out.opens_after_ban = opens;

// 3. The offline queue: what was sent while away arrives, in order, after reconnecting; what
// did not fit is reported.
const dropped = [];
// The first retry after an open connection comes within minDelay: 400 ms here, long enough
// to send while offline (random() below 0.25 would be too soon: it is fixed at 0.5).
const q = new Moonwire(`ws://127.0.0.1:${port}/`, {
    queue: { max: 3, onDrop: (x) => dropped.push(x.data) }, minDelay: 400, maxDelay: 400,
    random: () => 0.5 });
const echoed = [];
q.on("message", (m) => echoed.push(m));
let wentOffline = false;
q.on("state", (s) => {
    if (s === "offline" && !wentOffline) {
        wentOffline = true;
        out.queued = ["q1", "q2", "q3", "q4"].map((m) => q.send(m));
    }
});
await until(() => q.state === "open", 5000);
q.send("drop me"); // the app closes with 1012: come back
await until(() => echoed.length >= 3, 5000);
out.echoed = echoed;
out.dropped = dropped;
out.default_send_offline = (() => { const z = new Moonwire("ws://127.0.0.1:1/"); const r = z.send("x"); z.close(); return r; })();
q.close();
console.log(JSON.stringify(out));
process.exit(0);
