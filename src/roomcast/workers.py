"""Several worker processes behind one port, without sticky sessions.

``serve(load, host, port, workers=N)`` (``roomcast serve module:app --workers N``,
``io.run(workers=N)``): the supervisor forks N workers, each listening on the port
with SO_REUSEPORT (the kernel spreads connections over them). Each worker

- tags its Engine.IO sids with its pid, and hands a request for another worker's
  session, socket and all, to that worker (roomcast.handoff), so long-polling works
  whichever worker the kernel gives a request to;
- gives every roomcast Server that uses the default in-memory adapter the
  inter-process adapter (roomcast.adapters.ipc), so broadcasts and every cluster
  operation reach the clients of all workers with no extra service; a Server with a
  cluster adapter of its own (Redis) keeps it.

The supervisor restarts a worker that dies; SIGTERM (or SIGINT) drains every worker:
it stops accepting, closes its sessions (clients reconnect elsewhere or later) and
exits within ``graceful_timeout`` seconds. The supervisor never runs gevent's loop, so
greenlets a Server spawned before the fork (``io.run(workers=N)``) only run in the
workers.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import socket as stdsocket
import sys
import tempfile
import time
import traceback
from typing import Any, Callable

from roomcast.worker_ids import pid_of_sid, tag_of_pid

log = logging.getLogger("roomcast.workers")

RESTART_BACKOFF = 1.0        # a worker that dies younger than this is restarted after it
DEFAULT_GRACEFUL_TIMEOUT = 10.0


# -- this process as a worker ------------------------------------------------------------

class WorkerContext:
    """What a worker process knows of its siblings: the run directory where their Unix
    sockets live, its hand-off end and its inter-process bus."""

    def __init__(self, rundir: str) -> None:
        from roomcast.adapters.ipc import IpcBus
        from roomcast.engine.server import set_sid_tag
        from roomcast.handoff import Handoff

        self.rundir = rundir
        self.pid = os.getpid()
        set_sid_tag(tag_of_pid(self.pid))
        self.handoff = Handoff(rundir, self.pid)
        self.bus = IpcBus(rundir, self.pid)

    def close(self) -> None:
        self.handoff.close()
        self.bus.close()


_context: WorkerContext | None = None


def current() -> WorkerContext | None:
    """This worker's context, or None in a single-process server."""
    return _context


def start_worker(rundir: str, wsgi_server: Any) -> WorkerContext:
    """Make this process one of the workers sharing ``rundir``: hand-offs are served by
    ``wsgi_server`` (a gevent pywsgi server), and the live roomcast Servers with the
    default adapter get the inter-process one."""
    global _context
    from roomcast.adapter import InMemoryAdapter
    from roomcast.server import live_servers

    context = WorkerContext(rundir)
    context.handoff.serve(wsgi_server)
    context.bus.start()
    for io in live_servers():
        if io.adapter_class is InMemoryAdapter:
            io.set_adapter(context.bus.adapter_factory())
    _context = context
    return context


def stop_worker() -> None:
    global _context
    if _context is not None:
        _context.close()
        _context = None


def handoff_owner(environ: dict) -> int | None:
    """The pid of the worker that owns the session this request names, when that is
    another live worker; else None (served here)."""
    context = _context
    if context is None:
        return None
    query = environ.get("QUERY_STRING", "")
    at = query.find("sid=")
    if at < 0 or (at > 0 and query[at - 1] != "&"):
        return None
    sid = query[at + 4:at + 24]
    pid = pid_of_sid(sid)
    if pid is None or pid == context.pid or not context.handoff.owner_alive(pid):
        return None
    return pid


def hand_off(pid: int, sock: Any, already_read: bytes) -> bool:
    context = _context
    return context is not None and context.handoff.send(pid, sock, already_read)


def drain(wsgi_server: Any, graceful_timeout: float) -> None:
    """Stop accepting, close every roomcast Server gracefully (io.close: sessions get
    their close after what is queued, within ``graceful_timeout``), leave the cluster."""
    import gevent

    from roomcast.server import live_servers

    stop_listening = getattr(wsgi_server, "stop_listening", None)
    if stop_listening is not None:
        stop_listening()
    closing = [gevent.spawn(io.close, graceful_timeout) for io in live_servers()]
    gevent.joinall(closing, timeout=graceful_timeout + 1.0)
    stop_worker()
    wsgi_server.stop(timeout=1.0)


# -- the supervisor ------------------------------------------------------------------------

def reuseport_socket(host: str, port: int) -> stdsocket.socket:
    """A TCP socket bound to host:port with SO_REUSEPORT (not listening yet)."""
    family = stdsocket.AF_INET6 if ":" in host else stdsocket.AF_INET
    sock = stdsocket.socket(family, stdsocket.SOCK_STREAM)
    sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_REUSEADDR, 1)
    sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def worker_listener(host: str, port: int, backlog: int = 2048) -> stdsocket.socket:
    """This worker's own listening socket on the shared port: with SO_REUSEPORT the
    kernel spreads new connections evenly over the workers (a single shared socket
    would hand most of them to whichever worker wakes first)."""
    sock = reuseport_socket(host, port)
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def _original(module: str, name: str) -> Any:
    """The function before any gevent monkey patching: the supervisor must block for
    real, never run gevent's loop."""
    try:
        from gevent import monkey

        return monkey.get_original(module, name)
    except Exception:
        return getattr(__import__(module), name)


def _metrics_process_dead(pid: int) -> None:
    """Drop a dead worker's live gauges from the multiprocess metrics (if any are kept)."""
    if "prometheus_client" not in sys.modules and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    try:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
    except Exception:
        pass


class Supervisor:
    """Forks the workers, restarts the ones that die, drains them all on SIGTERM."""

    def __init__(self, worker_main: Callable[[str], None], workers: int,
                 graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.worker_main = worker_main
        self.workers = workers
        self.graceful_timeout = graceful_timeout
        self.rundir = tempfile.mkdtemp(prefix="roomcast-")
        self.children: dict[int, float] = {}   # pid -> start time
        self.stopping = False
        self.restarts = 0

    def _spawn(self) -> int:
        pid = os.fork()
        if pid == 0:   # the worker
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_IGN)   # the supervisor decides
                import gevent

                gevent.reinit()
                self.worker_main(self.rundir)
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.children[pid] = time.monotonic()
        return pid

    def _on_signal(self, signum: int, frame: Any) -> None:
        if not self.stopping:
            self.stopping = True
            log.info("roomcast: draining %d workers", len(self.children))
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def _forget_files_of(self, pid: int) -> None:
        for name in (f"handoff-{pid}.sock", f"bus-{pid}.sock"):
            try:
                os.unlink(os.path.join(self.rundir, name))
            except FileNotFoundError:
                pass

    def run(self) -> None:
        waitpid = _original("os", "waitpid")
        sleep = _original("time", "sleep")
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for _ in range(self.workers):
                self._spawn()
            deadline = None
            while self.children:
                if self.stopping and deadline is None:
                    deadline = time.monotonic() + self.graceful_timeout + 5.0
                try:
                    pid, status = waitpid(-1, os.WNOHANG if self.stopping else 0)
                except ChildProcessError:
                    break
                except InterruptedError:
                    continue
                if pid == 0:   # stopping, nobody exited yet
                    if deadline is not None and time.monotonic() > deadline:
                        for child in self.children:
                            os.kill(child, signal.SIGKILL)
                        deadline = float("inf")
                    sleep(0.05)
                    continue
                started = self.children.pop(pid, None)
                if started is None:
                    continue
                self._forget_files_of(pid)
                _metrics_process_dead(pid)
                if self.stopping:
                    continue
                log.warning("roomcast: worker %d exited (status %d); restarting it", pid, status)
                if time.monotonic() - started < RESTART_BACKOFF:
                    sleep(RESTART_BACKOFF)
                self.restarts += 1
                self._spawn()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            shutil.rmtree(self.rundir, ignore_errors=True)


def serve(load: Callable[[], Any], host: str = "127.0.0.1", port: int = 5000, workers: int = 1,
          graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT, metrics_port: int | None = None,
          **server_kwargs: Any) -> None:
    """Serve the WSGI app (or roomcast Server) that ``load()`` returns on host:port with
    ``workers`` processes. ``load`` runs in each worker (after the fork) when workers > 1.
    ``metrics_port``: Prometheus metrics there, summed over the workers."""
    from roomcast import metrics
    from roomcast.wsgi import make_server

    if workers <= 1:
        server = make_server(load(), host, port, **server_kwargs)
        if metrics_port is not None:
            metrics.serve(metrics_port, host)
        _serve_until_signal(server, graceful_timeout)
        return

    def worker_main(rundir: str) -> None:
        app = load()
        server = make_server(app, listener=worker_listener(host, port), **server_kwargs)
        start_worker(rundir, server)
        if metrics_port is not None:
            # every worker answers on the metrics port too; each answer sums all workers
            metrics.serve(metrics_port, listener=worker_listener(host, metrics_port))
        _serve_until_signal(server, graceful_timeout)

    # bound, never listening: the port is ours (and a clash fails here, once), but the
    # kernel routes connections only to the workers' listening sockets
    reserved = [reuseport_socket(host, p) for p in (port, metrics_port) if p is not None]
    supervisor = Supervisor(worker_main, workers, graceful_timeout)
    if not (os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")):
        # prometheus_client's multiprocess mode, so that metrics add up over the workers
        metrics_dir = os.path.join(supervisor.rundir, "metrics")
        os.mkdir(metrics_dir)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        supervisor.run()
    finally:
        for sock in reserved:
            sock.close()


def _serve_until_signal(server: Any, graceful_timeout: float) -> None:
    import gevent

    def on_term() -> None:
        gevent.spawn(drain, server, graceful_timeout)

    gevent.signal_handler(signal.SIGTERM, on_term)
    server.serve_forever()
