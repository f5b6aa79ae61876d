"""The real Socket.IO Admin UI (@socket.io/admin-ui 0.5.1's ui/dist, served by roomcast)
in Debian's headless Chromium, against a roomcast server with clients in rooms."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import roomcast

from test_demo_browser import CHROMIUM, CHROMIUM_FLAGS

UI_DIST = (Path(__file__).resolve().parents[1] / "js" / "node_modules" / "@socket.io" / "admin-ui"
           / "ui" / "dist")

CLIENTS = """
    const sockets = [["alice", "red"], ["bob", "red"], ["carol", "blue"]].map(([name, room]) =>
        io(URL, {forceNew: true, auth: {name, room}}));
    await Promise.all(sockets.map((s) => once(s, "connect")));
    log("clients up");
    await once(sockets[0], "stop");
    done(sockets.map((s) => s.id));
"""

BROWSER = """
const { chromium } = require("playwright-core");
const context = await chromium.launchPersistentContext(SETTINGS.userDataDir, {
  executablePath: SETTINGS.chromium, headless: true, args: SETTINGS.flags,
});
const pageErrors = [];
let result;
try {
  // this machine's server only: the page's web-font links elsewhere are refused
  await context.route((url) => !url.href.startsWith(URL), (route) => route.abort());
  const page = await context.newPage();
  page.on("pageerror", (err) => pageErrors.push(err.message));
  await page.goto(URL + "/");
  await page.getByLabel("Server URL").fill(URL);
  await page.getByLabel("Username").fill("admin");
  await page.getByLabel("Password").fill("s3cret");
  await page.getByRole("button", { name: "Connect" }).click();
  await page.getByText("Connection", { exact: true }).waitFor({ state: "hidden" });
  const go = (name) => page.locator("nav").getByText(name, { exact: true }).click();
  await go("Sockets");
  for (const id of SETTINGS.ids) await page.getByText(id).first().waitFor();
  const sockets = await page.locator("main").innerText();
  await page.screenshot({ path: SETTINGS.screenshots + "/sockets.png", fullPage: true });
  await go("Rooms");
  await page.getByText("blue", { exact: true }).first().waitFor();
  const rooms = await page.locator("main").innerText();
  await page.screenshot({ path: SETTINGS.screenshots + "/rooms.png", fullPage: true });
  await go("Servers");
  await page.getByText(SETTINGS.serverId).first().waitFor();
  const servers = await page.locator("main").innerText();
  await page.screenshot({ path: SETTINGS.screenshots + "/servers.png", fullPage: true });
  result = { sockets, rooms, servers, pageErrors };
} finally {
  await context.close();
}
done(result);
"""


def test_admin_ui_lists_the_clients_and_rooms(serve, start_js, run_js, tmp_path, wait_for):
    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing (scripts/test.sh installs it)"
    assert (UI_DIST / "index.html").is_file(), "run npm ci in tests/js (@socket.io/admin-ui)"
    io = roomcast.Server()

    @io.on("connection")
    def connection(socket):
        socket.join(socket.handshake["auth"]["room"])
        socket.data["name"] = socket.handshake["auth"]["name"]

    io.instrument(auth={"type": "basic", "username": "admin", "password": "s3cret"},
                  server_id="roomcast-under-test", server_stats_interval=0.5)
    url = serve(roomcast.WSGIApp(io, static_files={"/": str(UI_DIST)}))
    clients = start_js(CLIENTS, url, timeout=90)
    wait_for(lambda: len(io.sockets.sockets) == 3, "the three clients")
    ids = sorted(io.sockets.sockets)
    settings = {"chromium": CHROMIUM, "flags": CHROMIUM_FLAGS,
                "userDataDir": str(tmp_path / "profile"), "screenshots": str(tmp_path),
                "ids": ids, "serverId": "roomcast-under-test"}
    result = run_js(f"const SETTINGS = {json.dumps(settings)};\n{BROWSER}", url, timeout=60)
    io.emit("stop")
    assert sorted(clients.result()) == ids

    assert result["pageErrors"] == []
    for sid in ids:
        assert sid in result["sockets"]
    assert re.search(r"blue\s+PUBLIC\s+1\b", result["rooms"]), result["rooms"]   # room, members
    assert re.search(r"red\s+PUBLIC\s+2\b", result["rooms"]), result["rooms"]
    assert "roomcast-under-test" in result["servers"]
    for name in ("sockets.png", "rooms.png", "servers.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"screenshots: {tmp_path}")
