"""A roomcast server under io.run, for the SIGTERM test:

    python -m tests.apps.sigterm_app PORT [REDIS_URL KEY]

Prints "ready" once it listens and "stopped" when io.run returns. On the event
"flood_then_term"(n) it queues n broadcasts for everyone, then sends itself SIGTERM.
"""
import os
import signal
import sys

import roomcast

port = int(sys.argv[1])
adapter = roomcast.InMemoryAdapter
if len(sys.argv) > 2:
    from roomcast.adapters.redis import RedisAdapter

    adapter = RedisAdapter.factory(sys.argv[2], key=sys.argv[3])
io = roomcast.Server(adapter=adapter)


@io.on("connection")
def on_connection(socket):
    def flood_then_term(n):
        for i in range(n):
            io.emit("m", i, "x" * 1000)
        os.kill(os.getpid(), signal.SIGTERM)

    socket.on("flood_then_term", flood_then_term)


print("ready", flush=True)
io.run("127.0.0.1", port)
print("stopped", flush=True)
