// Herald's service worker (served at /push-sw.js by notifications/settings_views.py): shows a
// Web Push message as a system notification and opens its link when it is clicked. The push
// payload is JSON {title, body, url, id, tag} (notifications/push.py, docs/protocol.md).

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("push", (event) => {
  let message = {};
  try {
    message = event.data ? event.data.json() : {};
  } catch {
    message = { body: event.data ? event.data.text() : "" };
  }
  const title = typeof message.title === "string" && message.title ? message.title : "Herald";
  event.waitUntil(
    self.registration.showNotification(title, {
      body: typeof message.body === "string" ? message.body : "",
      tag: message.tag || undefined,
      data: { url: typeof message.url === "string" ? message.url : "/" },
    }),
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  let url;
  try {
    url = new URL(event.notification.data?.url || "/", self.location.origin);
  } catch {
    url = new URL("/", self.location.origin);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") url = new URL("/", self.location.origin);
  event.waitUntil(
    (async () => {
      const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
      for (const client of windows) {
        if (client.url === url.href && "focus" in client) return client.focus();
      }
      return self.clients.openWindow(url.href);
    })(),
  );
});
