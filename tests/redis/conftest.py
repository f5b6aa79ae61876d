"""Fixtures of the Redis tests (the node processes are in redis_nodes.py)."""
from __future__ import annotations

from typing import Any, Callable

import pytest

from redis_nodes import ClusterNode, delete_keys, new_key


@pytest.fixture
def redis_key(redis_url: str) -> str:
    """A key prefix of this test only; its leftovers (if any) are deleted at teardown."""
    key = new_key()
    yield key
    delete_keys(redis_url, key)


@pytest.fixture
def cluster(redis_url: str, redis_key: str, impl: str) -> Callable[..., ClusterNode]:
    """cluster(kind="roomcast"|"node", **config) starts a node on the test's key prefix."""
    nodes: list[ClusterNode] = []

    def _start(kind: str = "roomcast", **config: Any) -> ClusterNode:
        config.setdefault("redis", redis_url)
        config.setdefault("key", redis_key)
        node = ClusterNode(kind, config, impl)
        nodes.append(node)
        return node

    yield _start
    for node in nodes:
        node.stop()
