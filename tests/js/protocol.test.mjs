// The client's close codes and subprotocol come from protocol.js, the one place that defines
// them in the browser; and the modules load in Node (no window, document or location at import).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import * as protocol from "../../realtime/static/herald/protocol.js";
import { HeraldClient } from "../../realtime/static/herald/client.js";
import { fakeWebSocketClass } from "./fake_socket.mjs";

const DIR = new URL("../../realtime/static/herald/", import.meta.url);
const MODULES = ["client.js", "connection.js", "subscription.js"];
const source = (name) => readFileSync(new URL(name, DIR), "utf8");
/** The source without comments, so a comment citing a code does not count. */
const code = (name) => source(name).replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");

test("protocol.js exports the constants the client relies on", () => {
  assert.equal(protocol.SUBPROTOCOL, "herald.v1");
  assert.deepEqual(
    { ...protocol.CLOSE },
    { NORMAL: 1000, UNAUTHENTICATED: 4401, FORBIDDEN: 4403, TOO_LARGE: 4413, RATE_LIMITED: 4429, UNAVAILABLE: 4503 },
  );
  assert.equal(protocol.ERROR.FORBIDDEN, "forbidden");
});

test("no other module spells a close code or the subprotocol", () => {
  for (const name of MODULES) {
    const text = code(name);
    assert.doesNotMatch(text, /\b4\d{3}\b/, `${name} has a literal 4xxx close code`);
    assert.doesNotMatch(text, /herald\.v1/, `${name} spells the subprotocol`);
    assert.doesNotMatch(text, /\bCLOSE_[A-Z_]+\s*=/, `${name} defines a close code constant`);
  }
  assert.match(source("connection.js"), /import \{[^}]*\bCLOSE\b[^}]*\} from "\.\/protocol\.js"/);
});

test("comments cite docs/protocol.md, not internal references", () => {
  for (const name of [...MODULES, "protocol.js"]) {
    assert.doesNotMatch(source(name), /CONTRACT|issue \d|STYLE rule/i, name);
  }
});

test("no module reaches for browser globals at import or with injected options", () => {
  for (const name of MODULES) {
    assert.doesNotMatch(code(name), /\bwindow\b|\bdocument\b/, name);
  }
  // Node has no location, navigator or window: constructing with options must not need them.
  const Socket = fakeWebSocketClass();
  const client = new HeraldClient({ url: "ws://x/ws/", WebSocket: Socket, network: null, isOnline: () => true });
  client.start();
  assert.equal(Socket.last.url, "ws://x/ws/");
  client.stop();
});
