// Runs one test snippet against a roomcast server: node harness.js <snippet-file> <url>
//
// The snippet is the body of an async function that sees these names:
//   io        socket.io-client's io(), which remembers every socket it makes
//   URL       the server's base URL, e.g. "http://127.0.0.1:40123"
//   done(v)   report v to the Python test (printed as one JSON line) and exit 0
//   fail(m)   fail the Python test with message m
//   sleep(ms) a Promise resolved after ms milliseconds (pacing, or proving that
//             something does not happen; never to wait for a state: use until)
//   until(predicate, what, ms = 10000)  a Promise resolved once predicate() is true
//             (polled every 10 ms); rejects naming `what` after ms milliseconds
//   log(...)  console.error (stderr is shown when a test fails)
//   once(emitter, event)  a Promise of the event's arguments, as an array
//   require   resolves from tests/js/node_modules (socket.io, redis, ...)
// A snippet that returns a value other than undefined calls done() with it.
// Binary values (Buffer, ArrayBuffer, typed arrays) reach Python as bytes:
// they are written {"$bytes": "<base64>"}.
"use strict";

const fs = require("fs");
const { io: realIo, Manager } = require("socket.io-client");

const DONE_MARKER = "@@roomcast-done@@ ";
const FAIL_MARKER = "@@roomcast-fail@@ ";

const [snippetFile, url] = process.argv.slice(2);
if (!snippetFile || !url) {
  console.error("usage: node harness.js <snippet-file> <url>");
  process.exit(2);
}

// Everything the snippet opens with io() / new io.Manager(), so done() can close it
// and node exits without waiting for reconnection timers.
const sockets = new Set();
const managers = new Set();

function io(...args) {
  const socket = realIo(...args);
  sockets.add(socket);
  managers.add(socket.io);
  return socket;
}
Object.assign(io, require("socket.io-client"));
io.io = io;
io.connect = io;
io.Manager = class TrackedManager extends Manager {
  constructor(...args) {
    super(...args);
    managers.add(this);
  }
};

function toJSONValue(key, value) {
  if (value === undefined) return null;
  // JSON.stringify has already turned a Buffer into {type: "Buffer", data}: look at the original
  const original = this[key];
  if (Buffer.isBuffer(original)) return { $bytes: original.toString("base64") };
  if (original instanceof ArrayBuffer) return { $bytes: Buffer.from(original).toString("base64") };
  if (ArrayBuffer.isView(original)) {
    return { $bytes: Buffer.from(original.buffer, original.byteOffset, original.byteLength).toString("base64") };
  }
  return value;
}

let finished = false;

function closeEverything() {
  for (const socket of sockets) socket.disconnect();
  for (const manager of managers) manager.disconnect();
  // Anything else the snippet opened (servers, redis clients) must not keep node alive;
  // the timer is unref'd so a clean exit is not delayed by it.
  setTimeout(() => process.exit(process.exitCode || 0), 50).unref();
}

function done(value) {
  if (finished) return;
  finished = true;
  let line;
  try {
    line = JSON.stringify(value === undefined ? null : value, toJSONValue);
  } catch (err) {
    fail(`done() got a value JSON cannot hold: ${err.message}`, true);
    return;
  }
  // stdout is a pipe, and pipe writes are synchronous on Linux: the line is out before exit
  process.stdout.write(DONE_MARKER + line + "\n");
  process.exitCode = 0;
  closeEverything();
}

function fail(message, force = false) {
  if (finished && !force) return;
  finished = true;
  const text = message instanceof Error ? message.stack || String(message) : String(message);
  process.stdout.write(FAIL_MARKER + JSON.stringify(text) + "\n");
  process.exit(1);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function until(predicate, what = "the condition", ms = 10000) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() >= deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

function log(...args) {
  console.error(...args);
}

function once(emitter, event) {
  return new Promise((resolve) => emitter.once(event, (...args) => resolve(args)));
}

process.on("uncaughtException", (err) => fail(err));
process.on("unhandledRejection", (err) => fail(err));

const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
const body = fs.readFileSync(snippetFile, "utf8");
let snippet;
try {
  snippet = new AsyncFunction("io", "URL", "done", "fail", "sleep", "until", "log", "once", "require",
                              body);
} catch (err) {
  fail(`the snippet does not compile: ${err.stack}`);
}
snippet(io, url, done, fail, sleep, until, log, once, require).then(
  (value) => {
    if (value !== undefined) done(value);
  },
  (err) => fail(err),
);
