"""The public API is visible to type checkers: mypy --strict passes on a typed app,
sees real types (not Any) through roomcast's lazy names, and the compiled modules'
.pyi stubs match what the extensions really define (mypy's stubtest)."""
from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

from roomcast import _speedups

ROOT = Path(__file__).resolve().parents[2]
TYPED_APP = ROOT / "tests" / "apps" / "typed_app.py"


def mypy(*args: str, cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    # run outside the source tree so that mypy reads the INSTALLED package (stubs, py.typed)
    return subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(cache), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300)


def test_mypy_strict_passes_on_a_typed_app(tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "mypy-cache"
    done = mypy("--strict", str(TYPED_APP), cwd=tmp_path_factory.mktemp("mypy"), cache=cache)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success" in done.stdout


def test_mypy_sees_real_types_behind_the_lazy_names(tmp_path_factory):
    where = tmp_path_factory.mktemp("mypy-bad")
    bad = where / "bad.py"
    bad.write_text("import roomcast\n"
                   "from roomcast import _speedups\n"
                   "wrong: int = roomcast.Server()\n"
                   "also_wrong: str = _speedups.RoomIndex().room_size('a')\n")
    done = mypy("--strict", str(bad), cwd=where, cache=tmp_path_factory.getbasetemp() / "mypy-cache")
    assert done.returncode == 1, done.stdout + done.stderr
    assert 'expression has type "Server", variable has type "int"' in done.stdout, done.stdout
    assert 'expression has type "int", variable has type "str"' in done.stdout, done.stdout


@functools.lru_cache(maxsize=None)
def stubtest(cwd: str) -> subprocess.CompletedProcess:
    """mypy's stubtest on the compiled modules, once per session (it does not depend on
    which implementation the chooser picked)."""
    return subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "--mypy-config-file", os.devnull,
         "--allowlist", str(ROOT / "tests" / "unit" / "stubtest-allowlist.txt"),
         "roomcast._encoder_c", "roomcast._rooms_c", "roomcast._fanout_c",
         "roomcast._frames_c"],
        cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_stubs_match_the_compiled_modules(tmp_path_factory):
    if not _speedups.extensions_available():
        assert not os.environ.get("ROOMCAST_REQUIRE_EXTENSIONS"), "the compiled core is required"
        return
    done = stubtest(str(tmp_path_factory.getbasetemp()))
    assert done.returncode == 0, done.stdout + done.stderr
