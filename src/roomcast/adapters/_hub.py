"""RedisHub: the Redis connections that the adapters of one server share.

One subscriber connection (one per node in use on a Redis Cluster), read by a
greenlet that dispatches each message to the handler of its channel (or pattern),
and one publishing greenlet that drains a queue
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

from roomcast import metrics

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


class _Link:
    """One subscriber connection and the greenlet that reads it.

    A standalone Redis has one link. A Redis Cluster has one per node in use: the
    classic channels and patterns go to one node (classic pub/sub messages reach every
    node of a cluster), each shard channel to the node that owns its slot.
    """

    def __init__(self, hub: "RedisHub", client: redis.Redis, name: str) -> None:
        self.hub = hub
        self.client = client
        self.name = name
        self.channels: dict[str, Handler] = {}
        self.patterns: dict[str, Handler] = {}
        self.shard_channels: dict[str, Handler] = {}
        self.pubsub = None
        self.reader: gevent.Greenlet | None = None
        self.wake = Event()          # new subscriptions while nothing is subscribed
        self.connected = Event()     # set once Redis confirmed the subscriptions
        self.closed = False

    def start(self) -> None:
        if self.reader is None:
            self.closed = False
            self.reader = gevent.spawn(self._read_loop)

    def stop(self) -> None:
        self.closed = True
        self.wake.set()
        if self.reader is not None and self.reader is not gevent.getcurrent():
            # stop the reader before closing the connection it may be reading
            self.reader.kill(timeout=1.0)
        self.reader = None
        self._close_pubsub()
        self.connected.clear()

    def has_subscriptions(self) -> bool:
        return bool(self.channels or self.patterns or self.shard_channels)

    def send(self, method: str, names: list[str]) -> None:
        # Only a command is written here; its confirmation is read by the reader
        # greenlet. When not connected, the reconnect applies every subscription.
        self.wake.set()
        ps = self.pubsub
        if ps is None or not names:
            return
        try:
            getattr(ps, method)(*names)
        except (redis.RedisError, OSError) as exc:
            log.warning("redis: %s %s failed (%s); retried on reconnect", method, names, exc)

    def _close_pubsub(self) -> None:
        ps, self.pubsub = self.pubsub, None
        if ps is not None:
            try:
                ps.close()
            except Exception:  # closing a broken connection may fail in many ways
                pass

    def _connect(self):
        """A new pub/sub connection subscribed to what the tables hold when it returns.

        Connecting waits on the network, and meanwhile other greenlets change the
        tables while send() cannot reach this connection (``self.pubsub`` is still
        None). So the tables are applied in passes, each sending what changed since
        the last, until a pass finds nothing to do: the caller then sets
        ``self.pubsub`` without yielding, and send() takes over from there."""
        # subscribe confirmations are kept: the first one says the connection is up
        ps = self.client.pubsub(ignore_subscribe_messages=False)
        applied: dict[str, set[str]] = {"channels": set(), "patterns": set(), "shard_channels": set()}
        try:
            while True:
                commands = self._changes(applied)
                if not commands:
                    return ps
                for method, names in commands:
                    getattr(ps, method)(*names)
        except BaseException:
            ps.close()   # not yet self.pubsub: nobody else would close it
            raise

    _COMMANDS = (("channels", "subscribe", "unsubscribe"),
                 ("patterns", "psubscribe", "punsubscribe"),
                 ("shard_channels", "ssubscribe", "sunsubscribe"))

    def _changes(self, applied: dict[str, set[str]]) -> list[tuple[str, list[str]]]:
        """The commands that bring ``applied`` (updated here) to the tables; computed
        without yielding."""
        commands: list[tuple[str, list[str]]] = []
        for table_name, subscribe, unsubscribe in self._COMMANDS:
            table, done = getattr(self, table_name), applied[table_name]
            new = [name for name in table if name not in done]
            gone = [name for name in done if name not in table]
            done.update(new)
            done.difference_update(gone)
            for method, names in ((subscribe, new), (unsubscribe, gone)):
                if not names:
                    continue
                if table_name == "shard_channels":
                    # one by one: on a cluster, one SSUBSCRIBE may only name channels of one slot
                    commands.extend((method, [name]) for name in names)
                else:
                    commands.append((method, names))
        return commands

    def _set_connected(self, up: bool) -> None:
        if up:
            self.connected.set()
        else:
            self.connected.clear()
        self.hub._link_changed()

    def _read_loop(self) -> None:
        hub = self.hub
        backoff = 0.05
        failed = False
        while not self.closed:
            if not self.has_subscriptions():
                self.wake.clear()
                self.wake.wait()   # nothing to listen to yet
                continue
            try:
                self.pubsub = ps = self._connect()   # no yield between: see _connect
                last_seen, ping_sent = monotonic(), None
                while not self.closed:
                    if not ps.subscribed:
                        # redis-py would wait on a threading.Event: do not let it
                        self.wake.clear()
                        self.wake.wait(1.0)
                        continue
                    message = ps.get_message(timeout=min(1.0, hub.ping_after))
                    now = monotonic()
                    if message is not None:
                        last_seen, ping_sent = now, None
                        if not self.connected.is_set() and message["type"] in _CONFIRMATIONS:
                            if failed:
                                log.warning("redis: subscriber reconnected to %s, subscriptions "
                                            "restored", self.name)
                            failed = False
                            backoff = 0.05
                            self._set_connected(True)
                        self._dispatch(message)
                    elif ping_sent is not None and now - ping_sent > hub.pong_within:
                        # a Redis that vanished without closing the connection
                        raise redis.ConnectionError("no answer to PING")
                    elif ping_sent is None and now - last_seen > hub.ping_after:
                        ps.ping()
                        ping_sent = now
            except Exception as exc:
                self._close_pubsub()
                if self.closed:
                    return
                self._set_connected(False)
                # Redis errors, and ValueError from redis-py reading a connection closed
                # under it, are a lost connection. Anything else is a bug: logged with its
                # traceback, and the subscriber reconnects all the same instead of leaving
                # every channel of this node unheard for good.
                if not isinstance(exc, (redis.RedisError, OSError, ValueError)):
                    log.exception("redis: subscriber of %s failed; reconnecting", self.name)
                elif not failed:
                    log.warning("redis: subscriber connection to %s lost (%s); reconnecting",
                                self.name, exc)
                failed = True
                gevent.sleep(backoff)
                backoff = min(backoff * 2, hub.max_backoff)

    def _dispatch(self, message: dict) -> None:
        kind = message["type"]
        if metrics.active is not None and kind in ("pmessage", "message", "smessage"):
            metrics.active.adapter_in += 1
        if kind == "pmessage":
            handler = self.patterns.get(_str(message["pattern"]))
        elif kind == "message":
            handler = self.channels.get(_str(message["channel"]))
        elif kind == "smessage":
            handler = self.shard_channels.get(_str(message["channel"]))
        else:
            return  # confirmations, pong
        if handler is None:
            return
        try:
            handler(_str(message["channel"]), message["data"])
        except Exception:  # one bad message must not stop the subscriber
            log.exception("redis: error handling a message on %s", _str(message["channel"]))


class RedisHub:
    """Shared publisher + subscriber(s) of one server (one per adapter factory).

    ``pub`` and ``sub`` are redis-py clients (the same one will do: pub/sub takes a
    dedicated connection), or a ``redis.RedisCluster``.
    """

    def __init__(self, pub: Any, sub: Any, *, max_backoff: float = 2.0,
                 ping_after: float = _PING_AFTER, pong_within: float = _PONG_WITHIN) -> None:
        self.pub = pub
        self.sub = sub
        self.cluster = isinstance(sub, redis.RedisCluster)
        self.max_backoff = max_backoff
        self.ping_after = ping_after
        self.pong_within = pong_within
        self._links: dict[str, _Link] = {}
        self._writer: gevent.Greenlet | None = None
        self._queue: Queue = Queue()
        self.connected = Event()    # set while every subscriber connection is up
        self._users = 0
        self._closed = True
        self._lost = 0            # messages not published since the last report
        self._last_report = 0.0

    # -- lifetime ----------------------------------------------------------------

    def acquire(self) -> None:
        """An adapter starts using the hub (the first one starts the greenlets)."""
        self._users += 1
        if self._closed:
            self._closed = False
            self._queue = Queue()   # a fresh one: the last close() left its stop marker
            self._writer = gevent.spawn(self._write_loop)
            for link in self._links.values():
                link.start()

    def release(self) -> None:
        """An adapter is closed; the last one stops the greenlets."""
        self._users -= 1
        if self._users <= 0:
            self.close()

    def close(self) -> None:
        self._closed = True
        self._queue.put(None)
        if self._writer is not None and self._writer is not gevent.getcurrent():
            self._writer.join(timeout=1.0)   # what was queued before close() goes out
            self._writer.kill(timeout=1.0)
        self._writer = None
        for link in self._links.values():
            link.stop()
        self.connected.clear()
        self._users = 0

    # -- subscriptions -------------------------------------------------------------

    def _link(self, shard_channel: str | None = None) -> _Link:
        """The link for classic subscriptions, or for the node owning a shard channel."""
        if not self.cluster:
            client, name = self.sub, "redis"
            kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
            if kwargs.get("path") or kwargs.get("host"):
                name = kwargs.get("path") or f"{kwargs['host']}:{kwargs.get('port', 6379)}"
        else:
            node = (self.sub.get_node_from_key(shard_channel) if shard_channel is not None
                    else self.sub.get_default_node())
            client, name = node.redis_connection, node.name
        link = self._links.get(name)
        if link is None:
            link = self._links[name] = _Link(self, client, name)
            if not self._closed:
                link.start()
            self._link_changed()
        return link

    def _link_changed(self) -> None:
        if self._links and all(link.connected.is_set() for link in self._links.values()):
            self.connected.set()
        else:
            self.connected.clear()

    def subscribe(self, channels: list[str], handler: Handler) -> None:
        link = self._link()
        for channel in channels:
            link.channels[channel] = handler
        link.send("subscribe", channels)

    def psubscribe(self, pattern: str, handler: Handler) -> None:
        link = self._link()
        link.patterns[pattern] = handler
        link.send("psubscribe", [pattern])

    def ssubscribe(self, channels: list[str], handler: Handler) -> None:
        for channel in channels:
            link = self._link(channel)
            link.shard_channels[channel] = handler
            link.send("ssubscribe", [channel])

    def unsubscribe(self, channels: list[str] = (), patterns: list[str] = (),
                    shard_channels: list[str] = ()) -> None:
        for link in list(self._links.values()):
            for names, table, method in ((channels, link.channels, "unsubscribe"),
                                         (patterns, link.patterns, "punsubscribe"),
                                         (shard_channels, link.shard_channels, "sunsubscribe")):
                gone = [n for n in names if table.pop(n, None) is not None]
                if gone and method == "sunsubscribe":
                    for channel in gone:   # one slot per command on a cluster
                        link.send(method, [channel])
                elif gone:
                    link.send(method, gone)

    # -- publishing ------------------------------------------------------------------

    def publish(self, channel: str, data: bytes) -> None:
        """Queue a PUBLISH; returns at once."""
        self._enqueue(("PUBLISH", channel, data))

    def spublish(self, channel: str, data: bytes) -> None:
        """Queue an SPUBLISH (sharded pub/sub); returns at once."""
        self._enqueue(("SPUBLISH", channel, data))

    def _enqueue(self, command: tuple) -> None:
        if metrics.active is not None:
            metrics.active.adapter_out += 1
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
            if self.cluster:
                # per node, in order: SPUBLISH to the owner of the channel's slot,
                # PUBLISH to any node (it reaches the whole cluster)
                groups: dict[str, tuple[Any, list]] = {}
                for command in batch:
                    node = (self.pub.get_node_from_key(command[1]) if command[0] == "SPUBLISH"
                            else self.pub.get_default_node())
                    groups.setdefault(node.name, (node.redis_connection, []))[1].append(command)
                targets = list(groups.values())
            else:
                targets = [(self.pub, batch)]
            for client, commands in targets:
                if len(commands) == 1:
                    client.execute_command(*commands[0])
                    continue
                pipe = client.pipeline(transaction=False)
                for command in commands:
                    pipe.execute_command(*command)
                pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self._report_lost(len(batch), batch[-1][1], exc)
            return
        if self._lost:   # failures that came after the last report: say so now
            log.error("redis: %d more message(s) could not be published before Redis came back",
                      self._lost)
            self._lost = 0

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
