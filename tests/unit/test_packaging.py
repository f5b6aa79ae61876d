"""The compiled core and its twins stay in step, and CI really tests the compiled one."""
from __future__ import annotations

import ast
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from roomcast import _speedups

ROOT = Path(__file__).resolve().parents[2]
EXT = ROOT / "ext"
PYX = sorted(EXT.glob("_*_c.pyx"))


def public_names_of_pyx(path: Path) -> set[str]:
    """Top-level public functions, classes and constants of a .pyx (class members are
    compared at run time, where properties and attributes look alike)."""
    found = re.findall(r"^(?:(?:cdef )?class |cpdef |def )([A-Za-z]\w*)|^([A-Z][A-Z0-9_]*) = ",
                       path.read_text(), re.MULTILINE)
    return {a or b for a, b in found}


def public_names_of_py(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in getattr(node, "targets", None) or [node.target]:
                if isinstance(target, ast.Name) and re.fullmatch(r"[A-Z][A-Z0-9_]*", target.id):
                    names.add(target.id)
    return names


@pytest.mark.parametrize("pyx", PYX, ids=lambda p: p.stem)
def test_every_extension_has_a_twin_with_the_same_public_names(pyx):
    twin = ROOT / "src" / "roomcast" / (pyx.stem[:-2] + "_py.py")
    assert twin.exists(), f"{pyx.name} has no pure-Python twin {twin.name}"
    compiled, pure = public_names_of_pyx(pyx), public_names_of_py(twin)

    def api(names):   # functions and classes; a twin may spell out more constants
        return {n for n in names if not re.fullmatch(r"[A-Z][A-Z0-9_]*", n)}
    assert api(compiled) == api(pure)
    assert set(compiled) - api(compiled) <= set(pure)


def test_the_chooser_exports_the_names_the_architecture_fixes():
    for key, names in _speedups._EXPORTS.items():
        pure = importlib.import_module(f"roomcast._{key}_py")
        for name in names:
            assert hasattr(pure, name), (key, name)
            assert hasattr(_speedups, name)


def test_built_extensions_match_their_twins_at_run_time():
    if not _speedups.extensions_available():
        assert not os.environ.get("ROOMCAST_REQUIRE_EXTENSIONS"), \
            "ROOMCAST_REQUIRE_EXTENSIONS=1 but the compiled core does not import"
        return
    for pyx in PYX:
        compiled = importlib.import_module(f"roomcast.{pyx.stem}")
        pure = importlib.import_module(f"roomcast.{pyx.stem[:-2]}_py")
        for name in public_names_of_py(Path(pure.__file__)):
            obj = getattr(pure, name)
            if not callable(obj) and not hasattr(compiled, name):
                continue   # a constant only the twin spells out
            assert hasattr(compiled, name), (pyx.stem, name)
            if isinstance(obj, type):
                wanted = {m for m in vars(obj) if not m.startswith("_")}
                assert wanted <= set(dir(getattr(compiled, name))), (pyx.stem, name)
            elif not callable(obj):
                assert getattr(compiled, name) == obj, (pyx.stem, name)


def chooser_in_subprocess(**env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items()
               if k not in ("ROOMCAST_REQUIRE_EXTENSIONS", "ROOMCAST_NO_EXTENSIONS")}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-c", "import roomcast._speedups as s; print(s.USING_EXTENSIONS)"],
        env=environ, capture_output=True, text=True, timeout=60)


def test_required_extensions_are_really_in_use():
    """With ROOMCAST_REQUIRE_EXTENSIONS=1 the compiled core is used, or the import fails:
    never a quiet fallback that would have CI test the twin twice."""
    done = chooser_in_subprocess(ROOMCAST_REQUIRE_EXTENSIONS="1")
    if done.returncode == 0:
        assert done.stdout.strip() == "True"
    else:
        assert "ImportError" in done.stderr or "ModuleNotFoundError" in done.stderr
    if (os.environ.get("ROOMCAST_REQUIRE_EXTENSIONS", "") not in ("", "0")
            or os.environ.get("CIBUILDWHEEL") == "1"):
        assert done.returncode == 0 and done.stdout.strip() == "True", done.stderr
        assert _speedups.extensions_available()


def test_no_extensions_selects_the_twin():
    done = chooser_in_subprocess(ROOMCAST_NO_EXTENSIONS="1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_setup_refuses_contradictory_settings():
    environ = dict(os.environ, ROOMCAST_REQUIRE_EXTENSIONS="1", ROOMCAST_NO_EXTENSIONS="1")
    done = subprocess.run([sys.executable, "setup.py", "--version"], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "both set" in done.stderr


def test_the_sdist_ships_the_cython_sources_not_generated_c():
    manifest = (ROOT / "MANIFEST.in").read_text().split("\n")
    assert "graft ext" in manifest
    assert any(line.startswith("global-exclude") and "*.c" in line.split() for line in manifest)


def test_a_missing_extension_falls_back_with_a_warning():
    # sys.modules[name] = None makes that import fail, as after a compiler-less install
    code = ("import sys, warnings; warnings.simplefilter('always');"
            "sys.modules['roomcast._rooms_c'] = None;"
            "import roomcast._speedups as s; print(s.USING_EXTENSIONS)")
    environ = {k: v for k, v in os.environ.items()
               if k not in ("ROOMCAST_REQUIRE_EXTENSIONS", "ROOMCAST_NO_EXTENSIONS")}
    done = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
    assert "RuntimeWarning" in done.stderr and "pure-Python twin" in done.stderr
    silent = chooser_in_subprocess(ROOMCAST_NO_EXTENSIONS="1")
    assert "RuntimeWarning" not in silent.stderr


def test_the_license_is_an_spdx_expression_with_its_file():
    """PEP 639: ``license = "MIT"`` plus ``license-files`` (the table form is deprecated
    and refused by setuptools after 2027-02-18)."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert not any(c.startswith("License ::") for c in project.get("classifiers", []))


def test_the_compiled_modules_ship_their_stubs():
    for pyx in PYX:
        assert (ROOT / "src" / "roomcast" / f"{pyx.stem}.pyi").exists(), pyx.stem
    installed = Path(_speedups.__file__).parent
    assert (installed / "py.typed").exists()
    if _speedups.extensions_available():
        for pyx in PYX:
            assert (installed / f"{pyx.stem}.pyi").exists(), pyx.stem
