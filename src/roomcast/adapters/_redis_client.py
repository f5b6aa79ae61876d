"""Redis clients whose sockets cooperate with gevent, without monkey patching.

redis-py uses the stdlib ``socket`` module. In a gevent process that has not run
``gevent.monkey.patch_socket()``, a blocking read on such a socket (a subscriber
waiting for messages, a publish waiting for its reply) would freeze every greenlet.
The connection classes below open gevent sockets instead; everything else in
redis-py (parsers, pools, pub/sub) works unchanged on top of them because it only
calls the socket methods (recv_into, sendall, settimeout, ...).

TLS (``rediss://``) keeps redis-py's own SSL connection: the stdlib ``ssl`` module
takes the file descriptor over, so it is only cooperative in a monkey-patched
process.
"""
from __future__ import annotations

import socket as _stdsocket
import sys
from typing import Any
from urllib.parse import urlparse

import redis
from redis.connection import Connection, UnixDomainSocketConnection


def _gevent_socket():
    from gevent import socket as gsocket

    return gsocket


class GeventConnection(Connection):
    """A redis-py TCP connection on a gevent socket."""

    def _connect(self):
        gsocket = _gevent_socket()
        err: OSError | None = None
        for family, socktype, proto, _name, address in gsocket.getaddrinfo(
            self.host, self.port, self.socket_type, _stdsocket.SOCK_STREAM
        ):
            sock = gsocket.socket(family, socktype, proto)
            try:
                sock.setsockopt(_stdsocket.IPPROTO_TCP, _stdsocket.TCP_NODELAY, 1)
                if self.socket_keepalive:
                    sock.setsockopt(_stdsocket.SOL_SOCKET, _stdsocket.SO_KEEPALIVE, 1)
                    for opt, value in self.socket_keepalive_options.items():
                        sock.setsockopt(_stdsocket.IPPROTO_TCP, opt, value)
                sock.settimeout(self.socket_connect_timeout)
                sock.connect(address)
                sock.settimeout(self.socket_timeout)
                return sock
            except OSError as exc:
                err = exc
                sock.close()
        raise err if err is not None else OSError(f"cannot resolve {self.host}:{self.port}")


class GeventUnixConnection(UnixDomainSocketConnection):
    """A redis-py Unix-socket connection on a gevent socket."""

    def _connect(self):
        gsocket = _gevent_socket()
        sock = gsocket.socket(_stdsocket.AF_UNIX, _stdsocket.SOCK_STREAM)
        try:
            sock.settimeout(self.socket_connect_timeout)
            sock.connect(self.path)
            sock.settimeout(self.socket_timeout)
        except OSError:
            sock.close()
            raise
        return sock


def needs_cooperative_sockets() -> bool:
    """True when gevent is in use but the stdlib socket module is not patched."""
    if "gevent" not in sys.modules:
        return False
    from gevent import monkey

    return not monkey.is_module_patched("socket")


def connection_class_for(url: str) -> type | None:
    """The gevent-friendly connection class for ``url``, or None to keep redis-py's."""
    if not needs_cooperative_sockets():
        return None
    scheme = urlparse(url).scheme
    if scheme == "redis":
        return GeventConnection
    if scheme == "unix":
        return GeventUnixConnection
    return None


def make_client(url_or_client: Any, **kwargs: Any) -> redis.Redis:
    """A ``redis.Redis`` for a URL (cooperative under gevent), or the given client.

    A given client whose connections would block the gevent hub (plain TCP or Unix
    connections in a process that is not monkey patched) is copied onto the
    gevent-friendly connection classes, with the same connection settings.
    """
    if isinstance(url_or_client, str):
        cls = connection_class_for(url_or_client)
        if cls is not None:
            kwargs.setdefault("connection_class", cls)
        # bounded waits, so that a Redis that vanished is noticed and reported
        kwargs.setdefault("socket_connect_timeout", 5.0)
        kwargs.setdefault("socket_timeout", 10.0)
        kwargs.setdefault("socket_keepalive", True)
        return redis.Redis.from_url(url_or_client, **kwargs)
    client = url_or_client
    if isinstance(client, redis.RedisCluster):
        return _cooperative_cluster(client)
    pool = getattr(client, "connection_pool", None)
    if pool is None or not needs_cooperative_sockets():
        return client
    swap = {Connection: GeventConnection, UnixDomainSocketConnection: GeventUnixConnection}
    cls = swap.get(pool.connection_class)
    if cls is None:
        return client
    new_pool = type(pool)(connection_class=cls, **pool.connection_kwargs)
    return redis.Redis(connection_pool=new_pool)


# what a RedisCluster's node connections keep from its settings, to rebuild it
_CLUSTER_KEEP = ("username", "password", "socket_timeout", "socket_connect_timeout",
                 "socket_keepalive", "client_name", "db", "health_check_interval")


def _cooperative_cluster(cluster: redis.RedisCluster) -> redis.RedisCluster:
    """The same cluster on gevent sockets (when needed): redis-py only lets a cluster
    choose its connection class when it is made from a URL."""
    if not needs_cooperative_sockets():
        return cluster
    kwargs = cluster.nodes_manager.connection_kwargs
    if kwargs.get("connection_class") is GeventConnection or kwargs.get("ssl"):
        return cluster
    node = cluster.get_default_node()
    options = {k: kwargs[k] for k in _CLUSTER_KEEP if kwargs.get(k) is not None}
    return redis.RedisCluster.from_url(f"redis://{node.host}:{node.port}",
                                       connection_class=GeventConnection, **options)


def make_cluster_client(url: str, **kwargs: Any) -> redis.RedisCluster:
    """A ``redis.RedisCluster`` for the cluster one of whose nodes is at ``url``."""
    if needs_cooperative_sockets():
        kwargs.setdefault("connection_class", GeventConnection)
    kwargs.setdefault("socket_connect_timeout", 5.0)
    kwargs.setdefault("socket_timeout", 10.0)
    return redis.RedisCluster.from_url(url, **kwargs)
