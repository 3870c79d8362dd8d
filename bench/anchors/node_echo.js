// Node `ws` echo anchor for `make bench`: every message goes back to its sender, same type.
//   node node_echo.js PORT      (PORT 0: any free port; prints "ready PORT")
// No compression (set explicitly), messages up to 16 MiB; bufferutil (installed beside ws)
// does the unmasking, as the ws documentation recommends for speed.
"use strict";
const { WebSocketServer } = require("ws");

const port = Number(process.argv[2] ?? process.env.PORT ?? 9001);
const wss = new WebSocketServer({
  host: "127.0.0.1",
  port,
  backlog: 4096,
  perMessageDeflate: false,
  maxPayload: 16 << 20,
  clientTracking: false,
});

wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => {
    ws.send(data, { binary: isBinary });
  });
  ws.on("error", () => {});
});
wss.on("listening", () => console.log(`ready ${wss.address().port}`));
