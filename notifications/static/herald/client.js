// Herald's WebSocket client: one socket per tab carrying notifications and every subscribed room
// (docs/protocol.md). No dependencies, no build step; usable by any page of the same origin.
//
//   import { HeraldClient } from "/static/herald/client.js";
//   const client = new HeraldClient({ onUnauthenticated: () => location.assign("/login/") });
//   client.addEventListener("message", (e) => show(e.detail));
//   client.subscribe(roomId, lastMessageIdIHave);
//   client.start();
//
// What it guarantees a page: it reconnects on its own (exponential backoff with jitter), resumes
// after every reconnect (`subscribe {since}` per room, `resume {notifications_since}`), never
// emits the same message or notification twice, retries unacknowledged sends with the same
// client_id (the server stores a client_id once), and reacts to the close codes of CONTRACT §3.3.
//
// Events (CustomEvent, payload in `detail`):
//   state            {state, retryInMs?}  connecting | connected | reconnecting | offline | stopped
//   hello            the hello frame (every (re)connect)
//   message          a message object, once per id (live, replayed, or from a send's ack)
//   send.failed      {clientId, room, code, detail}   the server refused a send
//   notification     a notification object, once per id
//   notification.read  the frame {ids | all, unread_count}
//   typing, presence, room.read   the frames as received
//   room.forbidden   {room, detail}  not (or no longer) a member: the room was dropped
//   resumed          {count}  the notification replay after a (re)connect is complete

const CLOSE_UNAUTHENTICATED = 4401;
const CLOSE_FORBIDDEN = 4403;
const CLOSE_RATE_LIMITED = 4429;

// Backoff: attempt n waits a random time in [d/2, d] with d = min(MAX, BASE * 2^n) ("equal
// jitter"), so a restarted server is not hit by every tab at the same instant, yet a tab never
// waits less than half the nominal delay.
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 15000;
const RATE_LIMITED_MS = 60000; // 4429: the server asked us to go away for a while
const STABLE_MS = 5000; // a connection that lived this long resets the backoff

// The server allows 20 frames at once and 10/s sustained, and closes with 4429 after repeated
// excess (docs/protocol.md, "Errors and limits"). Staying just under keeps, e.g., the
// subscribes of a user with many rooms from tripping it.
const RATE_PER_S = 8;
const BURST = 15;

const TYPING_EVERY_MS = 2000; // the server forwards at most one per 2 s anyway
const SEEN_LIMIT = 5000; // ids remembered for deduplication

/** A random RFC 4122 v4 uuid; crypto.randomUUID exists only in secure contexts (not plain http
 * on a LAN), getRandomValues everywhere. */
export function uuid4() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** A Set that forgets its oldest entries beyond `limit` (insertion order). */
class BoundedSet {
  constructor(limit) {
    this.limit = limit;
    this.items = new Set();
  }
  has(x) {
    return this.items.has(x);
  }
  add(x) {
    this.items.add(x);
    if (this.items.size > this.limit) this.items.delete(this.items.values().next().value);
  }
}

export class HeraldClient extends EventTarget {
  /**
   * @param {object} options
   * @param {string} [options.url]  the socket URL; default ws(s)://this host/ws/ (cookie auth)
   * @param {() => void} [options.onUnauthenticated]  called on close 4401 (default: reload,
   *   which lands a signed-out browser on the sign-in page)
   * @param {number} [options.notificationsSince]  the highest seq up to which the page holds
   *   every notification (e.g. from GET /api/notifications/)
   */
  constructor(options = {}) {
    super();
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    this.url = options.url || `${scheme}://${location.host}/ws/`;
    this.onUnauthenticated = options.onUnauthenticated || (() => location.reload());
    this.state = "idle";
    this.user = null;

    this._ws = null;
    this._attempt = 0;
    this._retryTimer = null;
    this._helloAt = 0;
    this._stopped = true;
    this._refCounter = 0;
    this._pendingRefs = new Map(); // ref → {resolve, reject}

    // Outgoing frames wait here for a rate-limit token; only while connected.
    this._queue = [];
    this._tokens = BURST;
    this._tokensAt = performance.now();
    this._drainTimer = null;

    // Room id → highest message id received: the `since` of the next subscribe.
    this._rooms = new Map();
    this._seenMessages = new BoundedSet(SEEN_LIMIT);
    // Sends not yet acknowledged, by client_id; resent after every reconnect.
    this._outbox = new Map();
    this._typingSentAt = new Map();

    // Notifications: every seq ≤ _notifBase is held; higher ones received are in _notifAhead.
    this._notifBase = options.notificationsSince || 0;
    this._notifAhead = new Set();
    this._seenNotifications = new BoundedSet(SEEN_LIMIT);

    this._heartbeatTimer = null;
    this._lastFrameAt = 0;

    this._onOnline = () => this._connectNow();
    this._onOffline = () => {
      // The network is gone: say so, and wait for the `online` event instead of spinning.
      if (this._ws) this._drop();
      this._setState("offline");
    };
  }

  // --- lifecycle ---------------------------------------------------------------------------

  start() {
    if (!this._stopped) return;
    this._stopped = false;
    addEventListener("online", this._onOnline);
    addEventListener("offline", this._onOffline);
    this._connect();
  }

  stop() {
    this._stopped = true;
    removeEventListener("online", this._onOnline);
    removeEventListener("offline", this._onOffline);
    clearTimeout(this._retryTimer);
    if (this._ws) this._drop(1000);
    this._setState("stopped");
  }

  get connected() {
    return this.state === "connected";
  }

  _setState(state, extra = {}) {
    this.state = state;
    this._emit("state", { state, ...extra });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _connect() {
    if (this._stopped) return;
    if (navigator.onLine === false) {
      this._setState("offline");
      return;
    }
    this._setState(this._attempt === 0 && !this._helloAt ? "connecting" : "reconnecting");
    const ws = new WebSocket(this.url);
    this._ws = ws;
    ws.onmessage = (event) => this._onFrame(event.data);
    ws.onclose = (event) => this._onClose(ws, event.code);
    // onerror is always followed by onclose, which decides what to do.
  }

  _connectNow() {
    if (this._stopped || (this._ws && this._ws.readyState <= WebSocket.OPEN)) return;
    clearTimeout(this._retryTimer);
    this._attempt = 0;
    this._connect();
  }

  /** Abandon the current socket without waiting for a closing handshake that may never come. */
  _drop(code = 4000) {
    const ws = this._ws;
    this._ws = null;
    ws.onmessage = ws.onclose = null;
    try {
      ws.close(code);
    } catch {
      // already closing
    }
    this._afterClose();
  }

  _afterClose() {
    clearInterval(this._heartbeatTimer);
    clearTimeout(this._drainTimer);
    this._drainTimer = null;
    this._queue = [];
    // Requests in flight will never be answered on this socket; sends stay in the outbox.
    for (const { reject } of this._pendingRefs.values()) reject(new Error("disconnected"));
    this._pendingRefs.clear();
  }

  _onClose(ws, code) {
    if (ws !== this._ws) return;
    this._ws = null;
    this._afterClose();
    if (this._stopped) return;
    if (code === CLOSE_UNAUTHENTICATED) {
      this._stopped = true;
      this._setState("stopped", { code });
      this.onUnauthenticated();
      return;
    }
    if (code === CLOSE_FORBIDDEN) {
      this._stopped = true;
      this._setState("stopped", { code });
      return;
    }
    if (this._helloAt && performance.now() - this._helloAt > STABLE_MS) this._attempt = 0;
    let delay;
    if (code === CLOSE_RATE_LIMITED) {
      delay = RATE_LIMITED_MS * (1 + Math.random());
    } else {
      const nominal = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** this._attempt);
      delay = nominal / 2 + (Math.random() * nominal) / 2;
    }
    this._attempt += 1;
    if (navigator.onLine === false) {
      this._setState("offline");
      return;
    }
    this._setState("reconnecting", { retryInMs: Math.round(delay), code });
    this._retryTimer = setTimeout(() => this._connect(), delay);
  }

  // --- incoming ----------------------------------------------------------------------------

  _onFrame(raw) {
    this._lastFrameAt = performance.now();
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      return;
    }
    switch (frame.type) {
      case "hello":
        return this._onHello(frame);
      case "ack":
        return this._settle(frame, "resolve");
      case "error":
        return this._onError(frame);
      case "message":
        return this._deliverMessage(frame.message);
      case "notification":
        return this._deliverNotification(frame.notification);
      case "presence":
      case "typing":
      case "room.read":
      case "notification.read":
        return this._emit(frame.type, frame);
      default:
        return undefined; // pong, auth.expiring (cookie sockets have none), future frames
    }
  }

  _onHello(frame) {
    this.user = frame.user;
    this._helloAt = performance.now();
    this._setState("connected");
    this._startHeartbeat(frame.heartbeat || 25);
    this._emit("hello", frame);
    // Resume everything, then retry what was never acknowledged. The subscribes go first so
    // that a retried send's message frame reaches a subscribed socket.
    this.request({ type: "resume", notifications_since: this._notifBase })
      .then((ack) => this._emit("resumed", { count: ack.count }))
      .catch(() => {});
    for (const [room, since] of this._rooms) this._sendSubscribe(room, since);
    for (const item of this._outbox.values()) this._sendMessageFrame(item);
  }

  _onError(frame) {
    if (frame.ref != null && this._pendingRefs.has(frame.ref)) {
      this._settle(frame, "reject");
    } else if (frame.room != null && frame.code === "forbidden") {
      // Removed from a room (no ref): the server already stopped sending it.
      this._forgetRoom(frame.room, frame.detail);
    }
  }

  _settle(frame, how) {
    const pending = this._pendingRefs.get(frame.ref);
    if (!pending) return;
    this._pendingRefs.delete(frame.ref);
    pending[how](frame);
  }

  _deliverMessage(message) {
    const since = this._rooms.get(message.room);
    if (since !== undefined && message.id > since) this._rooms.set(message.room, message.id);
    if (this._seenMessages.has(message.id)) return;
    this._seenMessages.add(message.id);
    this._emit("message", message);
  }

  _deliverNotification(notification) {
    const { id, seq } = notification;
    if (seq > this._notifBase) this._notifAhead.add(seq);
    // Advance only over a contiguous run: a seq pushed out of order leaves a hole that the
    // next resume must still cover (docs/protocol.md, "Resuming without gaps").
    while (this._notifAhead.has(this._notifBase + 1)) {
      this._notifBase += 1;
      this._notifAhead.delete(this._notifBase);
    }
    if (this._seenNotifications.has(id)) return;
    this._seenNotifications.add(id);
    this._emit("notification", notification);
  }

  /** The server sends nothing on a quiet socket but pings the browser handles invisibly, so a
   * dead network would go unnoticed: ping at the heartbeat, and drop the socket when nothing
   * at all came back within a further 10 s. */
  _startHeartbeat(seconds) {
    clearInterval(this._heartbeatTimer);
    const every = seconds * 1000;
    this._heartbeatTimer = setInterval(() => {
      if (performance.now() - this._lastFrameAt > every + 10000) {
        this._drop();
        this._onClose(null, 1006);
        return;
      }
      this._send({ type: "ping" });
    }, every);
  }

  // --- outgoing ----------------------------------------------------------------------------

  /** Queue a frame; sent when the rate-limit bucket has a token. Dropped when disconnected. */
  _send(frame) {
    if (!this._ws || this.state !== "connected") return false;
    this._queue.push(frame);
    this._drain();
    return true;
  }

  _drain() {
    const now = performance.now();
    this._tokens = Math.min(BURST, this._tokens + ((now - this._tokensAt) / 1000) * RATE_PER_S);
    this._tokensAt = now;
    while (this._queue.length && this._tokens >= 1 && this._ws) {
      this._tokens -= 1;
      this._ws.send(JSON.stringify(this._queue.shift()));
    }
    if (this._queue.length && !this._drainTimer) {
      this._drainTimer = setTimeout(() => {
        this._drainTimer = null;
        this._drain();
      }, 1000 / RATE_PER_S);
    }
  }

  /** Send a frame with a fresh `ref`; resolves with its ack, rejects with its error frame (or
   * an Error when the socket goes away first). */
  request(frame) {
    const ref = `r${++this._refCounter}`;
    return new Promise((resolve, reject) => {
      if (!this._send({ ...frame, ref })) {
        reject(new Error("not connected"));
        return;
      }
      this._pendingRefs.set(ref, { resolve, reject });
    });
  }

  // --- rooms ---------------------------------------------------------------------------------

  /** Follow a room from message `since` on (0: all of it); kept across reconnects. */
  subscribe(room, since = 0) {
    const known = this._rooms.get(room);
    if (known !== undefined) {
      if (since > known) this._rooms.set(room, since);
      return;
    }
    this._rooms.set(room, since);
    if (this.connected) this._sendSubscribe(room, since);
  }

  unsubscribe(room) {
    if (this._rooms.delete(room)) this.request({ type: "unsubscribe", room }).catch(() => {});
  }

  /** Record that the page holds messages of `room` up to `id` (e.g. loaded over REST). */
  noteMessage(message) {
    this._seenMessages.add(message.id);
    const since = this._rooms.get(message.room);
    if (since !== undefined && message.id > since) this._rooms.set(message.room, message.id);
  }

  _sendSubscribe(room, since) {
    this.request({ type: "subscribe", room, since })
      .then((ack) => this._emit("presence", { room, online: ack.presence }))
      .catch((error) => {
        if (error && error.code === "forbidden") this._forgetRoom(room, error.detail);
      });
  }

  _forgetRoom(room, detail) {
    this._rooms.delete(room);
    for (const [clientId, item] of this._outbox) {
      if (item.room === room) this._outbox.delete(clientId);
    }
    this._emit("room.forbidden", { room, detail });
  }

  /** Send a message: returns its client_id at once. The message arrives as a `message` event
   * (carrying that client_id) once stored; until then it is retried after every reconnect. */
  sendMessage(room, body) {
    const item = { room, body, clientId: uuid4() };
    this._outbox.set(item.clientId, item);
    if (this.connected) this._sendMessageFrame(item);
    return item.clientId;
  }

  _sendMessageFrame(item) {
    this.request({ type: "message.send", room: item.room, body: item.body, client_id: item.clientId })
      .then((ack) => {
        this._outbox.delete(item.clientId);
        this._deliverMessage(ack.message);
      })
      .catch((error) => {
        if (!error || !error.code) return; // disconnected: the next hello resends it
        this._outbox.delete(item.clientId);
        this._emit("send.failed", { clientId: item.clientId, room: item.room, code: error.code, detail: error.detail });
      });
  }

  /** Tell the room's other members we are typing; cheap to call on every keystroke. */
  typing(room) {
    const now = performance.now();
    if (now - (this._typingSentAt.get(room) || -Infinity) < TYPING_EVERY_MS) return;
    if (this._send({ type: "typing", room })) this._typingSentAt.set(room, now);
  }

  /** Move our read position in `room` to `messageId`; every tab of ours gets `room.read`. */
  markRoomRead(room, messageId) {
    return this.request({ type: "room.read", room, message_id: messageId });
  }

  // --- notifications ---------------------------------------------------------------------------

  /** Raise the resume point after loading notifications over REST (never lowers it). */
  set notificationsSince(seq) {
    if (seq > this._notifBase) {
      this._notifBase = seq;
      for (const s of this._notifAhead) if (s <= seq) this._notifAhead.delete(s);
    }
  }

  get notificationsSince() {
    return this._notifBase;
  }
}
