// The send queue: a token bucket of 8 frames/s with a burst of 15, under the server's 10/s and
// 20 (docs/protocol.md, "Errors and limits").
import { test } from "node:test";
import assert from "node:assert/strict";

import { rig } from "./fake_socket.mjs";

test("frames beyond the burst wait for tokens, 8 per second, in order", () => {
  const { client, Socket, clock } = rig();
  client.start();
  const socket = Socket.last;
  socket.hello(); // the resume request takes the first token
  for (let i = 0; i < 40; i += 1) client.request({ type: "ping", n: i }).catch(() => {});
  assert.equal(socket.sent.length, 15);
  clock.advance(124);
  assert.equal(socket.sent.length, 15);
  clock.advance(1);
  assert.equal(socket.sent.length, 16);
  clock.advance(1000);
  assert.equal(socket.sent.length, 24);
  clock.advance(10000);
  assert.equal(socket.sent.length, 41);
  assert.deepEqual(socket.frames("ping").map((f) => f.n), Array.from({ length: 40 }, (_, i) => i));
});

test("the bucket refills to the burst and no further", () => {
  const { client, Socket, clock } = rig();
  client.start();
  const socket = Socket.last;
  socket.hello();
  clock.advance(20000); // idle: heartbeat not yet due (25 s)
  for (let i = 0; i < 30; i += 1) client.request({ type: "ping" }).catch(() => {});
  assert.equal(socket.frames("ping").length, 15);
});

test("nothing is queued while disconnected: requests reject at once", async () => {
  const { client, Socket } = rig();
  await assert.rejects(client.request({ type: "ping" }), /not connected/);
  client.start();
  await assert.rejects(client.request({ type: "ping" }), /not connected/);
  Socket.last.hello();
  assert.deepEqual(Socket.last.sent.map((f) => f.type), ["resume"]);
});

test("a queue left when the socket closes is dropped, and pending requests reject", async () => {
  const { client, Socket, clock } = rig({ random: () => 0 });
  client.start();
  const first = Socket.last;
  first.hello();
  const answers = Array.from({ length: 20 }, () => client.request({ type: "ping" }));
  first.serverClose(1006);
  for (const answer of answers) await assert.rejects(answer);
  clock.advance(250);
  Socket.last.hello();
  clock.advance(5000);
  assert.equal(Socket.last.frames("ping").length, 0);
  assert.equal(first.sent.length, 15);
});

test("typing goes out at most once per 2 s per room", () => {
  const { client, Socket, clock } = rig();
  client.start();
  Socket.last.hello();
  for (let i = 0; i < 10; i += 1) {
    client.typing(5);
    client.typing(6);
    clock.advance(100);
  }
  assert.deepEqual(Socket.last.frames("typing"), [{ type: "typing", room: 5 }, { type: "typing", room: 6 }]);
  clock.advance(1000);
  client.typing(5);
  assert.equal(Socket.last.frames("typing").length, 3);
});
