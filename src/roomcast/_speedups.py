"""Chooses the compiled core (ext/*.pyx) or its pure-Python twin.

The rest of roomcast reads these names through this module only, as
``_speedups.NAME`` at call time, so that the test suite can swap the
implementation with :func:`use` without re-importing anything.

ROOMCAST_NO_EXTENSIONS=1 selects the twin; ROOMCAST_REQUIRE_EXTENSIONS=1 turns
a missing extension into an ImportError. A wheel built with ROOMCAST_NO_EXTENSIONS=1
carries the marker file ``_pure_build`` (written by setup.py): the twin was chosen
on purpose there, so it is used without a warning.
"""
from __future__ import annotations

import logging
import os
import platform
import warnings
from types import ModuleType
from typing import TYPE_CHECKING

PURE_BUILD = os.path.exists(os.path.join(os.path.dirname(__file__), "_pure_build"))
NO_EXTENSIONS = os.environ.get("ROOMCAST_NO_EXTENSIONS", "") not in ("", "0")
REQUIRE_EXTENSIONS = os.environ.get("ROOMCAST_REQUIRE_EXTENSIONS", "") not in ("", "0")

if TYPE_CHECKING:
    # What type checkers see: the names bound by use() below (the compiled modules
    # have .pyi stubs with the same signatures as the twins).
    from roomcast._encoder_py import (EncodedPacket as EncodedPacket, encode_eio as encode_eio,
                                      encode_packet as encode_packet, ws_frame as ws_frame)
    from roomcast._fanout_py import ConnTable as ConnTable, fanout as fanout
    from roomcast._rooms_py import RoomIndex as RoomIndex, Selection as Selection
    from roomcast._frames_py import FrameParser as FrameParser

_EXPORTS = {
    "encoder": ("EncodedPacket", "encode_packet", "encode_msgpack", "encode_eio", "ws_frame"),
    "rooms": ("RoomIndex", "Selection"),
    "fanout": ("ConnTable", "fanout"),
    "frames": ("FrameParser",),
}


def _modules(pure: bool) -> dict[str, ModuleType]:
    if pure:
        from roomcast import _encoder_py as encoder, _fanout_py as fanout, _rooms_py as rooms
        from roomcast import _frames_py as frames
    else:
        from roomcast import _encoder_c as encoder, _fanout_c as fanout, _rooms_c as rooms
        from roomcast import _frames_c as frames
    return {"encoder": encoder, "rooms": rooms, "fanout": fanout, "frames": frames}


def use(pure: bool) -> None:
    """Bind the exported names to one implementation (the tests call this)."""
    global USING_EXTENSIONS
    for key, module in _modules(pure).items():
        for name in _EXPORTS[key]:
            globals()[name] = getattr(module, name)
    USING_EXTENSIONS = not pure


def extensions_available() -> bool:
    try:
        _modules(pure=False)
    except ImportError:
        return False
    return True


USING_EXTENSIONS = False
if (NO_EXTENSIONS or (PURE_BUILD and not REQUIRE_EXTENSIONS)
        or platform.python_implementation() != "CPython"):
    use(pure=True)
else:
    try:
        use(pure=False)
    except ImportError as exc:
        if REQUIRE_EXTENSIONS:
            raise
        # pip hides a build's output when it succeeds, so a compiler-less install
        # that fell back to the twin is only noticed here.
        warnings.warn(f"roomcast: the compiled core is not available ({exc}); using the "
                      "much slower pure-Python twin. Reinstall with a C compiler, or set "
                      "ROOMCAST_NO_EXTENSIONS=1 to choose the twin knowingly.",
                      RuntimeWarning, stacklevel=2)
        use(pure=True)
logging.getLogger("roomcast").debug("compiled core in use: %s", USING_EXTENSIONS)
