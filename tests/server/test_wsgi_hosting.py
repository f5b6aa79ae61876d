"""roomcast inside gevent apps: in front of Flask and Django, under gunicorn, io.run()."""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import gevent
import gevent.subprocess

import roomcast
from tests.rawclient import request

ROOT = Path(__file__).resolve().parents[2]

ECHO_SCRIPT = """
const out = {};
for (const transports of [["websocket"], ["polling"], ["polling", "websocket"]]) {
  const s = io(URL, {transports, upgrade: transports.length > 1, reconnection: false});
  await once(s, "connect");
  if (transports.length > 1 && !s.io.engine.transport.name.includes("websocket")) {
    await once(s.io.engine, "upgrade");
  }
  out[transports.join("+")] = await s.emitWithAck("echo", 1, "two", {three: [3]});
  s.disconnect();
}
done(out);
"""


def check_echo(result: dict) -> None:
    assert result == {
        "websocket": {"echo": [1, "two", {"three": [3]}], "transport": "websocket"},
        "polling": {"echo": [1, "two", {"three": [3]}], "transport": "polling"},
        "polling+websocket": {"echo": [1, "two", {"three": [3]}], "transport": "websocket"},
    }


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
            request(f"http://127.0.0.1:{port}", path="/", timeout=1)
            return True
        except OSError:
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


def test_flask_keeps_working_behind_wsgiapp(serve, run_js):
    from tests.apps import echo_app

    url = serve(echo_app.app)
    assert request(url, path="/").text == "flask says hi"
    assert request(url, path="/missing").status == 404      # Flask's own 404
    check_echo(run_js(ECHO_SCRIPT, url))


def test_django_keeps_working_behind_wsgiapp(serve, run_js):
    from tests.apps import django_app, echo_app

    url = serve(roomcast.WSGIApp(echo_app.io, django_app.application))
    assert request(url, path="/").text == "django says hi"
    check_echo(run_js(ECHO_SCRIPT, url))


def test_bare_engine_beside_socketio_on_its_own_path(serve, run_js):
    from tests.apps import echo_app
    from tests.rawclient import RawWebSocket

    engine = roomcast.EngineServer(path="/raw-engine")
    engine.on("connection", lambda conn: conn.on("message", conn.send))
    url = serve(roomcast.WSGIApp([echo_app.io, engine], echo_app.flask_app))
    ws = RawWebSocket(url, "/raw-engine/")
    assert ws.recv().startswith("0{")
    ws.send("4plain")
    assert ws.recv() == "4plain"
    ws.close()
    check_echo(run_js(ECHO_SCRIPT, url))


def test_under_gunicorn_gevent_websocket_worker(run_js, impl, wait_for):
    port = free_port()
    proc = start_process([sys.executable, "-m", "gunicorn", "-k",
                          "geventwebsocket.gunicorn.workers.GeventWebSocketWorker", "-w", "1",
                          "-b", f"127.0.0.1:{port}", "tests.apps.echo_app:app"], port, impl,
                         wait_for)
    try:
        url = f"http://127.0.0.1:{port}"
        assert request(url, path="/").text == "flask says hi"
        check_echo(run_js(ECHO_SCRIPT, url))
    finally:
        stop_process(proc)


def test_io_run_one_call(run_js, impl, wait_for):
    port = free_port()
    proc = start_process([sys.executable, "-m", "tests.apps.echo_app", str(port)], port, impl,
                         wait_for)
    try:
        url = f"http://127.0.0.1:{port}"
        assert request(url, path="/").text == "flask says hi"
        check_echo(run_js(ECHO_SCRIPT, url))
    finally:
        stop_process(proc)
