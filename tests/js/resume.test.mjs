// Resuming after a reconnect: `resume {notifications_since}` then `subscribe {room, since}` with
// the highest contiguous seq of each room's feed (docs/protocol.md, "Resuming without gaps",
// "Gap-free resume").
import { test } from "node:test";
import assert from "node:assert/strict";

import { flush, rig } from "./fake_socket.mjs";

/** The frames a socket received, without their refs. */
const plain = (socket) => socket.sent.map(({ ref, ...frame }) => frame);

const message = (room, id, extra = {}) => ({ id, room, body: `m${id}`, author: { id: 2 }, ...extra });
/** A `message` frame of the room feed: message `id` created as change `seq`. */
const created = (room, id, seq) => ({ type: "message", room, seq, message: message(room, id) });
const notification = (id, seq) => ({ id, seq, title: `n${seq}` });

test("after a 1006 the client reconnects, resumes notifications and resubscribes from the highest seq applied", async () => {
  const { client, Socket, clock, of } = rig({ notificationsSince: 3, random: () => 0 });
  client.subscribe(5, 10);
  client.subscribe(6);
  client.start();
  const first = Socket.last;
  first.hello();
  assert.deepEqual(plain(first), [
    { type: "resume", notifications_since: 3 },
    { type: "subscribe", room: 5, since: 10 },
    { type: "subscribe", room: 6 }, // no position yet: only what comes next
  ]);
  for (const frame of first.frames("subscribe")) first.ack(frame, { room: frame.room, presence: [1], seq: frame.since ?? 0 });
  await flush();
  assert.equal(client.subscription(6).since, 0, "the ack's seq is where room 6 starts");
  first.ack(first.frames("resume")[0], { count: 0 });

  for (const [id, seq] of [[11, 11], [12, 12], [13, 13]]) first.receive(created(5, id, seq));
  first.receive(created(6, 40, 1));
  // seq 4 and 6 arrive, 5 is still in flight: the resume point stops at 4.
  first.receive({ type: "notification", notification: notification(104, 4) });
  first.receive({ type: "notification", notification: notification(106, 6) });

  first.serverClose(1006);
  clock.advance(250);
  assert.equal(Socket.instances.length, 2);
  const second = Socket.last;
  assert.deepEqual(second.sent, [], "nothing is sent before hello");
  second.hello();
  assert.deepEqual(plain(second), [
    { type: "resume", notifications_since: 4 },
    { type: "subscribe", room: 5, since: 13 },
    { type: "subscribe", room: 6, since: 1 },
  ]);
  second.ack(second.frames("resume")[0], { count: 2 });
  await flush();
  assert.deepEqual(of("resumed"), [{ count: 0 }, { count: 2 }]);
  assert.equal(of("hello").length, 2);
});

test("every reconnect resubscribes, even a room whose subscribe was never acknowledged", () => {
  const { client, Socket, clock } = rig({ random: () => 0 });
  client.subscribe(7, 70);
  client.start();
  for (let i = 0; i < 3; i += 1) {
    Socket.last.hello();
    assert.deepEqual(Socket.last.frames("subscribe").map(({ ref, ...f }) => f), [{ type: "subscribe", room: 7, since: 70 }]);
    Socket.last.serverClose(1006);
    clock.advance(10000);
  }
});

test("a filled hole moves the resume point over the whole contiguous run", () => {
  const { client, Socket, clock } = rig({ random: () => 0 });
  client.start();
  Socket.last.hello();
  for (const seq of [1, 3, 4, 2, 6]) Socket.last.receive({ type: "notification", notification: notification(100 + seq, seq) });
  assert.equal(client.notificationsSince, 4);
  Socket.last.serverClose(1006);
  clock.advance(250);
  Socket.last.hello();
  assert.equal(Socket.last.frames("resume")[0].notifications_since, 4);
});

test("notificationsSince only rises, and a subscribe while connected goes out at once", () => {
  const { client, Socket } = rig();
  client.notificationsSince = 9;
  client.notificationsSince = 2;
  assert.equal(client.notificationsSince, 9);
  client.start();
  Socket.last.hello();
  assert.equal(Socket.last.frames("resume")[0].notifications_since, 9);
  client.subscribe(8, 80);
  client.subscribe(8, 90); // already followed: only raises the resume point
  assert.deepEqual(Socket.last.frames("subscribe").map(({ ref, ...f }) => f), [{ type: "subscribe", room: 8, since: 80 }]);
  assert.equal(client.subscription(8).since, 90);
});

test("noteMessage (history over REST) dedupes the message but leaves the resume point alone", () => {
  const { client, Socket, of } = rig({ random: () => 0 });
  client.subscribe(5, 10);
  client.noteMessage(message(5, 25, { seq: 30 }));
  client.start();
  Socket.last.hello();
  assert.equal(Socket.last.frames("subscribe")[0].since, 10);
  Socket.last.receive(created(5, 25, 11));
  assert.deepEqual(of("message"), []);
  assert.equal(client.subscription(5).since, 11);
});
