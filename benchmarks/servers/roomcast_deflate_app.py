"""roomcast for benchmarks/bench_deflate.py: per_message_deflate on or off; GET
/go?n=N&size=B&seq=S broadcasts N JSON events of about B bytes to every client.

    python roomcast_deflate_app.py PORT on|off
"""
from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from urllib.parse import parse_qs  # noqa: E402

os.environ.setdefault("ROOMCAST_REQUIRE_EXTENSIONS", "1")
import roomcast  # noqa: E402


def payload(size: int, seq: int) -> list:
    """The same JSON as node_deflate_app.js: records of a chat-like feed, new ones each time."""
    items: list = []
    n = seq * 1000
    while len(json.dumps(items, separators=(",", ":"))) < size:
        items.append({"id": n, "user": f"user-{n % 37}", "room": f"room-{n % 5}",
                      "text": f"message number {n} in the feed", "ts": 1700000000000 + n * 1000})
        n += 1
    return items


port, mode = int(sys.argv[1]), sys.argv[2]
io = roomcast.Server(per_message_deflate=(mode == "on"))


def go(environ, start_response):
    query = parse_qs(environ.get("QUERY_STRING", ""))
    first, size = int(query["seq"][0]), int(query["size"][0])
    for data in [payload(size, first + i) for i in range(int(query["n"][0]))]:
        io.emit("feed", data)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


print("ready", flush=True)
io.run("127.0.0.1", port, app=go)
