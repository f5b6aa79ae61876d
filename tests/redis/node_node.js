// A Node Socket.IO cluster node for the mixed-cluster tests:
//   node node_node.js '{"port":0,"redis":"redis://...","key":"...","sharded":false,
//                       "requestsTimeout":2.0,"specificResponseChannel":false}'
// (times in seconds, as for roomcast_node.py)
// It speaks the same JSON-lines control protocol as roomcast_node.py:
//   stdout {"ready": port}, then {"id", "result"} / {"id", "error"} per stdin command,
//   and {"event": "server_side", "args": [...]} when a server-side emit arrives.
// Sockets join the comma-separated rooms of their `rooms` query parameter and keep
// {"origin": "node", "port": port} in socket.data; a socket's "relay" event is
// broadcast as is. In commands, {"$bytes": base64} is a Buffer, {"$date": ms} a Date.
"use strict";

const path = require("path");
const readline = require("readline");
const jsDir = path.join(__dirname, "..", "js");
const req = (name) => require(require.resolve(name, { paths: [jsDir] }));
const { Server } = req("socket.io");
const { createAdapter, createShardedAdapter } = req("@socket.io/redis-adapter");
const streams = req("@socket.io/redis-streams-adapter");
const { createClient, createCluster } = req("redis");

const cfg = JSON.parse(process.argv[2] || "{}");
const out = (obj) => process.stdout.write(JSON.stringify(obj, replacer) + "\n");

function replacer(key, value) {
  const original = this[key];
  if (Buffer.isBuffer(original)) return { $bytes: original.toString("base64") };
  return value;
}
function revive(key, value) {
  if (value && typeof value === "object" && typeof value.$bytes === "string") return Buffer.from(value.$bytes, "base64");
  if (value && typeof value === "object" && typeof value.$date === "number") return new Date(value.$date);
  return value;
}

async function main() {
  if (cfg.memory) return serve(null);   // benchmarks: one server, no Redis
  const pub = cfg.cluster ? createCluster({ rootNodes: [{ url: cfg.redis }] }) : createClient({ url: cfg.redis });
  const sub = pub.duplicate();
  pub.on("error", () => {});
  sub.on("error", () => {});
  await Promise.all([pub.connect(), sub.connect()]);
  const opts = { key: cfg.key, requestsTimeout: (cfg.requestsTimeout || 2.0) * 1000,
                 publishOnSpecificResponseChannel: !!cfg.specificResponseChannel };
  const adapter = cfg.streams
    // the streams adapter: stream, channels and session keys all under the test's key
    ? streams.createAdapter(pub, { streamName: cfg.key, channelPrefix: cfg.key,
                                   sessionKeyPrefix: cfg.key + ":session:",
                                   streamCount: cfg.streamCount || 1, onlyPlaintext: !!cfg.onlyPlaintext,
                                   useShardedPubSub: !!cfg.useShardedPubSub })
    : cfg.sharded
    ? createShardedAdapter(pub, sub, { channelPrefix: cfg.key, subscriptionMode: cfg.subscriptionMode || "dynamic" })
    : createAdapter(pub, sub, opts);
  return serve(adapter);
}

async function serve(adapter) {
  const serverOpts = { cors: { origin: "*" } };
  if (adapter) serverOpts.adapter = adapter;
  if (cfg.recovery) serverOpts.connectionStateRecovery = { maxDisconnectionDuration: cfg.recovery * 1000 };
  const io = new Server(serverOpts);

  const setup = (nsp) => {
    nsp.on("connection", (socket) => {
      out({ connection: { nsp: nsp.name, id: socket.id, recovered: socket.recovered,
                          rooms: [...socket.rooms].sort(), data: socket.data } });
      if (socket.recovered) return;
      socket.data = { origin: "node", port: cfg.port };
      const rooms = socket.handshake.query.rooms;
      if (rooms) socket.join(rooms.split(","));
      socket.on("whoami", (ack) => ack({ id: socket.id, origin: "node" }));
      socket.on("join", (room, ack) => { socket.join(room); ack && ack(); });
      socket.on("relay", (...args) => nsp.emit(...args));   // a client's values, broadcast
    });
    nsp.on("server_side", (...args) => {
      const ack = typeof args[args.length - 1] === "function" ? args.pop() : null;
      out({ event: "server_side", nsp: nsp.name, args });
      if (ack) ack({ from: "node", port: cfg.port, args });
    });
  };
  setup(io.of("/"));
  setup(io.of("/custom"));

  const httpServer = require("http").createServer();
  io.attach(httpServer);
  await new Promise((resolve) => httpServer.listen(cfg.port || 0, "127.0.0.1", resolve));
  const port = httpServer.address().port;
  cfg.port = port;

  const target = (cmd) => {
    let op = io.of(cmd.nsp || "/");
    if (cmd.rooms && cmd.rooms.length) op = op.to(cmd.rooms);
    if (cmd.except && cmd.except.length) op = op.except(cmd.except);
    if (cmd.timeout) op = op.timeout(cmd.timeout * 1000);
    return op;
  };
  const handlers = {
    emit: (cmd) => { target(cmd).emit(cmd.ev, ...(cmd.args || [])); return true; },
    emitWithAck: (cmd) => target(cmd).emitWithAck(cmd.ev, ...(cmd.args || [])),
    // a packet as is, through the adapter (what emit() would refuse or never build)
    rawBroadcast: (cmd) => {
      io.of(cmd.nsp || "/").adapter.broadcast(cmd.packet, { rooms: new Set(), except: new Set(), flags: {} });
      return true;
    },
    rawBroadcastWithAck: (cmd) => {
      io.of(cmd.nsp || "/").adapter.broadcastWithAck(
        cmd.packet, { rooms: new Set(), except: new Set(), flags: { timeout: 1000 } }, () => {}, () => {});
      return true;
    },
    fetchSockets: async (cmd) => (await target(cmd).fetchSockets()).map((s) => (
      { id: s.id, rooms: [...s.rooms].sort(), data: s.data, query: s.handshake.query })),
    remoteEmit: async (cmd) => {
      const sockets = await io.of(cmd.nsp || "/").fetchSockets();
      const s = sockets.find((x) => x.id === cmd.sid);
      if (!s) throw new Error("no socket " + cmd.sid);
      s.emit(cmd.ev, ...(cmd.args || []));
      return true;
    },
    socketsJoin: (cmd) => { target(cmd).socketsJoin(cmd.join); return true; },
    socketsLeave: (cmd) => { target(cmd).socketsLeave(cmd.leave); return true; },
    disconnectSockets: (cmd) => { target(cmd).disconnectSockets(!!cmd.close); return true; },
    serverSideEmit: (cmd) => { io.of(cmd.nsp || "/").serverSideEmit(cmd.ev, ...(cmd.args || [])); return true; },
    serverSideEmitWithAck: (cmd) => {
      let nsp = io.of(cmd.nsp || "/");
      if (cmd.timeout) nsp = nsp.timeout(cmd.timeout * 1000);
      return nsp.serverSideEmitWithAck(cmd.ev, ...(cmd.args || []));
    },
    serverCount: (cmd) => io.of(cmd.nsp || "/").adapter.serverCount(),
    localCount: (cmd) => io.of(cmd.nsp || "/").sockets.size,
    // benchmarks: `count` events [seq, send time in ms], at `rate`/s or flat out
    burst: async (cmd) => {
      const start = Date.now(), op = target(cmd), ev = cmd.ev || "b";
      for (let seq = 0; seq < cmd.count; seq++) {
        if (cmd.rate) {
          const delay = start + (seq * 1000) / cmd.rate - Date.now();
          if (delay > 0) await new Promise((r) => setTimeout(r, delay));
        } else if (seq % 256 === 0) {
          await new Promise((r) => setImmediate(r));
        }
        op.emit(ev, seq, performance.timeOrigin + performance.now());
      }
      return (Date.now() - start) / 1000;
    },
    allRooms: async (cmd) => [...(await io.of(cmd.nsp || "/").adapter.allRooms())].sort(),
  };

  readline.createInterface({ input: process.stdin }).on("line", async (line) => {
    if (!line.trim()) return;
    const cmd = JSON.parse(line, revive);
    try {
      const result = await handlers[cmd.op](cmd);
      out({ id: cmd.id, result: result === undefined ? null : result });
    } catch (err) {
      out({ id: cmd.id, error: String(err && err.message || err) });
    }
  }).on("close", () => process.exit(0));
  out({ ready: port });
}

main().catch((err) => { console.error(err); process.exit(1); });
