"""The stream entries of @socket.io/redis-streams-adapter 0.3 (sans-IO): shared by the
Redis Streams adapter and the StreamsEmitter."""
from __future__ import annotations

import base64
import json
import math
from typing import Any

from roomcast import _notepack
from roomcast.adapters import _protocol as proto
from roomcast.adapters._protocol import MAY_CONTAIN_BINARY, has_binary


def js_hash_code(text: str) -> int:
    """JavaScript's ``hash = hash * 31 + charCode; hash |= 0`` over UTF-16 code units."""
    h = 0
    units = text.encode("utf-16-le")
    for i in range(0, len(units), 2):
        h = (h * 31 + (units[i] | units[i + 1] << 8)) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def stream_name_for(nsp: str, stream_name: str, stream_count: int) -> str:
    """The stream of a namespace: ``stream_name``, or ``<stream_name>-<i>`` with several
    (i as JavaScript's ``hashCode(nsp) % streamCount``, negative included)."""
    if stream_count == 1:
        return stream_name
    return f"{stream_name}-{int(math.fmod(js_hash_code(nsp), stream_count))}"


def encode_entry(message: dict, only_plaintext: bool = False) -> dict:
    """A cluster message as the fields of its stream entry (uid, nsp, type, data)."""
    fields = {"uid": message["uid"], "nsp": message["nsp"], "type": str(int(message["type"]))}
    data = message.get("data")
    if data:
        if not only_plaintext and message["type"] in MAY_CONTAIN_BINARY and has_binary(data):
            fields["data"] = base64.b64encode(_notepack.encode(data)).decode("ascii")
        else:
            if has_binary(data):   # only_plaintext: binary as JSON.stringify writes a Buffer
                data = _buffers_as_json(data)
            fields["data"] = proto.dumps_json(data).decode("utf-8")
    return fields


def _buffers_as_json(value: Any) -> Any:
    """``value`` with each bytes as Node's ``Buffer.toJSON()``: {"type": "Buffer", "data": [...]}."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"type": "Buffer", "data": list(bytes(value))}
    if isinstance(value, dict):
        return {k: _buffers_as_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_buffers_as_json(v) for v in value]
    return value


def text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)


def decode_entry(fields: dict) -> dict:
    """The cluster message of a stream entry (raises ValueError when malformed)."""
    fields = {text(k): v for k, v in fields.items()}
    message: dict = {"uid": text(fields.get("uid", "")), "nsp": text(fields.get("nsp", "")),
                     "type": int(text(fields.get("type", "0")))}
    raw = fields.get("data")
    if raw:
        raw = text(raw)
        message["data"] = json.loads(raw) if raw.startswith("{") else \
            _notepack.decode(base64.b64decode(raw))
    return message


def next_offset(offset: str) -> str:
    """The smallest stream id after ``offset`` (exclusive ranges need Redis 6.2)."""
    ms, seq = offset.split("-")
    return f"{ms}-{int(seq) + 1}"
