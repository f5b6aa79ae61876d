"""The unit tests' expected bytes, made by the real Node packages during the run.

A test module declares ``NODE_CASES = {kind: {case name: JavaScript expression}}``
(kinds: see tests/js/reference.js); the session fixture ``node_made`` runs that script
once for the cases of every collected module and returns
``{kind: {case name: result}}``.
"""
from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

JS_DIR = Path(__file__).resolve().parents[1] / "js"
_CASES = pytest.StashKey[dict]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cases: dict = {}
    for module in {getattr(item, "module", None) for item in items} - {None}:
        for kind, table in getattr(module, "NODE_CASES", {}).items():
            cases.setdefault(kind, {}).update(table)
    config.stash[_CASES] = cases


def _revive(obj: dict):
    if set(obj) == {"$bytes"}:
        return base64.b64decode(obj["$bytes"])
    return obj


@pytest.fixture(scope="session")
def node_made(pytestconfig: pytest.Config) -> dict:
    """{kind: {case name: what Node's package made of the case's JavaScript value}}."""
    if not (JS_DIR / "node_modules" / "notepack.io").is_dir():
        pytest.fail("tests/js/node_modules is missing: run `npm ci` in tests/js "
                    "(scripts/test.sh does)", pytrace=False)
    request = json.dumps(pytestconfig.stash.get(_CASES, {}))
    run = subprocess.run(["node", str(JS_DIR / "reference.js")], input=request.encode(),
                         capture_output=True, cwd=str(JS_DIR), timeout=60)
    if run.returncode != 0:
        pytest.fail(f"tests/js/reference.js failed:\n{run.stderr.decode(errors='replace')}",
                    pytrace=False)
    return json.loads(run.stdout, object_hook=_revive)
