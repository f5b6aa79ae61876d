"""Servers in child processes (gunicorn, io.run) for the hosting and shutdown tests."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import gevent
import gevent.subprocess

from tests.rawclient import request

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_process(args: list[str], port: int, impl: str, wait_for):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    if impl == "py":   # the child process runs the same implementation as this test
        env["ROOMCAST_NO_EXTENSIONS"] = "1"
        env.pop("ROOMCAST_REQUIRE_EXTENSIONS", None)
    proc = gevent.subprocess.Popen(args, cwd=ROOT, env=env, stdout=gevent.subprocess.PIPE,
                                   stderr=gevent.subprocess.PIPE)

    def listening() -> bool:
        assert proc.poll() is None, proc.stderr.read().decode()
        try:
            request(f"http://127.0.0.1:{port}", path="/", timeout=2)
            return True
        except (OSError, gevent.Timeout):
            # refused, or accepted by a listener whose worker is still booting
            # (gunicorn's master listens before its worker serves) on a loaded machine
            return False

    wait_for(listening, f"the server to listen on {port}", timeout=20)
    return proc


def stop_process(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except gevent.subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
