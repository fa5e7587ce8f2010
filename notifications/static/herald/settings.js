// The notification settings page (notifications/templates/notifications/settings.html):
// preferences (GET/PATCH /api/me/preferences/) and Web Push on this browser (the service
// worker /push-sw.js, the browser's permission prompt, POST/DELETE /api/push/subscriptions/).
// Data goes into the DOM as text only, never as HTML.

const config = JSON.parse(document.getElementById("herald-config").textContent);
const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(status, body) {
    super(describe(body) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
  }
}

/** The first field message of a `{detail, code, errors}` answer, else its detail. */
function describe(body) {
  if (!body) return "";
  for (const messages of Object.values(body.errors || {})) {
    if (Array.isArray(messages) && messages.length) return String(messages[0]);
  }
  return body.detail || "";
}

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
    location.assign(`${config.loginUrl}?next=${encodeURIComponent(location.pathname)}`);
    throw new ApiError(401, null);
  }
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

function status(text, kind = "ok") {
  const el = $("save-status");
  el.textContent = text;
  el.dataset.kind = kind;
}

let prefs = null;
let rooms = new Map();

async function save(changes, done = "Saved.") {
  try {
    prefs = await api("/api/me/preferences/", { method: "PATCH", body: changes });
    render();
    status(done);
  } catch (error) {
    status(`Not saved: ${error.message}`, "error");
    render();
  }
}

// --- preferences ----------------------------------------------------------------------------------

function render() {
  $("push-enabled").checked = prefs.push;
  $("email-digest").value = prefs.email_digest;
  const quiet = prefs.quiet_hours;
  $("quiet-enabled").checked = quiet != null;
  $("quiet-fields").disabled = quiet == null;
  if (quiet) {
    $("quiet-start").value = quiet.start;
    $("quiet-end").value = quiet.end;
    $("quiet-timezone").value = quiet.timezone;
  }
  const items = prefs.muted_rooms.map((id) => {
    const li = document.createElement("li");
    const name = document.createElement("span");
    const room = rooms.get(id);
    name.textContent = room ? `# ${room.name || `room ${id}`}` : `room ${id}`;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "link-button";
    button.textContent = "Unmute";
    button.addEventListener("click", () =>
      save({ muted_rooms: prefs.muted_rooms.filter((r) => r !== id) }, "Room unmuted."),
    );
    li.append(name, button);
    return li;
  });
  $("muted-list").replaceChildren(...items);
  $("muted-empty").hidden = items.length > 0;
}

$("push-enabled").addEventListener("change", (e) => save({ push: e.target.checked }));
$("email-digest").addEventListener("change", (e) => save({ email_digest: e.target.value }));
$("quiet-enabled").addEventListener("change", (e) => {
  if (e.target.checked) {
    $("quiet-fields").disabled = false;
    if (!$("quiet-timezone").value) $("quiet-timezone").value = localZone();
    saveQuiet();
  } else {
    save({ quiet_hours: null }, "Quiet hours off.");
  }
});
$("quiet-save").addEventListener("click", saveQuiet);

function saveQuiet() {
  save(
    {
      quiet_hours: {
        start: $("quiet-start").value,
        end: $("quiet-end").value,
        timezone: $("quiet-timezone").value.trim(),
      },
    },
    "Quiet hours saved.",
  );
}

function localZone() {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
}

function fillZones() {
  const zones = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
  $("timezones").replaceChildren(
    ...zones.map((zone) => {
      const option = document.createElement("option");
      option.value = zone;
      return option;
    }),
  );
  $("quiet-timezone").value = localZone();
}

// --- Web Push on this browser ----------------------------------------------------------------

const pushSupported = "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
let registration = null;

/** The VAPID public key as the bytes `applicationServerKey` takes. */
function serverKey() {
  const text = config.vapidPublicKey.replace(/-/g, "+").replace(/_/g, "/");
  const raw = atob(text + "=".repeat((4 - (text.length % 4)) % 4));
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

function pushState(text, { subscribe = false, unsubscribe = false } = {}) {
  $("push-status").textContent = text;
  $("push-subscribe").hidden = !subscribe;
  $("push-unsubscribe").hidden = !unsubscribe;
}

async function refreshPush() {
  if (!pushSupported) {
    pushState("This browser does not support push notifications.");
    return;
  }
  if (Notification.permission === "denied") {
    pushState("Notifications are blocked for this site in your browser's settings.");
    return;
  }
  const subscription = registration && (await registration.pushManager.getSubscription());
  if (subscription) pushState("This browser receives push notifications.", { unsubscribe: true });
  else pushState("This browser does not receive push notifications.", { subscribe: true });
}

async function subscribe() {
  $("push-subscribe").disabled = true;
  try {
    const permission = await Notification.requestPermission();
    if (permission !== "granted") {
      await refreshPush();
      status("Push was not allowed in the browser.", "error");
      return;
    }
    const subscription = await registration.pushManager.subscribe({
      userVisibleOnly: true,
      applicationServerKey: serverKey(),
    });
    await api("/api/push/subscriptions/", { method: "POST", body: subscription.toJSON() });
    status("Push turned on for this browser.");
  } catch (error) {
    status(`Could not turn push on: ${error.message}`, "error");
  } finally {
    $("push-subscribe").disabled = false;
    await refreshPush();
    await renderDevices();
  }
}

async function unsubscribe() {
  const subscription = await registration.pushManager.getSubscription();
  if (subscription) {
    await api("/api/push/subscriptions/", {
      method: "DELETE",
      body: { endpoint: subscription.endpoint },
    }).catch(() => {});
    await subscription.unsubscribe();
  }
  status("Push turned off for this browser.");
  await refreshPush();
  await renderDevices();
}

$("push-subscribe").addEventListener("click", subscribe);
$("push-unsubscribe").addEventListener("click", unsubscribe);

async function renderDevices() {
  const devices = await api("/api/push/subscriptions/").catch(() => []);
  const items = devices.map((device) => {
    const li = document.createElement("li");
    const label = document.createElement("span");
    const since = new Date(device.created_at).toLocaleDateString();
    label.textContent = `${device.user_agent || "Unknown browser"} · since ${since}`;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "link-button";
    button.textContent = "Remove";
    button.addEventListener("click", async () => {
      await api("/api/push/subscriptions/", { method: "DELETE", body: { endpoint: device.endpoint } });
      await renderDevices();
      await refreshPush();
    });
    li.append(label, button);
    return li;
  });
  $("device-list").replaceChildren(...items);
  $("devices-empty").hidden = items.length > 0;
}

// --- start ------------------------------------------------------------------------------------

async function start() {
  fillZones();
  if (pushSupported) {
    try {
      registration = await navigator.serviceWorker.register(config.serviceWorker, { scope: "/" });
    } catch (error) {
      pushState(`Push is unavailable: ${error.message}`);
    }
  }
  try {
    const [loaded, roomList] = await Promise.all([
      api("/api/me/preferences/"),
      api("/api/rooms/").catch(() => []),
    ]);
    const list = Array.isArray(roomList) ? roomList : roomList.results || [];
    rooms = new Map(list.map((room) => [room.id, room]));
    prefs = loaded;
    render();
  } catch {
    $("load-error").hidden = false;
  }
  await refreshPush();
  await renderDevices();
  document.body.dataset.ready = "1";
}

start();
