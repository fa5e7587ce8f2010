// The chat page (templates/home.html): rooms (creating and managing them), a room's history and
// composer (edit, delete, reactions, replies, mentions), message search, the notification bell,
// "Your devices". The socket lives in client.js; this module only keeps page state and
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

/** Room id → {room: the REST shape, messages: Map id → message, nextUrl (older page), loaded,
 * newerUrl and gapAfter (a hole after message gapAfter, after a jump into older history),
 * online: Set, typing: Map user id → {username, until}} */
const rooms = new Map();
let currentRoomId = null;
const outbox = new Map(); // client_id → {room, body, replyTo, failed?: detail}: our unconfirmed messages
const readSent = new Map(); // room id → highest message id we reported as read
const notifications = new Map(); // id → notification
let unreadNotifications = 0;
// What the open room shows besides its messages: the reply being written ({id, author,
// excerpt}), the message being edited inline ({id, draft, error}), the message whose reaction
// picker or delete confirmation is open, the message just jumped to.
const ui = { replyTo: null, editing: null, pickerFor: null, confirmDelete: null, highlight: null };

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

/** Follow a room from its feed `seq` as the server gave it (the room list, `room.joined`), so
 * that the socket replays every change after it. */
function addRoom(room) {
  const state = {
    room,
    messages: new Map(),
    nextUrl: null,
    newerUrl: null,
    gapAfter: null,
    loaded: false,
    online: new Set(),
    typing: new Map(),
  };
  rooms.set(room.id, state);
  client.subscribe(room.id, Number.isInteger(room.seq) ? room.seq : null);
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
  if (!rooms.delete(id)) return;
  client.unsubscribe(id);
  if (currentRoomId === id) {
    if ($("room-dialog").open) $("room-dialog").close();
    location.hash = "#/";
  }
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
        h("span", {
          class: "room-last",
          text: last ? `${last.author.username}: ${last.deleted ? "message deleted" : last.body}` : "No messages yet",
        }),
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

function isOwner(room, userId = me.id) {
  return room.kind === "group" && room.members.some((m) => m.id === userId && m.role === "owner");
}

/** A user id → the username, from the room's members ("someone" for a former member). */
function usernameOf(state, userId) {
  if (userId === me.id) return me.username;
  const member = state.room.members.find((m) => m.id === userId);
  return member ? member.username : "someone";
}

/** The start of a body, as the server quotes a replied-to message: at most 100 characters. */
function excerpt(body) {
  const chars = [...body];
  return chars.length > 100 ? chars.slice(0, 100).join("") : body;
}

async function openRoom(id, at = null) {
  let state = rooms.get(id);
  if (!state) {
    await refreshRooms().catch(() => {});
    state = rooms.get(id);
  }
  if (!state) {
    location.hash = "#/";
    return;
  }
  if (currentRoomId !== id) {
    elements.clear();
    ui.editing = ui.pickerFor = ui.confirmDelete = ui.highlight = null;
    cancelReply();
    $("composer-input").value = "";
    $("composer-error").textContent = "";
  }
  currentRoomId = id;
  showView("room");
  renderRoomList();
  renderRoomHeader();
  renderMessages({ toBottom: true });
  renderTyping();
  if (!isNarrow() && at == null) $("composer-input").focus();
  if (!state.loaded) await loadHistory(state);
  if (at != null && currentRoomId === id) await jumpTo(state, at);
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
    await fillViewport(state);
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

/** Load the history around message `id` (a search result, a mention, a reply's parent older
 * than what is loaded): the page up to it and the page after it (`before` / `after`). When the
 * page after it does not reach the loaded messages, the list shows "Show newer messages" at the
 * hole, which loads the next newer page. */
async function loadAround(state, id) {
  const base = `/api/rooms/${state.room.id}/messages/?page_size=25`;
  const [older, newer] = await Promise.all([api(`${base}&before=${id + 1}`), api(`${base}&after=${id}`)]);
  const knew = state.messages.size > 0;
  const reaches = newer.results.some((m) => state.messages.has(m.id));
  for (const m of [...older.results, ...newer.results]) addMessage(state, m);
  state.nextUrl = older.next;
  state.loaded = true;
  if (knew && !reaches && newer.previous) {
    state.newerUrl = newer.previous;
    state.gapAfter = Math.max(id, ...newer.results.map((m) => m.id));
  }
}

async function loadNewer(state) {
  if (!state.newerUrl || state.loadingNewer) return;
  state.loadingNewer = true;
  try {
    const page = await api(state.newerUrl);
    const reaches = page.results.some((m) => state.messages.has(m.id));
    for (const m of page.results) addMessage(state, m);
    if (reaches || !page.previous) {
      state.newerUrl = state.gapAfter = null;
    } else {
      state.newerUrl = page.previous;
      state.gapAfter = Math.max(...page.results.map((m) => m.id));
    }
  } catch {
    // the button stays; pressing it again retries
  } finally {
    state.loadingNewer = false;
  }
  if (currentRoomId === state.room.id) renderMessages();
}

/** Show message `id` of the open room: loaded around it if needed, scrolled to the middle,
 * highlighted and focused. */
async function jumpTo(state, id) {
  if (!state.messages.has(id)) {
    try {
      await loadAround(state, id);
    } catch {
      $("composer-error").textContent = "Could not load that message.";
      return;
    }
  }
  if (currentRoomId !== state.room.id) return;
  ui.highlight = id;
  renderMessages();
  const el = $("message-list").querySelector(`li.msg[data-id="${id}"]`);
  if (!el) {
    $("composer-error").textContent = "That message is not in this room any more.";
    return;
  }
  el.scrollIntoView({ block: "center" });
  el.focus({ preventScroll: true });
  // Drop the message from the address, so that following the same link again jumps again.
  history.replaceState(null, "", `#/rooms/${state.room.id}`);
  setTimeout(() => {
    if (ui.highlight !== id) return;
    ui.highlight = null;
    if (currentRoomId === state.room.id) renderMessages();
  }, 4000);
}

function addMessage(state, message) {
  state.messages.set(message.id, message);
  client.noteMessage(message);
}

/** A newer state of a message (edited, deleted, reacted to): replace the loaded copy, and the
 * quote of it in loaded replies. A message that is not loaded stays unloaded. */
function updateMessage(state, message) {
  if (state.messages.has(message.id)) state.messages.set(message.id, message);
  for (const [id, m] of state.messages) {
    if (m.reply_to && m.reply_to.id === message.id) {
      const quote = { ...m.reply_to, excerpt: message.deleted ? "" : excerpt(message.body), deleted: message.deleted };
      state.messages.set(id, { ...m, reply_to: quote });
    }
  }
  const last = state.room.last_message;
  if (last && last.id === message.id) state.room.last_message = message;
}

/** An ack's message may be older than a feed frame that overtook it: keep the newer one. */
function applyAck(state, message) {
  const current = state.messages.get(message.id);
  if (current) {
    if (current.deleted && !message.deleted) return;
    if (!message.deleted && current.edited_at && (!message.edited_at || message.edited_at < current.edited_at)) return;
  }
  updateMessage(state, message);
  renderRoomList();
  if (currentRoomId === state.room.id) renderMessages();
}

function renderRoomHeader() {
  const state = rooms.get(currentRoomId);
  if (!state) return;
  const { room } = state;
  $("room-title").textContent = `${room.kind === "direct" ? "@" : "#"} ${roomTitle(room)}`;
  $("composer-input").placeholder = `Message ${room.kind === "direct" ? "" : "#"}${roomTitle(room)}`;
  $("room-settings").hidden = room.kind !== "group";
  renderPresence();
  if ($("room-dialog").open) renderRoomSettings();
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
        m.role === "owner" ? h("span", { class: "tag", text: "owner" }) : null,
        h("span", { class: "sr-only", text: online ? " (online)" : " (offline)" }),
      );
    }),
  );
  $("presence-count").textContent = `${state.online.size} of ${members.length} online`;
}

const escapeRegExp = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** A body as text nodes, each `@username` of the message's mentions in a highlighted span. */
function bodyNodes(message) {
  const names = (message.mentions || []).map((m) => m.username).sort((a, b) => b.length - a.length);
  if (!names.length) return [message.body];
  const pattern = new RegExp(`(?<![\\w@])@(${names.map(escapeRegExp).join("|")})(?![\\w])`, "gi");
  const nodes = [];
  let at = 0;
  for (const match of message.body.matchAll(pattern)) {
    if (match.index > at) nodes.push(message.body.slice(at, match.index));
    const mine = match[1].toLowerCase() === me.username.toLowerCase();
    nodes.push(h("span", { class: mine ? "mention mention-me" : "mention", text: match[0] }));
    at = match.index + match[0].length;
  }
  if (at < message.body.length) nodes.push(message.body.slice(at));
  return nodes;
}

const REACTIONS = ["👍", "❤️", "😂", "🎉", "😮", "👀"];

/** A button of a message's action bar; `data-key` lets a redraw give the focus back. */
function actionButton(message, action, text, label, onClick, extra = {}) {
  return h("button", {
    class: `msg-action ${extra.class || ""}`.trim(),
    text,
    attrs: { type: "button", "aria-label": label, title: label, "data-key": `${message.id}:${action}`, ...extra.attrs },
    on: { click: onClick },
  });
}

function replyQuote(message) {
  const quote = message.reply_to;
  if (!quote) return null;
  const text = quote.deleted ? "message deleted" : quote.excerpt;
  return h(
    "button",
    {
      class: `reply-quote${quote.deleted ? " deleted" : ""}`,
      attrs: { type: "button", "aria-label": `Replying to ${quote.author.username}: ${text}. Show that message`, "data-key": `${message.id}:quote` },
      on: { click: () => jumpTo(rooms.get(message.room), quote.id) },
    },
    h("span", { class: "reply-author", text: quote.author.username }),
    h("span", { class: "reply-excerpt", text }),
  );
}

function reactionBar(state, message) {
  if (message.deleted || !message.reactions || !message.reactions.length) return null;
  return h(
    "div",
    { class: "reactions", attrs: { role: "group", "aria-label": "Reactions" } },
    ...message.reactions.map((r) => {
      const mine = r.users.includes(me.id);
      const names = r.users.map((id) => usernameOf(state, id)).join(", ");
      return h("button", {
        class: `reaction${mine ? " mine" : ""}`,
        text: `${r.emoji} ${r.count}`,
        attrs: {
          type: "button",
          title: names,
          "aria-pressed": String(mine),
          "aria-label": `${r.emoji} ${r.count}: ${names}`,
          "data-key": `${message.id}:reaction:${r.emoji}`,
        },
        on: { click: () => react(state, message.id, r.emoji, !mine) },
      });
    }),
  );
}

function reactionPicker(state, message) {
  if (ui.pickerFor !== message.id) return null;
  return h(
    "div",
    {
      class: "reaction-picker",
      attrs: { role: "group", "aria-label": "Pick a reaction" },
      on: {
        keydown: (event) => {
          if (event.key !== "Escape") return;
          event.stopPropagation();
          closePicker(message.id);
        },
      },
    },
    ...REACTIONS.map((emoji) =>
      h("button", {
        class: "pick",
        text: emoji,
        attrs: { type: "button", "aria-label": `React with ${emoji}`, "data-key": `${message.id}:pick:${emoji}` },
        on: {
          click: () => {
            const mine = (message.reactions || []).some((r) => r.emoji === emoji && r.users.includes(me.id));
            ui.pickerFor = null;
            renderMessages();
            focusKey(`${message.id}:react`);
            if (!mine) react(state, message.id, emoji, true);
          },
        },
      }),
    ),
  );
}

function editForm(state, message) {
  const input = h("textarea", {
    class: "edit-input",
    attrs: { rows: "2", maxlength: "4000", "aria-label": "Edit message", "data-key": `${message.id}:edit-input` },
  });
  input.value = ui.editing.draft;
  input.addEventListener("input", () => {
    ui.editing.draft = input.value;
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      saveEdit(state, message.id);
    } else if (event.key === "Escape") {
      event.preventDefault();
      cancelEdit();
    }
  });
  return h(
    "div",
    { class: "edit-form" },
    input,
    h(
      "div",
      { class: "edit-actions" },
      h("button", { class: "button-primary small", text: "Save", attrs: { type: "button", "data-key": `${message.id}:save` }, on: { click: () => saveEdit(state, message.id) } }),
      h("button", { class: "link-button", text: "Cancel", attrs: { type: "button", "data-key": `${message.id}:cancel-edit` }, on: { click: cancelEdit } }),
      h("span", { class: "muted hint", text: "Enter saves · Escape cancels" }),
      ui.editing.error ? h("span", { class: "edit-error", text: ui.editing.error, attrs: { role: "alert" } }) : null,
    ),
  );
}

function confirmDelete(state, message) {
  if (ui.confirmDelete !== message.id) return null;
  return h(
    "div",
    {
      class: "confirm-delete",
      attrs: { role: "group", "aria-label": "Delete this message?" },
      on: {
        keydown: (event) => {
          if (event.key !== "Escape") return;
          event.stopPropagation();
          ui.confirmDelete = null;
          renderMessages();
          focusKey(`${message.id}:delete`);
        },
      },
    },
    h("span", { text: "Delete this message for everyone?" }),
    h("button", {
      class: "button-danger small",
      text: "Delete",
      attrs: { type: "button", "aria-label": "Yes, delete it", "data-key": `${message.id}:confirm-delete` },
      on: { click: () => deleteMessage(state, message.id) },
    }),
    h("button", {
      class: "link-button",
      text: "Cancel",
      attrs: { type: "button", "data-key": `${message.id}:cancel-delete` },
      on: {
        click: () => {
          ui.confirmDelete = null;
          renderMessages();
          focusKey(`${message.id}:delete`);
        },
      },
    }),
  );
}

function messageElement(message, { pending = false, failed = null } = {}) {
  const state = rooms.get(message.room) || rooms.get(currentRoomId);
  const mine = message.author.id === me.id;
  const deleted = !!message.deleted;
  const editing = ui.editing && ui.editing.id === message.id;
  const mentionsMe = (message.mentions || []).some((m) => m.id === me.id);
  const classes = ["msg"];
  if (mine) classes.push("mine");
  if (pending) classes.push("pending");
  if (failed) classes.push("failed");
  if (deleted) classes.push("deleted");
  if (mentionsMe) classes.push("mentions-me");
  if (ui.highlight === message.id) classes.push("highlight");
  const actions =
    pending || deleted || editing
      ? null
      : h(
          "div",
          { class: "msg-actions", attrs: { role: "group", "aria-label": `Message from ${message.author.username}` } },
          actionButton(message, "react", "☺+", "Add a reaction", () => togglePicker(message.id), {
            attrs: { "aria-expanded": String(ui.pickerFor === message.id) },
          }),
          actionButton(message, "reply", "Reply", "Reply", () => startReply(message)),
          mine ? actionButton(message, "edit", "Edit", "Edit", () => startEdit(message)) : null,
          mine || isOwner(state.room)
            ? actionButton(message, "delete", "Delete", "Delete", () => askDelete(message.id), { class: "danger" })
            : null,
        );
  return h(
    "li",
    {
      class: classes.join(" "),
      attrs: {
        "data-id": message.id,
        "data-client-id": message.client_id,
        tabindex: pending ? null : "-1",
        "data-key": pending ? null : `${message.id}:message`,
      },
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
        message.edited_at && !deleted
          ? h("span", { class: "edited", text: "(edited)", attrs: { title: `Edited ${new Date(message.edited_at).toLocaleString()}` } })
          : null,
        pending ? h("span", { class: "msg-status", text: failed ? `Not sent: ${failed}` : "Sending…" }) : null,
      ),
      replyQuote(message),
      editing
        ? editForm(state, message)
        : deleted
          ? h("div", { class: "msg-body tombstone", text: "message deleted" })
          : h("div", { class: "msg-body" }, ...bodyNodes(message)),
      reactionBar(state, message),
      reactionPicker(state, message),
      confirmDelete(state, message),
    ),
    actions,
  );
}

function pendingElements(roomId, used) {
  const out = [];
  for (const [clientId, item] of outbox) {
    if (item.room !== roomId) continue;
    item.shown ||= {
      id: "",
      room: roomId,
      client_id: clientId,
      author: me,
      body: item.body,
      created_at: null,
      reply_to: item.replyTo,
    };
    out.push(cached(`p${clientId}`, item.shown, item.failed || "", used, () => messageElement(item.shown, { pending: true, failed: item.failed })));
  }
  return out;
}

/** Message elements by key ("m<id>", "p<client_id>"), rebuilt only when their message or its
 * on-screen state changed, so a redraw keeps an inline edit, a focused button and the scroll
 * position alone. */
const elements = new Map();

function cached(key, message, flags, used, build) {
  used.add(key);
  const entry = elements.get(key);
  if (entry && entry.message === message && entry.flags === flags) return entry.el;
  const el = build();
  elements.set(key, { message, flags, el });
  return el;
}

function flagsFor(state, message) {
  let flags = isOwner(state.room) ? "o" : "";
  if (ui.editing && ui.editing.id === message.id) flags += `e${ui.editing.error || ""}`;
  if (ui.pickerFor === message.id) flags += "p";
  if (ui.confirmDelete === message.id) flags += "d";
  if (ui.highlight === message.id) flags += "h";
  return flags;
}

/** Make `parent`'s children `nodes`, moving only what is out of place (a node that stays
 * keeps its focus). */
function syncChildren(parent, nodes) {
  let cursor = parent.firstChild;
  for (const node of nodes) {
    if (node === cursor) {
      cursor = cursor.nextSibling;
      continue;
    }
    parent.insertBefore(node, cursor);
  }
  while (cursor) {
    const next = cursor.nextSibling;
    cursor.remove();
    cursor = next;
  }
}

function focusKey(key) {
  const el = $("message-list").querySelector(`[data-key="${CSS.escape(key)}"]`);
  if (el) el.focus({ preventScroll: true });
  return el;
}

function gapElement(state) {
  return h(
    "li",
    { class: "gap" },
    h("button", {
      class: "link-button",
      text: "Show newer messages",
      attrs: { type: "button", "data-key": "gap" },
      on: { click: () => loadNewer(state) },
    }),
  );
}

/** Redraw the open room's messages, our unconfirmed ones last. */
function renderMessages({ toBottom = false } = {}) {
  const state = rooms.get(currentRoomId);
  if (!state) return;
  const list = $("messages");
  const nearBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  const sorted = [...state.messages.values()].sort((a, b) => a.id - b.id);
  const used = new Set();
  const nodes = [];
  for (const m of sorted) {
    nodes.push(cached(`m${m.id}`, m, flagsFor(state, m), used, () => messageElement(m)));
    if (state.newerUrl && m.id === state.gapAfter) {
      state.gapNode ||= gapElement(state);
      nodes.push(state.gapNode);
    }
  }
  nodes.push(...pendingElements(state.room.id, used));
  for (const key of elements.keys()) if (!used.has(key)) elements.delete(key);
  const focused = document.activeElement;
  const key = focused && focused.dataset ? focused.dataset.key : null;
  syncChildren($("message-list"), nodes);
  if (key && !focused.isConnected) {
    const again = focusKey(key);
    if (again && again.classList.contains("edit-input")) again.setSelectionRange(again.value.length, again.value.length);
  }
  $("room-empty").hidden = sorted.length > 0 || !state.loaded;
  $("history-start").hidden = !(state.loaded && !state.nextUrl && sorted.length > 0);
  if (toBottom || (nearBottom && !state.newerUrl)) list.scrollTop = list.scrollHeight;
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

// --- message actions: edit, delete, react, reply ---------------------------------------------------

// Edits, deletions and reactions go over the socket when it is up, else over REST; both answer
// with what changed, and the room feed's frames bring the same change to every tab.

/** Show why an action on a message failed, under the composer. */
function actionError(error) {
  $("composer-error").textContent = (error && (error.detail || error.message)) || "That did not work.";
}

function startEdit(message) {
  ui.editing = { id: message.id, draft: message.body, error: null };
  ui.pickerFor = ui.confirmDelete = null;
  renderMessages();
  const input = focusKey(`${message.id}:edit-input`);
  if (input) input.setSelectionRange(input.value.length, input.value.length);
}

function cancelEdit() {
  if (!ui.editing) return;
  const id = ui.editing.id;
  ui.editing = null;
  renderMessages();
  focusKey(`${id}:edit`);
}

async function saveEdit(state, id) {
  const editing = ui.editing;
  if (!editing || editing.id !== id || editing.saving) return;
  const body = editing.draft.trim();
  const current = state.messages.get(id);
  if (!body) {
    editing.error = "A message cannot be empty; delete it instead.";
    renderMessages();
    return;
  }
  if (current && body === current.body) {
    cancelEdit();
    return;
  }
  editing.saving = true;
  const room = state.room.id;
  try {
    const answer = client.connected
      ? (await client.editMessage(room, id, body)).message
      : await api(`/api/rooms/${room}/messages/${id}/`, { method: "PATCH", body: { body } });
    if (ui.editing === editing) ui.editing = null;
    applyAck(state, answer);
    renderMessages();
    focusKey(`${id}:edit`);
  } catch (error) {
    editing.saving = false;
    editing.error = (error && (error.detail || error.message)) || "Could not save.";
    renderMessages();
  }
}

function askDelete(id) {
  ui.confirmDelete = id;
  ui.pickerFor = null;
  renderMessages();
  focusKey(`${id}:cancel-delete`);
}

async function deleteMessage(state, id) {
  ui.confirmDelete = null;
  const room = state.room.id;
  try {
    const answer = client.connected
      ? (await client.deleteMessage(room, id)).message
      : await api(`/api/rooms/${room}/messages/${id}/`, { method: "DELETE" });
    applyAck(state, answer);
  } catch (error) {
    renderMessages();
    actionError(error);
  }
  $("messages").focus();
}

function togglePicker(id) {
  ui.pickerFor = ui.pickerFor === id ? null : id;
  ui.confirmDelete = null;
  renderMessages();
  if (ui.pickerFor === id) focusKey(`${id}:pick:${REACTIONS[0]}`);
}

function closePicker(id) {
  ui.pickerFor = null;
  renderMessages();
  focusKey(`${id}:react`);
}

/** Add or remove our reaction; the room feed's `reaction` frame redraws the counts. */
async function react(state, id, emoji, on) {
  const room = state.room.id;
  const path = `/api/rooms/${room}/messages/${id}/reactions/`;
  try {
    const answer = client.connected
      ? await client.react(room, id, emoji, on)
      : await api(on ? path : `${path}?emoji=${encodeURIComponent(emoji)}`, { method: on ? "POST" : "DELETE", body: on ? { emoji } : undefined });
    if (!client.connected) {
      const m = state.messages.get(id);
      if (m) updateMessage(state, { ...m, reactions: answer.reactions });
      renderMessages();
    }
  } catch (error) {
    actionError(error);
  }
}

function startReply(message) {
  ui.replyTo = { id: message.id, author: message.author, excerpt: excerpt(message.body), deleted: false };
  $("reply-author").textContent = message.author.username;
  $("reply-excerpt").textContent = ui.replyTo.excerpt;
  $("reply-preview").hidden = false;
  $("composer-input").focus();
}

function cancelReply() {
  ui.replyTo = null;
  $("reply-preview").hidden = true;
}

$("reply-cancel").addEventListener("click", () => {
  cancelReply();
  $("composer-input").focus();
});

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

for (const type of ["message.updated", "message.deleted"]) {
  client.addEventListener(type, ({ detail }) => {
    const state = rooms.get(detail.room);
    if (!state) return;
    if (ui.editing && ui.editing.id === detail.message.id && detail.message.deleted) ui.editing = null;
    updateMessage(state, detail.message);
    renderRoomList();
    if (currentRoomId === state.room.id) renderMessages();
  });
}

client.addEventListener("reaction", ({ detail }) => {
  const state = rooms.get(detail.room);
  const message = state && state.messages.get(detail.message);
  if (!message) return;
  state.messages.set(message.id, { ...message, reactions: detail.reactions });
  if (currentRoomId === state.room.id) renderMessages();
});

client.addEventListener("member.joined", ({ detail }) => {
  const state = rooms.get(detail.room);
  if (!state || state.room.members.some((m) => m.id === detail.user.id)) return;
  state.room.members = [...state.room.members, { ...detail.user, role: "member" }];
  if (currentRoomId === state.room.id) renderRoomHeader();
});

client.addEventListener("member.left", ({ detail }) => {
  const state = rooms.get(detail.room);
  if (!state) return;
  if (detail.user.id === me.id) {
    dropRoom(detail.room);
    return;
  }
  state.room.members = state.room.members.filter((m) => m.id !== detail.user.id);
  state.online.delete(detail.user.id);
  if (currentRoomId === state.room.id) renderRoomHeader();
});

client.addEventListener("room.renamed", ({ detail }) => {
  const state = rooms.get(detail.room);
  if (!state) return;
  state.room.name = detail.name;
  renderRoomList();
  if (currentRoomId === state.room.id) renderRoomHeader();
});

// Frames of the user's own group: added to a room, a room renamed or changed, removed from one.
client.addEventListener("room.joined", ({ detail }) => {
  if (rooms.has(detail.room.id)) Object.assign(rooms.get(detail.room.id).room, { name: detail.room.name, members: detail.room.members });
  else addRoom(detail.room);
  renderRoomList();
  if (currentRoomId === detail.room.id) renderRoomHeader();
});

client.addEventListener("room.updated", ({ detail }) => {
  const state = rooms.get(detail.room.id);
  if (!state) return;
  Object.assign(state.room, { name: detail.room.name, members: detail.room.members });
  renderRoomList();
  if (currentRoomId === state.room.id) renderRoomHeader();
});

client.addEventListener("room.left", ({ detail }) => {
  if (rooms.has(detail.room)) dropRoom(detail.room);
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
  const replyTo = ui.replyTo;
  const clientId = client.sendMessage(currentRoomId, body, { replyTo: replyTo ? replyTo.id : null });
  outbox.set(clientId, { room: currentRoomId, body, replyTo });
  cancelReply();
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
  } else if (event.key === "Escape" && ui.replyTo) {
    event.preventDefault();
    cancelReply();
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

// --- finding people: direct messages, a new room's members, adding a member ----------------------

/** `GET /api/users/?q=` as the user types into `input`; each match is a button in `results`
 * calling `onPick(user)`. Enter picks the first match. `exclude()` gives user ids to leave out
 * (already chosen, already members). */
function userPicker(input, results, onPick, { exclude = () => new Set(), buttonClass = "user-result" } = {}) {
  let timer = null;
  let seq = 0;
  async function search() {
    const query = input.value.trim();
    const mine = ++seq;
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
    if (mine !== seq) return; // an older answer arriving late
    const skip = exclude();
    users = users.filter((u) => !skip.has(u.id));
    results.replaceChildren(
      ...(users.length
        ? users.map((user) =>
            h(
              "li",
              {},
              h(
                "button",
                { class: buttonClass, attrs: { type: "button", "data-user": user.id }, on: { click: () => onPick(user) } },
                avatar(user),
                h("span", { text: user.display_name }),
                user.display_name !== user.username ? h("span", { class: "muted", text: ` @${user.username}` }) : null,
              ),
            ),
          )
        : [h("li", { class: "muted", text: "Nobody found." })]),
    );
  }
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(search, 200);
  });
  input.addEventListener("keydown", (event) => {
    if (event.key !== "Enter") return;
    event.preventDefault();
    const first = results.querySelector("button");
    if (first) first.click();
  });
  return {
    clear() {
      seq += 1;
      input.value = "";
      results.replaceChildren();
    },
    refresh: search,
  };
}

async function startDirect(user) {
  const room = await api("/api/rooms/", { method: "POST", body: { direct_with: user.id } });
  if (!rooms.has(room.id)) addRoom(room);
  dmPicker.clear();
  renderRoomList();
  location.hash = `#/rooms/${room.id}`;
}

const dmPicker = userPicker($("dm-query"), $("dm-results"), startDirect, { buttonClass: "dm-result" });

$("dm-form").addEventListener("submit", (event) => event.preventDefault());

// --- dialogs: a new room, a room's settings ---------------------------------------------------------

/** Open a modal dialog; closing it (Escape, Close) gives the focus back to `opener`. */
function openDialog(dialog, opener) {
  dialog.returnFocus = opener;
  dialog.showModal();
}

for (const dialog of document.querySelectorAll("dialog")) {
  dialog.addEventListener("close", () => {
    if (dialog.returnFocus && dialog.returnFocus.isConnected) dialog.returnFocus.focus();
  });
  for (const button of dialog.querySelectorAll("[data-close]")) button.addEventListener("click", () => dialog.close());
}

function showFormError(id, error) {
  const el = $(id);
  el.textContent = error ? (error.message || String(error)) : "";
  el.hidden = !error;
}

const chosen = new Map(); // user id → user: the new room's members

function renderChosen() {
  $("new-room-chosen").replaceChildren(
    ...[...chosen.values()].map((user) =>
      h(
        "li",
        { class: "chip" },
        h("span", { text: user.username }),
        h("button", {
          class: "chip-remove",
          text: "×",
          attrs: { type: "button", "aria-label": `Remove ${user.username}` },
          on: {
            click: () => {
              chosen.delete(user.id);
              renderChosen();
              $("new-room-people").focus();
            },
          },
        }),
      ),
    ),
  );
}

const newRoomPicker = userPicker(
  $("new-room-people"),
  $("new-room-results"),
  (user) => {
    chosen.set(user.id, user);
    newRoomPicker.clear();
    renderChosen();
    $("new-room-people").focus();
  },
  { exclude: () => new Set(chosen.keys()) },
);

$("new-room").addEventListener("click", () => {
  chosen.clear();
  renderChosen();
  newRoomPicker.clear();
  $("new-room-name").value = "";
  showFormError("new-room-error", null);
  openDialog($("new-room-dialog"), $("new-room"));
});

$("new-room-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = $("new-room-name").value.trim();
  if (!name) {
    showFormError("new-room-error", new Error("Give the room a name."));
    return;
  }
  let room;
  try {
    room = await api("/api/rooms/", { method: "POST", body: { name, members: [...chosen.keys()] } });
  } catch (error) {
    showFormError("new-room-error", error);
    return;
  }
  if (!rooms.has(room.id)) addRoom(room);
  renderRoomList();
  $("new-room-dialog").returnFocus = null;
  $("new-room-dialog").close();
  location.hash = `#/rooms/${room.id}`;
});

const memberPicker = userPicker(
  $("add-member-input"),
  $("add-member-results"),
  async (user) => {
    const state = rooms.get(currentRoomId);
    if (!state) return;
    try {
      const member = await api(`/api/rooms/${state.room.id}/members/`, { method: "POST", body: { user_id: user.id } });
      if (!state.room.members.some((m) => m.id === member.id)) state.room.members = [...state.room.members, member];
      showFormError("room-dialog-error", null);
    } catch (error) {
      showFormError("room-dialog-error", error);
    }
    memberPicker.clear();
    renderRoomHeader();
    $("add-member-input").focus();
  },
  { exclude: () => new Set((rooms.get(currentRoomId)?.room.members || []).map((m) => m.id)) },
);

function renderRoomSettings() {
  const state = rooms.get(currentRoomId);
  if (!state) {
    $("room-dialog").close();
    return;
  }
  const { room } = state;
  const owner = isOwner(room);
  const input = $("rename-input");
  if (document.activeElement !== input) input.value = room.name;
  input.readOnly = !owner;
  $("rename-submit").hidden = !owner;
  $("add-member").hidden = !owner;
  const members = [...room.members].sort((a, b) => (b.role === "owner") - (a.role === "owner") || a.username.localeCompare(b.username));
  $("member-list").replaceChildren(
    ...members.map((m) =>
      h(
        "li",
        { class: "member", attrs: { "data-user": m.id } },
        avatar(m),
        h("span", { class: "member-name", text: m.username }),
        m.role === "owner" ? h("span", { class: "tag", text: "owner" }) : null,
        m.id === me.id ? h("span", { class: "tag tag-current", text: "you" }) : null,
        owner && m.id !== me.id
          ? h("button", {
              class: "link-button danger",
              text: "Remove",
              attrs: { type: "button", "aria-label": `Remove ${m.username}` },
              on: { click: () => removeMember(state, m) },
            })
          : null,
      ),
    ),
  );
}

async function removeMember(state, member) {
  try {
    await api(`/api/rooms/${state.room.id}/members/${member.id}/`, { method: "DELETE" });
    state.room.members = state.room.members.filter((m) => m.id !== member.id);
    showFormError("room-dialog-error", null);
  } catch (error) {
    showFormError("room-dialog-error", error);
  }
  renderRoomHeader();
  $("member-list").focus();
}

$("room-settings").addEventListener("click", () => {
  memberPicker.clear();
  showFormError("room-dialog-error", null);
  renderRoomSettings();
  openDialog($("room-dialog"), $("room-settings"));
});

$("rename-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const state = rooms.get(currentRoomId);
  const name = $("rename-input").value.trim();
  if (!state || !name || name === state.room.name) return;
  try {
    const room = await api(`/api/rooms/${state.room.id}/`, { method: "PATCH", body: { name } });
    state.room.name = room.name;
    showFormError("room-dialog-error", null);
    $("rename-status").textContent = "Renamed.";
    setTimeout(() => ($("rename-status").textContent = ""), 2000);
  } catch (error) {
    showFormError("room-dialog-error", error);
  }
  renderRoomList();
  renderRoomHeader();
});

$("leave-room").addEventListener("click", async () => {
  const state = rooms.get(currentRoomId);
  if (!state) return;
  try {
    await api(`/api/rooms/${state.room.id}/members/${me.id}/`, { method: "DELETE" });
  } catch (error) {
    showFormError("room-dialog-error", error);
    return;
  }
  $("room-dialog").returnFocus = null;
  $("room-dialog").close();
  dropRoom(state.room.id);
  $("room-list").focus();
});

// --- search ----------------------------------------------------------------------------------------

let searchNext = null;
let searchSeq = 0;

function searchResultElement(result) {
  const { message, room } = result;
  const known = rooms.get(room.id);
  const title = known ? roomTitle(known.room) : room.name || "direct message";
  return h(
    "li",
    {},
    h(
      "a",
      {
        class: "search-result",
        attrs: { href: `#/rooms/${room.id}/messages/${message.id}`, "data-id": message.id },
        on: { click: () => setSearchOpen(false) },
      },
      h(
        "span",
        { class: "search-meta" },
        h("span", { class: "search-room", text: `${room.kind === "direct" ? "@" : "#"} ${title}` }),
        h("span", { class: "author", text: message.author.username }),
        timeElement(message.created_at),
      ),
      h("span", { class: "search-body", text: message.body }),
    ),
  );
}

async function runSearch(more = false) {
  const query = $("search-input").value.trim();
  const mine = ++searchSeq;
  if (!query) {
    setSearchOpen(false);
    return;
  }
  setSearchOpen(true);
  if (!more) {
    $("search-results").replaceChildren();
    $("search-status").textContent = "Searching…";
  }
  let page;
  try {
    page = await api(more ? searchNext : `/api/search/messages/?q=${encodeURIComponent(query)}`);
  } catch (error) {
    if (mine === searchSeq) $("search-status").textContent = error.message;
    return;
  }
  if (mine !== searchSeq) return;
  searchNext = page.next;
  $("search-results").append(...page.results.map(searchResultElement));
  const count = $("search-results").children.length;
  $("search-status").textContent = count ? "" : `No messages match “${query}”.`;
  $("search-more").hidden = !searchNext;
}

function setSearchOpen(open) {
  $("search-panel").hidden = !open;
  $("search-input").setAttribute("aria-expanded", String(open));
}

$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  runSearch();
});
$("search-more").addEventListener("click", () => runSearch(true));
$("search-form").addEventListener("keydown", (event) => {
  if (event.key === "Escape" && !$("search-panel").hidden) {
    event.preventDefault();
    setSearchOpen(false);
    $("search-input").focus();
  }
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
          notificationLink(n),
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

/** A mention links to its message: the room opens there, and the notification is read. */
function notificationLink(n) {
  const data = n.data || {};
  if (data.kind !== "mention" || !Number.isInteger(data.room) || !Number.isInteger(data.message)) return null;
  return h("a", {
    class: "notif-open",
    text: "Show message",
    attrs: { href: `#/rooms/${data.room}/messages/${data.message}`, "aria-label": `Show the message: ${n.title}` },
    on: {
      click: () => {
        if (!n.read_at) markNotificationRead(n.id).catch(() => {});
      },
    },
  });
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
  if (!$("search-form").contains(event.target)) setSearchOpen(false);
  if (ui.pickerFor != null && !event.target.closest(".reaction-picker, .msg-action")) {
    ui.pickerFor = null;
    renderMessages();
  }
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
  // #/rooms/5, or #/rooms/5/messages/812: the room opened at that message.
  const match = location.hash.match(/^#\/rooms\/(\d+)(?:\/messages\/(\d+))?$/);
  setBellOpen(false);
  setSearchOpen(false);
  if (match) {
    openRoom(Number(match[1]), match[2] ? Number(match[2]) : null);
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
  // After a reconnect, rooms we were added to while disconnected are picked up (their
  // `room.joined` went to a socket that was gone), and a history that failed to load while we
  // were offline is fetched again.
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
