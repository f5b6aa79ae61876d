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
    exts = [
        Extension(f"roomcast.{src.stem}", [str(src.relative_to(HERE))],
                  extra_compile_args=["-O3"])
        for src in sources
    ]
    exts = cythonize(exts, language_level=3, include_path=["ext"],
                     compiler_directives={"boundscheck": False, "wraparound": False,
                                          "cdivision": True, "embedsignature": True})
    # cythonize() resets optional; a missing compiler must not stop an install
    # unless the build is required.
    for ext in exts:
        ext.optional = not REQUIRE
    banner(f"roomcast: accelerated build of {', '.join(e.name for e in exts)}"
           + ("" if REQUIRE else " (optional: falls back to the twin on failure)"))
    return exts


setup(ext_modules=extensions())
