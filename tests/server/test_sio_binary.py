"""Binary attachments both ways, nested, in every transport mode."""
from __future__ import annotations

import roomcast


def test_binary_from_client_nested_with_binary_ack(serve, run_js, transport):
    io = roomcast.Server()
    received = []

    @io.on("connection")
    def connection(socket):
        @socket.on("upload")
        def upload(meta, ack):
            received.append(meta)
            ack({"echo": meta["files"][1], "size": len(meta["files"][0])})

    result = run_js(f"""
        const s = io(URL, {transport});
        const meta = {{name: "x", files: [Buffer.from([1, 2, 3]), Buffer.from("héllo")],
                       deep: {{list: [new Uint8Array([255, 0])]}}}};
        done(await s.emitWithAck("upload", meta));
    """, serve(io))
    assert received == [{"name": "x", "files": [b"\x01\x02\x03", "héllo".encode()],
                         "deep": {"list": [b"\xff\x00"]}}]
    assert result == {"echo": "héllo".encode(), "size": 3}


def test_binary_from_server_unicast_and_broadcast(serve, run_js, transport):
    io = roomcast.Server()

    @io.on("connection")
    def connection(socket):
        socket.emit("one", b"\x00\x01", {"nested": [bytearray(b"ab"), "text"]})
        io.emit("all", {"blob": memoryview(b"xyz")}, 7)

    result = run_js(f"""
        const s = io(URL, {transport});
        const one = once(s, "one"), all = once(s, "all");
        const [a, b] = await one;
        const [c, n] = await all;
        done({{a, nested: b.nested, blob: c.blob, n, isBuffer: Buffer.isBuffer(a)}});
    """, serve(io))
    assert result == {"a": b"\x00\x01", "nested": [b"ab", "text"], "blob": b"xyz", "n": 7,
                      "isBuffer": True}


def test_server_ack_callback_receives_binary(serve, run_js):
    io = roomcast.Server()
    got = []

    @io.on("connection")
    def connection(socket):
        got.append(socket.emit_with_ack("give"))
        socket.emit("finish")

    run_js("""
        const s = io(URL);
        s.on("give", (cb) => cb({data: Buffer.from([9, 8, 7])}));
        await once(s, "finish");
        done(null);
    """, serve(io))
    assert got == [{"data": b"\x09\x08\x07"}]
