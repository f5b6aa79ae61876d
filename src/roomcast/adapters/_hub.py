"""RedisHub: the Redis connections that the adapters of one server share.

One subscriber connection, read by one greenlet that dispatches each message to the
handler of its channel (or pattern), and one publishing greenlet that drains a queue
into pipelined PUBLISH/SPUBLISH commands, so that emitting never waits for Redis and
the messages of one server keep their order.

Faults: when the subscriber connection breaks, the reader logs it, backs off (up to
``max_backoff`` seconds) and reconnects with every subscription restored; the
publisher logs what it could not send (messages are not kept across an outage:
a broadcast delivered minutes late would be wrong), and its next batch reconnects.
Nothing raises into the callers.
"""
from __future__ import annotations

import logging
from time import monotonic
from typing import Any, Callable

import gevent
import redis
from gevent.event import Event
from gevent.queue import Queue

log = logging.getLogger("roomcast.redis")

Handler = Callable[[str, bytes], None]

_BATCH = 512              # messages per pipeline
_MAX_PENDING = 100_000    # queued messages beyond this are dropped (Redis is away)
_PING_AFTER = 10.0        # seconds of silence before the subscriber checks the connection
_PONG_WITHIN = 5.0        # seconds the answer to that PING may take
_CONFIRMATIONS = ("subscribe", "psubscribe", "ssubscribe")
_LOG_EVERY = 1.0          # at most one publish-failure line per second


def _str(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class RedisHub:
    """Shared publisher + subscriber of one server (one per adapter factory)."""

    def __init__(self, pub: redis.Redis, sub: redis.Redis, *, max_backoff: float = 2.0,
                 ping_after: float = _PING_AFTER, pong_within: float = _PONG_WITHIN) -> None:
        self.pub = pub
        self.sub = sub
        self.max_backoff = max_backoff
        self.ping_after = ping_after
        self.pong_within = pong_within
        self._channels: dict[str, Handler] = {}
        self._patterns: dict[str, Handler] = {}
        self._shard_channels: dict[str, Handler] = {}
        self._pubsub = None
        self._reader: gevent.Greenlet | None = None
        self._writer: gevent.Greenlet | None = None
        self._queue: Queue = Queue()
        self._wake = Event()        # new subscriptions while nothing is subscribed
        self.connected = Event()    # set while the subscriber connection is up
        self._users = 0
        self._closed = False
        self._lost = 0            # messages not published since the last report
        self._last_report = 0.0

    # -- lifetime ----------------------------------------------------------------

    def acquire(self) -> None:
        """An adapter starts using the hub (the first one starts the greenlets)."""
        self._users += 1
        if self._reader is None:
            self._closed = False
            self._queue = Queue()   # a fresh one: the last close() left its stop marker
            self._reader = gevent.spawn(self._read_loop)
            self._writer = gevent.spawn(self._write_loop)

    def release(self) -> None:
        """An adapter is closed; the last one stops the greenlets."""
        self._users -= 1
        if self._users <= 0:
            self.close()

    def close(self) -> None:
        self._closed = True
        self._queue.put(None)
        self._wake.set()
        if self._writer is not None and self._writer is not gevent.getcurrent():
            self._writer.join(timeout=1.0)   # what was queued before close() goes out
        # stop the reader before closing the connection it may be reading
        current = gevent.getcurrent()
        gevent.killall([g for g in (self._reader, self._writer) if g is not None and g is not current],
                       timeout=1.0)
        self._reader = self._writer = None
        self._close_pubsub()
        self.connected.clear()
        self._users = 0

    # -- subscriptions -------------------------------------------------------------

    def subscribe(self, channels: list[str], handler: Handler) -> None:
        for channel in channels:
            self._channels[channel] = handler
        self._send_subscription("subscribe", channels)

    def psubscribe(self, pattern: str, handler: Handler) -> None:
        self._patterns[pattern] = handler
        self._send_subscription("psubscribe", [pattern])

    def ssubscribe(self, channels: list[str], handler: Handler) -> None:
        for channel in channels:
            self._shard_channels[channel] = handler
        self._send_subscription("ssubscribe", channels)

    def unsubscribe(self, channels: list[str] = (), patterns: list[str] = (),
                    shard_channels: list[str] = ()) -> None:
        for name, table, method in ((channels, self._channels, "unsubscribe"),
                                    (patterns, self._patterns, "punsubscribe"),
                                    (shard_channels, self._shard_channels, "sunsubscribe")):
            gone = [n for n in name if table.pop(n, None) is not None]
            if gone:
                self._send_subscription(method, gone)

    def _send_subscription(self, method: str, names: list[str]) -> None:
        # Only a command is written here; its confirmation is read by the reader
        # greenlet. When not connected, the reconnect applies every subscription.
        self._wake.set()
        ps = self._pubsub
        if ps is None or not names:
            return
        try:
            getattr(ps, method)(*names)
        except (redis.RedisError, OSError) as exc:
            log.warning("redis: %s %s failed (%s); retried on reconnect", method, names, exc)

    # -- reading -------------------------------------------------------------------

    def _close_pubsub(self) -> None:
        ps, self._pubsub = self._pubsub, None
        if ps is not None:
            try:
                ps.close()
            except Exception:  # closing a broken connection may fail in many ways
                pass

    def _connect(self):
        # subscribe confirmations are kept: the first one says the connection is up
        ps = self.sub.pubsub(ignore_subscribe_messages=False)
        if self._channels:
            ps.subscribe(*self._channels)
        if self._patterns:
            ps.psubscribe(*self._patterns)
        if self._shard_channels:
            ps.ssubscribe(*self._shard_channels)
        return ps

    def _read_loop(self) -> None:
        backoff = 0.05
        failed = False
        while not self._closed:
            if not (self._channels or self._patterns or self._shard_channels):
                self._wake.clear()
                self._wake.wait()   # nothing to listen to yet
                continue
            try:
                self._pubsub = ps = self._connect()
                last_seen, ping_sent = monotonic(), None
                while not self._closed:
                    if not ps.subscribed:
                        # redis-py would wait on a threading.Event: do not let it
                        self._wake.clear()
                        self._wake.wait(1.0)
                        continue
                    message = ps.get_message(timeout=min(1.0, self.ping_after))
                    now = monotonic()
                    if message is not None:
                        last_seen, ping_sent = now, None
                        if not self.connected.is_set() and message["type"] in _CONFIRMATIONS:
                            if failed:
                                log.warning("redis: subscriber reconnected, subscriptions restored")
                            failed = False
                            backoff = 0.05
                            self.connected.set()
                        self._dispatch(message)
                    elif ping_sent is not None and now - ping_sent > self.pong_within:
                        # a Redis that vanished without closing the connection
                        raise redis.ConnectionError("no answer to PING")
                    elif ping_sent is None and now - last_seen > self.ping_after:
                        ps.ping()
                        ping_sent = now
            except (redis.RedisError, OSError, ValueError) as exc:
                # ValueError: redis-py reading a connection closed under it
                self.connected.clear()
                self._close_pubsub()
                if self._closed:
                    return
                if not failed:
                    log.warning("redis: subscriber connection lost (%s); reconnecting", exc)
                failed = True
                gevent.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)

    def _dispatch(self, message: dict) -> None:
        kind = message["type"]
        if kind == "pmessage":
            handler = self._patterns.get(_str(message["pattern"]))
        elif kind == "message":
            handler = self._channels.get(_str(message["channel"]))
        elif kind == "smessage":
            handler = self._shard_channels.get(_str(message["channel"]))
        else:
            return  # pong and the like
        if handler is None:
            return
        try:
            handler(_str(message["channel"]), message["data"])
        except Exception:  # one bad message must not stop the subscriber
            log.exception("redis: error handling a message on %s", _str(message["channel"]))

    # -- publishing ------------------------------------------------------------------

    def publish(self, channel: str, data: bytes) -> None:
        """Queue a PUBLISH; returns at once."""
        self._enqueue(("PUBLISH", channel, data))

    def spublish(self, channel: str, data: bytes) -> None:
        """Queue an SPUBLISH (sharded pub/sub); returns at once."""
        self._enqueue(("SPUBLISH", channel, data))

    def _enqueue(self, command: tuple) -> None:
        if self._queue.qsize() >= _MAX_PENDING:
            self._report_lost(1, command[1], "the publish queue is full")
            return
        self._queue.put(command)

    def _report_lost(self, count: int, channel: str, why: Any) -> None:
        # a failing Redis is reported, but not once per message
        self._lost += count
        now = monotonic()
        if now - self._last_report >= _LOG_EVERY:
            log.error("redis: %d message(s) could not be published (last to %s): %s",
                      self._lost, channel, why)
            self._lost = 0
            self._last_report = now

    def _write_loop(self) -> None:
        queue = self._queue
        while True:
            item = queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < _BATCH and not queue.empty():
                item = queue.get_nowait()
                if item is None:
                    self._send(batch)
                    return
                batch.append(item)
            self._send(batch)

    def _send(self, batch: list) -> None:
        try:
            if len(batch) == 1:
                self.pub.execute_command(*batch[0])
                return
            pipe = self.pub.pipeline(transaction=False)
            for command in batch:
                pipe.execute_command(*command)
            pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self._report_lost(len(batch), batch[-1][1], exc)

    # -- counting ----------------------------------------------------------------------

    def numsub(self, channel: str, shard: bool = False) -> int:
        """Subscribers of ``channel`` (PUBSUB NUMSUB / SHARDNUMSUB), summed over a
        cluster's primaries; 1 (this server) when Redis cannot be asked."""
        sub = "SHARDNUMSUB" if shard else "NUMSUB"
        try:
            if isinstance(self.pub, redis.RedisCluster):
                if shard:
                    node = self.pub.get_node_from_key(channel)
                    return sum(n for _, n in self.pub.pubsub_shardnumsub(channel, target_nodes=node))
                replies = self.pub.pubsub_numsub(channel, target_nodes=redis.RedisCluster.PRIMARIES)
                if isinstance(replies, dict):
                    return sum(n for reply in replies.values() for _, n in reply)
                return sum(n for _, n in replies)
            if shard:
                return sum(n for _, n in self.pub.pubsub_shardnumsub(channel))
            return sum(n for _, n in self.pub.pubsub_numsub(channel))
        except (redis.RedisError, OSError) as exc:
            log.warning("redis: PUBSUB %s %s failed (%s); counting this server only", sub, channel, exc)
            return 1
