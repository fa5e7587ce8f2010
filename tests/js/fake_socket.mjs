// Test doubles for the browser client (realtime/static/herald/): a WebSocket the test plays the
// server of, and a clock whose timers run only when the test advances it. Both are injected
// through the client's constructor options, so nothing here patches a global.

import { HeraldClient } from "../../realtime/static/herald/client.js";

/** A new WebSocket class with its own list of instances (one per test). */
export function fakeWebSocketClass() {
  class FakeSocket {
    static CONNECTING = 0;
    static OPEN = 1;
    static CLOSING = 2;
    static CLOSED = 3;
    static instances = [];

    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.readyState = FakeSocket.CONNECTING;
      this.sent = []; // the frames the client sent, parsed
      this.closedWith = null; // the code of a client-side close()
      this.onmessage = this.onclose = this.onopen = this.onerror = null;
      FakeSocket.instances.push(this);
    }

    static get last() {
      return FakeSocket.instances[FakeSocket.instances.length - 1];
    }

    // --- the client's side -------------------------------------------------------------------

    send(data) {
      if (this.readyState !== FakeSocket.OPEN) throw new Error("InvalidStateError: not open");
      this.sent.push(JSON.parse(data));
    }

    close(code) {
      this.closedWith = code;
      this.readyState = FakeSocket.CLOSED;
    }

    // --- the server's side -------------------------------------------------------------------

    /** Open the socket and send hello, as the server does first on every connection. */
    hello(extra = {}) {
      this.readyState = FakeSocket.OPEN;
      this.onopen?.({});
      this.receive({ type: "hello", user: { id: 1, username: "alice" }, heartbeat: 25, ...extra });
    }

    receive(frame) {
      this.onmessage?.({ data: JSON.stringify(frame) });
    }

    /** Close from the server's (or the network's) side. */
    serverClose(code) {
      this.readyState = FakeSocket.CLOSED;
      this.onclose?.({ code });
    }

    /** The sent frames of `type`, in order. */
    frames(type) {
      return this.sent.filter((f) => f.type === type);
    }

    /** Answer the sent frame `frame` with an ack. */
    ack(frame, extra = {}) {
      this.receive({ type: "ack", ref: frame.ref, ...extra });
    }

    error(frame, code, detail = "") {
      this.receive({ type: "error", ref: frame.ref, code, detail });
    }
  }
  return FakeSocket;
}

/** setTimeout/clearTimeout and a `now` in ms that move only through advance(). */
export function fakeClock(start = 1_000_000) {
  let now = start;
  let nextId = 1;
  const timers = new Map(); // id → {at, fn}
  const clock = {
    now: () => now,
    setTimeout: (fn, ms = 0) => {
      const id = nextId++;
      timers.set(id, { at: now + Math.max(0, ms), fn, seq: id });
      return id;
    },
    clearTimeout: (id) => {
      timers.delete(id);
    },
    /** Run every timer due within `ms`, in time order, moving `now` along. */
    advance(ms) {
      const end = now + ms;
      for (;;) {
        let due = null;
        for (const [id, t] of timers) {
          if (t.at <= end && (!due || t.at < due[1].at || (t.at === due[1].at && t.seq < due[1].seq))) {
            due = [id, t];
          }
        }
        if (!due) break;
        timers.delete(due[0]);
        now = due[1].at;
        due[1].fn();
      }
      now = end;
    },
    get pending() {
      return timers.size;
    },
  };
  return clock;
}

/** A random() that returns `values` in turn (then repeats the last). */
export function sequence(...values) {
  let i = 0;
  return () => values[Math.min(i++, values.length - 1)];
}

/** Let promise callbacks (acks resolving requests) run. */
export const flush = () => new Promise((resolve) => setImmediate(resolve));

/**
 * A HeraldClient wired to a fake socket class and a fake clock, recording every event it emits.
 * Returns {client, Socket, clock, events, of(type)}.
 */
export function rig(options = {}) {
  const Socket = fakeWebSocketClass();
  const clock = fakeClock();
  const client = new HeraldClient({
    url: "ws://test/ws/",
    WebSocket: Socket,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    now: clock.now,
    random: () => 0.5,
    isOnline: () => true,
    network: null,
    onUnauthenticated: () => {},
    ...options,
  });
  const events = [];
  const types = [
    "state", "hello", "message", "send.failed", "notification", "notification.read", "typing",
    "presence", "room.read", "room.forbidden", "resumed",
  ];
  for (const type of types) client.addEventListener(type, (e) => events.push({ type, detail: e.detail }));
  const of = (type) => events.filter((e) => e.type === type).map((e) => e.detail);
  return { client, Socket, clock, events, of };
}
