// Messages and notifications are emitted once per id, however often the server sends them.
import { test } from "node:test";
import assert from "node:assert/strict";

import { rig } from "./fake_socket.mjs";

const message = (room, id) => ({ id, room, body: `m${id}`, author: { id: 2 } });

test("a message id is emitted once: live twice, then replayed after a reconnect", () => {
  const { client, Socket, clock, of } = rig({ random: () => 0 });
  client.subscribe(5, 0);
  client.start();
  Socket.last.hello();
  for (const id of [1, 2, 2, 1, 3]) Socket.last.receive({ type: "message", room: 5, message: message(5, id) });
  Socket.last.serverClose(1006);
  clock.advance(250);
  Socket.last.hello();
  for (const id of [2, 3, 4]) Socket.last.receive({ type: "message", room: 5, message: message(5, id) });
  assert.deepEqual(of("message").map((m) => m.id), [1, 2, 3, 4]);
  assert.deepEqual(of("message")[0], message(5, 1));
});

test("a message the page loaded over REST (noteMessage) is not emitted again", () => {
  const { client, Socket, of } = rig();
  client.subscribe(5, 0);
  client.noteMessage(message(5, 7));
  client.start();
  Socket.last.hello();
  for (const id of [7, 8]) Socket.last.receive({ type: "message", room: 5, message: message(5, id) });
  assert.deepEqual(of("message").map((m) => m.id), [8]);
});

test("rooms do not dedupe each other's ids away when the ids differ", () => {
  const { client, Socket, of } = rig();
  client.subscribe(5);
  client.subscribe(6);
  client.start();
  Socket.last.hello();
  Socket.last.receive({ type: "message", room: 5, message: message(5, 1) });
  Socket.last.receive({ type: "message", room: 6, message: message(6, 2) });
  Socket.last.receive({ type: "message", room: 6, message: message(6, 2) });
  assert.deepEqual(of("message").map((m) => [m.room, m.id]), [[5, 1], [6, 2]]);
});

test("a room unsubscribed and followed again still remembers its ids", () => {
  const { client, Socket, of } = rig();
  client.subscribe(5);
  client.start();
  Socket.last.hello();
  Socket.last.receive({ type: "message", room: 5, message: message(5, 1) });
  client.unsubscribe(5);
  client.subscribe(5, 0);
  Socket.last.receive({ type: "message", room: 5, message: message(5, 1) });
  Socket.last.receive({ type: "message", room: 5, message: message(5, 2) });
  assert.deepEqual(of("message").map((m) => m.id), [1, 2]);
});

test("a notification id is emitted once, also when the resume replays it", () => {
  const { client, Socket, clock, of } = rig({ random: () => 0 });
  client.start();
  Socket.last.hello();
  const n = (id, seq) => ({ type: "notification", notification: { id, seq, title: "t" } });
  Socket.last.receive(n(101, 1));
  Socket.last.receive(n(101, 1));
  Socket.last.receive(n(103, 3));
  Socket.last.serverClose(1006);
  clock.advance(250);
  Socket.last.hello();
  assert.equal(Socket.last.frames("resume")[0].notifications_since, 1);
  Socket.last.receive(n(102, 2));
  Socket.last.receive(n(103, 3));
  assert.deepEqual(of("notification").map((x) => x.id), [101, 103, 102]);
});

test("room frames and notification.read reach the page as received", () => {
  const { client, Socket, of } = rig();
  client.start();
  Socket.last.hello();
  const frames = [
    { type: "typing", room: 5, user: { id: 2, username: "bob" } },
    { type: "presence", room: 5, joined: 2 },
    { type: "room.read", room: 5, user: { id: 1, username: "alice" }, message_id: 9 },
    { type: "notification.read", ids: [1], unread_count: 0 },
    { type: "pong" },
    { type: "some.future.frame" },
  ];
  for (const f of frames) Socket.last.receive(f);
  assert.deepEqual(of("typing"), [frames[0]]);
  assert.deepEqual(of("presence"), [frames[1]]);
  assert.deepEqual(of("room.read"), [frames[2]]);
  assert.deepEqual(of("notification.read"), [frames[3]]);
});
