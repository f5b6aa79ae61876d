"""A roomcast cluster node for the Redis tests and benchmarks:

    python roomcast_node.py '{"port": 0, "redis": "redis://...", "key": "...",
                              "sharded": false, "requestsTimeout": 2.0}'

Serves a roomcast.Server with the Redis adapter and speaks the JSON-lines control
protocol of node_node.js on stdin/stdout: {"ready": port} first, then one
{"id", "result"} or {"id", "error"} per command, and {"event": "server_side", ...}
when a server-side emit arrives. Sockets join the comma-separated rooms of their
`rooms` query parameter and keep {"origin": "roomcast", "port": port} in socket.data.
"""
from __future__ import annotations

import base64
import json
import logging
import sys
import time

import gevent
import gevent.event
from gevent.fileobject import FileObject
from gevent.pywsgi import WSGIServer
from geventwebsocket.handler import WebSocketHandler

import roomcast
from roomcast.adapters.redis import RedisAdapter


def _revive(obj: dict):
    if set(obj) == {"$bytes"}:
        return base64.b64decode(obj["$bytes"])
    return obj


def _default(value):
    if isinstance(value, (bytes, bytearray)):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    return str(value)


class Node:
    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg
        self.out = FileObject(sys.stdout.buffer.fileno(), "wb", close=False)
        redis = cfg["redis"]
        if cfg.get("cluster"):   # a Redis Cluster, one of whose nodes is at this URL
            from roomcast.adapters._redis_client import make_cluster_client

            redis = make_cluster_client(redis)
        if cfg.get("memory"):    # benchmarks: one server, no Redis
            self.factory = roomcast.InMemoryAdapter
        elif cfg.get("streams"):   # stream, channels and session keys all under the test's key
            from roomcast.adapters.redis_streams import RedisStreamsAdapter

            self.factory = RedisStreamsAdapter.factory(
                redis, stream_name=cfg["key"], channel_prefix=cfg["key"],
                session_key_prefix=cfg["key"] + ":session:",
                stream_count=cfg.get("streamCount", 1), only_plaintext=cfg.get("onlyPlaintext", False),
                use_sharded_pubsub=cfg.get("useShardedPubSub", False),
                requests_timeout=cfg.get("requestsTimeout", 2.0),
                allow_intersections=cfg.get("allowIntersections", False))
        else:
            self.factory = RedisAdapter.factory(
                redis, key=cfg["key"], requests_timeout=cfg.get("requestsTimeout", 2.0),
                publish_on_specific_response_channel=cfg.get("specificResponseChannel", False),
                sharded=cfg.get("sharded", False),
                subscription_mode=cfg.get("subscriptionMode", "dynamic"),
                allow_intersections=cfg.get("allowIntersections", False))
        recovery = {"max_disconnection_duration": cfg["recovery"]} if cfg.get("recovery") else None
        self.io = roomcast.Server(adapter=self.factory, cors={"origin": "*"},
                                  connection_state_recovery=recovery)
        for name in ("/", "/custom"):
            self._setup(self.io.of(name))

    def write(self, obj: dict) -> None:
        self.out.write((json.dumps(obj, default=_default) + "\n").encode())
        self.out.flush()

    def _setup(self, nsp) -> None:
        def on_connection(socket):
            self.write({"connection": {"nsp": nsp.name, "id": socket.id,
                                       "recovered": socket.recovered, "rooms": sorted(socket.rooms),
                                       "data": socket.data}})
            if socket.recovered:
                return
            socket.data = {"origin": "roomcast", "port": self.port}
            rooms = socket.handshake["query"].get("rooms")
            if rooms:
                socket.join(rooms.split(","))
            socket.on("whoami", lambda ack: ack({"id": socket.id, "origin": "roomcast"}))

            def join(room, ack=None):
                socket.join(room)
                if ack:
                    ack()
            socket.on("join", join)
            socket.on("relay", lambda *args: nsp.emit(*args))   # a client's values, broadcast

        nsp.on("connection", on_connection)

        def server_side(*args):
            ack = args[-1] if args and callable(args[-1]) else None
            args = list(args[:-1] if ack else args)
            self.write({"event": "server_side", "nsp": nsp.name, "args": args})
            if ack:
                ack({"from": "roomcast", "port": self.port, "args": args})

        nsp.on("server_side", server_side)

    def target(self, cmd: dict):
        op = self.io.of(cmd.get("nsp") or "/")
        if cmd.get("rooms"):
            op = op.to(cmd["rooms"])
        if cmd.get("intersect"):
            op = op.intersect(cmd["intersect"])
        if cmd.get("except"):
            op = op.except_(cmd["except"])
        if cmd.get("timeout"):
            op = op.timeout(cmd["timeout"])
        return op

    def run_command(self, cmd: dict):
        op = cmd["op"]
        nsp = self.io.of(cmd.get("nsp") or "/")
        args = cmd.get("args") or []
        if op == "emit":
            return self.target(cmd).emit(cmd["ev"], *args)
        if op == "emitWithAck":
            return self.target(cmd).emit_with_ack(cmd["ev"], *args)
        if op == "fetchSockets":
            return [{"id": s.id, "rooms": sorted(s.rooms), "data": s.data, "query": s.handshake.get("query")}
                    for s in self.target(cmd).fetch_sockets()]
        if op == "remoteEmit":
            sockets = [s for s in nsp.fetch_sockets() if s.id == cmd["sid"]]
            if not sockets:
                raise LookupError(f"no socket {cmd['sid']}")
            return sockets[0].emit(cmd["ev"], *args)
        if op == "socketsJoin":
            return self.target(cmd).sockets_join(cmd["join"])
        if op == "socketsLeave":
            return self.target(cmd).sockets_leave(cmd["leave"])
        if op == "disconnectSockets":
            return self.target(cmd).disconnect_sockets(bool(cmd.get("close")))
        if op == "serverSideEmit":
            return nsp.server_side_emit(cmd["ev"], *args)
        if op == "serverSideEmitWithAck":
            return nsp.server_side_emit_with_ack(cmd["ev"], *args)
        if op == "serverCount":
            return nsp.adapter.server_count()
        if op == "localCount":
            return len(nsp.sockets)
        if op == "allRooms":
            return sorted(nsp.adapter.fetch_all_rooms())
        if op == "burst":   # benchmarks: `count` events [seq, send time in ms], at `rate`/s or flat out
            count, rate, target, ev = cmd["count"], cmd.get("rate") or 0, self.target(cmd), cmd.get("ev", "b")
            start = time.time()
            for seq in range(count):
                if rate:
                    delay = start + seq / rate - time.time()
                    if delay > 0:
                        gevent.sleep(delay)   # pacing the load at `rate` events per second
                elif seq % 256 == 0:
                    gevent.sleep(0)   # let the publisher greenlet send what is queued
                target.emit(ev, seq, time.time() * 1000)
            return time.time() - start
        raise ValueError(f"unknown op {op}")

    def handle(self, cmd: dict) -> None:
        try:
            result = self.run_command(cmd)
            self.write({"id": cmd["id"], "result": result})
        except Exception as exc:  # reported to the test, which decides
            self.write({"id": cmd["id"], "error": f"{type(exc).__name__}: {exc}"})

    def serve(self) -> None:
        server = WSGIServer(("127.0.0.1", self.cfg.get("port") or 0), roomcast.WSGIApp(self.io),
                            handler_class=WebSocketHandler, log=None)
        server.start()
        self.port = server.server_port
        self.write({"ready": self.port})
        stdin = FileObject(sys.stdin.buffer.fileno(), "rb", close=False)
        for line in stdin:
            if line.strip():
                gevent.spawn(self.handle, json.loads(line, object_hook=_revive))
        self.io.close()
        server.stop(timeout=1)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    Node(json.loads(sys.argv[1])).serve()
