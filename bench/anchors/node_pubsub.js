// Node `ws` pub/sub anchor for `make bench`: every connection is a subscriber; every message
// received goes to every open connection (the sender included) with the same type, by
// iterating wss.clients as the ws documentation's broadcast example does.
//   node node_pubsub.js PORT    (PORT 0: any free port; prints "ready PORT")
"use strict";
const { WebSocketServer, WebSocket } = require("ws");

const port = Number(process.argv[2] ?? process.env.PORT ?? 9001);
const wss = new WebSocketServer({
  host: "127.0.0.1",
  port,
  backlog: 4096,
  perMessageDeflate: false,
  maxPayload: 16 << 20,
  clientTracking: true,
});

wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => {
    const opts = { binary: isBinary };
    for (const client of wss.clients) {
      if (client.readyState === WebSocket.OPEN) client.send(data, opts);
    }
  });
  ws.on("error", () => {});
});
wss.on("listening", () => console.log(`ready ${wss.address().port}`));
