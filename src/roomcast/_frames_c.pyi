# Type stub of the compiled frame parser (ext/_frames_c.pyx); its twin is _frames_py.py.
from typing_extensions import disjoint_base
from typing import Any

@disjoint_base
class FrameParser:
    max_message_size: Any
    inflater: Any
    def __init__(self, max_message_size: Any, inflater: Any = None) -> None: ...
    def feed(self, data: Any) -> list[tuple[int, bytes]]: ...
