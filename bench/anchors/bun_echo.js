// Bun echo anchor for `make bench`: every message goes back to its sender with the same type.
//   node_modules/.bin/bun bun_echo.js PORT [deflate]
//   (PORT 0: any free port; prints "ready PORT"; "deflate": perMessageDeflate on, for the
//   compressed scenarios, with Bun's defaults for it)
// Limits are raised the same way as bench/moonwire-bench.conf.lua: no compression unless
// asked, a long idle timeout, 64 MiB of backpressure per connection, messages up to 16 MiB.
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
    // A string arrives for a text message and goes out as text; a Buffer is binary both ways.
    // ws.send compresses only when asked (its second argument), even with perMessageDeflate on;
    // server.publish (bun_pubsub.js) compresses whenever the subscriber negotiated it.
    message(ws, message) {
      ws.send(message, deflate);
    },
  },
});

console.log(`ready ${server.port}`);
