"""Server API corners checked side by side with Node's socket.io: the same scenario
runs against a Node server (started inside the node snippet) and against roomcast,
and the outcomes are compared."""
from __future__ import annotations

import gzip
import json

import roomcast
from tests.rawclient import request

# A Node socket.io server on a free port, inside the snippet: `nodeIo`, `nodeUrl`.
NODE_SERVER = """
const http = require("http");
const { Server } = require("socket.io");
const httpServer = http.createServer();
const nodeIo = new Server(httpServer);
await new Promise((resolve) => httpServer.listen(0, "127.0.0.1", resolve));
const nodeUrl = `http://127.0.0.1:${httpServer.address().port}`;
"""


def test_broadcast_acks_keep_each_clients_first_argument(serve, start_js, wait_for):
    io = roomcast.Server()
    url = serve(io)
    job = start_js(NODE_SERVER + """
        const answers = [["a", "extra", 3], ["b"], []];
        async function clients(base) {
          const made = [];
          for (const args of answers) {
            const socket = io(base, { forceNew: true });
            socket.on("q", (ack) => ack(...args));
            await once(socket, "connect");
            made.push(socket);
          }
          return made;
        }
        await clients(nodeUrl);
        const [err, nodeResponses] = await new Promise(
          (resolve) => nodeIo.timeout(5000).emit("q", (...r) => resolve(r)));
        const ours = await clients(URL);
        await once(ours[0], "finished");   // roomcast collected its acks
        done({ err: err && String(err), responses: nodeResponses });
    """, url)
    wait_for(lambda: len(io.sockets.sockets) == 3, "the three roomcast clients")
    outcome = {}
    io.timeout(5).emit("q", callback=lambda err, responses: outcome.update(err=err,
                                                                           responses=responses))
    wait_for(lambda: outcome, "the acks")
    io.emit("finished")
    node = job.result()
    assert node["err"] is None and outcome["err"] is None
    assert sorted(node["responses"], key=json.dumps) == ["a", "b", None]
    assert sorted(outcome["responses"], key=json.dumps) == sorted(node["responses"],
                                                                  key=json.dumps)


# -- compress(False) over long-polling --------------------------------------------------
# Raw polling with Accept-Encoding: gzip, against both servers; what is emitted is
# bigger than the 1 KiB compression threshold.
POLL_NODE = NODE_SERVER + """
    const P = "/socket.io/?EIO=4&transport=polling";
    const gz = { headers: { "accept-encoding": "gzip" } };
    async function encodingOf(emit) {
      const open = await (await fetch(nodeUrl + P)).text();
      const sid = JSON.parse(open.slice(1)).sid;
      const connected = once(nodeIo, "connection");
      await fetch(`${nodeUrl}${P}&sid=${sid}`, { method: "POST", body: "40" });
      await (await fetch(`${nodeUrl}${P}&sid=${sid}`)).text();   // the CONNECT reply
      const [socket] = await connected;
      emit(socket);
      const poll = await fetch(`${nodeUrl}${P}&sid=${sid}`, gz);
      await poll.text();
      return poll.headers.get("content-encoding");
    }
    const big = "x".repeat(5000);
    done({
      plain: await encodingOf((s) => s.emit("big", big)),
      off: await encodingOf((s) => s.compress(false).emit("big", big)),
      mixed: await encodingOf((s) => { s.compress(false).emit("big", big); s.emit("small", 1); }),
      broadcastOff: await encodingOf((s) => nodeIo.compress(false).emit("big", big)),
    });
"""


def roomcast_encoding_of(url: str, io: roomcast.Server, emit, wait_for) -> str | None:
    P, q = "/socket.io/", "EIO=4&transport=polling"
    sid = json.loads(request(url, path=P, query=q).text[1:])["sid"]
    before = set(io.sockets.sockets)
    request(url, "POST", P, f"{q}&sid={sid}", "40")
    request(url, path=P, query=f"{q}&sid={sid}")   # the CONNECT reply
    new = wait_for(lambda: set(io.sockets.sockets) - before, "the socket")
    emit(io.sockets.sockets[new.pop()])
    poll = request(url, path=P, query=f"{q}&sid={sid}", headers={"Accept-Encoding": "gzip"})
    encoding = poll.headers.get("content-encoding")
    body = gzip.decompress(poll.body) if encoding == "gzip" else poll.body
    assert b'"big"' in body or b'"small"' in body
    return encoding


def test_compress_false_on_long_polling_as_node(serve, run_js, wait_for):
    io = roomcast.Server()
    url = serve(io)
    big = "x" * 5000

    def mixed(socket):
        socket.compress(False).emit("big", big)
        socket.emit("small", 1)

    ours = {
        "plain": roomcast_encoding_of(url, io, lambda s: s.emit("big", big), wait_for),
        "off": roomcast_encoding_of(url, io, lambda s: s.compress(False).emit("big", big),
                                    wait_for),
        "mixed": roomcast_encoding_of(url, io, mixed, wait_for),
        "broadcastOff": roomcast_encoding_of(url, io, lambda s: io.compress(False).emit("big", big),
                                             wait_for),
    }
    node = run_js(POLL_NODE, url)
    assert node == {"plain": "gzip", "off": None, "mixed": "gzip", "broadcastOff": None}
    assert ours == node
