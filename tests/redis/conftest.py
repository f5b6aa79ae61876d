"""Fixtures of the Redis tests (the node processes are in redis_nodes.py)."""
from __future__ import annotations

from typing import Any, Callable

import shutil
import socket
import subprocess

import gevent
import pytest

from redis_nodes import ClusterNode, delete_keys, new_key


@pytest.fixture
def redis_key(redis_url: str) -> str:
    """A key prefix of this test only; its leftovers (if any) are deleted at teardown."""
    key = new_key()
    yield key
    delete_keys(redis_url, key)


@pytest.fixture
def cluster(redis_url: str, redis_key: str, impl: str,
            wait_for: Callable[..., Any]) -> Callable[..., ClusterNode]:
    """cluster(kind="roomcast"|"node", **config) starts a node on the test's key prefix."""
    nodes: list[ClusterNode] = []

    def _start(kind: str = "roomcast", **config: Any) -> ClusterNode:
        config.setdefault("redis", redis_url)
        config.setdefault("key", redis_key)
        node = ClusterNode(kind, config, impl, wait_for)
        nodes.append(node)
        return node

    yield _start
    for node in nodes:
        node.stop()


def _port_pair_free(port: int) -> bool:
    # a cluster node needs its port and the cluster bus port (port + 10000)
    for p in (port, port + 10000):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", p))
            except OSError:
                return False
    return True


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory,
                      wait_for: Callable[..., Any]) -> str:
    """A 3-primary Redis Cluster of this session (redis-server --cluster-enabled);
    the URL of one of its nodes."""
    import random

    binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if not binary or not cli:
        pytest.fail("redis-server and redis-cli are needed for the Redis Cluster tests", pytrace=False)
    ports: list[int] = []
    while len(ports) < 3:
        port = random.randint(20000, 50000)
        if port not in ports and _port_pair_free(port):
            ports.append(port)
    workdir = tmp_path_factory.mktemp("redis-cluster")
    procs = []
    try:
        for port in ports:
            node_dir = workdir / str(port)
            node_dir.mkdir()
            procs.append(subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", "nodes.conf", "--save", "", "--appendonly", "no"],
                cwd=str(node_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port in ports:
            wait_for(lambda: subprocess.run([cli, "-p", str(port), "ping"],
                                            capture_output=True).stdout.strip() == b"PONG",
                     f"the Redis Cluster node on port {port} to start")
        subprocess.run([cli, "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
                        "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True)
        for port in ports:
            wait_for(lambda: b"cluster_state:ok" in subprocess.run(
                [cli, "-p", str(port), "cluster", "info"], capture_output=True).stdout,
                     f"the Redis Cluster to be ready on port {port}", timeout=15)
        yield f"redis://127.0.0.1:{ports[0]}"
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
