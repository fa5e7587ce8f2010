// HeraldClient keeps the public API chat/static/herald/app.js uses.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { HeraldClient } from "../../realtime/static/herald/client.js";
import { rig } from "./fake_socket.mjs";

const APP = readFileSync(new URL("../../chat/static/herald/app.js", import.meta.url), "utf8")
  .replace(/\/\*[\s\S]*?\*\//g, "")
  .replace(/\/\/.*$/gm, "");

test("every client.<name> app.js uses exists on HeraldClient", () => {
  const used = new Set([...APP.matchAll(/(?<![\w./])client\.([A-Za-z_]\w*)/g)].map((m) => m[1]));
  assert.ok(used.has("sendMessage") && used.has("subscribe"), [...used].join(","));
  const { client } = rig();
  for (const name of used) assert.ok(name in client, `HeraldClient has no ${name}`);
});

test("every event app.js listens to is one the client emits", () => {
  const listened = new Set([...APP.matchAll(/client\.addEventListener\("([^"]+)"/g)].map((m) => m[1]));
  const emitted = [
    "state", "hello", "message", "send.failed", "notification", "notification.read", "typing",
    "presence", "room.read", "room.forbidden", "resumed",
    "message.updated", "message.deleted", "reaction", "member.joined", "member.left", "room.renamed",
    "room.joined", "room.updated", "room.left",
  ];
  for (const type of listened) assert.ok(emitted.includes(type), type);
  // the page also listens to every room feed and user frame, in a loop for the two message changes
  assert.match(APP, /\["message\.updated", "message\.deleted"\]/);
});

test("markRoomRead sends room.read and resolves with its ack", async () => {
  const { client, Socket } = rig();
  client.start();
  Socket.last.hello();
  const answer = client.markRoomRead(5, 9);
  const [frame] = Socket.last.frames("room.read");
  assert.deepEqual({ ...frame, ref: undefined }, { type: "room.read", room: 5, message_id: 9, ref: undefined });
  Socket.last.ack(frame, { room: 5, message_id: 9 });
  assert.equal((await answer).message_id, 9);
  assert.equal(client.user.username, "alice");
  assert.equal(client.state, "connected");
  assert.ok(client instanceof HeraldClient && client instanceof EventTarget);
});
