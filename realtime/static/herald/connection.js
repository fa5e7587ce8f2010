// The socket under HeraldClient (client.js): one WebSocket per tab, kept alive and resumed
// (docs/protocol.md). Everything here is about the connection itself: (re)connecting with
// backoff, the heartbeat, the rate-limited send queue, `ref`'d requests and their acks, the
// close codes, and the user's notification stream, which belongs to the connection rather than
// to a room. Rooms are subscription.js.
//
// Nothing here touches `window`, `document` or `location` at import time, and the socket class,
// timers, randomness and clock come from the constructor's options (browser globals by
// default), so tests/js/ can drive it with a fake socket and a fake clock.
//
// Events (CustomEvent, payload in `detail`):
//   state              {state, retryInMs?, code?}  connecting | connected | reconnecting | offline | stopped
//   hello              the hello frame (every (re)connect)
//   open               nothing; after the hello and the `resume` request: the moment to resubscribe
//   notification       a notification object, once per id
//   notification.read  the frame as received
//   resumed            {count}  the notification replay after a (re)connect is complete
//   frame              any other frame (message, presence, typing, room.read, an error without a
//                      pending ref): client.js routes it

import { CLOSE } from "./protocol.js";

// Backoff: attempt n waits a random time in [d/2, d] with d = min(MAX, BASE * 2^n) ("equal
// jitter"), so a restarted server is not hit by every tab at the same instant, yet a tab never
// waits less than half the nominal delay.
export const BACKOFF = Object.freeze({
  BASE_MS: 500,
  MAX_MS: 15000,
  RATE_LIMITED_MS: 60000, // the server asked us to go away for a while: wait 1-2 times this
  STABLE_MS: 5000, // a connection that lived this long resets the backoff
});

// The server allows 20 frames at once and 10/s sustained, and closes the socket after repeated
// excess (docs/protocol.md, "Errors and limits"). Staying just under keeps, e.g., the
// subscribes of a user with many rooms from tripping it.
export const RATE = Object.freeze({ PER_S: 8, BURST: 15 });

// The server pings at the heartbeat and drops a peer that misses two; we drop a socket that
// has been silent for a heartbeat plus this much.
const HEARTBEAT_GRACE_MS = 10000;

export const SEEN_LIMIT = 5000; // ids remembered for deduplication

/** The nominal-jittered delay of reconnect attempt `attempt` (0-based), in ms. */
export function backoffDelay(attempt, random = Math.random) {
  const nominal = Math.min(BACKOFF.MAX_MS, BACKOFF.BASE_MS * 2 ** attempt);
  return nominal / 2 + (random() * nominal) / 2;
}

/** A Set that forgets its oldest entries beyond `limit` (insertion order). */
export class BoundedSet {
  constructor(limit = SEEN_LIMIT) {
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

function defaultUrl() {
  const scheme = globalThis.location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${globalThis.location.host}/ws/`;
}

export class Connection extends EventTarget {
  /**
   * @param {object} options
   * @param {string} [options.url]  the socket URL; default ws(s)://this host/ws/ (cookie auth)
   * @param {() => void} [options.onUnauthenticated]  called on close 4401 (default: reload,
   *   which lands a signed-out browser on the sign-in page)
   * @param {number} [options.notificationsSince]  the highest seq up to which the page holds
   *   every notification (e.g. from GET /api/notifications/)
   * @param {Function} [options.WebSocket]  the socket class (default: the global one)
   * @param {Function} [options.setTimeout]  and `clearTimeout`: the timers (default: global)
   * @param {() => number} [options.random]  default Math.random (the backoff's jitter)
   * @param {() => number} [options.now]  milliseconds, default Date.now
   * @param {() => boolean} [options.isOnline]  default navigator.onLine when there is one
   * @param {EventTarget|null} [options.network]  where `online`/`offline` fire (default: the
   *   window in a browser, nothing elsewhere)
   */
  constructor(options = {}) {
    super();
    this.url = options.url || defaultUrl();
    this.onUnauthenticated = options.onUnauthenticated || (() => globalThis.location.reload());
    this.state = "idle";
    this.user = null;

    this._WebSocket = options.WebSocket || globalThis.WebSocket;
    this._setTimeout = options.setTimeout || ((fn, ms) => globalThis.setTimeout(fn, ms));
    this._clearTimeout = options.clearTimeout || ((id) => globalThis.clearTimeout(id));
    this._random = options.random || (() => Math.random());
    this._now = options.now || (() => Date.now());
    this._isOnline = options.isOnline || (() => globalThis.navigator?.onLine !== false);
    this._network =
      options.network !== undefined
        ? options.network
        : typeof globalThis.addEventListener === "function"
          ? globalThis
          : null;

    this._ws = null;
    this._attempt = 0;
    this._retryTimer = null;
    this._everConnected = false;
    this._helloAt = 0; // when the current socket said hello; 0 before that
    this._stopped = true;
    this._refCounter = 0;
    this._pendingRefs = new Map(); // ref → {resolve, reject}

    // Outgoing frames wait here for a rate-limit token; only while connected.
    this._queue = [];
    this._tokens = RATE.BURST;
    this._tokensAt = this._now();
    this._drainTimer = null;

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
    this._network?.addEventListener("online", this._onOnline);
    this._network?.addEventListener("offline", this._onOffline);
    this._connect();
  }

  stop() {
    this._stopped = true;
    this._network?.removeEventListener("online", this._onOnline);
    this._network?.removeEventListener("offline", this._onOffline);
    this._clearTimeout(this._retryTimer);
    if (this._ws) this._drop();
    this._setState("stopped");
  }

  get connected() {
    return this.state === "connected";
  }

  /** The injected clock, in ms. */
  now() {
    return this._now();
  }

  /** Run `fn` after `ms` on the injected timers; returns an id for `cancel`. */
  later(fn, ms) {
    return this._setTimeout(fn, ms);
  }

  cancel(id) {
    this._clearTimeout(id);
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
    if (!this._isOnline()) {
      this._setState("offline");
      return;
    }
    this._setState(this._attempt === 0 && !this._everConnected ? "connecting" : "reconnecting");
    const ws = new this._WebSocket(this.url);
    this._ws = ws;
    this._helloAt = 0;
    ws.onmessage = (event) => this._onFrame(event.data);
    ws.onclose = (event) => this._onClose(ws, event.code);
    // onerror is always followed by onclose, which decides what to do.
  }

  _connectNow() {
    // readyState 0 and 1 are CONNECTING and OPEN (the WebSocket standard).
    if (this._stopped || (this._ws && this._ws.readyState <= 1)) return;
    this._clearTimeout(this._retryTimer);
    this._attempt = 0;
    this._connect();
  }

  /** Abandon the current socket without waiting for a closing handshake that may never come. */
  _drop() {
    const ws = this._ws;
    this._ws = null;
    ws.onmessage = ws.onclose = null;
    try {
      ws.close(CLOSE.NORMAL);
    } catch {
      // already closing
    }
    this._afterClose();
  }

  _afterClose() {
    this._clearTimeout(this._heartbeatTimer);
    this._heartbeatTimer = null;
    this._clearTimeout(this._drainTimer);
    this._drainTimer = null;
    this._queue = [];
    // Requests in flight will never be answered on this socket; rooms resend what they need.
    for (const { reject } of this._pendingRefs.values()) reject(new Error("disconnected"));
    this._pendingRefs.clear();
  }

  _onClose(ws, code) {
    if (ws !== this._ws) return;
    this._ws = null;
    this._afterClose();
    this._reconnect(code);
  }

  /** After a close (code per docs/protocol.md, "Close codes"): stop, or retry after a delay. */
  _reconnect(code) {
    if (this._stopped) return;
    if (code === CLOSE.UNAUTHENTICATED) {
      this._stopped = true;
      this._setState("stopped", { code });
      this.onUnauthenticated();
      return;
    }
    if (code === CLOSE.FORBIDDEN) {
      this._stopped = true;
      this._setState("stopped", { code });
      return;
    }
    // Only a socket that said hello and then lived a while proves the server is healthy.
    if (this._helloAt && this._now() - this._helloAt > BACKOFF.STABLE_MS) this._attempt = 0;
    this._helloAt = 0;
    const delay =
      code === CLOSE.RATE_LIMITED
        ? BACKOFF.RATE_LIMITED_MS * (1 + this._random())
        : backoffDelay(this._attempt, this._random);
    this._attempt += 1;
    if (!this._isOnline()) {
      this._setState("offline");
      return;
    }
    this._setState("reconnecting", { retryInMs: Math.round(delay), code });
    this._retryTimer = this._setTimeout(() => this._connect(), delay);
  }

  // --- incoming ----------------------------------------------------------------------------

  _onFrame(raw) {
    this._lastFrameAt = this._now();
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      return;
    }
    if (frame === null || typeof frame !== "object") return;
    switch (frame.type) {
      case "hello":
        return this._onHello(frame);
      case "ack":
        return this._settle(frame, "resolve");
      case "error":
        if (frame.ref != null && this._pendingRefs.has(frame.ref)) return this._settle(frame, "reject");
        return this._emit("frame", frame);
      case "notification":
        return this._deliverNotification(frame.notification);
      case "notification.read":
        return this._emit(frame.type, frame);
      case "pong":
      case "auth.expiring": // cookie sockets have none; token refresh is the page's business
        return undefined;
      default:
        return this._emit("frame", frame);
    }
  }

  _onHello(frame) {
    this.user = frame.user;
    this._helloAt = this._now();
    this._everConnected = true;
    this._setState("connected");
    this._startHeartbeat(frame.heartbeat || 25);
    this._emit("hello", frame);
    // Resume the notifications, then let the rooms resubscribe and retry their sends
    // (docs/protocol.md, "Resuming without gaps" and "Gap-free resume").
    this.request({ type: "resume", notifications_since: this._notifBase })
      .then((ack) => this._emit("resumed", { count: ack.count }))
      .catch(() => {});
    this._emit("open", null);
  }

  _settle(frame, how) {
    const pending = this._pendingRefs.get(frame.ref);
    if (!pending) return;
    this._pendingRefs.delete(frame.ref);
    pending[how](frame);
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
    this._clearTimeout(this._heartbeatTimer);
    const every = seconds * 1000;
    const beat = () => {
      if (this._now() - this._lastFrameAt > every + HEARTBEAT_GRACE_MS) {
        this._drop();
        this._reconnect(undefined);
        return;
      }
      this.send({ type: "ping" });
      this._heartbeatTimer = this._setTimeout(beat, every);
    };
    this._heartbeatTimer = this._setTimeout(beat, every);
  }

  // --- outgoing ----------------------------------------------------------------------------

  /** Queue a frame; sent when the rate-limit bucket has a token. Dropped when disconnected. */
  send(frame) {
    if (!this._ws || this.state !== "connected") return false;
    this._queue.push(frame);
    this._drain();
    return true;
  }

  _drain() {
    const now = this._now();
    const elapsed = Math.max(0, now - this._tokensAt); // a wall clock may step back
    this._tokens = Math.min(RATE.BURST, this._tokens + (elapsed / 1000) * RATE.PER_S);
    this._tokensAt = now;
    while (this._queue.length && this._tokens >= 1 && this._ws) {
      this._tokens -= 1;
      this._ws.send(JSON.stringify(this._queue.shift()));
    }
    if (this._queue.length && !this._drainTimer) {
      this._drainTimer = this._setTimeout(() => {
        this._drainTimer = null;
        this._drain();
      }, 1000 / RATE.PER_S);
    }
  }

  /** Send a frame with a fresh `ref`; resolves with its ack, rejects with its error frame (or
   * an Error when the socket goes away first). */
  request(frame) {
    const ref = `r${++this._refCounter}`;
    return new Promise((resolve, reject) => {
      if (!this.send({ ...frame, ref })) {
        reject(new Error("not connected"));
        return;
      }
      this._pendingRefs.set(ref, { resolve, reject });
    });
  }

  // --- notifications -------------------------------------------------------------------------

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
