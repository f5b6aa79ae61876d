"""``KombuManager``: python-socketio's AMQP message queue (RabbitMQ) through kombu.

The wire layout is python-socketio's: a non-durable fanout exchange named after
the channel, one server-named queue per listening server (``x-expires`` 300 s),
each message a JSON text published with kombu's default (json) serializer.

kombu's sockets are the standard library's, which would block every greenlet
of a process that is not monkey patched; so every kombu call runs in gevent's
thread pool while the calling greenlet waits cooperatively. A server publishes
from one writer greenlet (in order, batched); a write-only manager publishes
synchronously, like python-socketio's.
"""
from __future__ import annotations

import logging
import uuid
from typing import Any, Callable

import gevent
from gevent.event import Event
from gevent.queue import Queue

from .managers import PubSubManager, retry_delays

#: how long one blocking read of the queue lasts before it is retried (seconds)
POLL_SECONDS = 1.0
#: queue lifetime once its server is gone, as python-socketio declares it (ms)
QUEUE_EXPIRES_MS = 300_000


def _kombu() -> Any:
    try:
        import kombu
    except ImportError:   # pragma: no cover - depends on the installation
        raise RuntimeError('KombuManager needs kombu: pip install "roomcast[kombu]"') from None
    return kombu


def _in_thread(fn: Callable, *args: Any) -> Any:
    """fn(*args) in gevent's thread pool; this greenlet waits without blocking others."""
    return gevent.get_hub().threadpool.spawn(fn, *args).get()


class KombuManager(PubSubManager):
    """``socketio.KombuManager(url, channel="socketio", write_only=False, logger=None,
    json=None, connection_options=None, exchange_options=None, queue_options=None,
    producer_options=None)``."""

    name = "kombu"

    def __init__(self, url: str = "amqp://guest:guest@localhost:5672//",
                 channel: str = "socketio", write_only: bool = False,
                 logger: logging.Logger | None = None, json: Any = None,
                 connection_options: dict | None = None, exchange_options: dict | None = None,
                 queue_options: dict | None = None, producer_options: dict | None = None) -> None:
        _kombu()
        super().__init__(channel=channel, write_only=write_only, logger=logger, json=json)
        self.url = url
        self.connection_options = dict(connection_options or {})
        self.exchange_options = dict(exchange_options or {})
        self.queue_options = dict(queue_options or {})
        self.producer_options = dict(producer_options or {})
        self.subscribed = Event()
        self._producer_conn: Any = None
        self._outbox: Queue | None = None
        self._writer: gevent.Greenlet | None = None

    # -- kombu objects (python-socketio's declarations) ------------------------------

    def _connection(self) -> Any:
        return _kombu().Connection(self.url, **self.connection_options)

    def _exchange(self) -> Any:
        options = {"type": "fanout", "durable": False, **self.exchange_options}
        return _kombu().Exchange(self.channel, **options)

    def _queue(self) -> Any:
        # auto_delete (python-socketio leaves its queues to expire): ours goes with us
        options = {"durable": False, "auto_delete": True,
                   "queue_arguments": {"x-expires": QUEUE_EXPIRES_MS}, **self.queue_options}
        return _kombu().Queue(f"roomcast.{uuid.uuid4()}", self._exchange(), **options)

    # -- publishing -------------------------------------------------------------------

    def _publish_now(self, texts: list[str]) -> None:
        """Runs in a pool thread: publish texts in order, one reconnection allowed."""
        for attempt in (1, 2):
            try:
                if self._producer_conn is None:
                    self._producer_conn = self._connection()
                conn = self._producer_conn
                producer = conn.Producer(exchange=self._exchange(), **self.producer_options)
                publish = conn.ensure(producer, producer.publish, max_retries=2)
                while texts:
                    publish(texts[0])
                    texts = texts[1:]
                return
            except Exception as exc:   # kombu/amqp raise many kinds; all mean "not sent"
                self._drop_producer()
                self.logger.error("kombu queue: cannot publish to %r (%s)%s", self.channel,
                                  exc, "; retrying" if attempt == 1 else
                                  f"; {len(texts)} message(s) lost")

    def _drop_producer(self) -> None:
        conn, self._producer_conn = self._producer_conn, None
        if conn is not None:
            try:
                conn.release()
            except Exception:
                pass

    def publish_text(self, text: str) -> None:
        if self.write_only:
            _in_thread(self._publish_now, [text])
            return
        if self._writer is None:
            self._outbox = Queue()
            self._writer = gevent.spawn(self._write_loop, self._outbox)
        self._outbox.put(text)

    def _write_loop(self, outbox: Queue) -> None:
        while True:
            batch = [outbox.get()]
            while not outbox.empty() and len(batch) < 512:
                batch.append(outbox.get_nowait())
            _in_thread(self._publish_now, batch)

    # -- listening ----------------------------------------------------------------------

    def listen(self, deliver: Callable[[Any], None]) -> None:
        delays = retry_delays()
        while True:
            conn = simple = None
            try:
                conn = self._connection()
                simple = _in_thread(conn.SimpleQueue, self._queue())
                self.subscribed.set()
                delays = retry_delays()
                while True:
                    payload = _in_thread(self._next_payload, simple)
                    if payload is not None:
                        deliver(payload)
            except Exception as exc:
                self.subscribed.clear()
                delay = next(delays)
                self.logger.error("kombu queue: cannot receive from %r (%s); retrying in %.1f s",
                                  self.channel, exc, delay)
                gevent.sleep(delay)
            finally:
                if conn is not None:
                    gevent.get_hub().threadpool.spawn(self._release, simple, conn)

    @staticmethod
    def _next_payload(simple: Any) -> Any:
        try:
            message = simple.get(block=True, timeout=POLL_SECONDS)
        except simple.Empty:
            return None
        message.ack()
        return message.payload

    @staticmethod
    def _release(simple: Any, conn: Any) -> None:
        try:
            if simple is not None:
                simple.close()
            conn.release()
        except Exception:
            pass

    def wait_subscribed(self, timeout: float = 10.0) -> bool:
        return self.subscribed.wait(timeout)

    def close(self) -> None:
        super().close()
        writer, self._writer = self._writer, None
        if writer is not None:
            outbox = self._outbox
            if outbox is not None:
                with gevent.Timeout(2.0, False):
                    while not outbox.empty():   # what was emitted before close goes out
                        gevent.sleep(0.01)
            writer.kill(block=True, timeout=2.0)
        _in_thread(self._drop_producer)
