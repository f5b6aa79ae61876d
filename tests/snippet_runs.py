"""What the real-client harnesses share: the node one (tests/conftest.py: start_js,
run_js) and the python-socketio one (tests/psio_harness.py: start_psio, run_psio).
Each runs a test's snippet in a child process that prints done(value) as JSON."""
from __future__ import annotations

import base64
import json
import time
from typing import Any, Callable, Iterator, Protocol, TypeVar

import gevent.subprocess


class SnippetRun(Protocol):
    def result(self) -> Any: ...
    def kill(self) -> None: ...


Run = TypeVar("Run", bound=SnippetRun)


def from_json(text: str) -> Any:
    """A value done() printed: JSON, with {"$bytes": base64} for bytes."""
    def bytes_hook(obj: dict) -> Any:
        if len(obj) == 1 and "$bytes" in obj:
            return base64.b64decode(obj["$bytes"])
        return obj

    return json.loads(text, object_hook=bytes_hook)


def output_by(proc: gevent.subprocess.Popen, deadline: float,
              end: Callable[[], None]) -> tuple[str, str, bool]:
    """proc's stdout and stderr once it exits, and whether it had to be ended (end())
    at the deadline (a time.monotonic() value)."""
    timed_out = False
    try:
        out, err = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
    except gevent.subprocess.TimeoutExpired:
        timed_out = True
        end()
        out, err = proc.communicate()
    return out.decode(errors="replace"), err.decode(errors="replace"), timed_out


def started_runs(new_run: Callable[[str, str, float], Run],
                 timeout: float) -> Iterator[Callable[..., Run]]:
    """The body of a start_* fixture: yields start(script, url, timeout=timeout), which
    returns new_run(script, url, timeout); every run still going is killed at teardown."""
    runs: list[Run] = []

    def start(script: str, url: str, timeout: float = timeout) -> Run:
        run = new_run(script, url, timeout)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.kill()


def run_to_result(start: Callable[..., SnippetRun]) -> Callable[..., Any]:
    """The function of a run_* fixture: start(script, url, timeout=...).result()."""
    def run(*args: Any, **kwargs: Any) -> Any:
        return start(*args, **kwargs).result()

    return run
