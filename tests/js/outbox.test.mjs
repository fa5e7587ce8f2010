// Sends: retried with the same client_id after every reconnect until acknowledged, and emitted
// once (docs/protocol.md, `message.send`).
import { test } from "node:test";
import assert from "node:assert/strict";

import { uuid4 } from "../../realtime/static/herald/client.js";
import { flush, rig } from "./fake_socket.mjs";

const stored = (room, id, clientId) => ({ id, room, body: "hi", client_id: clientId, author: { id: 1 } });

test("an unacknowledged send is retried after reconnect with the same client_id, and emitted once when acked", async () => {
  const { client, Socket, clock, of } = rig({ random: () => 0 });
  client.subscribe(5, 0);
  client.start();
  const first = Socket.last;
  first.hello();
  const clientId = client.sendMessage(5, "hi");
  assert.match(clientId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.deepEqual(first.frames("message.send").map(({ ref, ...f }) => f), [
    { type: "message.send", room: 5, body: "hi", client_id: clientId },
  ]);

  first.serverClose(1006); // no ack: the server may or may not have stored it
  await flush();
  clock.advance(250);
  const second = Socket.last;
  second.hello();
  // Subscribes go first, then the retry, with the original client_id.
  assert.deepEqual(second.sent.map((f) => f.type), ["resume", "subscribe", "message.send"]);
  const retry = second.frames("message.send")[0];
  assert.equal(retry.client_id, clientId);
  assert.equal(retry.body, "hi");

  second.ack(retry, { message: stored(5, 30, clientId) });
  await flush();
  second.receive({ type: "message", room: 5, message: stored(5, 30, clientId) }); // the broadcast copy
  assert.deepEqual(of("message").map((m) => [m.id, m.client_id]), [[30, clientId]]);

  second.serverClose(1006);
  await flush();
  clock.advance(500);
  Socket.last.hello();
  assert.equal(Socket.last.frames("message.send").length, 0, "an acknowledged send is not retried");
});

test("a send while disconnected waits for the hello, and goes out once", async () => {
  const { client, Socket, of } = rig();
  const clientId = client.sendMessage(9, "offline");
  client.start();
  assert.equal(Socket.last.sent.length, 0);
  Socket.last.hello();
  const sends = Socket.last.frames("message.send");
  assert.equal(sends.length, 1);
  assert.equal(sends[0].client_id, clientId);
  assert.equal(sends[0].room, 9);
  Socket.last.ack(sends[0], { message: stored(9, 3, clientId) });
  await flush();
  assert.deepEqual(of("message").map((m) => m.id), [3]);
});

test("a refused send is reported once and not retried", async () => {
  const { client, Socket, clock, of } = rig({ random: () => 0 });
  client.subscribe(5);
  client.start();
  Socket.last.hello();
  const clientId = client.sendMessage(5, "");
  Socket.last.error(Socket.last.frames("message.send")[0], "invalid_message", "Empty.");
  await flush();
  assert.deepEqual(of("send.failed"), [{ clientId, room: 5, code: "invalid_message", detail: "Empty." }]);
  Socket.last.serverClose(1006);
  clock.advance(250);
  Socket.last.hello();
  assert.equal(Socket.last.frames("message.send").length, 0);
});

test("being removed from a room drops its unsent messages", async () => {
  const { client, Socket, clock, of } = rig({ random: () => 0 });
  client.subscribe(5);
  client.start();
  Socket.last.hello();
  Socket.last.serverClose(1006);
  client.sendMessage(5, "later");
  clock.advance(250);
  Socket.last.receive({ type: "error", code: "forbidden", detail: "gone", ref: null, room: 5 });
  assert.deepEqual(of("room.forbidden"), [{ room: 5, detail: "gone" }]);
  Socket.last.hello();
  assert.deepEqual(Socket.last.sent.map((f) => f.type), ["resume"]);
});

test("uuid4 gives distinct v4 uuids", () => {
  const ids = new Set(Array.from({ length: 100 }, uuid4));
  assert.equal(ids.size, 100);
  for (const id of ids) assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
});
