"""One command: roomcast beside python-socketio and Node's socket.io, same machine, same run.

    python benchmarks/run.py --quick      # < 2 minutes: 1,000 and 5,000 clients, one repetition
    python benchmarks/run.py              # the full matrix: 100 .. 10,000 clients, 3 repetitions

Each server runs the same small app (benchmarks/README.md) pinned to one core; the C
load generator (benchmarks/loadgen/loadgen.c) runs pinned to the other. Servers run
interleaved (A B C D, A B C D, ...). Writes results/results.md, results/results.json and
results/chart.png; the raw log of every phase goes to results/raw/ (not committed).
Talks to 127.0.0.1 only and stops by itself (every wait has a deadline).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
RAW = RESULTS / "raw"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

SERVERS = {
    # name: (label, argv, extra env)
    "roomcast": ("roomcast (compiled)", [sys.executable, str(HERE / "servers" / "roomcast_app.py")],
                 {"ROOMCAST_REQUIRE_EXTENSIONS": "1"}),
    "roomcast-py": ("roomcast (pure Python)", [sys.executable, str(HERE / "servers" / "roomcast_app.py")],
                    {"ROOMCAST_NO_EXTENSIONS": "1"}),
    "psio": ("python-socketio 5 + gevent-websocket", [sys.executable, str(HERE / "servers" / "psio_app.py")], {}),
    "node": ("Node socket.io 4.8", ["node", str(HERE / "servers" / "node_app.js")], {}),
}
BASELINE = "psio"

# scenario: (loadgen kind, label)
SCENARIOS = {
    "all": ("all", "broadcast to everyone"),
    "room": ("room", "to one room (10%)"),
    "multi": ("multi", "3 rooms minus 1 room"),
    "bin": ("bin", "binary attachment, everyone"),
    "uni": ("uni", "unicast to each in turn"),
    "ack": (None, "client events, server acks"),
    "chat": ("chat", "chat relay to rooms of 10 (per inbound event)"),
}


def recipients(kind: str, n: int) -> int:
    """How many clients one broadcast of this kind reaches (the loadgen's room layout)."""
    if kind == "room":
        return sum(1 for i in range(n) if i % 10 == 0)
    if kind == "multi":
        return sum(1 for i in range(n) if i % 10 < 3 and i % 4 != 0)
    return n


# ---------------------------------------------------------------- processes

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu(pid: int) -> float:
    """utime + stime of the process, in seconds (/proc/<pid>/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_wait(pid: int) -> float:
    """Seconds the server's main thread spent runnable but waiting for its CPU (schedstat
    field 2): on a shared machine, the time other work took from the server's core. Only the
    main thread: Node's helper threads share the pinned core and wait for the main one."""
    try:
        with open(f"/proc/{pid}/task/{pid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def proc_rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def taskset(core: int | None, argv: list[str]) -> list[str]:
    if core is None or not shutil.which("taskset"):
        return argv
    return ["taskset", "-c", str(core)] + argv


class Loadgen:
    """The C load generator: one command line in, one JSON line out."""

    def __init__(self, binary: Path, core: int | None, log):
        self.log = log
        self.p = subprocess.Popen(taskset(core, [str(binary)]), stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1)

    def cmd(self, line: str, timeout: float = 120.0) -> dict:
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        deadline = time.monotonic() + timeout
        import select
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.p.stdout], [], [], 1.0)
            if r:
                out = self.p.stdout.readline()
                if not out:
                    raise RuntimeError(f"loadgen exited during {line!r}")
                res = json.loads(out)
                res["line"] = line
                print(json.dumps(res), file=self.log, flush=True)
                return res
        raise TimeoutError(f"loadgen: no answer to {line!r} in {timeout} s")

    def close(self):
        try:
            self.p.stdin.write("quit\n")
            self.p.stdin.close()
            self.p.wait(5)
        except Exception:
            self.p.kill()
            self.p.wait()


def start_server(name: str, port: int, core: int | None, log, root: Path = ROOT) -> subprocess.Popen:
    """Start server ``name`` on port; ``root``: the checkout its app and roomcast come from
    (another one than this, e.g. an earlier commit: benchmarks/same_rate.py)."""
    _, argv, extra = SERVERS[name]
    if root != ROOT:
        # the app files of that checkout (the interpreter stays this one)
        argv = [str(root / "benchmarks" / Path(a).relative_to(HERE)) if a.startswith(str(HERE) + os.sep)
                else a for a in argv]
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root / "src"), env.get("PYTHONPATH")]))
    p = subprocess.Popen(taskset(core, argv + [str(port)]), env=env, stdout=log, stderr=log,
                         start_new_session=True)
    return wait_listening(p, name, port, log)


def wait_listening(p: subprocess.Popen, name: str, port: int, log) -> subprocess.Popen:
    """p once its server accepts connections on port; stopped, and RuntimeError, when it
    exits first or does not listen within 20 s (its output: log)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise RuntimeError(f"{name} exited at start (code {p.returncode}); see {log.name}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return p
        except OSError:
            time.sleep(0.1)
    stop(p)
    raise RuntimeError(f"{name} did not listen on {port} in 20 s")


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


# ---------------------------------------------------------------- one session

def check(res: dict, what: str, errors: list) -> None:
    bad = {k: res[k] for k in ("missing", "duplicate", "stray", "timed_out", "errors", "seq_errors",
                               "acks_missing") if res.get(k)}
    if bad or res.get("live", res.get("conns")) != res.get("conns"):
        errors.append(f"{what}: {bad} live={res.get('live')}/{res.get('conns')}")


def session(name: str, n: int, cfg, lg_binary: Path, log) -> dict:
    """Start one server, connect n clients, run every scenario, stop it. Returns the figures."""
    port = free_port()
    srv = start_server(name, port, cfg.server_core, log)
    lg = Loadgen(lg_binary, cfg.loadgen_core, log)
    out: dict = {"server": name, "n": n, "errors": [], "scen": {}}
    try:
        time.sleep(0.3)
        rss0 = proc_rss(srv.pid)
        c0 = proc_cpu(srv.pid)
        # the load generator ends a phase itself after 10 s without progress; this deadline
        # only has to outlast a slow but steady connect (50,000 clients in an emulated guest,
        # benchmarks/in_vm.sh, go at a few hundred a second)
        slow = max(120.0, n / 100)
        res = lg.cmd(f"connect {port} {n} {cfg.inflight}", timeout=slow)
        c1 = proc_cpu(srv.pid)
        check(res, "connect", out["errors"])
        out["conn_per_s"] = n / res["wall"]
        out["connect_cpu_us"] = (c1 - c0) / n * 1e6
        check(lg.cmd("join", timeout=slow), "join", out["errors"])
        time.sleep(cfg.settle)
        out["rss_per_conn"] = (proc_rss(srv.pid) - rss0) / n
        # Fresh TCP connections and buffers make a server's first ~100,000 deliveries cost up to
        # 2x more: one unmeasured second of broadcasts to everyone first, so that the scenario
        # that happens to come first is not penalised.
        ph = 1
        probe = lg.cmd(f"burst {ph} all {max(1, cfg.probe // n)}")
        check(probe, "session warm-up", out["errors"])
        est = probe["deliveries"] / max(probe["wall"], 1e-3)
        ph += 1
        check(lg.cmd(f"burst {ph} all {max(3, round(est * cfg.session_warmup_secs / n))}"),
              "session warm-up", out["errors"])
        for scen in cfg.scenarios:
            kind, _ = SCENARIOS[scen]
            if kind == "chat":
                # inbound events: every client sends chat messages to its room of 10, one in flight;
                # a probe sizes the warm-up, the warm-up sizes the measured phase
                ph += 1
                warm = lg.cmd(f"chat {ph} 1")
                check(warm, f"{scen} probe", out["errors"])
                est = warm["events"] / max(warm["wall"], 1e-3)
                ph += 1
                warm = lg.cmd(f"chat {ph} {max(2, round(est * cfg.warmup_secs / n))}")
                check(warm, f"{scen} warm-up", out["errors"])
                est = warm["events"] / max(warm["wall"], 1e-3)
                ph += 1
                c0, w0 = proc_cpu(srv.pid), proc_wait(srv.pid)
                res = lg.cmd(f"chat {ph} {max(1, round(est * cfg.phase_secs / n))}")
                c1, w1 = proc_cpu(srv.pid), proc_wait(srv.pid)
                check(res, scen, out["errors"])
                # the figures of this scenario count inbound events (each relayed to 9 room mates
                # and acked), not deliveries
                res = dict(res, relayed=res["deliveries"], deliveries=res["events"])
                sat = res["events"] / res["wall"]
                ph += 1
                # p99 wants samples: at least 2 s of paced messages (a 0.6 s phase of a few
                # thousand acks puts one stall of a few ms into its 99th percentile)
                secs = max(cfg.paced_secs, 2.0)
                lat = lg.cmd(f"chatpaced {ph} {0.5 * sat:.1f} {secs}", timeout=60 + secs)
                check(lat, f"{scen} paced", out["errors"])
                lat = dict(lat, deliveries=lat["events"])
            elif kind is None:
                # warm-up (also sizes the measured phase so that it lasts about cfg.phase_secs)
                # a probe sizes the warm-up, the warm-up (~cfg.warmup_secs) sizes the measured phase
                ph += 1
                warm = lg.cmd(f"acks {ph} {max(1, cfg.probe // n)}")
                check(warm, f"{scen} probe", out["errors"])
                est = warm["deliveries"] / max(warm["wall"], 1e-3)
                ph += 1
                warm = lg.cmd(f"acks {ph} {max(2, round(est * cfg.warmup_secs / n))}")
                check(warm, f"{scen} warm-up", out["errors"])
                est = warm["deliveries"] / max(warm["wall"], 1e-3)
                per_conn = max(1, round(est * cfg.phase_secs / n))
                ph += 1
                c0, w0 = proc_cpu(srv.pid), proc_wait(srv.pid)
                res = lg.cmd(f"acks {ph} {per_conn}")
                c1, w1 = proc_cpu(srv.pid), proc_wait(srv.pid)
                check(res, scen, out["errors"])
                sat = res["deliveries"] / res["wall"]
                ph += 1
                rate = 0.5 * sat
                lat = lg.cmd(f"ackspaced {ph} {rate:.1f} {cfg.paced_secs}", timeout=60 + cfg.paced_secs)
                check(lat, f"{scen} paced", out["errors"])
            else:
                r = recipients(kind, n)
                # a probe sizes the warm-up; the warm-up (~cfg.warmup_secs, at least 3 broadcasts:
                # a server's first broadcasts to thousands of fresh sockets cost more) sizes the
                # measured phase
                ph += 1
                warm = lg.cmd(f"burst {ph} {kind} {max(1, cfg.probe // r)}")
                check(warm, f"{scen} probe", out["errors"])
                est = warm["deliveries"] / max(warm["wall"], 1e-3)
                ph += 1
                warm = lg.cmd(f"burst {ph} {kind} {max(3, round(est * cfg.warmup_secs / r))}")
                check(warm, f"{scen} warm-up", out["errors"])
                est = warm["deliveries"] / max(warm["wall"], 1e-3)
                # /proc/<pid>/stat counts CPU in 10 ms ticks: a phase of ~cfg.phase_secs keeps
                # that error near 1%
                k = max(1, round(est * cfg.phase_secs / r))
                ph += 1
                c0, w0 = proc_cpu(srv.pid), proc_wait(srv.pid)
                res = lg.cmd(f"burst {ph} {kind} {k}")
                c1, w1 = proc_cpu(srv.pid), proc_wait(srv.pid)
                check(res, scen, out["errors"])
                sat = res["deliveries"] / res["wall"]
                # half of this server's own saturation rate; at most 1,000 triggers a second
                # (each trigger is itself an event the server parses), with k broadcasts each
                per_s = 0.5 * sat / r
                k_each = max(1, int(-(-per_s // cfg.max_triggers)))
                trig_s = per_s / k_each
                # enough time for a few triggers even when one broadcast reaches 10,000 clients
                secs = min(2.0, max(cfg.paced_secs, 3 / trig_s))
                ph += 1
                lat = lg.cmd(f"paced {ph} {kind} {trig_s:.3f} {secs:.2f} {k_each}", timeout=60 + secs)
                check(lat, f"{scen} paced", out["errors"])
            out["scen"][scen] = {
                "deliveries": res["deliveries"],
                "rate": sat,
                "cpu_us": (c1 - c0) / res["deliveries"] * 1e6,
                "server_util": (c1 - c0) / res["wall"],
                "server_cpu_wait": (w1 - w0) / res["wall"],
                # the load generator polls during phases: "busy" (time its polls found work) is its
                # load; its CPU time is close to the wall time by construction
                "loadgen_util": res.get("busy", res["loadgen_cpu"] / res["wall"]),
                "loadgen_cpu": res["loadgen_cpu"] / res["wall"],
                "p50_ms": lat["lat_p50_ms"],
                "p99_ms": lat["lat_p99_ms"],
                "paced_rate": lat["deliveries"] / max(lat["wall"], 1e-9),
                "paced_loadgen_util": lat.get("busy", lat["loadgen_cpu"] / max(lat["wall"], 1e-9)),
            }
            if kind == "chat":
                out["scen"][scen].update(relay_p50_ms=lat["relay_p50_ms"], relay_p99_ms=lat["relay_p99_ms"],
                                         relayed=res["relayed"])
        lg.cmd("close")
    finally:
        lg.close()
        stop(srv)
    return out


# ---------------------------------------------------------------- summary

def fmt(v: float, unit: str) -> str:
    if unit == "rate":
        return f"{v / 1000:.0f}k" if v >= 10000 else f"{v / 1000:.1f}k"
    if unit == "us":
        return f"{v:.2f}" if v < 10 else f"{v:.1f}"
    if unit == "ms":
        return f"{v:.2f}" if v < 10 else f"{v:.0f}"
    if unit == "kib":
        return f"{v / 1024:.1f}"
    return f"{v:.0f}"


def gather(runs: list[dict], servers, ns, get, base_server: str = BASELINE) -> dict:
    """(server, n) -> {'vals': [...], 'ratios': [...]}; ratios vs base_server from the same repetition."""
    out = {}
    for n in ns:
        for s in servers:
            vals, ratios = [], []
            for rep in {r["rep"] for r in runs}:
                this = [r for r in runs if r["rep"] == rep and r["n"] == n and r["server"] == s]
                base = [r for r in runs if r["rep"] == rep and r["n"] == n and r["server"] == base_server]
                if not this:
                    continue
                v = get(this[0])
                if v is None:
                    continue
                vals.append(v)
                b = get(base[0]) if base else None
                if b:
                    ratios.append(v / b)
            out[(s, n)] = {"vals": vals, "ratios": ratios}
    return out


def cell(d: dict, unit: str) -> str:
    if not d["vals"]:
        return "–"
    med = statistics.median(d["vals"])
    s = fmt(med, unit)
    if len(d["vals"]) > 1:
        s += f" ({fmt(min(d['vals']), unit)}–{fmt(max(d['vals']), unit)})"
    if d["ratios"]:
        s += f" ×{statistics.median(d['ratios']):.2f}"
    return s


METRICS = [
    ("rate", "deliveries/s at saturation", "rate"),
    ("cpu_us", "server CPU µs per delivery", "us"),
    ("p50_ms", "latency p50 ms at ½ saturation", "ms"),
    ("p99_ms", "latency p99 ms at ½ saturation", "ms"),
]


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    vers = {}
    for mod in ("gevent", "geventwebsocket", "socketio", "engineio"):
        try:
            from importlib.metadata import version
            vers[mod] = version({"socketio": "python-socketio", "engineio": "python-engineio",
                                 "geventwebsocket": "gevent-websocket"}.get(mod, mod))
        except Exception:
            vers[mod] = "?"
    try:
        sio_node = json.loads((HERE / "node" / "node_modules" / "socket.io" / "package.json").read_text())["version"]
    except OSError:
        sio_node = "?"
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), "node": node, "socket.io": sio_node,
            "roomcast_commit": commit, **vers, "loadavg_at_start": open("/proc/loadavg").read().split()[:3]}


def _servers(doc: dict) -> list[str]:
    return [s for s in doc["config"]["servers"] if any(r["server"] == s for r in doc["runs"])]


def _headline_n(doc: dict) -> int:
    ns = doc["config"]["clients"]
    return 5000 if 5000 in ns else max(ns)


def _sc(scen: str, key: str):
    return lambda r: r["scen"].get(scen, {}).get(key)


def _bin_pct(r: dict):
    """Binary broadcast rate as % of the text rate, per server-CPU-second (the wall-clock
    rates of two phases are too exposed to other work on a shared machine to divide)."""
    if "bin" in r["scen"] and "all" in r["scen"]:
        return r["scen"]["all"]["cpu_us"] / r["scen"]["bin"]["cpu_us"] * 100
    return None


def machine_line(doc: dict) -> str:
    m, cfg = doc["machine"], doc["config"]
    return (f"Machine: {m['cpu']}, {m['cores']} cores (shared with other work), Linux {m['kernel']}; "
            f"Python {m['python']}, gevent {m['gevent']}, gevent-websocket {m['geventwebsocket']}, "
            f"python-socketio {m['socketio']} (engineio {m['engineio']}); Node {m['node']}, "
            f"socket.io {m['socket.io']}; roomcast at commit {m['roomcast_commit']}. "
            f"Server pinned to core {cfg['server_core']}, load generator to core {cfg['loadgen_core']}; "
            f"{cfg['reps']} repetition(s) with the servers interleaved.")


def headline_table(doc: dict) -> list[str]:
    runs, servers, hn = doc["runs"], _servers(doc), _headline_n(doc)
    lines = ["| " + f"{hn:,} clients" + " | "
             + " | ".join(SERVERS[s][0] for s in servers) + " |", "|---|" + "---|" * len(servers)]

    def row(title, get, unit):
        g = gather(runs, servers, [hn], get)
        if any(g[(s, hn)]["vals"] for s in servers):
            lines.append(f"| {title} | " + " | ".join(cell(g[(s, hn)], unit) for s in servers) + " |")

    # what most apps do: clients' events relayed to small rooms, with acks
    row("chat relay: inbound events/s", _sc("chat", "rate"), "rate")
    row("chat relay: server CPU µs per inbound event", _sc("chat", "cpu_us"), "us")
    row("chat relay: ack latency p50 ms at ½ saturation", _sc("chat", "p50_ms"), "ms")
    row("chat relay: ack latency p99 ms at ½ saturation", _sc("chat", "p99_ms"), "ms")
    row("echo with ack: server CPU µs per event", _sc("ack", "cpu_us"), "us")
    row("broadcast to everyone: deliveries/s (wall clock)", _sc("all", "rate"), "rate")
    row("broadcast to everyone: server CPU µs per delivery", _sc("all", "cpu_us"), "us")
    row("broadcast to everyone: deliveries per server-CPU-second", _per_cpu_s("all"), "rate")
    row("broadcast to everyone: latency p50 ms at ½ saturation", _sc("all", "p50_ms"), "ms")
    row("broadcast to everyone: latency p99 ms at ½ saturation", _sc("all", "p99_ms"), "ms")
    row("binary broadcast deliveries/s", _sc("bin", "rate"), "rate")
    g = gather(runs, servers, [hn], _bin_pct)
    if any(g[(s, hn)]["vals"] for s in servers):
        lines.append("| binary rate, % of text rate (per CPU-second) | " + " | ".join(
            (f"{statistics.median(g[(s, hn)]['vals']):.0f}%" if g[(s, hn)]["vals"] else "–")
            for s in servers) + " |")
    row("RSS KiB per idle connection", lambda r: r["rss_per_conn"], "kib")
    row("connections/s", lambda r: r["conn_per_s"], "rate")
    return lines


def closing_note(doc: dict) -> list[str]:
    """The headline ratios in words, and whether the load generator stayed below saturation."""
    runs, servers, hn = doc["runs"], _servers(doc), _headline_n(doc)
    out = []
    if "roomcast" in servers:
        def ratio(other, get):
            g = gather(runs, ["roomcast"], [hn], get, base_server=other)[("roomcast", hn)]["ratios"]
            return statistics.median(g) if g else None

        rate = _sc("all", "rate")
        cpu = _sc("all", "cpu_us")
        g = gather(runs, ["roomcast"], [hn], cpu)[("roomcast", hn)]["vals"]
        b = gather(runs, ["roomcast"], [hn], _bin_pct)[("roomcast", hn)]["vals"]
        parts = []
        for other, name in (("psio", "python-socketio on gevent"), ("node", "Node's socket.io")):
            if other in servers:
                rr, rc = ratio(other, rate), ratio(other, cpu)
                if rr and rc:
                    parts.append(f"**{rr:.2f}×** the wall-clock deliveries/s of {name} and "
                                 f"**{1 / rc:.2f}×** its deliveries per server-CPU-second")
        out.append(f"At {hn:,} clients, broadcast to everyone, roomcast with the compiled core reached "
                   + "; ".join(parts) + (f", at **{statistics.median(g):.2f} µs** of server CPU per delivery"
                                         if g else "")
                   + (f"; its binary broadcast ran at {statistics.median(b):.0f}% of its text rate "
                      "(per CPU-second)." if b else "."))
    lg = [v["loadgen_util"] for r in runs for v in r["scen"].values()]
    lgp = [v["paced_loadgen_util"] for r in runs for v in r["scen"].values()]
    su = [v["server_util"] for r in runs for v in r["scen"].values()]
    sw = [v.get("server_cpu_wait", 0) for r in runs for v in r["scen"].values()]
    if lg:
        phases = [(r, k, v) for r in runs for k, v in r["scen"].items()]
        hot = [(r, k, v) for r, k, v in phases if v["loadgen_util"] > 0.9]
        where = sorted({f"{SERVERS[r['server']][0]} / {SCENARIOS[k][1]}" for r, k, _ in hot})
        busy = min((v["server_util"] + v.get("server_cpu_wait", 0) for _, _, v in hot), default=1.0)
        text = (f"Load generator: busy (its polls found messages to handle) a median "
                f"{statistics.median(lg) * 100:.0f}% (max {max(lg) * 100:.0f}%) of each saturation phase, at "
                f"most {max(lgp) * 100:.0f}% of a paced latency phase. ")
        if hot:
            text += (f"It passed 90% in {len(hot)} of {len(phases)} saturation phases ({'; '.join(where)}): "
                     f"the server's cheapest deliveries, where receiving a message costs about what sending "
                     f"it does. In those phases the server was still running or waiting for its core at "
                     f"least {min(busy, 1.0) * 100:.0f}% of the time, so the load generator held back their "
                     f"wall-clock rates by at most {max(0.0, 1 - busy) * 100:.0f}% (CPU per delivery does not "
                     f"depend on wall time). ")
        else:
            text += "It stayed below saturation throughout. "
        both = [v["server_util"] + v.get("server_cpu_wait", 0) for _, _, v in phases]
        text += (f"The server was running or waiting for its core a median {statistics.median(both) * 100:.0f}% "
                 f"of each saturation phase (running {statistics.median(su) * 100:.0f}%, waiting for its core, "
                 f"taken by other work on the shared machine, {statistics.median(sw) * 100:.0f}%; "
                 f"/proc schedstat), so the load generator did not hold it back.")
        out.append(text)
    errs = [f"{r['server']} n={r['n']} rep {r['rep']}: {e}" for r in runs for e in r["errors"]]
    out.append("Every client received exactly the expected number of messages in every phase (no loss, "
               "no duplicate, no stray message)." if not errs else
               "Counting problems seen (loss, duplicates, timeouts):\n\n" + "\n".join(f"- {e}" for e in errs))
    return out


def _per_cpu_s(scen: str):
    """A run's deliveries per server-CPU-second in scenario scen (None without it)."""
    return lambda r: (1e6 / r["scen"][scen]["cpu_us"]) if scen in r["scen"] else None


def _roomcast_figures(runs: list[dict], n: int, get, base: str | None = None) -> list:
    """roomcast's figures at n clients, one a repetition: get(run), or its ratio to the
    base server's in the same repetition."""
    g = gather(runs, ["roomcast"], [n], get, base_server=base or BASELINE)[("roomcast", n)]
    return g["ratios"] if base else g["vals"]


def targets(doc: dict) -> list[str]:
    """Issue 3's end-to-end targets (5,000 clients, broadcast to everyone, one core), as measured."""
    runs, servers = doc["runs"], _servers(doc)
    n = 5000
    if "roomcast" not in servers or not any(r["n"] == n for r in runs):
        return []
    rate, cpu = _sc("all", "rate"), _sc("all", "cpu_us")

    def med_ratio(get, base, invert=False):
        g = _roomcast_figures(runs, n, get, base)
        if not g:
            return None
        m = statistics.median(g)
        return 1 / m if invert else m

    def med(get):
        v = _roomcast_figures(runs, n, get)
        return statistics.median(v) if v else None

    def wall_bin(r):
        return (r["scen"]["bin"]["rate"] / r["scen"]["all"]["rate"] * 100
                if "bin" in r["scen"] and "all" in r["scen"] else None)

    rows = []
    for base, goal in (("psio", 4.0), ("node", 2.0)):
        if base in servers:
            w, c = med_ratio(rate, base), med_ratio(cpu, base, invert=True)
            if w and c:
                rows.append(f"| deliveries/s ≥ {goal:g}× {SERVERS[base][0]} | {w:.2f}× wall clock, "
                            f"{c:.2f}× per server-CPU-second | {'met' if min(w, c) >= goal else 'not met'} |")
    c = med(cpu)
    if c is not None:
        rows.append(f"| server CPU ≤ 4.5 µs per delivery | {c:.2f} µs | {'met' if c <= 4.5 else 'not met'} |")
    b, bw = med(_bin_pct), med(wall_bin)
    if b is not None:
        rows.append(f"| binary broadcast ≥ 80% of the text rate | {b:.0f}% per CPU-second, {bw:.0f}% wall clock "
                    f"| {'met' if min(b, bw) >= 80 else 'not met'} |")
    return ["## roomcast's targets (issue 3): 5,000 clients, broadcast to everyone, one core", "",
            "| target | measured (median) | |", "|---|---|---|"] + rows + [""]


def targets_issue8(doc: dict) -> list[str]:
    """Issue 8's targets (5,000 clients, one core): chat relay, acks, coalesced broadcast,
    memory and connects, as measured; ratios per repetition, median (min–max)."""
    runs, servers = doc["runs"], _servers(doc)
    n = 5000
    if "roomcast" not in servers or not any(r["n"] == n and r["server"] == "roomcast" for r in runs):
        return []

    def ratios(get, base):
        return _roomcast_figures(runs, n, get, base) if base in servers else []

    def vals(get):
        return _roomcast_figures(runs, n, get)

    def span(xs, fmt_):
        m = statistics.median(xs)
        return fmt_(m) if len(xs) < 2 else f"{fmt_(m)} ({fmt_(min(xs))}–{fmt_(max(xs))})"

    x = lambda v: f"{v:.2f}×"
    rows = []

    def add(goal, xs, fmt_, ok):
        if xs:
            rows.append(f"| {goal} | {span(xs, fmt_)} | {'met' if ok(statistics.median(xs)) else 'not met'} |")

    add("chat relay: inbound events/s ≥ 2× Node", ratios(_sc("chat", "rate"), "node"), x, lambda m: m >= 2)
    add("chat relay: inbound events/s ≥ 6× python-socketio", ratios(_sc("chat", "rate"), "psio"), x,
        lambda m: m >= 6)
    add("chat relay: server CPU per inbound event ≤ ½ Node's (ratio)", ratios(_sc("chat", "cpu_us"), "node"),
        x, lambda m: m <= 0.5)
    add("chat relay: ack latency p50 ≤ 1 ms at ½ saturation", vals(_sc("chat", "p50_ms")),
        lambda v: f"{v:.2f} ms", lambda m: m <= 1)
    add("chat relay: ack latency p99 ≤ 5 ms at ½ saturation", vals(_sc("chat", "p99_ms")),
        lambda v: f"{v:.2f} ms", lambda m: m <= 5)
    add("echo with ack: server CPU per event ≤ Node's (ratio)", ratios(_sc("ack", "cpu_us"), "node"), x,
        lambda m: m <= 1)
    add("broadcast to everyone: deliveries per server-CPU-second ≥ 4× Node", ratios(_per_cpu_s("all"), "node"),
        x, lambda m: m >= 4)
    add("broadcast to everyone: deliveries per server-CPU-second ≥ 10× python-socketio",
        ratios(_per_cpu_s("all"), "psio"), x, lambda m: m >= 10)
    add("RSS per idle WebSocket connection ≤ 16 KiB", [v / 1024 for v in vals(lambda r: r["rss_per_conn"])],
        lambda v: f"{v:.1f} KiB", lambda m: m <= 16)
    add("connections/s ≥ 1.5× Node", ratios(lambda r: r["conn_per_s"], "node"), x, lambda m: m >= 1.5)
    if not rows:
        return []
    return ["## roomcast's targets (issue 8): 5,000 clients, one core", "",
            "| target | measured: median (min–max over repetitions) | |", "|---|---|---|"] + rows + [""]


def summarize(doc: dict) -> str:
    runs, cfg = doc["runs"], doc["config"]
    servers = _servers(doc)
    ns = cfg["clients"]
    labels = [SERVERS[s][0] for s in servers]
    lines = [f"# roomcast benchmark results ({'quick' if cfg['quick'] else 'full'} run, {doc['finished']})", "",
             machine_line(doc), "",
             "Cells: median (min–max over repetitions) ×ratio to python-socketio in the same repetition.", "",
             "## Headline", ""] + headline_table(doc) + [""] + "\n\n".join(closing_note(doc)[:2]).split("\n") + [""]
    lines += targets(doc)
    lines += targets_issue8(doc)
    for n in ns:
        lines += [f"## {n:,} clients", "", "| scenario | metric | " + " | ".join(labels) + " |",
                  "|---|---|" + "---|" * len(labels)]
        for scen in cfg["scenarios"]:
            for key, title, unit in METRICS:
                g = gather(runs, servers, [n], _sc(scen, key))
                lines.append(f"| {SCENARIOS[scen][1]} | {title} | "
                             + " | ".join(cell(g[(s, n)], unit) for s in servers) + " |")
        for title, get, unit in (("RSS KiB per idle connection", lambda r: r["rss_per_conn"], "kib"),
                                 ("connections/s", lambda r: r["conn_per_s"], "rate")):
            g = gather(runs, servers, [n], get)
            lines.append(f"| idle | {title} | " + " | ".join(cell(g[(s, n)], unit) for s in servers) + " |")
        lines.append("")
    lines += ["## Counting check", "", closing_note(doc)[-1], ""]
    return "\n".join(lines)


def readme_section(doc: dict, chart_name: str, command: str) -> str:
    """The section for the top-level README, ready to paste."""
    return "\n".join([
        "## Performance", "",
        "roomcast beside the servers you would pick instead, measured on the same machine in the same run: "
        "python-socketio 5 in its classic gevent deployment (gevent-websocket) and Node's socket.io 4.8. "
        "Each server runs the same small app pinned to one core; a C load generator holding every client "
        "runs on the other core. Method and the app: [benchmarks/README.md](benchmarks/README.md).", "",
        f"![deliveries per second, CPU per delivery, latency and memory](benchmarks/results/{chart_name})", "",
        ] + headline_table(doc) + ["",
        "Cells: median (min–max over repetitions) ×ratio to python-socketio in the same repetition. "
        "Every scenario and client count: [benchmarks/results/results.md](benchmarks/results/results.md).", "",
        machine_line(doc), ""] + "\n\n".join(closing_note(doc)).split("\n") + ["",
        "Reproduce (about 15 minutes; `--quick` takes under 2):", "", "```sh",
        "pip install -e '.[bench]'", command, "```", ""])


def chart(doc: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    runs, cfg = doc["runs"], doc["config"]
    servers = [s for s in cfg["servers"] if any(r["server"] == s for r in runs)]
    ns = cfg["clients"]
    hn = 5000 if 5000 in ns else max(ns)
    colors = {"roomcast": "#d62728", "roomcast-py": "#ff9896", "psio": "#1f77b4", "node": "#2ca02c"}
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))

    def med_rng(vals):
        m = statistics.median(vals)
        return m, m - min(vals), max(vals) - m

    # 1: throughput by scenario at the headline size. Bars: deliveries per server-CPU-second,
    # the capacity of one core, which other work on a shared machine does not distort;
    # markers: the wall-clock rate actually seen.
    ax = axes[0][0]
    scens = cfg["scenarios"]
    w = 0.8 / len(servers)
    for i, s in enumerate(servers):
        meds, lo, hi, wall = [], [], [], []
        for scen in scens:
            rs = [r["scen"][scen] for r in runs if r["server"] == s and r["n"] == hn and scen in r["scen"]]
            m, a_, b_ = med_rng([1e6 / v["cpu_us"] for v in rs]) if rs else (0, 0, 0)
            meds.append(m / 1000); lo.append(a_ / 1000); hi.append(b_ / 1000)
            wall.append(statistics.median([v["rate"] for v in rs]) / 1000 if rs else float("nan"))
        xs = [j + i * w for j in range(len(scens))]
        ax.bar(xs, meds, w, yerr=[lo, hi], label=SERVERS[s][0], color=colors.get(s), capsize=2)
        ax.plot(xs, wall, "k_", markersize=9, markeredgewidth=2, label="wall-clock rate" if i == 0 else None)
    ax.set_xticks([j + 0.4 - w / 2 for j in range(len(scens))])
    ax.set_xticklabels([SCENARIOS[s][1] for s in scens], rotation=20, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("thousand deliveries per server-CPU-second")
    ax.set_title(f"Throughput of one core, {hn:,} clients (higher is better)")
    ax.legend(fontsize=7)

    # 2: CPU per delivery vs clients, broadcast to everyone
    ax = axes[0][1]
    plotted = False
    for s in servers:
        xs, ys, lo, hi = [], [], [], []
        for n in ns:
            vals = [r["scen"]["all"]["cpu_us"] for r in runs if r["server"] == s and r["n"] == n and "all" in r["scen"]]
            if vals:
                m, a, b = med_rng(vals)
                xs.append(n); ys.append(m); lo.append(a); hi.append(b)
        if xs:
            plotted = True
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", label=SERVERS[s][0], color=colors.get(s), capsize=3)
    ax.set_xscale("log")
    ax.set_xlabel("connected clients")
    ax.set_ylabel("server CPU µs per delivery (log scale)")
    ax.set_title("Server CPU per delivery, broadcast to everyone (lower is better)")
    ax.set_yscale("log" if plotted else "linear")
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(
        lambda v, _: f"{v:g}" if str(v)[0] in "25" else ""))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)

    # 3: latency p50/p99 at half saturation, headline size
    ax = axes[1][0]
    for i, s in enumerate(servers):
        p50 = [statistics.median([r["scen"][sc]["p50_ms"] for r in runs if r["server"] == s and r["n"] == hn
                                  and sc in r["scen"]] or [0]) for sc in scens]
        p99 = [statistics.median([r["scen"][sc]["p99_ms"] for r in runs if r["server"] == s and r["n"] == hn
                                  and sc in r["scen"]] or [0]) for sc in scens]
        xs = [j + i * w for j in range(len(scens))]
        ax.bar(xs, p99, w, color=colors.get(s), alpha=0.35)
        ax.bar(xs, p50, w, color=colors.get(s), label=SERVERS[s][0])
    ax.set_xticks([j + 0.4 - w / 2 for j in range(len(scens))])
    ax.set_xticklabels([SCENARIOS[s][1] for s in scens], rotation=20, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("ms (solid p50, pale p99)")
    ax.set_title(f"Publish-to-receipt latency at ½ each server's saturation, {hn:,} clients")

    # 4: memory and connection rate
    ax = axes[1][1]
    rss = [statistics.median([r["rss_per_conn"] / 1024 for r in runs if r["server"] == s and r["n"] == hn] or [0])
           for s in servers]
    cps = [statistics.median([r["conn_per_s"] for r in runs if r["server"] == s and r["n"] == hn] or [0])
           for s in servers]
    xs = range(len(servers))
    ax.bar([x - 0.2 for x in xs], rss, 0.4, color=[colors.get(s) for s in servers])
    ax.set_ylabel("RSS KiB per idle connection (left bars)")
    ax2 = ax.twinx()
    ax2.bar([x + 0.2 for x in xs], cps, 0.4, color=[colors.get(s) for s in servers], alpha=0.4, hatch="//")
    ax2.set_ylabel("connections / s (right bars, hatched)")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([SERVERS[s][0] for s in servers], rotation=15, ha="right", fontsize=8)
    ax.set_title(f"Memory per idle connection and connection rate, {hn:,} clients")

    m = doc["machine"]
    fig.suptitle(f"roomcast vs python-socketio vs Node socket.io — {m['cpu']}, "
                 f"{cfg['reps']} rep(s), medians with min–max", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- setup and main

def build_loadgen() -> Path:
    RAW.mkdir(parents=True, exist_ok=True)
    src = HERE / "loadgen" / "loadgen.c"
    out = RAW / "loadgen"
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        cc = os.environ.get("CC", "cc")
        subprocess.run([cc, "-O2", "-Wall", "-o", str(out), str(src)], check=True)
    return out


def ensure_node() -> bool:
    if not shutil.which("node"):
        print("node not found: skipping the Node server", file=sys.stderr)
        return False
    if not (HERE / "node" / "node_modules" / "socket.io").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE / "node", check=True)
    return True


def roomcast_ok(pure: bool) -> bool:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    env.pop("ROOMCAST_NO_EXTENSIONS", None)
    if pure:
        env["ROOMCAST_NO_EXTENSIONS"] = "1"
    else:
        env["ROOMCAST_REQUIRE_EXTENSIONS"] = "1"
    probe = "import roomcast; roomcast.Server; roomcast.WSGIApp; print(roomcast.USING_EXTENSIONS)"
    r = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    if r.returncode != 0 and not pure:
        # a clean clone has no compiled core yet: build it in place, then look again
        print("building roomcast's compiled core in place (setup.py build_ext --inplace)", file=sys.stderr)
        subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=ROOT,
                       env=dict(env, ROOMCAST_REQUIRE_EXTENSIONS="1"), capture_output=True)
        r = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        print(f"roomcast ({'pure' if pure else 'compiled'}) not usable, skipped:\n"
              f"{r.stderr.strip().splitlines()[-1:] }", file=sys.stderr)
        return False
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1,000 and 5,000 clients, 1 repetition (< 2 min)")
    ap.add_argument("--servers", default="roomcast,roomcast-py,psio,node")
    ap.add_argument("--clients", help="comma-separated client counts (default: 100,1000,5000,10000)")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--reps", type=int, help="repetitions (default 3; 1 with --quick)")
    ap.add_argument("--phase-secs", type=float, help="target length of each saturation phase")
    ap.add_argument("--paced-secs", type=float, help="length of each latency phase")
    ap.add_argument("--server-core", type=int, default=0)
    ap.add_argument("--loadgen-core", type=int, default=1)
    ap.add_argument("--out", default=str(RESULTS), help="where results.md, .json and chart.png go")
    ap.add_argument("--render", metavar="JSON", help="only redraw the tables and chart from a results file")
    a = ap.parse_args(argv)
    if a.render:
        doc = json.loads(Path(a.render).read_text())
        doc.setdefault("finished", doc.get("started", "?"))
        doc.setdefault("seconds", 0)
        write_outputs(doc, Path(a.out), doc["config"]["quick"])
        return 0

    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    clients = [int(x) for x in a.clients.split(",")] if a.clients else (
        [1000, 5000] if a.quick else [100, 1000, 5000, 10000])
    # each side holds one descriptor per client plus a few dozen of its own
    dropped = [n for n in clients if n + 200 > limit]
    clients = [n for n in clients if n + 200 <= limit]
    if dropped:
        print(f"descriptor limit {limit}: skipping {dropped} clients", file=sys.stderr)

    class Cfg:
        pass
    cfg = Cfg()
    cfg.quick = a.quick
    cfg.reps = a.reps or (1 if a.quick else 3)
    cfg.phase_secs = a.phase_secs or (0.4 if a.quick else 0.6)
    cfg.probe = 2000  # deliveries in each probe phase
    cfg.warmup_secs = 0.2 if a.quick else 0.25
    cfg.session_warmup_secs = 0.6 if a.quick else 1.0
    cfg.paced_secs = a.paced_secs or (0.5 if a.quick else 0.6)
    cfg.settle = 0.5
    cfg.inflight = 64
    cfg.max_triggers = 1000
    cfg.server_core, cfg.loadgen_core = a.server_core, a.loadgen_core
    if (os.cpu_count() or 1) < 2:
        cfg.server_core = cfg.loadgen_core = None
    cfg.scenarios = a.scenarios.split(",")

    servers = []
    for s in a.servers.split(","):
        if s == "node" and not ensure_node():
            continue
        if s.startswith("roomcast") and not roomcast_ok(pure=(s == "roomcast-py")):
            continue
        servers.append(s)
    lg_binary = build_loadgen()
    cfg.servers, cfg.clients = servers, clients

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    log = open(RAW / f"run-{stamp}.log", "w")
    doc = {"config": {k: v for k, v in vars(cfg).items()}, "machine": machine(), "runs": [],
           "started": stamp}
    t0 = time.monotonic()
    for rep in range(cfg.reps):
        for n in clients:
            for s in servers:
                print(f"[{time.monotonic() - t0:6.1f}s] rep {rep + 1}/{cfg.reps}  {n:>6} clients  {s}",
                      file=sys.stderr, flush=True)
                print(f"=== rep {rep} n {n} server {s}", file=log, flush=True)
                t_s = time.monotonic()
                try:
                    r = session(s, n, cfg, lg_binary, log)
                    r["secs"] = time.monotonic() - t_s
                except Exception as e:  # one failed session must not lose the rest of the run
                    print(f"    failed: {e}", file=sys.stderr)
                    continue
                r["rep"] = rep
                for e in r["errors"]:
                    print(f"    check: {e}", file=sys.stderr)
                doc["runs"].append(r)
                (RAW / f"partial-{stamp}.json").write_text(json.dumps(doc, default=str))
    doc["finished"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    doc["seconds"] = time.monotonic() - t0
    write_outputs(doc, Path(a.out), a.quick)
    return 0


def write_outputs(doc: dict, out: Path, quick: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    # a quick run never overwrites the full run's files
    base = "quick" if quick else "results"
    chart_name = "quick.png" if quick else "chart.png"
    command = "python benchmarks/run.py" + (" --quick" if quick else "")
    (out / f"{base}.json").write_text(json.dumps(doc, indent=1, default=str))
    md = summarize(doc)
    (out / f"{base}.md").write_text(md + f"\nRun took {doc['seconds']:.0f} s: `{command}`.\n")
    chart(doc, out / chart_name)
    if not quick:
        (out / "README-section.md").write_text(readme_section(doc, chart_name, command))
    print(md)
    print(f"\nwrote {out / (base + '.md')}, {out / chart_name} in {doc['seconds']:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
