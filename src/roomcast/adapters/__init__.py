"""Cluster adapters: ``RedisAdapter`` (classic and sharded Redis pub/sub, compatible
with Node's @socket.io/redis-adapter). Imported lazily, so that the Emitter can use
this package without pulling gevent in. ``roomcast.adapters.cluster`` holds the base
that every cluster transport builds on (``ClusterAdapter``, ``ClusterAdapterWithHeartbeat``)."""
from __future__ import annotations

from typing import Any

__all__ = ["RedisAdapter", "RedisAdapterFactory", "RedisStreamsAdapter", "ShardedRedisAdapter"]


def __getattr__(name: str) -> Any:
    if name in ("RedisAdapter", "RedisAdapterFactory"):
        from roomcast.adapters import redis

        return getattr(redis, name)
    if name == "RedisStreamsAdapter":
        from roomcast.adapters.redis_streams import RedisStreamsAdapter

        return RedisStreamsAdapter
    if name == "ShardedRedisAdapter":
        from roomcast.adapters._redis_sharded import ShardedRedisAdapter

        return ShardedRedisAdapter
    raise AttributeError(f"module 'roomcast.adapters' has no attribute {name!r}")
