// One room as HeraldClient (client.js) follows it, over the shared Connection (connection.js).
// A room has its own life, separate from the socket's: it is subscribed, or being
// (re)subscribed, or not followed at all, and it keeps its own resume position, the highest
// message id received, so that every (re)connect asks for exactly what was missed:
// `subscribe {room, since}` (docs/protocol.md, "Gap-free resume"). The server may send a message
// twice around a reconnect (a replay racing a live frame, a send's ack and its broadcast), so
// the room remembers the ids it emitted.
//
// Sends live here too: a message waits in the room's outbox until the server acknowledges it,
// and is sent again after every reconnect with the same client_id, which the server stores
// once (docs/protocol.md, `message.send`).
//
// Events (CustomEvent, payload in `detail`):
//   state          {state}  unsubscribed | subscribing | subscribed
//   message        a message object of this room, once per id
//   send.failed    {clientId, room, code, detail}   the server refused a send
//   presence       {room, online, online_count}  the subscribe's ack
//   room.forbidden {room, detail}  not (or no longer) a member: the room was dropped

import { ERROR } from "./protocol.js";
import { BoundedSet, SEEN_LIMIT } from "./connection.js";

export const SUBSCRIPTION_STATE = Object.freeze({
  UNSUBSCRIBED: "unsubscribed",
  SUBSCRIBING: "subscribing",
  SUBSCRIBED: "subscribed",
});

export class Subscription extends EventTarget {
  /**
   * @param {number} room  the room id
   * @param {import("./connection.js").Connection} connection  the socket it rides on
   */
  constructor(room, connection) {
    super();
    this.room = room;
    this.state = SUBSCRIPTION_STATE.UNSUBSCRIBED;
    this.since = 0; // the highest message id received: where the next subscribe resumes
    this._connection = connection;
    this._seen = new BoundedSet(SEEN_LIMIT);
    this._outbox = new Map(); // client_id → {room, body, clientId}, until acknowledged
    this._typingSentAt = -Infinity;
  }

  get active() {
    return this.state !== SUBSCRIPTION_STATE.UNSUBSCRIBED;
  }

  _setState(state) {
    if (state === this.state) return;
    this.state = state;
    this._emit("state", { state });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // --- following the room ----------------------------------------------------------------------

  /** Follow the room from message `since` on (0: all of it); kept across reconnects. Already
   * followed: only raises the resume position. */
  subscribe(since = 0) {
    if (this.active) {
      if (since > this.since) this.since = since;
      return;
    }
    this.since = since;
    this._setState(SUBSCRIPTION_STATE.SUBSCRIBING);
    if (this._connection.connected) this._sendSubscribe();
  }

  /** Stop following the room. Returns whether it was followed. Unsent messages stay queued:
   * sending does not require a subscription. */
  unsubscribe() {
    if (!this.active) return false;
    this._setState(SUBSCRIPTION_STATE.UNSUBSCRIBED);
    this._connection.request({ type: "unsubscribe", room: this.room }).catch(() => {});
    return true;
  }

  /** The connection said hello: resubscribe from the resume position. */
  onConnected() {
    if (this.active) this._sendSubscribe();
  }

  /** The connection went away: the server forgot this socket's subscriptions. */
  onDisconnected() {
    if (this.state === SUBSCRIPTION_STATE.SUBSCRIBED) this._setState(SUBSCRIPTION_STATE.SUBSCRIBING);
  }

  _sendSubscribe() {
    this._connection
      .request({ type: "subscribe", room: this.room, since: this.since })
      .then((ack) => {
        if (this.state === SUBSCRIPTION_STATE.SUBSCRIBING) this._setState(SUBSCRIPTION_STATE.SUBSCRIBED);
        this._emit("presence", { room: this.room, online: ack.presence, online_count: ack.online_count });
      })
      .catch((error) => {
        if (error && error.code === ERROR.FORBIDDEN) this.forbid(error.detail);
      });
  }

  /** Not (or no longer) a member: the server already stopped sending the room; its unsent
   * messages can never be stored. */
  forbid(detail) {
    this._setState(SUBSCRIPTION_STATE.UNSUBSCRIBED);
    this._outbox.clear();
    this._emit("room.forbidden", { room: this.room, detail });
  }

  // --- messages --------------------------------------------------------------------------------

  /** A message of this room arrived (live, replayed, or in a send's ack): emit it unless it
   * was seen before. */
  deliver(message) {
    this._advance(message.id);
    if (this._seen.has(message.id)) return;
    this._seen.add(message.id);
    this._emit("message", message);
  }

  /** Record that the page already holds `message` (e.g. loaded over REST). */
  note(message) {
    this._seen.add(message.id);
    this._advance(message.id);
  }

  _advance(id) {
    if (this.active && id > this.since) this.since = id;
  }

  /** Queue a message under `clientId`; sent now when connected, else after the next hello. */
  send(body, clientId) {
    const item = { room: this.room, body, clientId };
    this._outbox.set(clientId, item);
    if (this._connection.connected) this._sendMessageFrame(item);
    return clientId;
  }

  /** The connection said hello (after every subscribe went out): retry unacknowledged sends. */
  resend() {
    for (const item of this._outbox.values()) this._sendMessageFrame(item);
  }

  get pending() {
    return this._outbox.size;
  }

  _sendMessageFrame(item) {
    this._connection
      .request({ type: "message.send", room: item.room, body: item.body, client_id: item.clientId })
      .then((ack) => {
        this._outbox.delete(item.clientId);
        this.deliver(ack.message);
      })
      .catch((error) => {
        if (!error || !error.code) return; // disconnected: the next hello resends it
        this._outbox.delete(item.clientId);
        this._emit("send.failed", { clientId: item.clientId, room: item.room, code: error.code, detail: error.detail });
      });
  }

  /** Tell the room's other members we are typing, at most once per `everyMs`. */
  typing(everyMs) {
    const now = this._connection.now();
    if (now - this._typingSentAt < everyMs) return;
    if (this._connection.send({ type: "typing", room: this.room })) this._typingSentAt = now;
  }
}
