// What the client does on each close code of docs/protocol.md ("Close codes"); the codes are
// the ones protocol.js exports.
import { test } from "node:test";
import assert from "node:assert/strict";

import { CLOSE } from "../../realtime/static/herald/protocol.js";
import { rig } from "./fake_socket.mjs";

const HOUR = 3600 * 1000;

test("4401 calls onUnauthenticated once and never reconnects", () => {
  let calls = 0;
  const { client, Socket, clock, of } = rig({ onUnauthenticated: () => (calls += 1) });
  client.start();
  Socket.last.hello();
  Socket.last.serverClose(CLOSE.UNAUTHENTICATED);
  assert.equal(calls, 1);
  assert.deepEqual(of("state").at(-1), { state: "stopped", code: 4401 });
  clock.advance(HOUR);
  assert.equal(Socket.instances.length, 1);
  assert.equal(calls, 1);
});

test("4403 stops without calling onUnauthenticated and never reconnects", () => {
  let calls = 0;
  const { client, Socket, clock, of } = rig({ onUnauthenticated: () => (calls += 1) });
  client.start();
  Socket.last.hello();
  Socket.last.serverClose(CLOSE.FORBIDDEN);
  assert.deepEqual(of("state").at(-1), { state: "stopped", code: 4403 });
  clock.advance(HOUR);
  assert.equal(Socket.instances.length, 1);
  assert.equal(calls, 0);
});

test("4429 waits the long backoff, 60 to 120 s, then reconnects", () => {
  const { client, Socket, clock, of } = rig({ random: () => 0.5 });
  client.start();
  Socket.last.hello();
  Socket.last.serverClose(CLOSE.RATE_LIMITED);
  const last = of("state").at(-1);
  assert.equal(last.state, "reconnecting");
  assert.equal(last.code, 4429);
  assert.equal(last.retryInMs, 90000);
  clock.advance(89999);
  assert.equal(Socket.instances.length, 1);
  clock.advance(1);
  assert.equal(Socket.instances.length, 2);
});

test("4429 stays within [60 s, 120 s] at both ends of the jitter", () => {
  for (const [random, expected] of [[0, 60000], [0.999999, 120000]]) {
    const { client, Socket, of } = rig({ random: () => random });
    client.start();
    Socket.last.serverClose(CLOSE.RATE_LIMITED);
    assert.equal(of("state").at(-1).retryInMs, expected);
  }
});

test("1006, 1011, 4413 and 4503 reconnect with the short backoff", () => {
  for (const code of [1006, 1011, CLOSE.TOO_LARGE, CLOSE.UNAVAILABLE]) {
    const { client, Socket, clock, of } = rig({ random: () => 1 });
    client.start();
    Socket.last.hello();
    Socket.last.serverClose(code);
    assert.deepEqual(of("state").at(-1), { state: "reconnecting", retryInMs: 500, code }, `code ${code}`);
    clock.advance(500);
    assert.equal(Socket.instances.length, 2, `code ${code}`);
  }
});

test("stop() closes with 1000, says stopped, and does not reconnect", () => {
  const { client, Socket, clock, of } = rig();
  client.start();
  Socket.last.hello();
  client.stop();
  assert.equal(Socket.last.closedWith, CLOSE.NORMAL);
  assert.equal(of("state").at(-1).state, "stopped");
  Socket.last.serverClose(1006); // a late close event of the old socket changes nothing
  clock.advance(HOUR);
  assert.equal(Socket.instances.length, 1);
});

test("offline: no socket while the browser is offline, one at once when it is back", () => {
  const network = new EventTarget();
  let online = false;
  const { client, Socket, of } = rig({ network, isOnline: () => online });
  client.start();
  assert.equal(Socket.instances.length, 0);
  assert.equal(of("state").at(-1).state, "offline");
  online = true;
  network.dispatchEvent(new Event("online"));
  assert.equal(Socket.instances.length, 1);
  Socket.last.hello();
  online = false;
  network.dispatchEvent(new Event("offline"));
  assert.equal(Socket.last.closedWith, CLOSE.NORMAL);
  assert.equal(of("state").at(-1).state, "offline");
});
