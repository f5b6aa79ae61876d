"""Build script: the pure-Python package plus the optional Cython core in ext/.

Three states, read from the environment (the same variables the runtime chooser reads):
- ROOMCAST_NO_EXTENSIONS=1      build nothing compiled (a py3-none-any wheel);
- ROOMCAST_REQUIRE_EXTENSIONS=1 the core must build (also under cibuildwheel);
- neither                       try to build, and fall back to the twin with a loud warning.
"""
import os
import platform
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

HERE = Path(__file__).parent
NO_EXT = os.environ.get("ROOMCAST_NO_EXTENSIONS", "") not in ("", "0")
REQUIRE = (os.environ.get("ROOMCAST_REQUIRE_EXTENSIONS", "") not in ("", "0")
           or os.environ.get("CIBUILDWHEEL") == "1")
if NO_EXT and REQUIRE:
    raise RuntimeError("ROOMCAST_NO_EXTENSIONS and ROOMCAST_REQUIRE_EXTENSIONS are both set")
if platform.python_implementation() != "CPython" and not REQUIRE:
    NO_EXT = True  # the core uses the CPython C API


def banner(text: str) -> None:
    line = "*" * 72
    print(f"\n{line}\n{text}\n{line}\n", file=sys.stderr)


def stage_pxds() -> Path:
    """Copy ext/*.pxd to build/cython-include/roomcast/ and return that include dir.

    NOTE: `from roomcast._rooms_c cimport Selection` needs the .pxd at a package
    path, and the runtime import of the type uses that same dotted name, so ext/
    (flat, not a package) cannot be the include dir itself.
    """
    include = HERE / "build" / "cython-include"
    package = include / "roomcast"
    package.mkdir(parents=True, exist_ok=True)
    for pxd in (HERE / "ext").glob("_*_c.pxd"):
        target = package / pxd.name
        if not target.exists() or target.read_bytes() != pxd.read_bytes():
            target.write_bytes(pxd.read_bytes())
    return include


def extensions():
    if NO_EXT:
        banner("roomcast: pure-Python build (ROOMCAST_NO_EXTENSIONS set)")
        return []
    sources = sorted((HERE / "ext").glob("_*_c.pyx"))
    try:
        from Cython.Build import cythonize
        from setuptools import Extension
    except ImportError:
        if REQUIRE:
            raise
        banner("roomcast: Cython is missing, building the SLOW pure-Python twin")
        return []
    # NOTE: module names end in _c so they never clash with a stdlib accelerator's
    # PyInit symbol, and they live in roomcast/ although the sources live in ext/.
    # -g0: Python's own CFLAGS ask for debug info, which triples the size of the modules.
    flags = ["/O2"] if sys.platform == "win32" else ["-O3", "-g0"]
    exts = [
        Extension(f"roomcast.{src.stem}", [str(src.relative_to(HERE))],
                  extra_compile_args=flags)
        for src in sources
    ]
    exts = cythonize(exts, language_level=3, include_path=[str(stage_pxds())],
                     build_dir="build/cython",
                     compiler_directives={"boundscheck": False, "wraparound": False,
                                          "cdivision": True, "embedsignature": True})
    # cythonize() resets optional; a missing compiler must not stop an install
    # unless the build is required.
    for ext in exts:
        ext.optional = not REQUIRE
    banner(f"roomcast: accelerated build of {', '.join(e.name for e in exts)}"
           + ("" if REQUIRE else " (optional: falls back to the twin on failure)"))
    return exts


class loud_build_ext(build_ext):
    """Say, in a banner, when an optional extension did not build (setuptools then
    carries on with the pure-Python twin, printing only a one-line warning)."""

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            if getattr(ext, "optional", False):
                # An in-tree build may hold the module from an earlier build: it must
                # not slip into this wheel as if this build had worked.
                stale = Path(self.get_ext_fullpath(ext.name))
                if stale.exists():
                    stale.unlink()
                banner(f"roomcast: WARNING: {ext.name} failed to compile ({exc});\n"
                       "the SLOW pure-Python twin will be used instead.\n"
                       "Set ROOMCAST_REQUIRE_EXTENSIONS=1 to make this an error.")
            raise


# The runtime chooser reads this file: a wheel built without the core on purpose
# uses the twin without warning on every import (see _speedups.py).
PURE_MARKER = "_pure_build"


class marked_build_py(build_py):
    """Put the pure-build marker into a ROOMCAST_NO_EXTENSIONS build, and make sure a
    platform build never carries one left in build/lib by an earlier pure build."""

    def run(self):
        super().run()
        marker = Path(self.build_lib) / "roomcast" / PURE_MARKER
        if NO_EXT:
            marker.write_text("built with ROOMCAST_NO_EXTENSIONS=1: the pure-Python twin, on purpose\n")
        elif marker.exists():
            marker.unlink()


setup(ext_modules=extensions(), cmdclass={"build_ext": loud_build_ext, "build_py": marked_build_py})
