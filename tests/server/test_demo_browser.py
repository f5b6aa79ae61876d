"""The demo page in a real browser: Debian's chromium, headless, driven by playwright-core."""
import json
import os
from pathlib import Path

import pytest

from roomcast.demo import create_app

CHROMIUM = "/usr/bin/chromium"
CLIENT_JS = (Path(__file__).resolve().parents[1] / "js" / "node_modules" / "socket.io-client"
             / "dist" / "socket.io.min.js")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]

BROWSER_SCRIPT = """
const { chromium } = require("playwright-core");
const context = await chromium.launchPersistentContext(SETTINGS.userDataDir, {
  executablePath: SETTINGS.chromium, headless: true, args: SETTINGS.flags,
});
const pageErrors = [];
let result;
try {
  async function open(name) {
    const page = await context.newPage();
    page.on("pageerror", (err) => pageErrors.push(`${name}: ${err.message}`));
    await page.goto(`${URL}/?name=${name}`);
    await page.waitForSelector("#status.online");
    return page;
  }
  async function join(page, room) {
    await page.fill("#room", room);
    await page.click("#join");
    await page.waitForSelector(`#rooms li[data-room="${room}"].current`);
  }
  const alice = await open("alice");
  const bob = await open("bob");
  await join(alice, "lobby");
  await join(bob, "lobby");
  // bob's joining is announced to alice, who was there first
  await alice.waitForSelector("#log li.system:has-text('bob joined')");

  await alice.fill("#message", "hello from alice");
  await alice.press("#message", "Enter");
  const message = await bob.waitForSelector("#log li.message:has-text('hello from alice')");
  const seenByBob = (await message.innerText()).replace(/\\s+/g, " ");

  await bob.fill("#news-text", "bob's breaking news");
  await bob.click("#news-post");
  const news = await alice.waitForSelector("#news-list li:has-text('breaking news')");
  const newsSeenByAlice = (await news.innerText()).replace(/\\s+/g, " ");

  await bob.screenshot({ path: SETTINGS.screenshot, fullPage: true });
  result = { seenByBob, newsSeenByAlice, pageErrors };
} finally {
  await context.close();  // before done(), which ends node
}
done(result);
"""


@pytest.fixture
def demo_url(serve):
    assert CLIENT_JS.is_file(), "tests/js/node_modules is missing: run npm ci in tests/js"
    io, app = create_app(CLIENT_JS)
    try:
        yield serve(app)
    finally:
        io.close()


def test_two_browser_pages_chat_in_a_room(demo_url, run_js, tmp_path):
    assert os.access(CHROMIUM, os.X_OK), (
        f"{CHROMIUM} is missing: install Debian's chromium (scripts/test.sh does, as root)")
    settings = {
        "chromium": CHROMIUM,
        "flags": CHROMIUM_FLAGS,
        "userDataDir": str(tmp_path / "chromium-profile"),
        "screenshot": str(tmp_path / "demo-bob.png"),
    }
    script = f"const SETTINGS = {json.dumps(settings)};\n{BROWSER_SCRIPT}"

    result = run_js(script, demo_url, timeout=60)

    assert result["pageErrors"] == []
    assert result["seenByBob"] == "lobby alice: hello from alice"
    assert result["newsSeenByAlice"] == "bob: bob's breaking news"
    screenshot = Path(settings["screenshot"])
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshot: {screenshot}")


def test_demo_answers_bad_requests_with_errors(demo_url, run_js):
    replies = run_js("""
        const chat = io(URL, {auth: {name: "carol"}});
        const news = io(URL + "/news");
        await once(chat, "connect");
        done({
          badRoom: await chat.emitWithAck("join", {not: "a room"}),
          notJoined: await chat.emitWithAck("message", {room: "lobby", text: "hi"}),
          joined: await chat.emitWithAck("join", "lobby"),
          empty: await chat.emitWithAck("message", {room: "lobby", text: "   "}),
          leaveOther: await chat.emitWithAck("leave", "elsewhere"),
          badNews: await news.emitWithAck("post", 42),
        });
    """, demo_url)
    assert "error" in replies["badRoom"]
    assert replies["notJoined"] == {"error": "join the room first"}
    assert replies["joined"] == {"room": "lobby", "members": 1, "rooms": ["lobby"]}
    assert "error" in replies["empty"]
    assert replies["leaveOther"] == {"error": "not in that room"}
    assert "error" in replies["badNews"]
