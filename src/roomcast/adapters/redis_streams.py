"""RedisStreamsAdapter: a Socket.IO cluster over Redis Streams, byte-compatible with
Node's ``@socket.io/redis-streams-adapter`` 0.3, with connection state recovery across
servers::

    import roomcast
    from roomcast.adapters.redis_streams import RedisStreamsAdapter

    io = roomcast.Server(adapter=RedisStreamsAdapter.factory("redis://127.0.0.1:6379"),
                         connection_state_recovery=True)

The format (node-socketio.md §4): every server appends its broadcasts, sockets_join /
sockets_leave and disconnect_sockets to a stream, ``XADD <stream> MAXLEN ~ <max_len> *
uid <uid> nsp <nsp> type "<n>" data <json, or base64 msgpack when it holds binary>``, and
reads the stream with ``XREAD BLOCK``; the stream entry id is the packet's recovery
offset. Broadcasts with acks, server-side emits and fetch_sockets go over pub/sub
(msgpack, on ``<channel_prefix>#<nsp>#``, answers on ``…#<uid>#``). Sessions are kept
as ``SET <session_key_prefix><pid> base64(msgpack({sid, pid, rooms, data})) PX <ms>``
and restored with ``GETDEL`` and ``XRANGE``.

``RedisStreamsAdapter.factory(redis, *, stream_name="socket.io", stream_count=1,
channel_prefix="socket.io", use_sharded_pubsub=False, max_len=10_000, read_count=100,
block_time=5.0, session_key_prefix="sio:session:", only_plaintext=False,
requests_timeout=5.0, allow_intersections=False)`` takes a URL or a ``redis.Redis`` / ``redis.RedisCluster``
client; the names are Node's options in snake_case (``block_time`` in seconds).

Faults: the reader of each stream reconnects by itself (backoff capped at 2 s) and goes
on from the last entry it read, so entries added while it was away (Redis restarted)
are still delivered. A batch of XADDs whose connection broke is sent once more on a new
connection; what still cannot be published is delivered to this server's clients
anyway and logged. Differences from Node 0.3.1: volatile broadcasts are not replayed
on recovery (Node replays them from the stream), and sessions are written in the
background.
"""
from __future__ import annotations

import base64
import logging
import re
from time import monotonic
from typing import TYPE_CHECKING, Any, Callable

import gevent
import redis as redislib
from gevent.queue import Queue

from roomcast import _notepack
from roomcast.adapters import _protocol as proto
from roomcast.adapters._hub import RedisHub
from roomcast.adapters._redis_client import make_client
from roomcast.adapters._streams_format import decode_entry, encode_entry, next_offset, stream_name_for, text
from roomcast.adapters.cluster import EVENT, ClusterAdapter, MessageType, should_include_packet

if TYPE_CHECKING:
    from roomcast.namespace import Namespace

log = logging.getLogger("roomcast.redis")

__all__ = ["RedisStreamsAdapter", "RedisStreamsAdapterFactory"]

_OFFSET = re.compile(r"^[0-9]+-[0-9]+$")
_RESTORE_MAX_XRANGE_CALLS = 100   # as Node: a stream growing faster than we read ends the replay
_XRANGE_COUNT = 1000
_BATCH = 256                      # XADDs per pipeline
_MAX_PENDING = 100_000            # queued XADDs beyond this are not published (Redis is away)
_MAX_BACKOFF = 2.0
_LOG_EVERY = 1.0


# -- Redis I/O -----------------------------------------------------------------------------

def _node_client(client: Any, key: str) -> Any:
    """The client to use for a key: the client itself, or a cluster's node that owns it."""
    if isinstance(client, redislib.RedisCluster):
        return client.get_node_from_key(key).redis_connection
    return client


class _StreamWriter:
    """XADDs of one server, pipelined in order by one greenlet; each one's callback
    gets the entry id (None when it could not be published), in publishing order."""

    def __init__(self, client: Any, max_len: int) -> None:
        self.client = client
        self.max_len = max_len
        self.queue: Queue = Queue()
        self.greenlet: gevent.Greenlet | None = None
        self._lost = 0
        self._last_report = 0.0

    def start(self) -> None:
        if self.greenlet is None:
            self.greenlet = gevent.spawn(self._loop)

    def stop(self) -> None:
        if self.greenlet is not None:
            self.queue.put(None)
            self.greenlet.join(timeout=1.0)   # what was queued goes out
            self.greenlet.kill(timeout=1.0)
            self.greenlet = None
            self.queue = Queue()

    def add(self, stream: str, fields: dict, then: Callable[[str | None], None] | None) -> None:
        if self.greenlet is None or self.queue.qsize() >= _MAX_PENDING:
            self._report(1, "the publish queue is full" if self.greenlet else "the adapter is closed")
            _call(then, None)
            return
        self.queue.put((stream, fields, then))

    def _loop(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < _BATCH and not self.queue.empty():
                item = self.queue.get_nowait()
                if item is None:
                    self._send(batch)
                    return
                batch.append(item)
            self._send(batch)

    def _execute(self, batch: list) -> list:
        pipe = self.client.pipeline(transaction=False)
        for stream, fields, _ in batch:
            pipe.xadd(stream, fields, maxlen=self.max_len, approximate=True)
        return pipe.execute(raise_on_error=False)

    def _send(self, batch: list) -> None:
        try:
            try:
                ids = self._execute(batch)
            except (redislib.ConnectionError, redislib.TimeoutError, OSError):
                ids = self._execute(batch)   # a connection broken since its last use: once more
        except (redislib.RedisError, OSError) as exc:
            self._report(len(batch), exc)
            ids = [None] * len(batch)
        for (_, _, then), entry_id in zip(batch, ids):
            if isinstance(entry_id, Exception):
                self._report(1, entry_id)
                entry_id = None
            _call(then, text(entry_id) if entry_id is not None else None)

    def _report(self, count: int, why: Any) -> None:
        self._lost += count
        now = monotonic()
        if now - self._last_report >= _LOG_EVERY:
            log.error("redis streams: %d message(s) could not be added to the stream "
                      "(delivered to this server's clients only): %s", self._lost, why)
            self._lost = 0
            self._last_report = now


def _call(then: Callable | None, value: Any) -> None:
    if then is None:
        return
    try:
        then(value)
    except Exception:   # a local delivery's failure must not stop the writer
        log.exception("redis streams: error applying a published message locally")


class _StreamReader:
    """Reads one stream (XREAD BLOCK) and hands each entry to ``dispatch``; after a
    connection loss it goes on from the last entry it read."""

    def __init__(self, client: Any, stream: str, read_count: int, block_ms: int,
                 dispatch: Callable[[dict, str], None]) -> None:
        self.client = client
        self.stream = stream
        self.read_count = read_count
        self.block_ms = block_ms
        self.dispatch = dispatch
        self.last_id: str | None = None
        self.greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        if self.greenlet is None:
            self.greenlet = gevent.spawn(self._loop)

    def stop(self) -> None:
        if self.greenlet is not None:
            self.greenlet.kill(timeout=1.0)
            self.greenlet = None

    def _loop(self) -> None:
        backoff, failed = 0.05, False
        while True:
            try:
                client = _node_client(self.client, self.stream)
                if self.last_id is None:
                    # "$" made concrete: after a reconnection we go on from here
                    newest = client.xrevrange(self.stream, "+", "-", count=1)
                    self.last_id = text(newest[0][0]) if newest else "0-0"
                response = client.xread({self.stream: self.last_id}, count=self.read_count,
                                        block=self.block_ms)
                if failed:
                    log.warning("redis streams: reading %s again from %s", self.stream, self.last_id)
                    failed, backoff = False, 0.05
                for _, entries in response or ():
                    for entry_id, fields in entries:
                        self.last_id = text(entry_id)
                        try:
                            self.dispatch(fields, self.last_id)
                        except Exception:   # one bad entry must not stop the reader
                            log.exception("redis streams: error handling entry %s", self.last_id)
            except (redislib.RedisError, OSError) as exc:
                if not failed:
                    log.warning("redis streams: reading %s failed (%s); retrying", self.stream, exc)
                failed = True
                gevent.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)


# -- the adapter ---------------------------------------------------------------------------

class RedisStreamsAdapterFactory:
    """The ``adapter=`` callable of one Server: the adapters of its namespaces share one
    stream writer, one reader per stream and one pub/sub hub."""

    def __init__(self, redis: Any, *, stream_name: str = "socket.io", stream_count: int = 1,
                 channel_prefix: str = "socket.io", use_sharded_pubsub: bool = False,
                 max_len: int = 10_000, read_count: int = 100, block_time: float = 5.0,
                 session_key_prefix: str = "sio:session:", only_plaintext: bool = False,
                 requests_timeout: float = 5.0, allow_intersections: bool = False) -> None:
        if stream_count < 1:
            raise ValueError("stream_count must be at least 1")
        self.client = make_client(redis)
        self.hub = RedisHub(self.client, self.client)
        self.stream_name = stream_name
        self.stream_count = stream_count
        self.channel_prefix = channel_prefix
        self.use_sharded_pubsub = use_sharded_pubsub
        self.read_count = read_count
        self.block_ms = max(1, int(block_time * 1000))
        self.session_key_prefix = session_key_prefix
        self.only_plaintext = only_plaintext
        self.requests_timeout = requests_timeout
        self.allow_intersections = allow_intersections
        self.writer = _StreamWriter(self.client, max_len)
        self.readers: dict[str, _StreamReader] = {}
        self.adapters: dict[str, RedisStreamsAdapter] = {}

    def __call__(self, nsp: "Namespace") -> "RedisStreamsAdapter":
        return RedisStreamsAdapter(nsp, self)

    def stream_for(self, nsp: str) -> str:
        return stream_name_for(nsp, self.stream_name, self.stream_count)

    def attach(self, adapter: "RedisStreamsAdapter") -> None:
        self.adapters[adapter.nsp.name] = adapter
        self.hub.acquire()
        self.writer.start()
        stream = adapter.stream
        if stream not in self.readers:
            reader = self.readers[stream] = _StreamReader(self.client, stream, self.read_count,
                                                          self.block_ms, self._dispatch)
            reader.start()

    def detach(self, adapter: "RedisStreamsAdapter") -> None:
        if self.adapters.get(adapter.nsp.name) is adapter:
            del self.adapters[adapter.nsp.name]
        if not self.adapters:
            self.close()
        else:
            self.hub.release()

    def _dispatch(self, fields: dict, entry_id: str) -> None:
        nsp = fields.get(b"nsp", fields.get("nsp"))
        if not nsp:
            return
        adapter = self.adapters.get(text(nsp))
        if adapter is not None:
            adapter.on_entry(fields, entry_id)

    def close(self) -> None:
        for reader in self.readers.values():
            reader.stop()
        self.readers.clear()
        self.writer.stop()
        self.hub.close()


class RedisStreamsAdapter(ClusterAdapter):
    """One namespace on Redis Streams (Node's ``createAdapter`` of
    @socket.io/redis-streams-adapter), with connection state recovery across servers."""

    @classmethod
    def factory(cls, redis: Any = "redis://127.0.0.1:6379", **options: Any) -> RedisStreamsAdapterFactory:
        """The ``adapter=`` argument of ``roomcast.Server`` (options: see the module)."""
        return RedisStreamsAdapterFactory(redis, **options)

    def __init__(self, nsp: "Namespace", factory: RedisStreamsAdapterFactory) -> None:
        super().__init__(nsp, requests_timeout=factory.requests_timeout,
                         allow_intersections=factory.allow_intersections)
        self.factory = factory
        self.stream = factory.stream_for(nsp.name)
        self.public_channel = f"{factory.channel_prefix}#{nsp.name}#"
        self.private_channel = f"{self.public_channel}{self.uid}#"
        self._closed = False

    # -- lifetime ---------------------------------------------------------------------

    def init(self) -> None:
        self.factory.attach(self)
        channels = [self.public_channel, self.private_channel]
        if self.factory.use_sharded_pubsub:
            self.factory.hub.ssubscribe(channels, self._on_pubsub)
        else:
            self.factory.hub.subscribe(channels, self._on_pubsub)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        channels = [self.public_channel, self.private_channel]
        if self.factory.use_sharded_pubsub:
            self.factory.hub.unsubscribe(shard_channels=channels)
        else:
            self.factory.hub.unsubscribe(channels=channels)
        self.factory.detach(self)
        super().close()

    def server_count(self) -> int:
        return max(1, self.factory.hub.numsub(self.public_channel, shard=self.factory.use_sharded_pubsub))

    # -- the transport ------------------------------------------------------------------

    @staticmethod
    def _ephemeral(message: dict) -> bool:
        kind = message["type"]
        return kind in (MessageType.SERVER_SIDE_EMIT, MessageType.FETCH_SOCKETS) or (
            kind == MessageType.BROADCAST and "requestId" in (message.get("data") or {}))

    def _pubsub_publish(self, channel: str, message: dict) -> None:
        payload = _notepack.encode(message)
        if self.factory.use_sharded_pubsub:
            self.factory.hub.spublish(channel, payload)
        else:
            self.factory.hub.publish(channel, payload)

    def do_publish_then(self, message: dict, then: Callable[[str | None], None]) -> None:
        if self._ephemeral(message):
            self._pubsub_publish(self.public_channel, message)
            then(None)
            return
        # encoded here, so that unserialisable data raises in the caller
        self.factory.writer.add(self.stream, encode_entry(message, self.factory.only_plaintext), then)

    def do_publish(self, message: dict) -> None:
        self.do_publish_then(message, lambda _: None)

    def do_publish_response(self, requester_uid: str, response: dict) -> None:
        self._pubsub_publish(f"{self.public_channel}{requester_uid}#", response)

    # -- receiving --------------------------------------------------------------------

    def on_entry(self, fields: dict, entry_id: str) -> None:
        try:
            message = decode_entry(fields)
        except (ValueError, TypeError) as exc:
            log.warning("redis streams: malformed entry %s ignored (%s)", entry_id, exc)
            return
        self.on_message(message, entry_id)

    def _on_pubsub(self, channel: str, payload: bytes) -> None:
        try:
            message = _notepack.decode(payload)
        except (ValueError, TypeError):
            log.warning("redis streams: malformed message on %s ignored", channel)
            return
        if isinstance(message, dict):
            self.on_message(message)

    # -- connection state recovery ----------------------------------------------------

    def _session_key(self, pid: str) -> str:
        return f"{self.factory.session_key_prefix}{pid}"

    def persist_session(self, session: dict) -> None:
        options = self.nsp.server.connection_state_recovery or {}
        ttl_ms = int(options.get("max_disconnection_duration", 120.0) * 1000)
        try:
            encoded = base64.b64encode(_notepack.encode(
                {"sid": session["sid"], "pid": session["pid"], "rooms": list(session["rooms"]),
                 "data": session["data"]})).decode("ascii")
        except (TypeError, ValueError) as exc:
            log.warning("redis streams: session of %s not kept: %s", session["sid"], exc)
            return

        def store() -> None:
            try:
                self.factory.client.set(self._session_key(session["pid"]), encoded, px=ttl_ms)
            except (redislib.RedisError, OSError) as exc:
                log.warning("redis streams: session of %s not kept: %s", session["sid"], exc)

        gevent.spawn(store)   # the disconnecting socket does not wait for Redis

    def restore_session(self, pid: str, offset: str) -> dict | None:
        if not _OFFSET.match(offset):
            return None
        client = self.factory.client
        raw = client.execute_command("GETDEL", self._session_key(pid))
        if not raw or not client.xrange(self.stream, offset, offset):
            return None
        session = _notepack.decode(base64.b64decode(raw))
        if not isinstance(session, dict) or "sid" not in session:
            return None
        rooms = set(session.get("rooms") or ())
        missed: list = []
        for _ in range(_RESTORE_MAX_XRANGE_CALLS):
            entries = client.xrange(self.stream, next_offset(offset), "+", count=_XRANGE_COUNT)
            if not entries:
                break
            for entry_id, fields in entries:
                offset = text(entry_id)
                try:
                    message = decode_entry(fields)
                except (ValueError, TypeError):
                    continue
                if message["nsp"] != self.nsp.name or message["type"] != MessageType.BROADCAST:
                    continue
                body = message.get("data") or {}
                packet, opts = body.get("packet"), body.get("opts")
                if (not isinstance(packet, dict) or not isinstance(packet.get("data"), list)
                        or packet.get("type", EVENT) != EVENT or "requestId" in body):
                    continue
                if ((opts or {}).get("flags") or {}).get("volatile"):
                    continue
                if should_include_packet(rooms, opts if isinstance(opts, dict) else {}):
                    missed.append([*packet["data"], offset])
        return {"sid": session["sid"], "pid": session.get("pid", pid),
                "rooms": list(session.get("rooms") or ()), "data": session.get("data"),
                "missed_packets": missed}
