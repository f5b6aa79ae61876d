"""One session per benchmark server, each server a process of its own, for the scripts
that compare servers on one behaviour (churn.py, slow_consumer.py): starting a server
with the roomcast installed in this interpreter's environment, running the sessions
with the servers' output in one log, and writing the results."""
from __future__ import annotations

import json
import os
import resource
import subprocess
from pathlib import Path
from typing import IO, Callable

from run import SERVERS, wait_listening

HERE = Path(__file__).resolve().parent


def start_server(name: str, port: int, log, argv: list[str] | None = None) -> subprocess.Popen:
    """Start a benchmark server with the roomcast *installed* in this interpreter's
    environment (pip install '.[bench]'), not the source tree (run.py's way)."""
    _, default_argv, extra = SERVERS[name]
    if name == "node" and not (HERE / "node" / "node_modules").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE / "node", check=True)
    env = dict(os.environ, **extra)
    proc = subprocess.Popen((argv or default_argv) + [str(port)], env=env, stdout=log, stderr=log,
                            start_new_session=True)
    # nothing else runs while a server starts: run.py's blocking wait does here too
    return wait_listening(proc, name, port, log)


def run_sessions(servers: str, out: Path, stem: str,
                 session: Callable[[str, IO[str]], dict]) -> list[dict]:
    """``session(name, log)`` for each server of the comma-separated list, in turn; the
    servers write to out/<stem>-servers.log. The clients' descriptors may go up to the
    hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    with open(out / f"{stem}-servers.log", "w") as log:
        for name in servers.split(","):
            assert name in SERVERS, name
            runs.append(session(name, log))
    return runs


def write_results(out: Path, stem: str, doc: dict, report: Callable[[dict], str]) -> None:
    """out/<stem>.json (the doc) and out/<stem>.md (its report), which is printed too."""
    (out / f"{stem}.json").write_text(json.dumps(doc, indent=1))
    text = report(doc)
    (out / f"{stem}.md").write_text(text)
    print(text)
