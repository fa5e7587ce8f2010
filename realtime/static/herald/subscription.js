// One room as HeraldClient (client.js) follows it, over the shared Connection (connection.js).
// A room has its own life, separate from the socket's: it is subscribed, or being
// (re)subscribed, or not followed at all, and it keeps its own resume position, so that every
// (re)connect asks for exactly what was missed: `subscribe {room, since}` (docs/protocol.md,
// "Gap-free resume").
//
// The position is the room feed's `seq`: every change of the room (a message, an edit, a
// deletion, a reaction, a member joining or leaving, a rename) carries the room's next seq,
// 1, 2, 3… without gaps. The room remembers the highest seq up to which it applied every change
// (`since`). A frame at or below it is a duplicate (a replay racing a live frame) and is
// dropped; a frame beyond since + 1 means a change is missing: usually still on its way (two
// processes' publishes can cross in flight), so the frame waits; if the hole is still there
// after HOLE_GRACE_MS, the room resubscribes from `since`, whose replay fills it
// (docs/protocol.md, "Gap-free resume"). Changes reach the page in seq order, each once. A created message can also
// arrive in a send's ack, so `message` events stay deduplicated by message id as well.
//
// Sends live here too: a message waits in the room's outbox until the server acknowledges it,
// and is sent again after every reconnect with the same client_id, which the server stores
// once (docs/protocol.md, `message.send`).
//
// Events (CustomEvent, payload in `detail`):
//   state          {state}  unsubscribed | subscribing | subscribed
//   message        a message object of this room, once per id (created)
//   message.updated, message.deleted, reaction, member.joined, member.left, room.renamed
//                  the room feed's frames as received, once per seq, in seq order
//   send.failed    {clientId, room, code, detail}   the server refused a send
//   presence       {room, online, online_count}  the subscribe's ack
//   room.forbidden {room, detail}  not (or no longer) a member: the room was dropped

import { ERROR } from "./protocol.js";
import { BoundedSet, SEEN_LIMIT } from "./connection.js";

/** How long a hole in a room's feed may stay open before the room resubscribes to fill it. */
export const HOLE_GRACE_MS = 1000;

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
    // The room feed's seq up to which every change was applied: where the next subscribe
    // resumes. null: not known yet (the subscribe's ack tells the room's latest seq).
    this.since = null;
    this._ahead = new Map(); // seq → a frame received beyond a hole, until the hole is filled
    this._resyncing = false; // a subscribe to fill a hole is on its way
    this._holeTimer = null; // the grace period of an open hole
    // The latest subscribe's ack said the room's seq was this; its replay brings every change
    // up to it that still exists, in seq order. The highest seq of that replay received so far.
    this._replayedTo = null;
    this._replaySeen = -1;
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

  /** Follow the room from feed seq `since` on (the room's `seq` as loaded over REST; 0: every
   * change; null: only new ones); kept across reconnects. Already followed: only raises the
   * resume position. */
  subscribe(since = null) {
    if (this.active) {
      if (since != null && (this.since == null || since > this.since)) this._skipTo(since);
      return;
    }
    this.since = since;
    this._ahead.clear();
    this._stopHoleTimer();
    this._setState(SUBSCRIPTION_STATE.SUBSCRIBING);
    if (this._connection.connected) this._sendSubscribe();
  }

  /** Stop following the room. Returns whether it was followed. Unsent messages stay queued:
   * sending does not require a subscription. */
  unsubscribe() {
    if (!this.active) return false;
    this._stopHoleTimer();
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
    this._resyncing = false;
    this._stopHoleTimer(); // the resubscribe after the next hello covers the hole
    if (this.state === SUBSCRIPTION_STATE.SUBSCRIBED) this._setState(SUBSCRIPTION_STATE.SUBSCRIBING);
  }

  _sendSubscribe() {
    const frame = { type: "subscribe", room: this.room };
    if (this.since != null) frame.since = this.since;
    this._connection
      .request(frame)
      .then((ack) => {
        this._resyncing = false;
        if (Number.isInteger(ack.seq)) {
          this._replayedTo = ack.seq;
          this._replaySeen = -1;
        }
        // Without a resume position, the room's latest seq is where this socket starts. A
        // position beyond the room's latest (the server's data was restored from a backup)
        // would drop every coming change as a duplicate: start again from the room's latest.
        if (Number.isInteger(ack.seq) && (this.since == null || ack.seq < this.since)) {
          if (this.since != null) this._ahead.clear();
          this._skipTo(ack.seq);
        }
        // The replay follows the ack; should it leave a hole open, try again after the grace.
        if (this._ahead.size && this._holeTimer == null) {
          this._holeTimer = this._connection.later(() => this._fillHole(), HOLE_GRACE_MS);
        }
        if (this.state === SUBSCRIPTION_STATE.SUBSCRIBING) this._setState(SUBSCRIPTION_STATE.SUBSCRIBED);
        this._emit("presence", { room: this.room, online: ack.presence, online_count: ack.online_count });
      })
      .catch((error) => {
        this._resyncing = false;
        if (error && error.code === ERROR.FORBIDDEN) this.forbid(error.detail);
      });
  }

  /** Move the resume position to `seq` (the changes up to it are known another way), then apply
   * what waited beyond it. */
  _skipTo(seq) {
    this.since = seq;
    this._drain();
  }

  /** Not (or no longer) a member: the server already stopped sending the room; its unsent
   * messages can never be stored. */
  forbid(detail) {
    this._stopHoleTimer();
    this._setState(SUBSCRIPTION_STATE.UNSUBSCRIBED);
    this._outbox.clear();
    this._emit("room.forbidden", { room: this.room, detail });
  }

  // --- the room feed ---------------------------------------------------------------------------

  /** A frame of the room feed (`message`, `message.updated`, `message.deleted`, `reaction`,
   * `member.joined`, `member.left`, `room.renamed`; each with the room's `seq`), live or
   * replayed: applied once, in seq order. Returns whether it was applied now. */
  receive(frame) {
    if (!this.active) return false; // the server stops sending an unsubscribed room
    const seq = frame.seq;
    if (!Number.isInteger(seq)) {
      this._apply(frame);
      return true;
    }
    if (this.since == null) this.since = seq - 1; // before the ack: the first change seen
    // After a subscribe's ack, a change up to its seq can only come from the replay.
    if (this._replayedTo != null && seq <= this._replayedTo) {
      this._replaySeen = Math.max(this._replaySeen, seq);
    }
    if (seq <= this.since) return false; // a duplicate
    if (seq > this.since + 1) {
      // A hole: keep the frame; if the hole outlives the grace period, ask for everything
      // after the last contiguous change.
      this._ahead.set(seq, frame);
      if (this._holeTimer == null && !this._resyncing) {
        this._holeTimer = this._connection.later(() => this._fillHole(), HOLE_GRACE_MS);
      }
      return false;
    }
    this.since = seq;
    this._apply(frame);
    this._drain();
    return true;
  }

  _drain() {
    while (this._ahead.has(this.since + 1)) {
      this.since += 1;
      const next = this._ahead.get(this.since);
      this._ahead.delete(this.since);
      this._apply(next);
    }
    for (const seq of this._ahead.keys()) if (seq <= this.since) this._ahead.delete(seq);
    if (this._ahead.size === 0) this._stopHoleTimer();
  }

  _fillHole() {
    this._holeTimer = null;
    if (this._ahead.size === 0 || !this.active || !this._connection.connected) return;
    const next = Math.min(...this._ahead.keys());
    if (this._replaySeen >= next) {
      // The replay, in seq order, went past the hole without filling it: those changes no
      // longer exist (a message deleted outright, with its author's account). Asking again
      // would not help. (A replay still on its way has not gone past it: ask again.)
      this._skipTo(next - 1);
      return;
    }
    this._resyncing = true;
    this._sendSubscribe();
  }

  _stopHoleTimer() {
    if (this._holeTimer == null) return;
    this._connection.cancel(this._holeTimer);
    this._holeTimer = null;
  }

  _apply(frame) {
    if (frame.type === "message") this.deliver(frame.message);
    else this._emit(frame.type, frame);
  }

  // --- messages --------------------------------------------------------------------------------

  /** A created message of this room (from the feed, or in a send's ack): emit it unless it was
   * seen before. */
  deliver(message) {
    if (this._seen.has(message.id)) return;
    this._seen.add(message.id);
    this._emit("message", message);
  }

  /** Record that the page already holds `message` (e.g. loaded over REST). The resume position
   * does not move: only the feed's seq says which changes were applied. */
  note(message) {
    this._seen.add(message.id);
  }

  /** Queue a message under `clientId` (a reply to message `replyTo` when given); sent now when
   * connected, else after the next hello. */
  send(body, clientId, replyTo = null) {
    const item = { room: this.room, body, clientId, replyTo };
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
    const frame = { type: "message.send", room: item.room, body: item.body, client_id: item.clientId };
    if (item.replyTo != null) frame.reply_to = item.replyTo;
    this._connection
      .request(frame)
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
