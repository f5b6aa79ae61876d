"""Reading a request's header block the way http.client.parse_headers does, faster.

gevent.pywsgi reads every request's headers with ``http.client.parse_headers``,
which hands the block to the email package's feed parser: about a tenth of the
server's CPU per WebSocket connect. Most header blocks are plain
``Name: value`` lines; those are stored here straight into the same message
object (``set_raw`` with the name and value the feed parser would give it).
Anything else (folded lines, a line that is no header, a missing end of line)
goes to the email parser as before, so every request gets the very same object.
Sans-IO apart from ``fp.readline``.
"""
from __future__ import annotations

import email.parser
import http.client
import re
from email.policy import compat32
from typing import Any, BinaryIO

MAX_LINE = 65536      # http.client's limits
MAX_HEADERS = 100

# header blocks parsed here: header lines as the feed parser reads them ([\041-\071\073-\176] are its name
# characters), then the empty line; nothing else
PLAIN_BLOCK = re.compile(r"(?:[\041-\071\073-\176]+:[^\r\n]*\r?\n)*(?:\r?\n)?")


def parse_headers(fp: BinaryIO, message_class: Any) -> Any:
    """``http.client.parse_headers(fp, _class=message_class)``, same result and errors."""
    lines = []
    while True:
        line = fp.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise http.client.LineTooLong("header line")
        lines.append(line)
        if len(lines) > MAX_HEADERS:
            raise http.client.HTTPException(f"got more than {MAX_HEADERS} headers")
        if line in (b"\r\n", b"\n", b""):
            break
    block = b"".join(lines).decode("iso-8859-1")
    if PLAIN_BLOCK.fullmatch(block) is None:
        return email.parser.Parser(_class=message_class).parsestr(block)
    message = message_class(policy=compat32)
    for line in block.split("\n"):
        if line and line != "\r":
            name, value = line.split(":", 1)
            message.set_raw(name, value.lstrip(" \t").rstrip("\r"))
    message.set_payload("")   # the (empty) body the feed parser leaves
    return message
