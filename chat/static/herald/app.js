// The chat page (templates/home.html): rooms, a room's history and composer, the notification
// bell, "Your devices". The socket lives in client.js; this module only keeps page state and
// draws it.
//
// Rule for every line below that shows data: user content goes into the DOM as text
// (textContent, text nodes), never as HTML. The page's Content-Security-Policy forbids inline
// scripts as a second line of defence.

import { HeraldClient } from "./client.js";
import { CLOSE } from "./protocol.js";

const config = JSON.parse(document.getElementById("herald-config").textContent);
const me = config.user;
const $ = (id) => document.getElementById(id);

// --- small helpers -------------------------------------------------------------------------------

/** Build an element. `props.class`, `props.text`, `props.attrs` (plain strings), `props.on`
 * (event handlers); string children become text nodes, so data can never become markup. */
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  if (props.class) el.className = props.class;
  if (props.text != null) el.textContent = props.text;
  for (const [k, v] of Object.entries(props.attrs || {})) if (v != null) el.setAttribute(k, String(v));
  for (const [k, v] of Object.entries(props.on || {})) el.addEventListener(k, v);
  for (const child of children) {
    if (child == null || child === false) continue;
    el.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return el;
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.detail) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
  }
}

function goToSignIn() {
  location.assign(`${config.loginUrl}?next=${encodeURIComponent(location.pathname)}`);
}

/** A same-origin JSON request with the session cookie; unsafe methods carry the CSRF token. */
async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRFToken"] = config.csrfToken;
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    goToSignIn();
    throw new ApiError(401, null);
  }
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
  month: "short",
  day: "numeric",
  hour: "2-digit",
  minute: "2-digit",
});

function formatTime(iso) {
  const date = new Date(iso);
  const today = new Date().toDateString() === date.toDateString();
  return (today ? timeFormat : dateTimeFormat).format(date);
}

function timeElement(iso) {
  return h("time", { text: formatTime(iso), attrs: { datetime: iso, title: new Date(iso).toLocaleString() } });
}

/** A coloured initial; the hue is derived from the user id so a person keeps their colour. */
function avatar(user) {
  const el = h("span", { class: "avatar", text: (user.username || "?").slice(0, 1).toUpperCase(), attrs: { "aria-hidden": "true" } });
  el.style.setProperty("--hue", String((user.id * 67) % 360));
  return el;
}

const isNarrow = () => matchMedia("(max-width: 720px)").matches;

// --- state ---------------------------------------------------------------------------------------

/** Room id → {room: the REST shape, messages: Map id → message, nextUrl, loaded, online: Set,
 * typing: Map user id → {username, until}} */
const rooms = new Map();
let currentRoomId = null;
const outbox = new Map(); // client_id → {room, body, failed?: detail}: our unconfirmed messages
const readSent = new Map(); // room id → highest message id we reported as read
const notifications = new Map(); // id → notification
let unreadNotifications = 0;

const client = new HeraldClient({ onUnauthenticated: goToSignIn });

// --- connection state ----------------------------------------------------------------------------

const STATE_LABELS = {
  idle: "Connecting…",
  connecting: "Connecting…",
  connected: "Connected",
  reconnecting: "Reconnecting…",
  offline: "Offline",
  stopped: "Offline",
};

client.addEventListener("state", ({ detail }) => {
  const el = $("conn");
  el.dataset.state = detail.state;
  let label = STATE_LABELS[detail.state] || detail.state;
  if (detail.state === "reconnecting" && detail.retryInMs > 1500) {
    label = `Reconnecting in ${Math.round(detail.retryInMs / 1000)} s…`;
  }
  if (detail.state === "stopped" && detail.code === CLOSE.FORBIDDEN) label = "Offline: access refused";
  el.textContent = label;
});

// --- rooms list ----------------------------------------------------------------------------------

function roomTitle(room) {
  if (room.kind === "direct") {
    const other = room.members.find((m) => m.id !== me.id);
    return other ? other.username : "(direct message)";
  }
  return room.name;
}

function roomActivity(room) {
  return (room.last_message && room.last_message.created_at) || room.created_at;
}

function addRoom(room) {
  const state = { room, messages: new Map(), nextUrl: null, loaded: false, online: new Set(), typing: new Map() };
  rooms.set(room.id, state);
  client.subscribe(room.id, room.last_message ? room.last_message.id : 0);
  return state;
}

/** Fetch the room list; new rooms are added and followed. Known rooms keep their live unread
 * counts: the server's count may already include messages the socket is about to replay. */
async function refreshRooms() {
  const list = await api("/api/rooms/");
  const ids = new Set();
  for (const room of list) {
    ids.add(room.id);
    const known = rooms.get(room.id);
    if (!known) addRoom(room);
    else Object.assign(known.room, { name: room.name, members: room.members });
  }
  for (const id of [...rooms.keys()]) {
    if (!ids.has(id)) dropRoom(id);
  }
  renderRoomList();
  if (currentRoomId != null) renderRoomHeader();
}

function dropRoom(id) {
  rooms.delete(id);
  client.unsubscribe(id);
  if (currentRoomId === id) location.hash = "#/";
  renderRoomList();
}

function renderRoomList() {
  const list = $("room-list");
  const sorted = [...rooms.values()].sort((a, b) => roomActivity(b.room).localeCompare(roomActivity(a.room)));
  list.replaceChildren(
    ...sorted.map(({ room }) => {
      const last = room.last_message;
      const unread = room.unread_count > 0;
      const link = h(
        "a",
        {
          class: `room-link${unread ? " has-unread" : ""}`,
          attrs: {
            href: `#/rooms/${room.id}`,
            "aria-current": room.id === currentRoomId ? "page" : null,
            "data-room": room.id,
          },
        },
        h("span", { class: "room-kind", text: room.kind === "direct" ? "@" : "#", attrs: { "aria-hidden": "true" } }),
        h("span", { class: "room-name", text: roomTitle(room) }),
        unread
          ? h("span", { class: "badge", text: String(room.unread_count), attrs: { "aria-label": `${room.unread_count} unread` } })
          : null,
        h("span", { class: "room-last", text: last ? `${last.author.username}: ${last.body}` : "No messages yet" }),
      );
      return h("li", {}, link);
    }),
  );
  $("rooms-empty").hidden = rooms.size > 0;
  updateTitle();
}

function updateTitle() {
  let total = unreadNotifications;
  for (const { room } of rooms.values()) total += room.unread_count || 0;
  document.title = total > 0 ? `(${total}) Herald` : "Herald";
}

// --- one room ------------------------------------------------------------------------------------

async function openRoom(id) {
  let state = rooms.get(id);
  if (!state) {
    await refreshRooms().catch(() => {});
    state = rooms.get(id);
  }
  if (!state) {
    location.hash = "#/";
    return;
  }
  currentRoomId = id;
  showView("room");
  renderRoomList();
  renderRoomHeader();
  renderMessages({ toBottom: true });
  renderTyping();
  $("composer-input").value = "";
  if (!isNarrow()) $("composer-input").focus();
  if (!state.loaded) await loadHistory(state);
  markRead();
}

async function loadHistory(state) {
  const roomId = state.room.id;
  try {
    const page = await api(`/api/rooms/${roomId}/messages/?page_size=50`);
    for (const m of page.results) addMessage(state, m);
    state.nextUrl = page.next;
    state.loaded = true;
    $("history-error").hidden = true;
  } catch {
    $("history-error").hidden = false;
    return;
  }
  if (currentRoomId === roomId) {
    renderMessages({ toBottom: true });
    fillViewport(state);
  }
}

/** Load older pages until the list can scroll, so "scroll up for more" is possible at all. */
async function fillViewport(state) {
  const list = $("messages");
  for (let i = 0; i < 5 && state.nextUrl && list.scrollHeight <= list.clientHeight; i++) {
    await loadOlder(state);
  }
}

async function loadOlder(state) {
  if (!state.nextUrl || state.loadingOlder) return;
  state.loadingOlder = true;
  $("older-status").textContent = "Loading older messages…";
  try {
    const page = await api(state.nextUrl);
    for (const m of page.results) addMessage(state, m);
    state.nextUrl = page.next;
  } catch {
    // Leave nextUrl: the next scroll retries.
  } finally {
    state.loadingOlder = false;
    $("older-status").textContent = "";
  }
  if (currentRoomId === state.room.id) {
    // Keep the message the reader was looking at in place while content grows above it.
    const list = $("messages");
    const fromBottom = list.scrollHeight - list.scrollTop;
    renderMessages();
    list.scrollTop = list.scrollHeight - fromBottom;
  }
}

function addMessage(state, message) {
  state.messages.set(message.id, message);
  client.noteMessage(message);
}

function renderRoomHeader() {
  const state = rooms.get(currentRoomId);
  if (!state) return;
  const { room } = state;
  $("room-title").textContent = `${room.kind === "direct" ? "@" : "#"} ${roomTitle(room)}`;
  $("composer-input").placeholder = `Message ${room.kind === "direct" ? "" : "#"}${roomTitle(room)}`;
  renderPresence();
}

function renderPresence() {
  const state = rooms.get(currentRoomId);
  if (!state) return;
  const members = [...state.room.members].sort(
    (a, b) => state.online.has(b.id) - state.online.has(a.id) || a.username.localeCompare(b.username),
  );
  $("presence-list").replaceChildren(
    ...members.map((m) => {
      const online = state.online.has(m.id);
      return h(
        "li",
        { class: online ? "online" : "offline", attrs: { "data-user": m.id } },
        h("span", { class: "dot", attrs: { "aria-hidden": "true" } }),
        m.username,
        h("span", { class: "sr-only", text: online ? " (online)" : " (offline)" }),
      );
    }),
  );
  $("presence-count").textContent = `${state.online.size} of ${members.length} online`;
}

function messageElement(message, { pending = false, failed = null } = {}) {
  const mine = message.author.id === me.id;
  const li = h(
    "li",
    {
      class: `msg${mine ? " mine" : ""}${pending ? " pending" : ""}${failed ? " failed" : ""}`,
      attrs: { "data-id": message.id, "data-client-id": message.client_id },
    },
    avatar(message.author),
    h(
      "div",
      { class: "msg-main" },
      h(
        "div",
        { class: "msg-meta" },
        h("span", { class: "author", text: message.author.username }),
        message.created_at ? timeElement(message.created_at) : null,
        pending ? h("span", { class: "msg-status", text: failed ? `Not sent: ${failed}` : "Sending…" }) : null,
      ),
      h("div", { class: "msg-body", text: message.body }),
    ),
  );
  return li;
}

function pendingElements(roomId) {
  const out = [];
  for (const [clientId, item] of outbox) {
    if (item.room !== roomId) continue;
    const fake = { id: "", client_id: clientId, author: me, body: item.body, created_at: null };
    out.push(messageElement(fake, { pending: true, failed: item.failed }));
  }
  return out;
}

/** Redraw the open room's messages, our unconfirmed ones last. */
function renderMessages({ toBottom = false } = {}) {
  const state = rooms.get(currentRoomId);
  if (!state) return;
  const list = $("messages");
  const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  const sorted = [...state.messages.values()].sort((a, b) => a.id - b.id);
  $("message-list").replaceChildren(...sorted.map((m) => messageElement(m)), ...pendingElements(state.room.id));
  $("room-empty").hidden = sorted.length > 0 || !state.loaded;
  $("history-start").hidden = !(state.loaded && !state.nextUrl && sorted.length > 0);
  if (toBottom || nearBottom) list.scrollTop = list.scrollHeight;
}

function renderTyping() {
  const state = rooms.get(currentRoomId);
  const now = Date.now();
  const names = state ? [...state.typing.values()].filter((t) => t.until > now).map((t) => t.username) : [];
  $("typing").textContent =
    names.length === 0 ? "" : names.length === 1 ? `${names[0]} is typing…` : `${names.join(", ")} are typing…`;
}

/** Report the newest message of the open room as read, when someone can actually see it. */
function markRead() {
  const state = rooms.get(currentRoomId);
  if (!state || document.visibilityState !== "visible" || !client.connected) return;
  const last = state.room.last_message;
  if (!last || last.id <= (readSent.get(state.room.id) || 0)) return;
  readSent.set(state.room.id, last.id);
  state.room.unread_count = 0;
  renderRoomList();
  client.markRoomRead(state.room.id, last.id).catch(() => readSent.delete(state.room.id));
}

// --- live room events ----------------------------------------------------------------------------

client.addEventListener("message", ({ detail: message }) => {
  const state = rooms.get(message.room);
  if (!state) {
    refreshRooms().catch(() => {}); // a room we were just added to
    return;
  }
  if (message.author.id === me.id) outbox.delete(message.client_id);
  addMessage(state, message);
  state.typing.delete(message.author.id);
  const { room } = state;
  if (!room.last_message || message.id > room.last_message.id) {
    room.last_message = message;
    const seen = currentRoomId === room.id && document.visibilityState === "visible";
    if (message.author.id !== me.id && !seen) room.unread_count = (room.unread_count || 0) + 1;
  }
  renderRoomList();
  if (currentRoomId === room.id) {
    renderMessages({ toBottom: message.author.id === me.id });
    renderTyping();
    markRead();
  }
});

client.addEventListener("send.failed", ({ detail }) => {
  const item = outbox.get(detail.clientId);
  if (item) item.failed = detail.detail || detail.code;
  if (currentRoomId === detail.room) renderMessages();
});

client.addEventListener("typing", ({ detail }) => {
  const state = rooms.get(detail.room);
  if (!state || detail.user.id === me.id) return;
  state.typing.set(detail.user.id, { username: detail.user.username, until: Date.now() + 4000 });
  if (currentRoomId === detail.room) {
    renderTyping();
    setTimeout(renderTyping, 4100);
  }
});

client.addEventListener("presence", ({ detail }) => {
  const state = rooms.get(detail.room);
  if (!state) return;
  // `online` (after subscribe) replaces the set; `joined` and `left` (one window's changes,
  // docs/protocol.md "Presence") are applied as set operations.
  if (detail.online) state.online = new Set(detail.online);
  for (const id of detail.joined || []) state.online.add(id);
  for (const id of detail.left || []) state.online.delete(id);
  if (currentRoomId === detail.room) renderPresence();
});

client.addEventListener("room.read", ({ detail }) => {
  const state = rooms.get(detail.room);
  if (!state || detail.user.id !== me.id) return;
  // Another tab of ours read the room: its unread count is ours too.
  const last = state.room.last_message;
  if (last && detail.message_id >= last.id) state.room.unread_count = 0;
  readSent.set(detail.room, Math.max(readSent.get(detail.room) || 0, detail.message_id));
  renderRoomList();
});

client.addEventListener("room.forbidden", ({ detail }) => dropRoom(detail.room));

// --- composer ------------------------------------------------------------------------------------

function send() {
  const input = $("composer-input");
  const body = input.value.trim();
  if (!body || currentRoomId == null) return;
  if ([...body].length > 4000) {
    $("composer-error").textContent = "A message holds at most 4000 characters.";
    return;
  }
  $("composer-error").textContent = "";
  const clientId = client.sendMessage(currentRoomId, body);
  outbox.set(clientId, { room: currentRoomId, body });
  input.value = "";
  autosize(input);
  renderMessages({ toBottom: true });
}

function autosize(textarea) {
  textarea.style.height = "auto";
  textarea.style.height = `${Math.min(textarea.scrollHeight, 160)}px`;
}

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  send();
});

$("composer-input").addEventListener("keydown", (event) => {
  // Enter sends, Shift+Enter is a newline; an IME composition's Enter belongs to the IME.
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    send();
  }
});

$("composer-input").addEventListener("input", (event) => {
  autosize(event.target);
  if (currentRoomId != null && event.target.value.trim()) client.typing(currentRoomId);
});

$("messages").addEventListener("scroll", () => {
  const state = rooms.get(currentRoomId);
  if (state && $("messages").scrollTop < 120) loadOlder(state);
});

// --- direct messages -----------------------------------------------------------------------------

let searchTimer = null;
let searchSeq = 0;

async function searchUsers() {
  const query = $("dm-query").value.trim();
  const mine = ++searchSeq;
  const results = $("dm-results");
  if (!query) {
    results.replaceChildren();
    return;
  }
  let users;
  try {
    users = await api(`/api/users/?q=${encodeURIComponent(query)}`);
  } catch {
    return;
  }
  if (mine !== searchSeq) return; // an older answer arriving late
  results.replaceChildren(
    ...(users.length
      ? users.map((user) =>
          h(
            "li",
            {},
            h(
              "button",
              { class: "dm-result", attrs: { type: "button", "data-user": user.id }, on: { click: () => startDirect(user.id) } },
              avatar(user),
              h("span", { text: user.display_name }),
              user.display_name !== user.username ? h("span", { class: "muted", text: ` @${user.username}` }) : null,
            ),
          ),
        )
      : [h("li", { class: "muted", text: "Nobody found." })]),
  );
}

async function startDirect(userId) {
  const room = await api("/api/rooms/", { method: "POST", body: { direct_with: userId } });
  if (!rooms.has(room.id)) addRoom(room);
  $("dm-query").value = "";
  $("dm-results").replaceChildren();
  renderRoomList();
  location.hash = `#/rooms/${room.id}`;
}

$("dm-query").addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(searchUsers, 200);
});

$("dm-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const first = $("dm-results").querySelector("button");
  if (first) first.click();
});

// --- notifications -------------------------------------------------------------------------------

function renderBell() {
  const badge = $("bell-count");
  badge.textContent = String(unreadNotifications);
  badge.hidden = unreadNotifications === 0;
  $("bell-button").setAttribute(
    "aria-label",
    unreadNotifications ? `Notifications, ${unreadNotifications} unread` : "Notifications",
  );
  const sorted = [...notifications.values()].sort((a, b) => b.seq - a.seq);
  $("notif-list").replaceChildren(
    ...sorted.map((n) =>
      h(
        "li",
        { class: `notif${n.read_at ? "" : " unread"}`, attrs: { "data-id": n.id } },
        h(
          "div",
          { class: "notif-main" },
          h("div", { class: "notif-title", text: n.title }),
          n.body ? h("div", { class: "notif-body", text: n.body }) : null,
          timeElement(n.created_at),
        ),
        n.read_at
          ? null
          : h("button", {
              class: "link-button mark-read",
              text: "Mark read",
              attrs: { type: "button", "aria-label": `Mark "${n.title}" read` },
              on: { click: () => markNotificationRead(n.id) },
            }),
      ),
    ),
  );
  $("notif-empty").hidden = notifications.size > 0;
  $("read-all").disabled = unreadNotifications === 0;
  updateTitle();
}

async function markNotificationRead(id) {
  const answer = await api(`/api/notifications/${id}/read/`, { method: "POST" });
  const n = notifications.get(id);
  if (n && !n.read_at) n.read_at = new Date().toISOString();
  unreadNotifications = answer.unread_count;
  renderBell();
}

$("read-all").addEventListener("click", async () => {
  const answer = await api("/api/notifications/read-all/", { method: "POST" });
  for (const n of notifications.values()) n.read_at ||= new Date().toISOString();
  unreadNotifications = answer.unread_count;
  renderBell();
});

client.addEventListener("notification", ({ detail: n }) => {
  notifications.set(n.id, n);
  if (!n.read_at) unreadNotifications += 1;
  renderBell();
  const bell = $("bell-button");
  bell.classList.remove("ring");
  void bell.offsetWidth; // restart the animation
  bell.classList.add("ring");
});

client.addEventListener("notification.read", ({ detail }) => {
  const now = new Date().toISOString();
  for (const n of notifications.values()) {
    if (detail.all || (detail.ids || []).includes(n.id)) n.read_at ||= now;
  }
  unreadNotifications = detail.unread_count;
  renderBell();
});

// After a (re)connect's replay the server's count is the truth; live frames only adjust it.
client.addEventListener("resumed", async () => {
  try {
    unreadNotifications = (await api("/api/notifications/unread-count/")).unread_count;
    renderBell();
  } catch {
    // keep the live count
  }
});

function setBellOpen(open) {
  $("bell-panel").hidden = !open;
  $("bell-button").setAttribute("aria-expanded", String(open));
}

$("bell-button").addEventListener("click", () => setBellOpen($("bell-panel").hidden));
document.addEventListener("click", (event) => {
  if (!$("bell").contains(event.target)) setBellOpen(false);
});
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && !$("bell-panel").hidden) {
    setBellOpen(false);
    $("bell-button").focus();
  }
});

// --- your devices --------------------------------------------------------------------------------

/** "Chrome on Linux" from a user agent string; the full string stays in the tooltip. */
function describeAgent(ua) {
  if (!ua) return "Unknown client";
  const browser =
    [
      ["Edg/", "Edge"],
      ["Firefox/", "Firefox"],
      ["Chrome/", "Chrome"],
      ["Safari/", "Safari"],
      ["python-httpx", "httpx"],
      ["curl/", "curl"],
    ].find(([needle]) => ua.includes(needle))?.[1] || ua.split(/[ /]/)[0];
  const os = [
    ["Android", "Android"],
    ["iPhone", "iOS"],
    ["Windows", "Windows"],
    ["Mac OS", "macOS"],
    ["Linux", "Linux"],
  ].find(([needle]) => ua.includes(needle))?.[1];
  return os ? `${browser} on ${os}` : browser;
}

async function loadDevices() {
  const list = $("device-list");
  let sessions;
  try {
    sessions = await api("/api/auth/sessions/");
  } catch {
    list.replaceChildren(h("li", { class: "muted", text: "Could not load your devices." }));
    return;
  }
  list.replaceChildren(
    ...sessions.map((s) =>
      h(
        "li",
        { class: `device${s.current ? " current" : ""}`, attrs: { "data-session": s.id } },
        h(
          "div",
          { class: "device-main" },
          h(
            "div",
            { class: "device-name" },
            h("span", { text: describeAgent(s.user_agent), attrs: { title: s.user_agent } }),
            h("span", { class: "tag", text: s.kind === "web" ? "Browser" : "API" }),
            s.current ? h("span", { class: "tag tag-current", text: "This device" }) : null,
          ),
          h(
            "div",
            { class: "device-meta muted" },
            `${s.ip || "unknown address"} · signed in `,
            timeElement(s.created_at),
            " · last active ",
            timeElement(s.last_seen_at || s.created_at),
          ),
        ),
        h("button", {
          class: "button-danger revoke",
          text: s.current ? "Sign out" : "Revoke",
          attrs: { type: "button", "aria-label": s.current ? "Sign out this device" : `Revoke ${describeAgent(s.user_agent)}, ${s.ip || ""}` },
          on: { click: () => revokeSession(s.id) },
        }),
      ),
    ),
  );
}

async function revokeSession(id) {
  await api(`/api/auth/sessions/${id}/`, { method: "DELETE" });
  // Revoking this very session closes our socket with 4401, which leads to the sign-in page.
  loadDevices();
}

// --- views and routing ---------------------------------------------------------------------------

function showView(name) {
  document.body.dataset.view = name;
  for (const view of ["home", "room", "devices"]) $(`view-${view}`).hidden = view !== name;
}

function route() {
  const match = location.hash.match(/^#\/rooms\/(\d+)$/);
  setBellOpen(false);
  if (match) {
    openRoom(Number(match[1]));
    return;
  }
  currentRoomId = null;
  renderRoomList();
  if (location.hash === "#/devices") {
    showView("devices");
    loadDevices();
  } else {
    showView("home");
  }
}

addEventListener("hashchange", route);

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") markRead();
});

// --- start ---------------------------------------------------------------------------------------

let helloCount = 0;
let startFailed = false;
client.addEventListener("hello", () => {
  // After a reconnect, rooms we were added to meanwhile are picked up (no frame announces
  // them), and a history that failed to load while we were offline is fetched again.
  if (helloCount++ > 0 || startFailed) {
    startFailed = false;
    $("load-error").hidden = true;
    refreshRooms().catch(() => {});
  }
  const state = rooms.get(currentRoomId);
  if (state && !state.loaded) loadHistory(state);
  markRead();
});
setInterval(() => refreshRooms().catch(() => {}), 60000);

async function start() {
  try {
    // Notifications first: their newest seq is where the socket's `resume` starts.
    const page = await api("/api/notifications/?page_size=20");
    for (const n of page.results) notifications.set(n.id, n);
    client.notificationsSince = page.results.reduce((max, n) => Math.max(max, n.seq), 0);
    unreadNotifications = (await api("/api/notifications/unread-count/")).unread_count;
    renderBell();
    await refreshRooms();
  } catch (error) {
    if (error.status === 401) return;
    startFailed = true;
    $("load-error").hidden = false;
  }
  client.start();
  route();
}

start();
