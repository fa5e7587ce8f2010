// The room feed: every change of a room carries the room's seq (1, 2, 3… without gaps). The
// client applies each change once and in seq order, drops duplicates, and refills a hole that
// outlives HOLE_GRACE_MS by resubscribing from the highest contiguous seq (docs/protocol.md,
// "Gap-free resume").
import { test } from "node:test";
import assert from "node:assert/strict";

import { HOLE_GRACE_MS } from "../../realtime/static/herald/subscription.js";
import { flush, rig } from "./fake_socket.mjs";

const author = { id: 2, username: "bob" };
const msg = (room, id, extra = {}) => ({ id, room, body: `m${id}`, author, deleted: false, reactions: [], ...extra });
const created = (room, seq, id) => ({ type: "message", room, seq, message: msg(room, id) });
const edited = (room, seq, id, body) => ({
  type: "message.updated", room, seq, message: msg(room, id, { body, edited_at: "2026-12-01T10:00:00Z" }),
});
const deleted = (room, seq, id) => ({ type: "message.deleted", room, seq, message: msg(room, id, { body: "", deleted: true }) });
const reaction = (room, seq, id, emoji) => ({
  type: "reaction", room, seq, message: id, emoji, user: author, action: "added",
  reactions: [{ emoji, count: 1, users: [2] }],
});
const FEED = ["message", "message.updated", "message.deleted", "reaction", "member.joined", "member.left", "room.renamed"];

/** A connected client following room 5 from seq `since` (acknowledged), recording feed events
 * in the order the page sees them, as [type, seq or message id]. */
async function following(since) {
  const r = rig({ random: () => 0 });
  r.seen = [];
  for (const type of FEED) {
    r.client.addEventListener(type, ({ detail }) => r.seen.push([type, type === "message" ? detail.id : detail.seq]));
  }
  r.client.subscribe(5, since);
  r.client.start();
  r.Socket.last.hello();
  r.Socket.last.ack(r.Socket.last.frames("subscribe")[0], { room: 5, presence: [1], seq: since });
  await flush();
  return r;
}

test("each change is applied once: a replay racing the live frames changes nothing twice", async () => {
  const { client, Socket, seen } = await following(4);
  const frames = [created(5, 5, 50), edited(5, 6, 50, "fixed"), reaction(5, 7, 50, "👍")];
  for (const f of [...frames, frames[1], frames[0], frames[2]]) Socket.last.receive(f);
  Socket.last.receive(created(5, 3, 30)); // older than the resume point: already applied
  assert.deepEqual(seen, [["message", 50], ["message.updated", 6], ["reaction", 7]]);
  assert.equal(client.subscription(5).since, 7);
});

test("a hole that stays open resubscribes from the highest contiguous seq; the replay fills it in order", async () => {
  const { client, Socket, clock, seen } = await following(10);
  const socket = Socket.last;
  socket.receive(created(5, 11, 100));
  socket.receive(deleted(5, 13, 100)); // 12 went missing
  socket.receive(created(5, 14, 102)); // still waiting: one resubscribe is enough
  assert.deepEqual(seen, [["message", 100]], "nothing beyond the hole is applied yet");
  clock.advance(HOLE_GRACE_MS - 1);
  assert.equal(socket.frames("subscribe").length, 1, "12 may still be on its way");
  clock.advance(1);
  const resubscribes = socket.frames("subscribe").slice(1);
  assert.deepEqual(resubscribes.map(({ ref, ...f }) => f), [{ type: "subscribe", room: 5, since: 11 }]);

  socket.ack(resubscribes[0], { room: 5, presence: [1], seq: 14 });
  await flush();
  for (const f of [edited(5, 12, 100, "v2"), deleted(5, 13, 100), created(5, 14, 102)]) socket.receive(f);
  socket.receive(created(5, 15, 103)); // live again
  assert.deepEqual(seen, [
    ["message", 100], ["message.updated", 12], ["message.deleted", 13], ["message", 102], ["message", 103],
  ]);
  assert.equal(client.subscription(5).since, 15);
});

test("a change that no longer exists is skipped once a replay past it came without it", async () => {
  // Seq 12 was a message deleted outright (its author's account was deleted): no replay has it.
  const { client, Socket, clock, seen } = await following(10);
  const socket = Socket.last;
  socket.receive(created(5, 11, 100));
  socket.receive(created(5, 13, 102));
  clock.advance(HOLE_GRACE_MS);
  const resubscribes = socket.frames("subscribe").slice(1);
  assert.equal(resubscribes.length, 1);
  socket.ack(resubscribes[0], { room: 5, presence: [1], seq: 13 });
  await flush();
  socket.receive(created(5, 13, 102)); // the replay: 13, and no 12
  assert.deepEqual(seen, [["message", 100]], "still waiting: the replay may be on its way");
  clock.advance(HOLE_GRACE_MS);
  assert.equal(socket.frames("subscribe").length, 2, "no third subscribe: 12 is gone");
  assert.deepEqual(seen, [["message", 100], ["message", 102]]);
  assert.equal(client.subscription(5).since, 13);
  socket.receive(created(5, 14, 103)); // live again
  assert.equal(client.subscription(5).since, 14);
});

test("a hole whose replay is slow to come is asked for again, never skipped", async () => {
  const { client, Socket, clock, seen } = await following(10);
  const socket = Socket.last;
  socket.receive(created(5, 11, 100));
  socket.receive(created(5, 13, 102));
  clock.advance(HOLE_GRACE_MS);
  socket.ack(socket.frames("subscribe")[1], { room: 5, presence: [1], seq: 13 });
  await flush();
  clock.advance(HOLE_GRACE_MS); // the replay has not arrived yet
  assert.equal(socket.frames("subscribe").length, 3, "asked again");
  assert.equal(client.subscription(5).since, 11, "nothing skipped");
  socket.receive(created(5, 12, 101)); // the slow replay
  socket.receive(created(5, 13, 102));
  assert.deepEqual(seen, [["message", 100], ["message", 101], ["message", 102]]);
  assert.equal(client.subscription(5).since, 13);
});

test("frames that crossed in flight are applied in order, without a resubscribe", async () => {
  const { client, Socket, clock, seen } = await following(0);
  const socket = Socket.last;
  socket.receive(created(5, 2, 21)); // crossed in flight with seq 1
  clock.advance(HOLE_GRACE_MS / 2);
  socket.receive(created(5, 1, 20));
  assert.deepEqual(seen, [["message", 20], ["message", 21]]);
  assert.equal(client.subscription(5).since, 2);
  clock.advance(HOLE_GRACE_MS * 2);
  assert.equal(socket.frames("subscribe").length, 1, "the hole closed: nothing to ask for");
});

test("a late frame that fills the hole before the replay lands is applied at once, and the replay is ignored", async () => {
  const { client, Socket, clock, seen } = await following(0);
  const socket = Socket.last;
  socket.receive(created(5, 2, 21));
  clock.advance(HOLE_GRACE_MS);
  const [resubscribe] = socket.frames("subscribe").slice(1);
  assert.equal(resubscribe.since, 0);
  socket.receive(created(5, 1, 20)); // arrives after all, before the replay
  assert.deepEqual(seen, [["message", 20], ["message", 21]]);
  socket.ack(resubscribe, { room: 5, presence: [1], seq: 2 });
  await flush();
  socket.receive(created(5, 1, 20));
  socket.receive(created(5, 2, 21));
  assert.equal(seen.length, 2);
  assert.equal(client.subscription(5).since, 2);
});

test("a hole is covered by the resubscribe after a reconnect, not by a timer of the old socket", async () => {
  const { client, Socket, clock, seen } = await following(3);
  Socket.last.receive(created(5, 5, 50)); // 4 is missing
  Socket.last.serverClose(1006);
  clock.advance(HOLE_GRACE_MS + 250);
  const second = Socket.last;
  second.hello();
  assert.deepEqual(second.frames("subscribe").map(({ ref, ...f }) => f), [{ type: "subscribe", room: 5, since: 3 }]);
  second.ack(second.frames("subscribe")[0], { room: 5, presence: [1], seq: 5 });
  await flush();
  second.receive(created(5, 4, 40));
  second.receive(created(5, 5, 50));
  assert.deepEqual(seen, [["message", 40], ["message", 50]]);
  clock.advance(HOLE_GRACE_MS * 2);
  assert.equal(second.frames("subscribe").length, 1);
});

test("after a reconnect the room resumes from its seq, not from a message id", async () => {
  const { client, Socket, clock } = await following(7);
  Socket.last.receive(created(5, 8, 900));
  Socket.last.receive(reaction(5, 9, 900, "🎉"));
  Socket.last.serverClose(1006);
  clock.advance(250);
  Socket.last.hello();
  assert.deepEqual(Socket.last.frames("subscribe").map(({ ref, ...f }) => f), [{ type: "subscribe", room: 5, since: 9 }]);
  assert.equal(client.subscription(5).since, 9);
});

test("every kind of change reaches the page as its frame; user frames too", async () => {
  const r = await following(0);
  const events = {};
  const types = [...FEED.slice(1), "room.joined", "room.left", "room.updated"];
  for (const type of types) r.client.addEventListener(type, ({ detail }) => (events[type] = detail));
  const frames = [
    edited(5, 1, 9, "new"),
    deleted(5, 2, 9),
    reaction(5, 3, 9, "👍"),
    { type: "member.joined", room: 5, seq: 4, user: { id: 3, username: "carol" } },
    { type: "member.left", room: 5, seq: 5, user: { id: 3, username: "carol" } },
    { type: "room.renamed", room: 5, seq: 6, name: "lunch" },
    { type: "room.joined", room: { id: 8, name: "new", seq: 2, members: [] } },
    { type: "room.updated", room: { id: 8, name: "newer", seq: 3, members: [] } },
    { type: "room.left", room: 8 },
  ];
  for (const f of frames) r.Socket.last.receive(f);
  for (const f of frames) assert.deepEqual(events[f.type], f, f.type);
});

test("frames of a room that is not followed are ignored", async () => {
  const { client, Socket, seen } = await following(0);
  client.unsubscribe(5);
  Socket.last.receive(created(5, 1, 1));
  Socket.last.receive(created(6, 1, 2));
  assert.deepEqual(seen, []);
});

test("a subscribe without a position starts at the ack's seq", async () => {
  const { client, Socket } = rig();
  const seen = [];
  client.addEventListener("message", ({ detail }) => seen.push(detail.id));
  client.subscribe(5);
  client.start();
  Socket.last.hello();
  const [frame] = Socket.last.frames("subscribe");
  assert.equal("since" in frame, false);
  Socket.last.ack(frame, { room: 5, presence: [], seq: 41 });
  await flush();
  Socket.last.receive(created(5, 41, 1)); // older than the ack: not for this socket
  Socket.last.receive(created(5, 42, 2));
  assert.deepEqual(seen, [2]);
  assert.equal(client.subscription(5).since, 42);
});

test("a position beyond the room's latest seq falls back to the ack's, so new changes still show", async () => {
  const { client, Socket, clock, seen } = await following(50);
  Socket.last.serverClose(1006);
  clock.advance(250);
  Socket.last.hello();
  Socket.last.ack(Socket.last.frames("subscribe")[0], { room: 5, presence: [1], seq: 20 }); // restored from a backup
  await flush();
  Socket.last.receive(created(5, 21, 210));
  assert.deepEqual(seen, [["message", 210]]);
  assert.equal(client.subscription(5).since, 21);
});

test("edit, delete, react and reply send the agreed frames and resolve with their acks", async () => {
  const { client, Socket } = rig();
  client.start();
  Socket.last.hello();
  const strip = ({ ref, ...f }) => f;
  const edit = client.editMessage(5, 9, "better");
  const remove = client.deleteMessage(5, 9);
  const add = client.react(5, 9, "👍");
  const drop = client.react(5, 9, "👍", false);
  const clientId = client.sendMessage(5, "yes", { replyTo: 9 });
  const sent = Socket.last.sent.filter((f) => f.type !== "resume");
  assert.deepEqual(sent.map(strip), [
    { type: "message.edit", room: 5, message: 9, body: "better" },
    { type: "message.delete", room: 5, message: 9 },
    { type: "reaction.add", room: 5, message: 9, emoji: "👍" },
    { type: "reaction.remove", room: 5, message: 9, emoji: "👍" },
    { type: "message.send", room: 5, body: "yes", client_id: clientId, reply_to: 9 },
  ]);
  Socket.last.ack(sent[0], { message: msg(5, 9, { body: "better" }) });
  Socket.last.error(sent[1], "forbidden", "Not yours.");
  Socket.last.ack(sent[2], { message: 9, reactions: [{ emoji: "👍", count: 1, users: [1] }] });
  Socket.last.ack(sent[3], { message: 9, reactions: [] });
  assert.equal((await edit).message.body, "better");
  await assert.rejects(remove, (e) => e.code === "forbidden");
  assert.equal((await add).reactions[0].count, 1);
  assert.deepEqual((await drop).reactions, []);
});
