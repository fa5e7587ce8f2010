// Reconnect timing: exponential backoff with equal jitter, reset after a stable connection
// (docs/web-ui.md, "Reconnect").
import { test } from "node:test";
import assert from "node:assert/strict";

import { rig, sequence } from "./fake_socket.mjs";

const nominal = (n) => Math.min(15000, 500 * 2 ** n);
const retries = (of) => of("state").filter((s) => s.state === "reconnecting" && s.retryInMs != null);

test("each failed attempt waits a jittered delay in [d/2, d], d doubling up to 15 s", () => {
  // Pseudo-random but fixed jitter, including both ends of [0, 1).
  const jitter = [0, 0.999999, 0.37, 0.5, 0.91, 0.05, 0.73, 0, 0.999999, 0.2];
  const { client, Socket, clock, of } = rig({ random: sequence(...jitter) });
  client.start();
  for (let n = 0; n < jitter.length; n += 1) {
    Socket.last.serverClose(1006);
    const { retryInMs } = retries(of).at(-1);
    const d = nominal(n);
    assert.ok(retryInMs >= d / 2 && retryInMs <= d, `attempt ${n}: ${retryInMs} not in [${d / 2}, ${d}]`);
    assert.equal(retryInMs, Math.round(d / 2 + (jitter[n] * d) / 2), `attempt ${n}`);
    clock.advance(retryInMs);
  }
  assert.equal(Socket.instances.length, jitter.length + 1);
});

test("the delay is jittered: two tabs with different luck wait different times", () => {
  const low = rig({ random: () => 0 });
  const high = rig({ random: () => 0.99 });
  for (const r of [low, high]) {
    r.client.start();
    r.Socket.last.serverClose(1006);
  }
  assert.equal(retries(low.of)[0].retryInMs, 250);
  assert.equal(retries(high.of)[0].retryInMs, 498);
});

test("the next socket opens when the delay has passed, not before", () => {
  const { client, Socket, clock, of } = rig({ random: () => 0 });
  client.start();
  Socket.last.serverClose(1006);
  clock.advance(249);
  assert.equal(Socket.instances.length, 1);
  clock.advance(1);
  assert.equal(Socket.instances.length, 2);
  assert.equal(of("state").at(-1).state, "reconnecting");
});

test("a connection that lived 5 s resets the backoff, and it grows again afterwards", () => {
  const { client, Socket, clock, of } = rig({ random: () => 1 });
  client.start();
  for (let n = 0; n < 4; n += 1) {
    Socket.last.serverClose(1006);
    clock.advance(retries(of).at(-1).retryInMs);
  }
  assert.deepEqual(retries(of).map((s) => s.retryInMs), [500, 1000, 2000, 4000]);

  Socket.last.hello();
  clock.advance(5001);
  Socket.last.serverClose(1006);
  assert.equal(retries(of).at(-1).retryInMs, 500);
  clock.advance(500);
  Socket.last.serverClose(1006); // fails again before any hello
  assert.equal(retries(of).at(-1).retryInMs, 1000);
});

test("a connection that dropped soon after hello does not reset the backoff", () => {
  const { client, Socket, clock, of } = rig({ random: () => 1 });
  client.start();
  for (let n = 0; n < 3; n += 1) {
    Socket.last.serverClose(1006);
    clock.advance(retries(of).at(-1).retryInMs);
  }
  Socket.last.hello();
  clock.advance(4000);
  Socket.last.serverClose(1006);
  assert.equal(retries(of).at(-1).retryInMs, 4000);
});

test("states: connecting, connected, then reconnecting", () => {
  const { client, Socket, of } = rig();
  client.start();
  Socket.last.hello();
  Socket.last.serverClose(1006);
  assert.deepEqual(of("state").map((s) => s.state), ["connecting", "connected", "reconnecting"]);
  assert.equal(client.connected, false);
});

test("a silent socket is dropped after heartbeat + 10 s and replaced", () => {
  const { client, Socket, clock } = rig({ random: () => 0 });
  client.start();
  const first = Socket.last;
  first.hello({ heartbeat: 25 });
  clock.advance(25000); // 25 s of silence: within heartbeat + 10 s
  assert.equal(first.frames("ping").length, 1);
  first.receive({ type: "pong" });
  clock.advance(25000);
  assert.equal(first.frames("ping").length, 2, "an answered ping keeps the socket");
  assert.equal(first.closedWith, null);
  assert.equal(client.connected, true);
  clock.advance(25000); // 50 s since the pong
  assert.notEqual(first.closedWith, null, "dropped");
  assert.equal(first.frames("ping").length, 2);
  assert.equal(client.connected, false);
  clock.advance(250);
  assert.equal(Socket.instances.length, 2);
});
