// Herald's WebSocket client: one socket per tab carrying notifications and every subscribed room
// (docs/protocol.md). No dependencies, no build step; usable by any page of the same origin.
//
//   import { HeraldClient } from "/static/herald/client.js";
//   const client = new HeraldClient({ onUnauthenticated: () => location.assign("/login/") });
//   client.addEventListener("message", (e) => show(e.detail));
//   client.subscribe(roomId, room.seq);   // the room's feed seq as loaded over REST
//   client.start();
//
// What it guarantees a page: it reconnects on its own (exponential backoff with jitter), resumes
// after every reconnect (`subscribe {since}` per room with the room feed's seq, `resume
// {notifications_since}`), applies each room's changes once and in order (refilling a hole in
// the feed's seq by resubscribing), never emits the same message or notification twice, retries unacknowledged sends with the same
// client_id (the server stores a client_id once), and reacts to the close codes of
// docs/protocol.md ("Close codes").
//
// It is split the way centrifuge-js is: connection.js owns the socket (backoff, heartbeat, rate
// limit, requests, close codes, the notification stream), subscription.js owns one room (its
// state, resume position, deduplication and unacknowledged sends), and this module ties them
// together behind one EventTarget, so a page listens in one place.
//
// Events (CustomEvent, payload in `detail`):
//   state            {state, retryInMs?}  connecting | connected | reconnecting | offline | stopped
//   hello            the hello frame (every (re)connect)
//   message          a message object, once per id (live, replayed, or from a send's ack)
//   message.updated, message.deleted  {room, seq, message}: the message after an edit, the
//                    tombstone after a deletion
//   reaction         {room, seq, message: id, emoji, user, action, reactions}
//   member.joined, member.left  {room, seq, user}; room.renamed {room, seq, name}
//   room.joined, room.updated   {room: the room object}: added to a room, a room renamed
//   room.left        {room: id}: removed from a room, or left it (the room was dropped)
//   send.failed      {clientId, room, code, detail}   the server refused a send
//   notification     a notification object, once per id
//   notification.read  the frame {ids | all, unread_count}
//   typing, presence, room.read   the frames as received
//   room.forbidden   {room, detail}  not (or no longer) a member: the room was dropped
//   resumed          {count}  the notification replay after a (re)connect is complete

import { ERROR } from "./protocol.js";
import { Connection } from "./connection.js";
import { Subscription } from "./subscription.js";

const TYPING_EVERY_MS = 2000; // the server forwards at most one per 2 s anyway

const CONNECTION_EVENTS = ["state", "hello", "notification", "notification.read", "resumed"];
// The room feed: frames that carry the room's `seq` (docs/protocol.md).
export const FEED_FRAMES = Object.freeze([
  "message", "message.updated", "message.deleted", "reaction", "member.joined", "member.left", "room.renamed",
]);
const SUBSCRIPTION_EVENTS = [...FEED_FRAMES, "send.failed", "presence", "room.forbidden"];
const FEED = new Set(FEED_FRAMES);
const ROOM_FRAMES = new Set(["presence", "typing", "room.read"]);
const USER_FRAMES = new Set(["room.joined", "room.updated", "room.left"]);

/** A random RFC 4122 v4 uuid; crypto.randomUUID exists only in secure contexts (not plain http
 * on a LAN), getRandomValues everywhere. */
export function uuid4() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export class HeraldClient extends EventTarget {
  /**
   * @param {object} options  passed to Connection (connection.js): `url`, `onUnauthenticated`,
   *   `notificationsSince`, and for tests `WebSocket`, `setTimeout`, `clearTimeout`, `random`,
   *   `now`, `isOnline`, `network`
   */
  constructor(options = {}) {
    super();
    this.connection = new Connection(options);
    // Room id → its Subscription. A room that was unsubscribed (or refused) keeps its object,
    // in state unsubscribed, so that its ids stay deduplicated and its sends stay queued.
    this._subs = new Map();

    for (const type of CONNECTION_EVENTS) {
      this.connection.addEventListener(type, (event) => this._emit(type, event.detail));
    }
    this.connection.addEventListener("state", ({ detail }) => {
      if (detail.state !== "connected") for (const sub of this._subs.values()) sub.onDisconnected();
    });
    // After the hello and the notification resume: the subscribes go first, so that a retried
    // send's message frame reaches a subscribed socket.
    this.connection.addEventListener("open", () => {
      for (const sub of this._subs.values()) sub.onConnected();
      for (const sub of this._subs.values()) sub.resend();
    });
    this.connection.addEventListener("frame", ({ detail }) => this._onFrame(detail));
  }

  // --- lifecycle ---------------------------------------------------------------------------

  start() {
    this.connection.start();
  }

  stop() {
    this.connection.stop();
  }

  get connected() {
    return this.connection.connected;
  }

  get state() {
    return this.connection.state;
  }

  get user() {
    return this.connection.user;
  }

  get url() {
    return this.connection.url;
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** Send a frame with a fresh `ref`; resolves with its ack, rejects with its error frame (or
   * an Error when the socket goes away first). */
  request(frame) {
    return this.connection.request(frame);
  }

  // --- rooms ---------------------------------------------------------------------------------

  /** The room's Subscription, created (unsubscribed) on first use. */
  subscription(room) {
    let sub = this._subs.get(room);
    if (!sub) {
      sub = new Subscription(room, this.connection);
      for (const type of SUBSCRIPTION_EVENTS) {
        sub.addEventListener(type, (event) => this._emit(type, event.detail));
      }
      this._subs.set(room, sub);
    }
    return sub;
  }

  _onFrame(frame) {
    if (FEED.has(frame.type)) {
      const room = frame.room ?? frame.message?.room;
      if (room != null) this.subscription(room).receive(frame);
    } else if (frame.type === "error") {
      // Removed from a room (no ref): the server already stopped sending it.
      if (frame.room != null && frame.code === ERROR.FORBIDDEN) this.subscription(frame.room).forbid(frame.detail);
    } else if (ROOM_FRAMES.has(frame.type) || USER_FRAMES.has(frame.type)) {
      this._emit(frame.type, frame);
    }
    // anything else: a frame of a later protocol version
  }

  /** Follow a room from its feed seq `since` on (the room's `seq` loaded over REST; null: only
   * what comes next); kept across reconnects. */
  subscribe(room, since = null) {
    this.subscription(room).subscribe(since);
  }

  unsubscribe(room) {
    this._subs.get(room)?.unsubscribe();
  }

  /** Record that the page holds `message` (e.g. loaded over REST): its `message` event will not
   * fire. */
  noteMessage(message) {
    this.subscription(message.room).note(message);
  }

  /** Send a message (a reply to message id `replyTo` when given): returns its client_id at
   * once. The message arrives as a `message` event (carrying that client_id) once stored; until
   * then it is retried after every reconnect. */
  sendMessage(room, body, { replyTo = null } = {}) {
    return this.subscription(room).send(body, uuid4(), replyTo);
  }

  /** Edit our message: resolves with the ack `{message}` (the message after the edit), rejects
   * with the error frame (`forbidden`, `not_found`, `invalid_message`) or when disconnected. */
  editMessage(room, message, body) {
    return this.request({ type: "message.edit", room, message, body });
  }

  /** Delete a message (ours, or any as the room's owner): resolves with `{message}`, the
   * tombstone. */
  deleteMessage(room, message) {
    return this.request({ type: "message.delete", room, message });
  }

  /** Add (`on` true) or remove our reaction `emoji`: resolves with `{message: id, reactions}`. */
  react(room, message, emoji, on = true) {
    return this.request({ type: on ? "reaction.add" : "reaction.remove", room, message, emoji });
  }

  /** Tell the room's other members we are typing; cheap to call on every keystroke. */
  typing(room) {
    this.subscription(room).typing(TYPING_EVERY_MS);
  }

  /** Move our read position in `room` to `messageId`; every tab of ours gets `room.read`. */
  markRoomRead(room, messageId) {
    return this.request({ type: "room.read", room, message_id: messageId });
  }

  // --- notifications ---------------------------------------------------------------------------

  /** Raise the resume point after loading notifications over REST (never lowers it). */
  set notificationsSince(seq) {
    this.connection.notificationsSince = seq;
  }

  get notificationsSince() {
    return this.connection.notificationsSince;
  }
}
