"""Prometheus metrics (optional: ``pip install prometheus_client``); off by default.

    io.run(port=5000, metrics_port=9100)              # /metrics on its own port
    app = roomcast.WSGIApp(io, other_app)             # or mount it yourself:
    metrics_app = roomcast.metrics.wsgi_app()         #   serves the exposition format

Off (the default), the hooks in roomcast cost one global lookup per event or
broadcast, never per delivery. On, the hot paths only add to plain integers (a
broadcast counts once, with its recipient count); a greenlet turns them into
prometheus_client counters every second and at each scrape, and reads the gauges
(connections, sockets, rooms, queues) from the live servers then. Under
``--workers`` / ``io.run(workers=N)`` / the gunicorn worker, prometheus_client's
multiprocess mode sums every worker (counters add up; gauges are ``livesum``, so a
dead worker's gauges leave with it): set ``PROMETHEUS_MULTIPROC_DIR`` for gunicorn,
roomcast's own supervisor sets it.

Metric names (all prefixed ``roomcast_``): connections{transport}, sockets{namespace},
rooms{namespace}, events_received_total, events_sent_total, deliveries_total,
bytes_sent_total, packets_queued, bytes_buffered, volatile_dropped_total,
disconnects_total{reason}, handler_errors_total, adapter_messages_total{direction},
request_timeouts_total{kind}.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Callable, Iterable

log = logging.getLogger("roomcast.metrics")

FLUSH_INTERVAL = 1.0


class Counts:
    """What the hot paths add to: plain integers, turned into Prometheus counters later."""

    __slots__ = ("events_in", "events_out", "deliveries", "bytes_sent", "volatile_dropped",
                 "handler_errors", "adapter_in", "adapter_out", "disconnects", "timeouts")

    def __init__(self) -> None:
        self.events_in = 0
        self.events_out = 0
        self.deliveries = 0
        self.bytes_sent = 0
        self.volatile_dropped = 0
        self.handler_errors = 0
        self.adapter_in = 0
        self.adapter_out = 0
        self.disconnects: dict[str, int] = {}
        self.timeouts: dict[str, int] = {}

    def broadcast(self, recipients: int, size: int, dropped: int = 0) -> None:
        self.events_out += 1
        self.deliveries += recipients
        self.bytes_sent += recipients * size
        self.volatile_dropped += dropped

    def disconnect(self, reason: str) -> None:
        self.disconnects[reason] = self.disconnects.get(reason, 0) + 1

    def timeout(self, kind: str) -> None:
        self.timeouts[kind] = self.timeouts.get(kind, 0) + 1


#: The counts of this process while metrics are on; None when off (the hooks test this).
active: Counts | None = None

_exporter: "Exporter | None" = None


class Exporter:
    """prometheus_client metrics fed from ``Counts`` and the live servers."""

    def __init__(self, registry: Any = None) -> None:
        import prometheus_client as prom

        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR")
                                 or os.environ.get("prometheus_multiproc_dir"))
        self.registry = registry if registry is not None else (
            prom.CollectorRegistry() if self.multiprocess else prom.REGISTRY)
        if self.multiprocess and registry is None:
            # metrics are written to the shared directory, never registered here
            self.metric_registry: Any = None
        else:
            self.metric_registry = self.registry
        reg = {"registry": self.metric_registry}

        def gauge(name: str, doc: str, labels: Iterable[str] = ()) -> Any:
            extra = {"multiprocess_mode": "livesum"} if self.multiprocess else {}
            return prom.Gauge(f"roomcast_{name}", doc, list(labels), **reg, **extra)

        def counter(name: str, doc: str, labels: Iterable[str] = ()) -> Any:
            return prom.Counter(f"roomcast_{name}", doc, list(labels), **reg)

        self.connections = gauge("connections", "Engine.IO connections", ["transport"])
        self.sockets = gauge("sockets", "Socket.IO sockets", ["namespace"])
        self.rooms = gauge("rooms", "rooms (a socket's own-id room included)", ["namespace"])
        self.packets_queued = gauge("packets_queued", "packets waiting for a slow client")
        self.bytes_buffered = gauge("bytes_buffered", "bytes waiting for a slow client")
        self.events_in = counter("events_received", "events received from clients")
        self.events_out = counter("events_sent", "events emitted (a broadcast counts once)")
        self.deliveries = counter("deliveries", "event packets sent or queued to a client")
        self.bytes_sent = counter("bytes_sent", "bytes of event packets sent or queued")
        self.volatile_dropped = counter("volatile_dropped", "volatile packets dropped (busy client)")
        self.disconnects = counter("disconnects", "socket disconnects", ["reason"])
        self.handler_errors = counter("handler_errors", "exceptions raised by event handlers")
        self.adapter_messages = counter("adapter_messages", "cluster adapter messages", ["direction"])
        self.request_timeouts = counter("request_timeouts",
                                        "acks and cluster requests that timed out", ["kind"])
        self.counts = Counts()
        self._flushed = Counts()
        self._greenlet: Any = None

    def start(self) -> None:
        import gevent

        self._greenlet = gevent.spawn(self._flush_forever)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None
        self.flush()

    def _flush_forever(self) -> None:
        import gevent

        while True:
            gevent.sleep(FLUSH_INTERVAL)
            try:
                self.flush()
            except Exception:
                log.exception("metrics: flush failed")

    def flush(self) -> None:
        """Add what the hot paths counted since the last flush; read the gauges."""
        now, then = self.counts, self._flushed
        for name in ("events_in", "events_out", "deliveries", "bytes_sent", "volatile_dropped",
                     "handler_errors"):
            delta = getattr(now, name) - getattr(then, name)
            if delta:
                getattr(self, name).inc(delta)
                setattr(then, name, getattr(then, name) + delta)
        for direction, name in (("in", "adapter_in"), ("out", "adapter_out")):
            delta = getattr(now, name) - getattr(then, name)
            if delta:
                self.adapter_messages.labels(direction).inc(delta)
                setattr(then, name, getattr(then, name) + delta)
        for source, done, metric in ((now.disconnects, then.disconnects, self.disconnects),
                                     (now.timeouts, then.timeouts, self.request_timeouts)):
            for label, value in list(source.items()):
                delta = value - done.get(label, 0)
                if delta:
                    metric.labels(label).inc(delta)
                    done[label] = value
        self._read_gauges()

    def _read_gauges(self) -> None:
        from roomcast.server import live_servers

        transports: dict[str, int] = {"polling": 0, "websocket": 0}
        packets = size = 0
        seen_engines = set()
        sockets: dict[str, int] = {}
        rooms: dict[str, int] = {}
        for io in live_servers():
            engine = io.engine
            if id(engine) not in seen_engines:
                seen_engines.add(id(engine))
                for conn in list(engine.clients.values()):
                    transports[conn.transport] = transports.get(conn.transport, 0) + 1
                    queued, queued_bytes = conn.queued()
                    packets += queued
                    size += queued_bytes
            for nsp in io.namespaces:
                sockets[nsp.name] = sockets.get(nsp.name, 0) + len(nsp.sockets)
                rooms[nsp.name] = rooms.get(nsp.name, 0) + nsp.adapter.room_count()
        for transport, value in transports.items():
            self.connections.labels(transport).set(value)
        for name, value in sockets.items():
            self.sockets.labels(name).set(value)
        for name, value in rooms.items():
            self.rooms.labels(name).set(value)
        self.packets_queued.set(packets)
        self.bytes_buffered.set(size)

    def render(self) -> tuple[bytes, str]:
        """The exposition: every worker's sum in multiprocess mode."""
        import prometheus_client as prom

        self.flush()
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = prom.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return prom.generate_latest(registry), prom.CONTENT_TYPE_LATEST
        return prom.generate_latest(self.registry), prom.CONTENT_TYPE_LATEST


def enable(registry: Any = None) -> Exporter:
    """Turn metrics on in this process (idempotent); prometheus_client must be installed."""
    global active, _exporter
    if _exporter is None:
        try:
            exporter = Exporter(registry)
        except ImportError as exc:
            raise RuntimeError("roomcast metrics need prometheus_client: "
                               "pip install 'roomcast[metrics]'") from exc
        exporter.start()
        _exporter = exporter
        active = exporter.counts
    return _exporter


def disable() -> None:
    global active, _exporter
    if _exporter is not None:
        _exporter.stop()
    active = None
    _exporter = None


def wsgi_app() -> Callable:
    """A WSGI app answering the Prometheus exposition (enables metrics)."""
    exporter = enable()

    def app(environ: dict, start_response: Callable) -> list[bytes]:
        body, content_type = exporter.render()
        start_response("200 OK", [("Content-Type", content_type),
                                  ("Content-Length", str(len(body)))])
        return [body]

    return app


def serve(port: int, host: str = "0.0.0.0", listener: Any = None) -> Any:
    """Serve wsgi_app() on its own port with gevent (started, not blocking)."""
    from gevent import pywsgi

    server = pywsgi.WSGIServer(listener if listener is not None else (host, port), wsgi_app(),
                               log=None)
    server.start()
    return server
