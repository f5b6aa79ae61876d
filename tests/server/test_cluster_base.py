"""The cluster-adapter base (roomcast.adapters.cluster) on the smallest transport there
is: servers in one process whose adapters hand each message to the others' on_message
(in a greenlet, as a network would). The Redis adapters test the base on real Redis;
this checks ClusterAdapterWithHeartbeat's own part: heartbeats, the server count,
requests that wait for each known server, and servers leaving (ADAPTER_CLOSE, or silent
past heartbeat_timeout)."""
from __future__ import annotations

import gevent

import roomcast
from roomcast.adapters.cluster import ClusterAdapterWithHeartbeat


class Bus:
    """The shared medium: every adapter of the bus gets every message of the others."""

    def __init__(self) -> None:
        self.adapters: list[BusAdapter] = []
        self.muted: set[str] = set()     # servers whose messages are lost (a dead process)

    def factory(self, **options):
        return lambda nsp: BusAdapter(nsp, self, **options)

    def send(self, sender: "BusAdapter", message: dict, to: str | None = None) -> None:
        if sender.uid in self.muted:
            return
        for adapter in list(self.adapters):
            if adapter is not sender and (to is None or adapter.uid == to):
                gevent.spawn(adapter.on_message, dict(message))


class BusAdapter(ClusterAdapterWithHeartbeat):
    def __init__(self, nsp, bus: Bus, **options) -> None:
        super().__init__(nsp, **options)
        self.bus = bus

    def init(self) -> None:
        self.bus.adapters.append(self)
        super().init()

    def close(self) -> None:
        super().close()
        if self in self.bus.adapters:
            self.bus.adapters.remove(self)

    def do_publish(self, message: dict) -> None:
        self.bus.send(self, message)

    def do_publish_response(self, requester_uid: str, response: dict) -> None:
        self.bus.send(self, response, to=requester_uid)


def test_heartbeats_count_servers_and_requests_wait_for_each(serve, start_js, wait_for):
    bus = Bus()
    servers = [roomcast.Server(adapter=bus.factory(heartbeat_interval=0.2, heartbeat_timeout=1.0,
                                                   requests_timeout=3.0)) for _ in range(3)]
    urls = [serve(io) for io in servers]
    for i, io in enumerate(servers):
        io.on("connection", lambda socket, i=i: (socket.join("r"), socket.data.update(server=i)))
        io.on("ping", lambda n, ack, i=i: ack({"from": i, "n": n}))
    wait_for(lambda: all(io.sockets.adapter.server_count() == 3 for io in servers), "3 servers counted")
    clients = start_js("""
        const sockets = URLS.map((u) => io(u, {transports: ["websocket"]}));
        const byes = sockets.map((s) => once(s, "bye"));
        done((await Promise.all(byes)).map(([n]) => n));
    """.replace("URLS", repr(urls)), urls[0])
    for io in servers:
        wait_for(lambda: len(io.sockets.sockets) == 1, "one client on each server")
    found = servers[0].fetch_sockets()
    assert sorted(s.data["server"] for s in found) == [0, 1, 2]
    servers[1].to("r").emit("bye", 1)                       # reaches the clients of all three
    assert clients.result() == [1, 1, 1]
    responses = servers[0].server_side_emit_with_ack("ping", 7)
    assert sorted(r["from"] for r in responses) == [1, 2]

    # a server that says goodbye is no longer waited for
    servers[2].sockets.adapter.close()
    wait_for(lambda: servers[0].sockets.adapter.server_count() == 2, "2 servers after ADAPTER_CLOSE")
    assert [r["from"] for r in servers[0].server_side_emit_with_ack("ping", 8)] == [1]

    # a server that goes silent is dropped after heartbeat_timeout, and a request that
    # waited for it completes without it
    bus.muted.add(servers[1].sockets.adapter.uid)
    started = gevent.get_hub().loop.now()
    assert servers[0].sockets.adapter.fetch_sockets(
        roomcast.BroadcastOptions()) == []
    assert gevent.get_hub().loop.now() - started < 2.5        # not the 3 s requests_timeout
    wait_for(lambda: servers[0].sockets.adapter.server_count() == 1, "the silent server dropped")
