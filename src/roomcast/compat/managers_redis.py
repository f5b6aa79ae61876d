"""``RedisManager``: python-socketio's Redis message queue (one plain pub/sub channel).

A server's manager shares roomcast's ``RedisHub``: one subscriber greenlet on
gevent-friendly sockets (no monkey patching needed, unlike python-socketio's),
which reconnects with back-off, and one publishing greenlet that pipelines what
is queued, so an emit never waits for Redis. A write-only manager publishes
synchronously instead (a worker script may exit right after its emit).
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import gevent

from .managers import PubSubManager

_RETRIES = 2   # publish attempts of a write-only manager (python-socketio: 2)


class RedisManager(PubSubManager):
    """``socketio.RedisManager(url, channel="socketio", write_only=False,
    logger=None, json=None, redis_options=None)``; ``redis_options`` go to
    ``redis.Redis.from_url``. URLs: ``redis://``, ``rediss://``, ``unix://``."""

    name = "redis"

    def __init__(self, url: str = "redis://localhost:6379/0", channel: str = "socketio",
                 write_only: bool = False, logger: logging.Logger | None = None,
                 json: Any = None, redis_options: dict | None = None) -> None:
        super().__init__(channel=channel, write_only=write_only, logger=logger, json=json)
        self.redis_url = url
        self.redis_options = dict(redis_options or {})
        self._client: Any = None
        self._hub: Any = None

    def _redis(self) -> Any:
        if self._client is None:
            from roomcast.adapters._redis_client import make_client

            self._client = make_client(self.redis_url, **self.redis_options)
        return self._client

    def _shared_hub(self) -> Any:
        if self._hub is None:
            from roomcast.adapters._hub import RedisHub

            client = self._redis()
            self._hub = RedisHub(client, client)
            self._hub.acquire()
        return self._hub

    def publish_text(self, text: str) -> None:
        data = text.encode("utf-8")
        if not self.write_only:
            self._shared_hub().publish(self.channel, data)
            return
        import redis

        for attempt in range(_RETRIES):
            try:
                self._redis().publish(self.channel, data)
                return
            except (redis.RedisError, OSError) as exc:
                self.logger.error("redis queue: cannot publish to %r (%s)%s", self.channel,
                                  exc, "; retrying" if attempt + 1 < _RETRIES else "; giving up")

    def listen(self, deliver: Callable[[Any], None]) -> None:
        hub = self._shared_hub()
        hub.subscribe([self.channel], lambda channel, data: deliver(data))
        gevent.sleep(float("inf"))   # the hub's reader delivers; this greenlet only waits

    def wait_subscribed(self, timeout: float = 10.0) -> bool:
        """Block until Redis confirmed the subscription (True) or timeout (False)."""
        return self._shared_hub().connected.wait(timeout)

    def close(self) -> None:
        super().close()
        hub, self._hub = self._hub, None
        if hub is not None:
            hub.release()
        client, self._client = self._client, None
        if client is not None:
            client.close()
