"""scripts/test.sh (the command `.ci/run` runs) never passes without the compiled core."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_machine_without_a_c_compiler_fails_the_run(tmp_path):
    # A copy of the script in a bare checkout whose .venv is this interpreter, on a PATH
    # without cc, gcc or apt-get: what a machine without a compiler looks like to it.
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "test.sh", tmp_path / "scripts" / "test.sh")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").symlink_to(sys.executable)
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("dirname", "id"):
        (tools / tool).symlink_to(shutil.which(tool))
    env = {"PATH": str(tools), "HOME": str(tmp_path), "PYTHON": sys.executable}
    run = subprocess.run([shutil.which("bash"), str(tmp_path / "scripts" / "test.sh")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0
    assert "NOT RUN: no C compiler" in run.stderr
    assert "PASSED" not in run.stdout + run.stderr
    assert "==> pytest" not in run.stdout   # stopped before running any test


def test_the_ci_entry_point_is_that_script():
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'exec bash scripts/test.sh "$@"' in ci
