// Bun pub/sub anchor for `make bench`: every connection subscribes to "bench" on open; every
// message received is published to "bench", the sender included, with the same type.
//   node_modules/.bin/bun bun_pubsub.js PORT [deflate]
//   (PORT 0: any free port; prints "ready PORT"; "deflate": perMessageDeflate on, for the
//   compressed scenarios, with Bun's defaults for it)
// server.publish reaches every subscriber; ws.publish would skip the sender (unless
// publishToSelf is set), and the publisher must get its own copy back.
const port = Number(process.argv[2] ?? process.env.PORT ?? 9001);
const deflate = process.argv[3] === "deflate";

const server = Bun.serve({
  hostname: "127.0.0.1",
  port,
  fetch(req, server) {
    if (server.upgrade(req)) return;
    return new Response("WebSocket only\n", { status: 426 });
  },
  websocket: {
    perMessageDeflate: deflate,
    idleTimeout: 900,
    maxPayloadLength: 16 << 20,
    backpressureLimit: 64 << 20,
    closeOnBackpressureLimit: false,
    open(ws) {
      ws.subscribe("bench");
    },
    message(ws, message) {
      server.publish("bench", message);
    },
  },
});

console.log(`ready ${server.port}`);
