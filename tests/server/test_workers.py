"""Two worker processes on one port (`roomcast serve --workers 2`, `gunicorn -w 2` with
roomcast's worker class), no sticky sessions: the real JS client in every transport
mode, rooms and broadcasts across workers exactly once, acks from many, the other
cluster operations, a worker killed mid-run, and SIGTERM draining everything."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

from roomcast.worker_ids import tag_of_pid

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def children_of(pid: int) -> set[int]:
    try:
        return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    except FileNotFoundError:
        return set()


class Served:
    """A multi-worker server in its own process group."""

    def __init__(self, argv: list[str], port: int, impl: str, workers: int,
                 extra_env: dict[str, str]) -> None:
        env = {k: v for k, v in os.environ.items()
               if k not in ("ROOMCAST_NO_EXTENSIONS", "ROOMCAST_REQUIRE_EXTENSIONS")}
        if impl == "py":
            env["ROOMCAST_NO_EXTENSIONS"] = "1"
        env["PYTHONPATH"] = str(ROOT)
        env.update(extra_env)
        self.url = f"http://127.0.0.1:{port}"
        self.workers = workers
        self.output = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self.output,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def worker_pids(self) -> set[int]:
        return children_of(self.proc.pid)

    def ready(self) -> bool:
        """Every worker answers and sees the other (server count)."""
        if len(self.worker_pids()) != self.workers:
            return False
        seen = set()
        for _ in range(8 * self.workers):
            try:
                r = requests.get(f"{self.url}/socket.io/?EIO=4&transport=polling",
                                 headers={"Connection": "close"}, timeout=2)
            except requests.RequestException:
                return False
            if r.status_code != 200:
                return False
            seen.add(json.loads(r.text[1:])["sid"][:4])    # the worker tag
        return len(seen) == self.workers or self.workers == 1

    def stop(self) -> str:
        """Drain it (SIGTERM), or kill the whole group when it does not stop; its output."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.output.seek(0)
        return self.output.read().decode(errors="replace")


@pytest.fixture
def start_server(impl, wait_for):
    started: list[Served] = []

    def _start(kind: str = "roomcast", workers: int = 2, metrics_port: int | None = None,
               **extra_env: str) -> Served:
        port = free_port()
        if kind == "io.run":
            argv = [sys.executable, "-m", "tests.apps.workers_app", str(port), str(workers)]
        elif kind == "roomcast":
            argv = [str(BIN / "roomcast"), "serve", "tests.apps.workers_app:io",
                    "--workers", str(workers), "--port", str(port), "--graceful-timeout", "3"]
            if metrics_port is not None:
                argv += ["--metrics-port", str(metrics_port)]
        else:
            argv = [str(BIN / "gunicorn"), "-k", "roomcast.gunicorn.Worker", "-w", str(workers),
                    "-b", f"127.0.0.1:{port}", "--graceful-timeout", "3",
                    "tests.apps.workers_app:app"]
        served = Served(argv, port, impl, workers, extra_env)
        started.append(served)
        wait_for(lambda: served.proc.poll() is not None or served.ready(), "the workers to answer",
                 timeout=30)
        assert served.proc.poll() is None, served.stop()
        return served

    yield _start
    for served in started:
        served.stop()


def test_polling_requests_reach_their_session_whichever_worker_accepts(start_server, in_thread):
    """Every request on a new connection: about half land on the worker that does not
    own the session and are handed over; without the hand-off they would get 400."""
    served = start_server()

    def session_traffic() -> int:
        close = {"Connection": "close"}
        base = f"{served.url}/socket.io/?EIO=4&transport=polling"
        ok = 0
        for _ in range(6):
            r = requests.get(base, headers=close, timeout=5)
            sid = json.loads(r.text[1:])["sid"]
            url = f"{base}&sid={sid}"
            assert requests.post(url, data="40", headers=close, timeout=5).text == "ok"
            assert requests.get(url, headers=close, timeout=5).text.startswith("40{")
            for n in range(4):
                r = requests.post(url, data=f'42{n}["whoami"]', headers=close, timeout=5)
                assert r.status_code == 200 and r.text == "ok", r.text
                r = requests.get(url, headers=close, timeout=5)
                assert r.status_code == 200 and r.text.startswith(f"43{n}["), r.text
                answer = json.loads(r.text[len(f"43{n}"):])[0]
                # answered by the owner, whose pid the sid names
                assert tag_of_pid(answer["pid"]) == sid[:4] and answer["servers"] == 2
                ok += 1
        return ok

    # 60 requests with a sid, each on a fresh connection: that none was accepted by the
    # other worker (none handed off) has a chance of about 2**-60
    assert in_thread(session_traffic) == 24


SCRIPT = """
const opts = Object.assign({forceNew: true, reconnection: false}, %(transport)s);
const n = %(clients)d;
const sockets = [];
for (let i = 0; i < n; i++) sockets.push(io(URL, opts));
await Promise.all(sockets.map(s => once(s, "connect")));
log("connected");
let who = [];
for (let tries = 0; tries < 100; tries++) {   // a cluster adapter may still be subscribing
    who = await Promise.all(sockets.map(s => s.emitWithAck("whoami")));
    if (who.every(w => w.servers === 2)) break;
    await sleep(100);
}
const got = sockets.map(() => []);
const ended = sockets.map((s, i) => new Promise(resolve => s.on("news", p => {
    got[i].push(p); if (p === "end") resolve(); })));
sockets.forEach((s, i) => s.on("question", (from, ack) => ack(s.id)));
await Promise.all(sockets.filter((_, i) => i %% 3 === 0).map(s => s.emitWithAck("join", "red")));
log("joined");
const sender = sockets[1];
await sender.emitWithAck("broadcast", "red", "r1");
await sender.emitWithAck("broadcast", "everyone", "e1");
await sender.emitWithAck("broadcast", "everyone", "end");
await Promise.all(ended);
log("broadcasts");
const answers = await sockets[2].emitWithAck("ask-everyone");
log("acks");
const red = await sockets[4].emitWithAck("fetch", "red");
log("fetch");
const others = await sockets[5].emitWithAck("server-side");
log("server-side");
const ended2 = sockets.map(s => new Promise(resolve => s.on("news", p => p === "end2" && resolve())));
await sockets[0].emitWithAck("sockets-join", "red", "blue");
// sockets_join reaches the other worker asynchronously (as Node's cluster adapter): wait
// until the broadcasting socket's worker sees every red socket in blue
for (let tries = 0; tries < 100; tries++) {
    if ((await sockets[7].emitWithAck("fetch", "blue")).length === red.length) break;
    await sleep(50);
}
await sockets[7].emitWithAck("broadcast", "blue", "b1");
await sockets[7].emitWithAck("broadcast-both", "everyone", "red", "i1");   // intersect(), same origin: in order
await sockets[7].emitWithAck("broadcast", "everyone", "end2");
await Promise.all(ended2);
log("sockets-join");
done({who, got, answers, red, others,
      ids: sockets.map(s => s.id), transports: sockets.map(s => s.io.engine.transport.name)});
"""


def check_cluster_run(result: dict, worker_pids: set[int], clients: int) -> None:
    ids = result["ids"]
    assert {w["servers"] for w in result["who"]} == {2}
    assert {w["pid"] for w in result["who"]} <= worker_pids
    red = {ids[i] for i in range(clients) if i % 3 == 0}
    for i, got in enumerate(result["got"]):
        # exactly once, in order, from whichever worker the sender was on
        assert got == (["r1", "e1", "end", "b1", "i1", "end2"] if i % 3 == 0
                       else ["e1", "end", "end2"]), \
            (i, got)
    assert result["answers"] == sorted(ids)          # acks from every client of both workers
    assert result["red"] == sorted(red)              # fetch_sockets across workers
    assert sorted(result["others"]) == sorted(worker_pids - {result["who"][5]["pid"]})


@pytest.mark.parametrize("kind", ["roomcast", "gunicorn"])
def test_many_js_clients_across_two_workers(kind, transport, start_server, run_js):
    served = start_server(kind)
    check_js_clients(served, transport, run_js)


def test_io_run_with_workers(start_server, run_js):
    check_js_clients(start_server("io.run"), "{}", run_js)   # polling, then the upgrade


def test_two_workers_on_the_redis_adapter(start_server, run_js, redis_url):
    """A Server with the Redis adapter keeps it: the workers meet through Redis (polling
    then the upgrade: the hand-off and the WebSocket path both run)."""
    key = f"roomcast-workers-{os.getpid()}-{time.monotonic_ns()}"
    served = start_server(WORKERS_APP_REDIS=f"{redis_url}#{key}")
    check_js_clients(served, "{}", run_js)


def check_js_clients(served: Served, transport: str, run_js) -> None:
    clients = 12
    result = run_js(SCRIPT % {"transport": transport, "clients": clients}, served.url, timeout=60)
    pids = served.worker_pids()
    check_cluster_run(result, pids, clients)
    if "polling" in transport:
        assert set(result["transports"]) == {"polling"}
    elif "websocket" in transport or transport == "{}":
        assert set(result["transports"]) == {"websocket"}


def test_a_killed_worker_is_restarted_and_the_others_keep_serving(start_server, run_js, wait_for):
    served = start_server()
    result = run_js("""
        const opts = {forceNew: true, transports: ["websocket"]};
        const sockets = [];
        for (let i = 0; i < 10; i++) sockets.push(io(URL, opts));
        await Promise.all(sockets.map(s => once(s, "connect")));
        const pids = await Promise.all(sockets.map(s => s.emitWithAck("whoami")));
        const victim = pids[0].pid;
        const survivors = sockets.filter((s, i) => pids[i].pid !== victim);
        const gone = sockets.filter((s, i) => pids[i].pid === victim);
        const reconnected = gone.map(s => once(s.io, "reconnect"));
        sockets[0].emit("crash");
        await Promise.all(gone.map(s => once(s, "disconnect")));
        // the surviving worker still serves its clients, with broadcasts
        const heard = survivors.map(s => once(s, "news"));
        if (survivors.length) await survivors[0].emitWithAck("broadcast", "everyone", "still here");
        await Promise.all(heard);
        await Promise.all(reconnected);
        // the restarted worker is back in the cluster
        let servers = 0;
        for (let i = 0; i < 100 && servers !== 2; i++) {
            servers = (await gone[0].emitWithAck("whoami")).servers;
            if (servers !== 2) await sleep(100);
        }
        const after = await Promise.all(sockets.map(s => s.emitWithAck("whoami")));
        done({victim, survivors: survivors.length, servers,
              after: after.map(w => w.pid)});
    """, served.url, timeout=60)
    assert result["servers"] == 2
    assert result["victim"] not in served.worker_pids()
    assert len(served.worker_pids()) == 2
    assert set(result["after"]) <= served.worker_pids()


def test_sigterm_drains_every_worker(start_server, start_js, wait_for, tmp_path):
    served = start_server()
    flag = tmp_path / "connected"
    watcher = start_js("""
        const sockets = [];
        for (let i = 0; i < 6; i++) sockets.push(io(URL, {forceNew: true, reconnection: false}));
        await Promise.all(sockets.map(s => once(s, "connect")));
        require("fs").writeFileSync(%r, "yes");
        const reasons = await Promise.all(sockets.map(s => once(s, "disconnect")));
        done(reasons.map(r => r[0]));
    """ % str(flag), served.url, timeout=40)
    wait_for(flag.exists, "the clients to connect", timeout=20)
    started = time.monotonic()
    os.kill(served.proc.pid, signal.SIGTERM)
    wait_for(lambda: served.proc.poll() is not None, "the supervisor to exit", timeout=20)
    assert served.proc.returncode == 0, served.stop()
    assert time.monotonic() - started < 10
    reasons = watcher.result()
    assert len(reasons) == 6 and set(reasons) <= {"transport close", "transport error"}


def test_metrics_of_two_workers_add_up(start_server, start_js, in_thread, wait_for, tmp_path):
    from test_metrics import scrape, value

    metrics_port = free_port()
    served = start_server(metrics_port=metrics_port)
    flag = tmp_path / "connected"
    run = start_js("""
        const sockets = [];
        for (let i = 0; i < 20; i++) sockets.push(io(URL, {forceNew: true, transports: ["websocket"]}));
        await Promise.all(sockets.map(s => once(s, "connect")));
        const who = await Promise.all(sockets.map(s => s.emitWithAck("whoami")));
        require("fs").writeFileSync(%r, JSON.stringify(who.map(w => w.pid)));
        await once(sockets[0], "never");
    """ % str(flag), served.url, timeout=60)
    pids = set(json.loads(wait_for(lambda: flag.exists() and flag.read_text(),
                                   "the clients to connect", timeout=30)))
    url = f"http://127.0.0.1:{metrics_port}/metrics"

    def summed() -> bool:
        values = scrape(url)    # whichever worker answers, it sums both
        return (value(values, "roomcast_sockets", namespace="/") == 20
                and value(values, "roomcast_connections", transport="websocket") == 20
                and value(values, "roomcast_events_received_total") >= 20)

    for _ in range(4):
        wait_for(lambda: in_thread(summed), "both workers' metrics in one scrape", timeout=10)
    assert len(pids) == 2, "the 20 clients all landed on one worker (chance 2**-19)"
    run.kill()
