// The benchmark app on Node's socket.io 4.8 (installed in benchmarks/node/).
// The app is written down in benchmarks/README.md.  usage: node node_app.js PORT
"use strict";
const path = require("path");
const { createRequire } = require("module");
const requireBench = createRequire(path.join(__dirname, "..", "node", "package.json"));
const { createServer } = require("http");
const { Server } = requireBench("socket.io");

const PAD = "x".repeat(24);
const ATTACHMENT = Buffer.from(Array.from({ length: 64 }, (_, i) => i));

const httpServer = createServer();
const io = new Server(httpServer, { serveClient: false });

io.on("connection", (socket) => {
  socket.on("join", (rooms, ack) => {
    socket.join(rooms);
    if (typeof ack === "function") ack(true);
  });
  socket.on("echo", (data, ack) => {
    if (typeof ack === "function") ack(data);
  });
  socket.on("chat", (msg, ack) => {
    socket.to(msg.room).emit("m", msg.d);
    if (typeof ack === "function") ack(true);
  });
  socket.on("burst", (spec, ack) => {
    const data = { ph: spec.ph, t: spec.t, p: spec.pad ? "x".repeat(spec.pad) : PAD };
    for (let i = 0; i < spec.k; i++) {
      switch (spec.kind) {
        case "all": io.emit("b", data); break;
        case "room": io.to("g0").emit("b", data); break;
        case "multi": io.to(["g0", "g1", "g2"]).except("x0").emit("b", data); break;
        case "bin": io.emit("bb", data, ATTACHMENT); break;
        case "uni":
          // the main namespace's sockets, in connection order
          for (const s of io.of("/").sockets.values()) s.emit("b", data);
          break;
      }
    }
    if (typeof ack === "function") ack(true);
  });
});

httpServer.listen(Number(process.argv[2]), "127.0.0.1", 1024);
