// A send's ack and the room's resume position (docs/protocol.md, "Gap-free resume"; found by
// bench/chaos.py, docs/reliability.md "The combined-fault checker").
//
// While the channel layer is down (Redis restarting), sends are still stored and acknowledged,
// but nobody receives them live. A client whose own message is acknowledged meanwhile must not
// resume the room from that message's seq: the other members' changes before it were stored,
// never received, and only a replay from the last contiguous seq *received* brings them.
import { test } from "node:test";
import assert from "node:assert/strict";

import { flush, rig } from "./fake_socket.mjs";

const message = (room, id, clientId = "") => ({ id, room, seq: id, body: `m${id}`, client_id: clientId, author: { id: 1 } });

test(
  "an acknowledged send does not move the resume position past messages never received",
  async () => {
    const { client, Socket, clock } = rig({ random: () => 0 });
    client.subscribe(5, 10);
    client.start();
    const first = Socket.last;
    first.hello();
    first.ack(first.frames("subscribe")[0], { room: 5, seq: 10, presence: [1] });
    await flush();
    first.receive({ type: "message", room: 5, seq: 11, message: message(5, 11) });
    // Redis is down: 12..14 (other members) are stored but not pushed; our send is stored as 15.
    const clientId = client.sendMessage(5, "mine");
    first.ack(first.frames("message.send")[0], { message: message(5, 15, clientId) });
    await flush();

    first.serverClose(4503); // the layer came back: every socket is told to resume
    await flush();
    clock.advance(1000);
    Socket.last.hello();
    assert.equal(Socket.last.frames("subscribe")[0].since, 11);
  },
);
