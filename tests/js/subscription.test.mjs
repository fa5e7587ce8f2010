// A room's own state, separate from the socket's: unsubscribed, subscribing, subscribed.
import { test } from "node:test";
import assert from "node:assert/strict";

import { SUBSCRIPTION_STATE } from "../../realtime/static/herald/subscription.js";
import { flush, rig } from "./fake_socket.mjs";

const { UNSUBSCRIBED, SUBSCRIBING, SUBSCRIBED } = SUBSCRIPTION_STATE;

test("subscribing until acked, subscribed, subscribing again while reconnecting", async () => {
  const { client, Socket, clock, of } = rig({ random: () => 0 });
  const sub = client.subscription(5);
  assert.equal(sub.state, UNSUBSCRIBED);
  client.subscribe(5, 1);
  assert.equal(sub.state, SUBSCRIBING);
  client.start();
  Socket.last.hello();
  assert.equal(sub.state, SUBSCRIBING);
  Socket.last.ack(Socket.last.frames("subscribe")[0], { room: 5, presence: [1, 2], online_count: 2 });
  await flush();
  assert.equal(sub.state, SUBSCRIBED);
  assert.deepEqual(of("presence"), [{ room: 5, online: [1, 2], online_count: 2 }]);
  Socket.last.serverClose(1006);
  assert.equal(sub.state, SUBSCRIBING);
  clock.advance(250);
  Socket.last.hello();
  Socket.last.ack(Socket.last.frames("subscribe")[0], { room: 5, presence: [1] });
  await flush();
  assert.equal(sub.state, SUBSCRIBED);
});

test("unsubscribe sends one frame and the room is not resubscribed after a reconnect", () => {
  const { client, Socket, clock } = rig({ random: () => 0 });
  client.subscribe(5);
  client.start();
  Socket.last.hello();
  client.unsubscribe(5);
  client.unsubscribe(5);
  assert.deepEqual(Socket.last.frames("unsubscribe").map(({ ref, ...f }) => f), [{ type: "unsubscribe", room: 5 }]);
  assert.equal(client.subscription(5).state, UNSUBSCRIBED);
  Socket.last.serverClose(1006);
  clock.advance(250);
  Socket.last.hello();
  assert.equal(Socket.last.frames("subscribe").length, 0);
});

test("a refused subscribe drops the room: room.forbidden, no resubscribe, no unsubscribe frame", async () => {
  const { client, Socket, clock, of } = rig({ random: () => 0 });
  client.subscribe(5);
  client.start();
  Socket.last.hello();
  Socket.last.error(Socket.last.frames("subscribe")[0], "forbidden", "Not a member.");
  await flush();
  assert.deepEqual(of("room.forbidden"), [{ room: 5, detail: "Not a member." }]);
  assert.equal(client.subscription(5).state, UNSUBSCRIBED);
  client.unsubscribe(5); // what the page does on room.forbidden
  assert.equal(Socket.last.frames("unsubscribe").length, 0);
  Socket.last.serverClose(1006);
  clock.advance(250);
  Socket.last.hello();
  assert.equal(Socket.last.frames("subscribe").length, 0);
});

test("another error on a subscribe keeps the room", async () => {
  const { client, Socket, of } = rig();
  client.subscribe(5);
  client.start();
  Socket.last.hello();
  Socket.last.error(Socket.last.frames("subscribe")[0], "server_error");
  await flush();
  assert.deepEqual(of("room.forbidden"), []);
  assert.equal(client.subscription(5).state, SUBSCRIBING);
});
