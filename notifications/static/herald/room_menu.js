// The room menu on the chat page (templates/home.html): "Mute room" / "Unmute room" for the
// open room, stored in the user's preferences (PATCH /api/me/preferences/ `muted_rooms`). A
// muted room sends no mention notification and no push (docs/protocol.md, "Preferences").

const config = JSON.parse(document.getElementById("herald-config").textContent);
const menu = document.getElementById("room-menu");
const button = document.getElementById("room-mute");
let muted = null; // Set of room ids, once loaded

function openRoomId() {
  const match = location.hash.match(/^#\/rooms\/(\d+)$/);
  return match ? Number(match[1]) : null;
}

function render() {
  const id = openRoomId();
  menu.hidden = id == null || muted == null;
  if (id == null || muted == null) return;
  button.textContent = muted.has(id) ? "Unmute room" : "Mute room";
  button.setAttribute("aria-pressed", String(muted.has(id)));
}

async function request(method, body) {
  const response = await fetch("/api/me/preferences/", {
    method,
    credentials: "same-origin",
    headers: {
      Accept: "application/json",
      ...(body ? { "Content-Type": "application/json", "X-CSRFToken": config.csrfToken } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new Error((data && data.detail) || `HTTP ${response.status}`);
  return data;
}

button.addEventListener("click", async () => {
  const id = openRoomId();
  if (id == null || muted == null) return;
  const wanted = new Set(muted);
  if (wanted.has(id)) wanted.delete(id);
  else wanted.add(id);
  button.disabled = true;
  try {
    muted = new Set((await request("PATCH", { muted_rooms: [...wanted] })).muted_rooms);
    button.title = "";
  } catch (error) {
    button.title = `Not saved: ${error.message}`;
  } finally {
    button.disabled = false;
    menu.open = false;
    render();
  }
});

addEventListener("hashchange", render);
request("GET")
  .then((prefs) => {
    muted = new Set(prefs.muted_rooms);
    render();
  })
  .catch(() => {});
