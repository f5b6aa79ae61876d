"""Cluster nodes for the Redis tests: roomcast and Node Socket.IO servers in their own
processes, driven over a JSON-lines control protocol on stdin/stdout (the same for both
kinds; see node_node.js and roomcast_node.py)."""
from __future__ import annotations

import base64
import itertools
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Callable

import gevent
import gevent.event
import gevent.subprocess as gsubprocess

import roomcast

HERE = Path(__file__).resolve().parent
# the node processes import the very roomcast this test session imports (installed or src/)
ROOMCAST_PATH = str(Path(roomcast.__file__).resolve().parent.parent)


def _revive(obj: dict) -> Any:
    if set(obj) == {"$bytes"}:
        return base64.b64decode(obj["$bytes"])
    return obj


def _bytes_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    raise TypeError(type(value).__name__)


class ClusterNode:
    """One server process; ``call(op, **kw)`` sends a command and waits for its result.

    ``wait_for`` is the suite's fixture of that name (tests/conftest.py); the node keeps
    it as ``node.wait_for`` for the helpers that wait on nodes."""

    def __init__(self, kind: str, config: dict, impl: str,
                 wait_for: Callable[..., Any]) -> None:
        self.kind = kind
        self.wait_for = wait_for
        self.config = config   # as given: redis URL, key, adapter options
        self.events: list[dict] = []
        self.connections: list[dict] = []   # {nsp, id, recovered, rooms, data} per connection
        self._ids = itertools.count(1)
        self._waiting: dict[int, gevent.event.AsyncResult] = {}
        self._ready = gevent.event.AsyncResult()
        env = dict(os.environ)
        if kind == "node":
            argv = ["node", str(HERE / "node_node.js"), json.dumps(config)]
        else:
            argv = [sys.executable, str(HERE / "roomcast_node.py"), json.dumps(config)]
            # the child imports roomcast as this process does (the installed package in
            # .venv, compiled core included): putting src/ first would shadow it
            env["ROOMCAST_NO_EXTENSIONS"] = "1" if impl == "py" else "0"
        self.proc = gsubprocess.Popen(argv, stdin=gsubprocess.PIPE, stdout=gsubprocess.PIPE,
                                      stderr=gsubprocess.PIPE, env=env)
        self._stderr: list[bytes] = []
        self._readers = [gevent.spawn(self._read_stdout), gevent.spawn(self._read_stderr)]
        try:
            self.port = self._ready.get(timeout=15)
        except gevent.Timeout:
            self.stop()
            raise AssertionError(f"{kind} node did not start:\n{self.stderr}") from None
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def stderr(self) -> str:
        return b"".join(self._stderr).decode(errors="replace")

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            try:
                msg = json.loads(line, object_hook=_revive)
            except ValueError:
                self._stderr.append(b"stdout: " + line)
                continue
            if "ready" in msg:
                self._ready.set(msg["ready"])
            elif "event" in msg:
                self.events.append(msg)
            elif "connection" in msg:
                self.connections.append(msg["connection"])
            elif msg.get("id") in self._waiting:
                self._waiting.pop(msg["id"]).set(msg)
        if not self._ready.ready():
            self._ready.set_exception(gevent.Timeout())
        for waiter in self._waiting.values():
            waiter.set_exception(AssertionError(f"{self.kind} node exited:\n{self.stderr}"))

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self._stderr.append(line)

    def call(self, op: str, _wait: float = 10.0, **kwargs: Any) -> Any:
        cmd_id = next(self._ids)
        waiter = gevent.event.AsyncResult()
        self._waiting[cmd_id] = waiter
        line = json.dumps({"id": cmd_id, "op": op, **kwargs}, default=_bytes_default) + "\n"
        self.proc.stdin.write(line.encode())
        self.proc.stdin.flush()
        try:
            msg = waiter.get(timeout=_wait)
        except gevent.Timeout:
            raise AssertionError(f"{self.kind} node: no answer to {op} in {_wait}s\n{self.stderr}") from None
        if "error" in msg:
            raise RuntimeError(msg["error"])
        return msg["result"]

    def wait_clients(self, count: int, nsp: str = "/", timeout: float = 10.0) -> None:
        self.wait_for(lambda: self.call("localCount", nsp=nsp) >= count,
                       f"{count} clients on the {self.kind} node", timeout=timeout)

    def wait_event(self, count: int = 1, timeout: float = 10.0) -> list[dict]:
        self.wait_for(lambda: len(self.events) >= count,
                       f"{count} server-side events on the {self.kind} node", timeout=timeout)
        return self.events

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=3)
            except gsubprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        gevent.killall(self._readers, timeout=1)


def emit_until_received(wait_for: Callable[..., Any], emitter: Any, client: Any, *args: Any) -> None:
    """Emit ``args`` again and again until the JS ``client`` (which ends on the first)
    got one: "connected" is Redis's first subscribe confirmation, and the moment the
    other subscriptions of the connection are in place is not observable from outside."""
    def received() -> bool:
        emitter.emit(*args)
        return client.proc.poll() is not None

    wait_for(received, f"the client to receive {args[0]!r}", interval=0.1)


def new_key() -> str:
    return f"rc-test-{uuid.uuid4().hex[:10]}"


def delete_keys(redis_url: str, key: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    for name in client.scan_iter(match=f"{key}*"):
        client.delete(name)
    client.close()
