"""roomcast inside gevent apps: in front of Flask and Django, under gunicorn, io.run()."""
from __future__ import annotations

import sys

import roomcast
from tests.processes import free_port, start_process, stop_process
from tests.rawclient import request

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
