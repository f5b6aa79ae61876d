"""One scenario, two servers: roomcast.compat and the real python-socketio.

The compat tests write a scenario once, as a function of the ``socketio`` module it
builds its server with and of ``serve`` (which serves that server, or a WSGI app made
with that module, the way its side is served), and run it with the fixture
``both_sides``::

    def scenario(socketio, serve):
        sio = socketio.Server()
        ...
        return run_js(SCRIPT, serve(sio))

    assert both_sides(scenario) == expected     # the same on both sides, or it fails

python-socketio is served as its documentation shows for gevent: its ``WSGIApp`` under
``gevent.pywsgi.WSGIServer`` with gevent-websocket's handler (``async_mode="gevent"``,
chosen by python-socketio itself since gevent is installed).
"""
from __future__ import annotations

from typing import Any, Callable

import pytest
import socketio as python_socketio
from geventwebsocket.handler import WebSocketHandler

import roomcast.compat

SIDES = {"roomcast.compat": roomcast.compat, "python-socketio": python_socketio}


class Sides(dict):
    """{side: the scenario's result}; ``common()`` checks that they are equal."""

    def common(self) -> Any:
        ours, theirs = self["roomcast.compat"], self["python-socketio"]
        assert ours == theirs, f"roomcast.compat: {ours!r}\npython-socketio: {theirs!r}"
        return ours


@pytest.fixture
def both_sides(serve: Callable[..., str]) -> Callable[..., Any]:
    """both_sides(scenario, same=True): run ``scenario(socketio, serve)`` with
    roomcast.compat, then with python-socketio; return the common result (failing when
    they differ), or with ``same=False`` the results by side (a documented difference)."""
    real_servers: list = []

    def serve_side(side: str) -> Callable[..., str]:
        def _serve(app: Any, **kwargs: Any) -> str:
            """Serve a Server (wrapped in its side's WSGIApp) or a WSGI app as is."""
            if side == "roomcast.compat":
                return serve(app, **kwargs)
            if isinstance(app, python_socketio.Server):
                assert app.eio.async_mode == "gevent", app.eio.async_mode
                real_servers.append(app)
                app = python_socketio.WSGIApp(app)
            return serve(app, handler_class=WebSocketHandler, **kwargs)

        return _serve

    def _both_sides(scenario: Callable[..., Any], same: bool = True) -> Any:
        results = Sides((side, scenario(module, serve_side(side))) for side, module in SIDES.items())
        return results.common() if same else results

    yield _both_sides
    for sio in real_servers:
        sio.shutdown()
