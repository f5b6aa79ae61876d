"""permessage-deflate end to end: node's ws (the JS client) and Chromium negotiate it,
a broadcast is compressed once and shared, clients without it get plain frames, the
compress flag is honoured, and a compression bomb closes only its own connection."""
from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import pytest

import roomcast
from tests.rawclient import RawWebSocket

BIG = "roomcast " * 500            # 4.5 KB, compressible: over the 1024-byte threshold


def deflate_server(**options):
    io = roomcast.Server(per_message_deflate=options.pop("per_message_deflate", True), **options)
    seen = {"deflate": {}, "reasons": [], "sizes": []}

    @io.on("connection")
    def connection(socket):
        name = socket.handshake["auth"].get("name", "?")
        seen["deflate"][name] = socket.conn.per_message_deflate

        @socket.on("upload")
        def upload(text, ack=None):
            seen["sizes"].append(len(text))
            if ack:
                ack(len(text))

        @socket.on("go")
        def go(ack):
            io.emit("big", BIG)
            io.emit("small", "x")
            io.compress(False).emit("plain-big", BIG)
            io.emit("end")
            ack()

        socket.on("disconnect", lambda reason: seen["reasons"].append((name, reason)))

    return io, seen


CLIENTS = """
const opts = {forceNew: true, transports: ["websocket"]};
const a = io(URL, {...opts, auth: {name: "deflate"}});
const b = io(URL, {...opts, auth: {name: "plain"}, perMessageDeflate: false});
await Promise.all([once(a, "connect"), once(b, "connect")]);
const ws = (s) => s.io.engine.transport.ws;
const got = {deflate: [], plain: []};
for (const [name, s] of [["deflate", a], ["plain", b]]) s.onAny((ev, arg) => { if (ev !== "end") got[name].push([ev, arg.length]); });
const ends = [once(a, "end"), once(b, "end")];
const before = [ws(a)._socket.bytesRead, ws(b)._socket.bytesRead];
await a.emitWithAck("go");
await Promise.all(ends);
const read = [ws(a)._socket.bytesRead - before[0], ws(b)._socket.bytesRead - before[1]];
const uploaded = await a.emitWithAck("upload", "y".repeat(200000));   // ws compresses it
done({extensions: [ws(a).extensions, ws(b).extensions], read, got, uploaded});
"""


def test_js_clients_with_and_without_deflate_in_one_broadcast(serve, run_js):
    io, seen = deflate_server()
    result = run_js(CLIENTS, serve(io))
    assert result["extensions"] == ["permessage-deflate", ""]   # ws lists the names
    expected = [["big", len(BIG)], ["small", 1], ["plain-big", len(BIG)]]
    assert result["got"] == {"deflate": expected, "plain": expected}
    deflate_read, plain_read = result["read"]
    # both got BIG plain once (compress(False)); only the plain client got it plain twice
    assert plain_read > 2 * len(BIG)
    assert len(BIG) < deflate_read < len(BIG) + 1000
    assert result["uploaded"] == 200000 and seen["sizes"] == [200000]
    assert seen["deflate"] == {"deflate": True, "plain": False}


def test_off_by_default_and_threshold(serve, run_js):
    io, seen = deflate_server(per_message_deflate=False)
    result = run_js(CLIENTS, serve(io))
    assert result["extensions"] == ["", ""]
    assert seen["deflate"] == {"deflate": False, "plain": False}
    io2, seen2 = deflate_server(per_message_deflate={"threshold": 100_000})
    result = run_js(CLIENTS, serve(io2))
    assert result["extensions"][0].startswith("permessage-deflate")
    assert result["read"][0] > 2 * len(BIG)        # under the threshold: both sent plain


def bomb_frame(size: int) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return (c.compress(b"4" + b"a" * size) + c.flush(zlib.Z_SYNC_FLUSH))[:-4]


def test_a_compression_bomb_closes_only_its_connection(serve, run_js, wait_for):
    io, seen = deflate_server(max_http_buffer_size=100_000)
    url = serve(io)
    good = RawWebSocket(url, headers={"Sec-WebSocket-Extensions": "permessage-deflate"})
    bomb = RawWebSocket(url, headers={"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"})
    for raw in (good, bomb):
        assert raw.status == 101
        assert raw.headers["sec-websocket-extensions"] == "permessage-deflate; server_no_context_takeover"
        assert raw.recv().startswith("0{")      # the Engine.IO open packet
        raw.send("40")
        assert raw.recv().startswith("40{")
    # 50 MB of "a" in ~50 kB: inflating stops at max_http_buffer_size (100 kB)
    payload = bomb_frame(50_000_000)
    assert len(payload) < 60_000
    bomb.send_frame(1, payload, rsv1=True)
    assert bomb.wait_closed()
    # a compressed message under the limit still works on the other connection
    ok = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = ok.compress(b'42["upload","' + b"z" * 50_000 + b'"]') + ok.flush(zlib.Z_SYNC_FLUSH)
    good.send_frame(1, body[:-4], rsv1=True)
    wait_for(lambda: seen["sizes"] == [50_000], "the good connection's compressed upload")
    good.close()
    bomb.close()


PAGE = """<!doctype html><script src="/socket.io.min.js"></script>"""

BROWSER = """
const { chromium } = require("playwright-core");
const browser = await chromium.launch({executablePath: SETTINGS.chromium, headless: true,
                                      args: SETTINGS.flags});
let result;
try {
  const page = await browser.newPage();
  await page.goto(URL + "/page.html");
  result = await page.evaluate(async (big) => {
    const s = io({transports: ["websocket"], auth: {name: "chromium"}});
    await new Promise((ok) => s.on("connect", ok));
    const got = [];
    s.onAny((ev, arg) => { if (ev !== "end") got.push([ev, arg.length]); });
    const end = new Promise((ok) => s.on("end", ok));
    await s.emitWithAck("go");
    await end;
    const uploaded = await s.emitWithAck("upload", big);
    s.close();
    return {got, uploaded};
  }, "w".repeat(300000));
} finally {
  await browser.close();
}
done(result);
"""


def test_chromium_negotiates_it(serve, run_js, tmp_path):
    chromium = "/usr/bin/chromium"
    assert os.access(chromium, os.X_OK), "chromium is missing (scripts/test.sh installs it)"
    client_js = Path(__file__).resolve().parents[1] / "js/node_modules/socket.io-client/dist/socket.io.min.js"
    page = tmp_path / "page.html"
    page.write_text(PAGE)
    io, seen = deflate_server()
    app = roomcast.WSGIApp(io, static_files={"/page.html": str(page), "/socket.io.min.js": str(client_js)})
    settings = {"chromium": chromium,
                "flags": ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]}
    result = run_js(f"const SETTINGS = {json.dumps(settings)};\n" + BROWSER, serve(app), timeout=60)
    assert result["got"] == [["big", len(BIG)], ["small", 1], ["plain-big", len(BIG)]]
    assert result["uploaded"] == 300000 and seen["sizes"] == [300000]
    assert seen["deflate"] == {"chromium": True}
