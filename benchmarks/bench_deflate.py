"""permessage-deflate: one JSON broadcast of about 4 KB to 5,000 WebSocket clients that
negotiated the extension, roomcast (compressed once per broadcast) beside Node's
socket.io 4.8 (ws compresses it for each recipient), and both with it off.

    python benchmarks/bench_deflate.py [--clients 5000] [--broadcasts 20] [--size 4096]

Each server runs alone in its own process (benchmarks/servers/*_deflate_app.py|js); the
clients are raw WebSockets in this process (gevent), offering
"permessage-deflate; client_max_window_bits" as browsers and ws do. They inflate what
arrives compressed, count the broadcast events and every byte read. A phase: GET /go?n=N&size=B, then wait until every client has
N broadcast events (each one new JSON); the server's CPU time (utime + stime from /proc) over the phase
gives deliveries per server-CPU-second; bytes read by the clients over the phase, per
delivery, the cost on the wire (frame headers included). Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import base64
import os
import resource
import socket as stdsocket
import subprocess
import sys
import time
import zlib
from pathlib import Path

import gevent
import gevent.event
from gevent import socket

HERE = Path(__file__).resolve().parent
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with stdsocket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Client:
    """One raw WebSocket client of the main namespace."""

    def __init__(self, port: int, deflate: bool) -> None:
        self.port = port
        self.deflate = deflate
        self.frames = 0        # broadcast frames received
        self.bytes = 0         # every byte read
        self.negotiated = False
        self.ready = gevent.event.Event()
        self.sock = None

    def run(self) -> None:
        sock = self.sock = socket.create_connection(("127.0.0.1", self.port))
        key = base64.b64encode(os.urandom(16)).decode()
        ext = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" \
            if self.deflate else ""
        sock.sendall((f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n"
                      f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      f"Sec-WebSocket-Version: 13\r\n{ext}\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                return
            buf += chunk
        head, buf = buf.split(b"\r\n\r\n", 1)
        self.negotiated = b"permessage-deflate" in head.lower()
        connected = False
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        while True:
            while len(buf) >= 2:
                b0, n = buf[0], buf[1] & 0x7F
                pos = 2
                if n == 126:
                    if len(buf) < 4:
                        break
                    n, pos = int.from_bytes(buf[2:4], "big"), 4
                elif n == 127:
                    if len(buf) < 10:
                        break
                    n, pos = int.from_bytes(buf[2:10], "big"), 10
                if len(buf) < pos + n:
                    break
                payload = buf[pos:pos + n]
                buf = buf[pos + n:]
                if b0 & 0x40:
                    # Node's ws keeps its context between messages: so does this inflater
                    payload = inflater.decompress(payload + b"\x00\x00\xff\xff")
                if payload.startswith(b'42["feed"'):
                    self.frames += 1
                elif payload == b"2":
                    self._send(b"3")
                elif payload.startswith(b"0{"):
                    self._send(b"40")
                elif payload.startswith(b"40") and not connected:
                    connected = True
                    self.ready.set()
            chunk = sock.recv(262144)
            if not chunk:
                return
            self.bytes += len(chunk)
            buf += chunk

    def _send(self, data: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(bytes((0x81, 0x80 | len(data))) + mask + masked)


def start_server(name: str, mode: str, port: int):
    if name == "node":
        if not (HERE / "node" / "node_modules").is_dir():
            subprocess.run(["npm", "ci", "--silent"], cwd=HERE / "node", check=True)
        argv = ["node", str(HERE / "servers" / "node_deflate_app.js"), str(port), mode]
    else:
        argv = [sys.executable, str(HERE / "servers" / "roomcast_deflate_app.py"), str(port), mode]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            stdsocket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{name} did not start")


def http_get(port: int, path: str) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    while sock.recv(4096):
        pass
    sock.close()


def measure(name: str, mode: str, clients: int, broadcasts: int, size: int) -> dict:
    port = free_port()
    proc = start_server(name, mode, port)
    try:
        conns = [Client(port, deflate=True) for _ in range(clients)]
        greenlets = []
        for i, c in enumerate(conns):
            greenlets.append(gevent.spawn(c.run))
            if i % 100 == 99:
                gevent.sleep(0.05)   # do not overflow the listen backlog
        for c in conns:
            if not c.ready.wait(60):
                raise RuntimeError(f"{name}: a client did not connect")
        gevent.sleep(1)
        warm = 2
        http_get(port, f"/go?n={warm}&size={size}&seq=0")
        deadline = time.time() + 120
        while any(c.frames < warm for c in conns) and time.time() < deadline:
            gevent.sleep(0.05)
        bytes0 = sum(c.bytes for c in conns)
        cpu0, wall0 = cpu_seconds(proc.pid), time.time()
        http_get(port, f"/go?n={broadcasts}&size={size}&seq={warm}")
        target = warm + broadcasts
        while any(c.frames < target for c in conns) and time.time() < deadline + 300:
            gevent.sleep(0.01)
        cpu, wall = cpu_seconds(proc.pid) - cpu0, time.time() - wall0
        delivered = sum(min(c.frames, target) - warm for c in conns)
        result = {"server": name, "deflate": mode, "clients": clients,
                  "negotiated": sum(c.negotiated for c in conns), "delivered": delivered,
                  "cpu": cpu, "wall": wall,
                  "bytes_per_delivery": (sum(c.bytes for c in conns) - bytes0) / max(delivered, 1)}
        for g in greenlets:
            g.kill(block=False)
        return result
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--broadcasts", type=int, default=20)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--servers", default="roomcast,node")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    rows = []
    for name in args.servers.split(","):
        for mode in ("on", "off"):
            r = measure(name, mode, args.clients, args.broadcasts, args.size)
            rows.append(r)
            print(r, file=sys.stderr, flush=True)
    print(f"{args.clients:,} WebSocket clients offering permessage-deflate, {args.broadcasts} "
          f"broadcasts of a {args.size:,}-byte JSON event\n")
    print("| server | per_message_deflate | clients that negotiated it | deliveries | server CPU "
          "| deliveries per server-CPU-second | bytes on the wire per delivery |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        rate = r["delivered"] / r["cpu"] if r["cpu"] else float("inf")
        print(f"| {r['server']} | {r['deflate']} | {r['negotiated']:,} | {r['delivered']:,} "
              f"| {r['cpu']:.2f} s | {rate:,.0f} | {r['bytes_per_delivery']:,.0f} |")


if __name__ == "__main__":
    main()
