"""Fixtures shared by the whole suite (see tests/README.md and ARCHITECTURE.md section 7).

Servers run in this process under gevent, without monkey patching: the test's own
greenlet must wait with gevent (gevent.sleep, gevent.subprocess, the fixtures here)
so that the server keeps serving. A blocking library call (requests, websocket-client)
goes through ``in_thread`` for the same reason.
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any, Callable, Iterator

import gevent
import gevent.subprocess
import pytest
from gevent.pywsgi import WSGIServer
from geventwebsocket.handler import WebSocketHandler

# _speedups raises ImportError on import when the extension is required and missing;
# import it without that demand so the pure run still happens and the "c" run fails
# with a clear message (see impl below).
_required = os.environ.pop("ROOMCAST_REQUIRE_EXTENSIONS", None)
try:
    from roomcast import _speedups
finally:
    if _required is not None:
        os.environ["ROOMCAST_REQUIRE_EXTENSIONS"] = _required

# Property tests run on a shared 2-core machine: time limits and speed health checks
# would fail them for the machine's load, not for what they check.
from hypothesis import HealthCheck, settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile(
    "roomcast", deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
_hypothesis_settings.load_profile("roomcast")

from psio_harness import run_psio, start_psio  # noqa: E402,F401  (fixtures)
from tests.snippet_runs import from_json, output_by, run_to_result, started_runs  # noqa: E402
from compat_sides import both_sides  # noqa: E402,F401  (fixture)

JS_DIR = Path(__file__).resolve().parent / "js"
HARNESS = JS_DIR / "harness.js"
DONE_MARKER = "@@roomcast-done@@ "
FAIL_MARKER = "@@roomcast-fail@@ "
REQUIRE_EXTENSIONS = (_required or "") not in ("", "0")


# -- waiting for a condition --------------------------------------------------------
def wait_until(predicate: Callable[[], Any], what: str = "the condition",
               timeout: float = 10.0, interval: float = 0.01) -> Any:
    """Poll ``predicate`` cooperatively (the server keeps running) until it returns
    something true, and return that; AssertionError naming ``what`` after ``timeout``.

    The one synchronisation helper of the suite: tests wait for the state they assert
    on instead of sleeping a fixed time. The default timeout allows a loaded 2-core
    machine; a passing test returns as soon as the condition holds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        gevent.sleep(interval)


@pytest.fixture(scope="session")
def wait_for() -> Callable[..., Any]:
    """``wait_for(predicate, what="...", timeout=10.0)``: see ``wait_until``.
    Session-scoped (it holds no state) so that fixtures of any scope can use it."""
    return wait_until


# -- the implementation under test --------------------------------------------------

@pytest.fixture(scope="session", autouse=True, params=["c", "py"])
def impl(request: pytest.FixtureRequest) -> str:
    """Every test runs twice: with the compiled core ("c") and with its pure twin ("py")."""
    if request.param == "c" and not _speedups.extensions_available():
        reason = ("the compiled core (roomcast._encoder_c, _rooms_c, _fanout_c, _frames_c) is not built; "
                  "install with a C compiler and Cython to test it")
        if REQUIRE_EXTENSIONS:
            pytest.fail(f"ROOMCAST_REQUIRE_EXTENSIONS=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    _speedups.use(pure=request.param == "py")
    return request.param


# -- serving a WSGI app or a roomcast server -----------------------------------------

def _roomcast_server_types() -> tuple[type, ...]:
    """The classes that serve() wraps in roomcast.WSGIApp (those that exist yet)."""
    import roomcast

    types = []
    for name in ("Server", "EngineServer"):
        try:
            types.append(getattr(roomcast, name))
        except (ImportError, AttributeError):
            pass
    try:
        from roomcast.compat import Server as CompatServer
        types.append(CompatServer)
    except ImportError:
        pass
    return tuple(types)


def _handler_class() -> type:
    """roomcast's subclass of geventwebsocket's WebSocketHandler (it refuses a bad
    Engine.IO upgrade with Node's 400 before upgrading), else the stock one."""
    try:
        from roomcast.wsgi import WebSocketHandler as RoomcastHandler
    except ImportError:
        return WebSocketHandler
    return RoomcastHandler


@pytest.fixture
def serve() -> Callable[..., str]:
    """serve(app_or_server, **server_kwargs) -> "http://127.0.0.1:PORT".

    A roomcast Server/EngineServer is wrapped in roomcast.WSGIApp; any other WSGI app
    is served as is. server_kwargs go to gevent.pywsgi.WSGIServer. Everything served
    is closed at teardown.
    """
    started: list[tuple[WSGIServer, Any]] = []

    def _serve(app: Any, **server_kwargs: Any) -> str:
        io = None
        if isinstance(app, _roomcast_server_types()):
            import roomcast

            io, app = app, roomcast.WSGIApp(app)
        server_kwargs.setdefault("log", None)  # no access log; errors still go to stderr
        server_kwargs.setdefault("handler_class", _handler_class())
        server = WSGIServer(("127.0.0.1", 0), app, **server_kwargs)
        server.start()
        started.append((server, io))
        scheme = "https" if server.ssl_enabled else "http"
        return f"{scheme}://127.0.0.1:{server.server_port}"

    yield _serve
    for server, io in reversed(started):
        if io is not None:
            io.close(timeout=0.2)   # no graceful wait for sessions a test left open
        server.stop(timeout=1)


def eio_url_for(url: str, path: str = "/socket.io/", **query: Any) -> str:
    """The Engine.IO URL of a served app: EIO=4 and transport=polling unless given."""
    query = {"EIO": "4", "transport": "polling", **query}
    return f"{url}{path}?{urllib.parse.urlencode(query)}"


@pytest.fixture
def eio_url() -> Callable[..., str]:
    """eio_url(url, path="/socket.io/", **query), e.g. eio_url(url, sid=sid)."""
    return eio_url_for


@pytest.fixture
def in_thread() -> Callable[..., Any]:
    """in_thread(fn, *args, **kwargs): run a blocking call in a real thread, and wait for
    it with gevent so that the in-process server keeps serving meanwhile."""
    def _in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return gevent.get_hub().threadpool.apply(fn, args, kwargs)

    return _in_thread


# -- the real JavaScript client in node ----------------------------------------------

class JSRun:
    """One node process running a snippet through tests/js/harness.js."""

    def __init__(self, script_file: Path, url: str, timeout: float) -> None:
        if not (JS_DIR / "node_modules" / "socket.io-client").is_dir():
            raise RuntimeError("tests/js/node_modules is missing: run `npm ci` in tests/js "
                               "(scripts/test.sh does)")
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        # its own process group, so that ending it also ends what it started (chromium)
        self.proc = gevent.subprocess.Popen(
            ["node", str(HARNESS), str(script_file), url],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(JS_DIR),
            start_new_session=True)
        self._outcome: tuple[bool, Any] | None = None

    def result(self) -> Any:
        """The value given to done(); AssertionError on fail(), an error or the timeout."""
        if self._outcome is None:
            self._outcome = self._wait()
        ok, value = self._outcome
        if not ok:
            raise AssertionError(value)
        return value

    def kill(self) -> None:
        if self.proc.poll() is None:
            self._end()
            self.proc.communicate()
            self._kill_leftovers()
            if self._outcome is None:
                self._outcome = (False, "node was killed by the test")

    def _kill_leftovers(self) -> None:
        """Whatever node started and left behind (the group outlives its leader)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _end(self) -> None:
        """SIGTERM to the group (playwright then closes its browser), SIGKILL if needed."""
        for sig, grace in ((signal.SIGTERM, 1.0), (signal.SIGKILL, None)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            if grace is not None:
                try:
                    self.proc.wait(timeout=grace)
                    return
                except gevent.subprocess.TimeoutExpired:
                    pass

    def _wait(self) -> tuple[bool, Any]:
        stdout, stderr, timed_out = output_by(self.proc, self.deadline, self._end)
        self._kill_leftovers()
        for line in stdout.splitlines():
            if line.startswith(DONE_MARKER) and not timed_out:
                return True, from_json(line[len(DONE_MARKER):])
            if line.startswith(FAIL_MARKER):
                return False, self._message(f"node failed: {json.loads(line[len(FAIL_MARKER):])}",
                                            stdout, stderr)
        if timed_out:
            return False, self._message(f"node timed out after {self.timeout}s "
                                        "(done() was never called)", stdout, stderr)
        return False, self._message(f"node exited with code {self.proc.returncode} "
                                    "without calling done()", stdout, stderr)

    @staticmethod
    def _message(head: str, stdout: str, stderr: str) -> str:
        rest = [line for line in stdout.splitlines()
                if not line.startswith((DONE_MARKER, FAIL_MARKER))]
        parts = [head]
        if rest:
            parts.append("--- node stdout ---\n" + "\n".join(rest))
        if stderr.strip():
            parts.append("--- node stderr ---\n" + stderr.rstrip())
        return "\n".join(parts)


@pytest.fixture(scope="session")
def _js_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("js")


_snippet_numbers = itertools.count()


# The JS client's options for each transport mode a test runs in.
CLIENT_TRANSPORTS = {
    "websocket": "{transports: ['websocket']}",
    "polling": "{transports: ['polling']}",
    "upgrade": "{}",
}


@pytest.fixture(params=list(CLIENT_TRANSPORTS))
def transport(request: pytest.FixtureRequest) -> str:
    """The JS client options (an object literal) for one transport mode; a test
    using it runs over WebSocket only, polling only, and polling then upgrade."""
    return CLIENT_TRANSPORTS[request.param]


@pytest.fixture
def start_js(_js_dir: Path) -> Iterator[Callable[..., JSRun]]:
    """start_js(script, url, timeout=20.0) -> handle with .result() and .kill()."""
    def new_run(script: str, url: str, timeout: float) -> JSRun:
        script_file = _js_dir / f"snippet-{next(_snippet_numbers)}.js"
        script_file.write_text(script)
        return JSRun(script_file, url, timeout)

    yield from started_runs(new_run, timeout=20.0)


@pytest.fixture
def run_js(start_js: Callable[..., JSRun]) -> Callable[..., Any]:
    """run_js(script, url, timeout=20.0) -> the value the snippet gave to done()."""
    return run_to_result(start_js)


# -- Redis ---------------------------------------------------------------------------

def _redis_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as conn:
            conn.sendall(b"*1\r\n$4\r\nPING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """redis://127.0.0.1:6379 when it answers PING, else a redis-server started here.

    The Redis may be shared: use your own key prefixes / channels and never FLUSH.
    """
    if _redis_answers("127.0.0.1", 6379):
        yield "redis://127.0.0.1:6379"
        return
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("no Redis answers on 127.0.0.1:6379 and redis-server is not installed "
                    "(scripts/test.sh installs it)", pytrace=False)
    port = _free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no"],
                            cwd=str(workdir), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: proc.poll() is not None or _redis_answers("127.0.0.1", port),
                   f"redis-server to start on port {port}")
        if proc.poll() is not None:
            pytest.fail(f"redis-server exited at start on port {port}", pytrace=False)
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
