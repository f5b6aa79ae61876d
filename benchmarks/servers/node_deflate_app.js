// Node's socket.io 4.8 for benchmarks/bench_deflate.py: perMessageDeflate on (threshold 1024)
// or off; GET /go?n=N&size=B&seq=S broadcasts N JSON events of about B bytes to every client.
// usage: node node_deflate_app.js PORT on|off
"use strict";
const path = require("path");
const { createRequire } = require("module");
const requireBench = createRequire(path.join(__dirname, "..", "node", "package.json"));
const { createServer } = require("http");
const { Server } = requireBench("socket.io");

const [port, mode] = process.argv.slice(2);

function payload(size, seq) {
  // the same JSON as roomcast_deflate_app.py: records of a chat-like feed, new ones each time
  const items = [];
  let n = seq * 1000;
  while (JSON.stringify(items).length < size) {
    items.push({ id: n, user: "user-" + (n % 37), room: "room-" + (n % 5),
                 text: "message number " + n + " in the feed", ts: 1700000000000 + n * 1000 });
    n++;
  }
  return items;
}

const httpServer = createServer();
httpServer.on("request", (req, res) => {
  const url = new URL(req.url, "http://x");
  if (url.pathname !== "/go") return;
  const n = Number(url.searchParams.get("n")), size = Number(url.searchParams.get("size"));
  const first = Number(url.searchParams.get("seq"));
  const events = Array.from({ length: n }, (_, i) => payload(size, first + i));
  for (const data of events) io.emit("feed", data);
  res.end("ok");
});
const io = new Server(httpServer, {
  serveClient: false,
  perMessageDeflate: mode === "on" ? { threshold: 1024 } : false,
});
httpServer.listen(Number(port), "127.0.0.1", () => console.log("ready"));
