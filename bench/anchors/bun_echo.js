// Bun echo anchor for `make bench`: every message goes back to its sender with the same type.
//   node_modules/.bin/bun bun_echo.js PORT      (PORT 0: any free port; prints "ready PORT")
// Limits are raised the same way as bench/moonwire-bench.conf.lua: no compression, a long idle
// timeout, 64 MiB of backpressure per connection, messages up to 16 MiB.
const port = Number(process.argv[2] ?? process.env.PORT ?? 9001);

const server = Bun.serve({
  hostname: "127.0.0.1",
  port,
  fetch(req, server) {
    if (server.upgrade(req)) return;
    return new Response("WebSocket only\n", { status: 426 });
  },
  websocket: {
    perMessageDeflate: false,
    idleTimeout: 900,
    maxPayloadLength: 16 << 20,
    backpressureLimit: 64 << 20,
    closeOnBackpressureLimit: false,
    // A string arrives for a text message and goes out as text; a Buffer is binary both ways.
    message(ws, message) {
      ws.send(message);
    },
  },
});

console.log(`ready ${server.port}`);
