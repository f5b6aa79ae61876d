"""The README's main example runs as written."""
from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    text = README.read_text()
    marker = text.index("tests/server/test_readme.py runs this example")
    return re.search(r"```python\n(.*?)```", text[marker:], re.S).group(1)


SCRIPT = """
const bad = io(URL, {auth: {token: "nope"}, transports: ["websocket"]});
const [err] = await once(bad, "connect_error");
const a = io(URL, {auth: {token: "secret"}}), b = io(URL, {auth: {token: "secret"}});
await Promise.all([once(a, "connect"), once(b, "connect")]);
const heard = once(b, "chat");
const ack = await a.emitWithAck("chat", "lobby", "hello");
const [from, text] = await heard;
const aId = a.id, left = once(b, "left");
a.disconnect();
const [who] = await left;
done({err: [err.message, err.data], ack, fromA: from === aId, text, leftIsA: who === from});
"""


def test_readme_example_runs_as_written(serve, run_js):
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(readme_example(), str(README), "exec"), namespace)
    io = namespace["io"]
    assert io.of("/news") is namespace["news"]
    url = serve(io)
    assert run_js(SCRIPT, url) == {
        "err": ["Not authorized", {"retry": False}], "ack": "delivered",
        "fromA": True, "text": "hello", "leftIsA": True}
