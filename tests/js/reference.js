// What the real Node packages make of JavaScript values: the expected bytes of
// roomcast's unit tests (tests/unit/conftest.py runs this once per session).
//   stdin:  {"<kind>": {"<case name>": "<JavaScript expression>"}}
//   stdout: {"<kind>": {"<case name>": <result>}}, Buffers as {"$bytes": base64}
// kinds:
//   sio           a socket.io-parser packet -> Encoder().encode(): [text, base64 attachments...]
//   eio_packet    an engine.io-parser packet -> encodePacket() text (no binary support)
//   eio_payload   engine.io-parser packets -> encodePayload() text
//   ws_frame      {opcode, length} -> hex of the first 14 bytes of ws Sender.frame() of
//                 `length` bytes "a" (an unmasked, final frame)
//   notepack      a value -> notepack.io encode() as hex
//   notepack_decode  hex -> notepack.io decode(), as JSON.stringify gives it (dates as
//                 their toJSON(), Buffers as {"$bytes"}, undefined as null)
//   json          a value -> what JSON.stringify makes of it, parsed back
"use strict";

const { Encoder } = require("socket.io-parser");
const eio = require("engine.io-parser");
const { Sender } = require("ws");
const notepack = require("notepack.io");

const toBase64 = (b) => Buffer.from(b).toString("base64");

const KINDS = {
  sio: (packet) => new Encoder().encode(packet).map((x) => (typeof x === "string" ? x : toBase64(x))),
  eio_packet: (packet) => new Promise((resolve) => eio.encodePacket(packet, false, resolve)),
  eio_payload: (packets) => new Promise((resolve) => eio.encodePayload(packets, resolve)),
  ws_frame: ({ opcode, length }) => Buffer.concat(Sender.frame(Buffer.alloc(length, "a"), {
    fin: true, rsv1: false, opcode, mask: false, readOnly: false,
  })).subarray(0, 14).toString("hex"),
  notepack: (value) => notepack.encode(value).toString("hex"),
  notepack_decode: (hex) => asJSON(notepack.decode(Buffer.from(hex, "hex"))),
  json: (value) => asJSON(value),
};

function asJSON(value) {
  return JSON.parse(JSON.stringify(value, function (key, v) {
    const original = this[key];
    if (Buffer.isBuffer(original) || original instanceof ArrayBuffer) return { $bytes: toBase64(original) };
    return v === undefined ? null : v;
  }));
}

function replacer(key, value) {
  const original = this[key];
  if (Buffer.isBuffer(original)) return { $bytes: toBase64(original) };
  return value;
}

async function main() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const request = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  const results = {};
  for (const [kind, cases] of Object.entries(request)) {
    if (!KINDS[kind]) throw new Error(`unknown kind ${kind}`);
    results[kind] = {};
    for (const [name, expression] of Object.entries(cases)) {
      let value;
      try {
        value = new Function(`return (${expression});`)();
      } catch (err) {
        throw new Error(`${kind} ${name}: ${expression}: ${err.message}`);
      }
      results[kind][name] = await KINDS[kind](value);
    }
  }
  process.stdout.write(JSON.stringify(results, replacer));
}

main().catch((err) => {
  console.error(err.stack || String(err));
  process.exit(1);
});
