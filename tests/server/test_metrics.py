"""Prometheus metrics (roomcast.metrics): off by default, what one server reports for
real JS clients, and the sum over two worker processes (multiprocess mode)."""
from __future__ import annotations

import subprocess
import sys

import pytest
import requests
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import roomcast
from roomcast import metrics


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    text = requests.get(url, timeout=5).text
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def value(values: dict, name: str, **labels: str) -> float:
    return values.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def metrics_on():
    exporter = metrics.enable(registry=CollectorRegistry())
    yield exporter
    metrics.disable()


def test_metrics_are_off_and_not_even_imported_by_default():
    code = ("import sys, roomcast, roomcast.metrics as m; io = roomcast.Server();"
            "io.emit('x', 1); print(m.active is None, 'prometheus_client' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["True", "False"], done.stderr


def test_one_server_reports_its_clients_events_and_disconnects(metrics_on, serve, run_js,
                                                               in_thread, wait_for):
    io = roomcast.Server()

    @io.on("connection")
    def on_connection(socket):
        socket.join(["room-a", "room-b"])

        @socket.on("shout")
        def shout(text, ack):
            io.to("room-a").emit("heard", text)
            io.volatile.emit("tick", 1)
            ack("ok")

        @socket.on("broken")
        def broken():
            raise RuntimeError("a handler's bug")

    url = serve(io)
    metrics_url = serve(metrics.wsgi_app())
    result = run_js("""
        const ws = [0, 1, 2].map(() => io(URL, {forceNew: true, transports: ["websocket"]}));
        const polling = [0, 1].map(() => io(URL, {forceNew: true, transports: ["polling"]}));
        const all = ws.concat(polling);
        await Promise.all(all.map(s => once(s, "connect")));
        const heard = all.map(s => once(s, "heard"));
        await all[0].emitWithAck("shout", "hello");
        await Promise.all(heard);
        all[1].emit("broken");
        await all[0].emitWithAck("shout", "again");
        all[4].disconnect();
        done(true);
    """, url, timeout=30)
    assert result is True
    wait_for(lambda: value(in_thread(scrape, metrics_url), "roomcast_handler_errors_total") == 1,
             "the handler error to be counted", timeout=10)
    values = in_thread(scrape, metrics_url)
    # the JS run is over, its clients closed: the counters stay, the gauges went back
    assert value(values, "roomcast_events_received_total") == 3        # 2 shouts, 1 broken
    # one disconnect() during the run, the others when done() closed the clients
    disconnects = {labels: v for (name, labels), v in values.items()
                   if name == "roomcast_disconnects_total"}
    assert sum(disconnects.values()) == 5, disconnects
    # 2 shouts, each "heard" and a volatile "tick" to the 5 clients (a broadcast counts once)
    assert value(values, "roomcast_events_sent_total") == 4
    delivered = value(values, "roomcast_deliveries_total")
    dropped = value(values, "roomcast_volatile_dropped_total")
    assert delivered >= 10 and delivered + dropped == 20
    assert value(values, "roomcast_bytes_sent_total") >= 10 * len('42["heard","hello"]')


def test_gauges_follow_the_live_clients(metrics_on, serve, start_js, in_thread, wait_for, tmp_path):
    io = roomcast.Server()
    io.on("connection", lambda socket: socket.join("lobby"))
    url = serve(io)
    metrics_url = serve(metrics.wsgi_app())
    flag = tmp_path / "connected"
    # gauges add up every live server of the process; servers other tests left open count
    # too, so this one is measured against what was there before its clients came
    before = in_thread(scrape, metrics_url)

    def gauge(values, name, **labels):
        return value(values, name, **labels) - value(before, name, **labels)

    run = start_js("""
        const ws = [0, 1, 2].map(() => io(URL, {forceNew: true, transports: ["websocket"]}));
        const polling = [0, 1].map(() => io(URL, {forceNew: true, transports: ["polling"]}));
        await Promise.all(ws.concat(polling).map(s => once(s, "connect")));
        require("fs").writeFileSync(%r, "");
        await once(ws[0], "stop");
        done(true);
    """ % str(flag), url, timeout=30)
    wait_for(flag.exists, "the clients to connect", timeout=20)
    values = in_thread(scrape, metrics_url)
    assert gauge(values, "roomcast_connections", transport="websocket") == 3
    assert gauge(values, "roomcast_connections", transport="polling") == 2
    assert gauge(values, "roomcast_sockets", namespace="/") == 5
    assert gauge(values, "roomcast_rooms", namespace="/") == 5 + 1   # own-id rooms and the lobby
    assert value(values, "roomcast_packets_queued") >= 0
    io.emit("stop")
    assert run.result() is True
