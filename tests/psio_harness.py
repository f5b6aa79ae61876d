"""Runs the real python-socketio client in a subprocess, for the tests.

The fixtures ``start_psio`` / ``run_psio`` (made available by tests/conftest.py) run
a snippet of plain Python that sees ``socketio`` (the real package), ``URL``,
``done(value)``, ``fail(message)``, ``Inbox`` (a thread-safe mailbox:
``inbox.put(*item)``, ``inbox.wait(n=1, timeout=5) -> first n items``), ``time`` and
``threading``. The client has its own threads there, while the test process keeps
serving under gevent. ``done`` ends the process at once (no goodbye to the server:
call ``sio.disconnect()`` first when the test is about that; python-socketio's client
may hang in ``disconnect()`` over polling while its writer thread is still busy, so
pause briefly before it).
"""
from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import gevent
import gevent.subprocess
import pytest

from tests.snippet_runs import from_json, output_by, run_to_result, started_runs

DONE = "@@psio-done@@ "
FAIL = "@@psio-fail@@ "

PRELUDE = r'''
import base64, json, os, sys, threading, time
import socketio

URL = sys.argv[1]


def _encode(value):
    if isinstance(value, (bytes, bytearray)):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot return {value!r} to the test")


def _report(marker, value):
    sys.stdout.write(marker + json.dumps(value, default=_encode) + "\n")
    sys.stdout.flush()


def done(value=None):
    _report("@@psio-done@@ ", value)
    os._exit(0)


def fail(message):
    _report("@@psio-fail@@ ", str(message))
    os._exit(1)


class Inbox:
    """What handlers received, from any thread; wait(n) for the first n items."""

    def __init__(self):
        self.items = []
        self._cond = threading.Condition()

    def put(self, *item):
        with self._cond:
            self.items.append(item[0] if len(item) == 1 else list(item))
            self._cond.notify_all()

    def wait(self, n=1, timeout=5.0):
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.items) >= n, timeout):
                fail(f"waited {timeout}s for {n} items, got {self.items!r}")
            return list(self.items[:n])


def _excepthook(kind, value, tb):
    import traceback
    traceback.print_exception(kind, value, tb)
    _report("@@psio-fail@@ ", f"{kind.__name__}: {value}")
    os._exit(1)


sys.excepthook = _excepthook
threading.excepthook = lambda args: _excepthook(args.exc_type, args.exc_value,
                                                args.exc_traceback)
'''


class PsioRun:
    """One python-socketio client process running a snippet."""

    def __init__(self, script_file: Path, url: str, timeout: float) -> None:
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.proc = gevent.subprocess.Popen(
            [sys.executable, str(script_file), url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._outcome: tuple[bool, Any] | None = None
        self._waiter = gevent.spawn(self._wait)

    def result(self) -> Any:
        """The value given to done(); AssertionError on fail(), an error or the timeout."""
        ok, value = self._waiter.get()
        if not ok:
            raise AssertionError(value)
        return value

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self._waiter.join()

    def _wait(self) -> tuple[bool, Any]:
        stdout, stderr, timed_out = output_by(self.proc, self.deadline, self.proc.kill)
        for line in stdout.splitlines():
            if line.startswith(DONE) and not timed_out:
                return True, from_json(line[len(DONE):])
            if line.startswith(FAIL):
                return False, f"client failed: {json.loads(line[len(FAIL):])}\n{stderr}"
        head = (f"client timed out after {self.timeout}s" if timed_out
                else f"client exited with code {self.proc.returncode} without done()")
        return False, f"{head}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}"


_numbers = itertools.count()


@pytest.fixture
def start_psio(tmp_path: Path) -> Iterator[Callable[..., PsioRun]]:
    """start_psio(script, url, timeout=15.0) -> handle with .result() and .kill()."""
    def new_run(script: str, url: str, timeout: float) -> PsioRun:
        path = tmp_path / f"psio_{next(_numbers)}.py"
        path.write_text(PRELUDE + "\n" + textwrap.dedent(script))
        return PsioRun(path, url, timeout)

    yield from started_runs(new_run, timeout=15.0)


@pytest.fixture
def run_psio(start_psio: Callable[..., PsioRun]) -> Callable[..., Any]:
    """run_psio(script, url, timeout=15.0) -> the value the snippet gave to done()."""
    return run_to_result(start_psio)
