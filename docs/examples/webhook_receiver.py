"""Receive Herald's webhooks as a service (docs/protocol.md, "Webhooks").

Register an endpoint (the key needs the scope ``webhooks:manage``); it prints the signing
secret, shown this once::

    HERALD_API_KEY=<key> python webhook_receiver.py register HERALD_URL MY_URL message.created

Serve it: every delivery is verified with the ``standardwebhooks`` library (a bad or replayed
signature gets 401), a ``webhook-id`` already seen is acknowledged and skipped (retries reuse
it), and each event is printed as one JSON line::

    WEBHOOK_SECRET=whsec_... python webhook_receiver.py serve PORT

Needs ``pip install httpx standardwebhooks``. Put it behind HTTPS in real life.
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def register(herald_url: str, url: str, events: list[str]) -> dict:
    answer = httpx.post(
        f"{herald_url}/api/webhooks/",
        json={"url": url, "events": events},
        headers={"Authorization": f"Api-Key {os.environ['HERALD_API_KEY']}"},
        timeout=30,
    )
    if answer.status_code != 201:  # {"detail", "code"}: e.g. 400 invalid_url
        raise SystemExit(f"{answer.status_code} {answer.text}")
    return answer.json()  # {id, url, events, secret, ...}


def serve(port: int, secret: str) -> None:
    webhook, seen = Webhook(secret), set()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                event = webhook.verify(body, dict(self.headers))
            except WebhookVerificationError:
                self.send_response(401)  # forged, altered or replayed
                self.end_headers()
                return
            if self.headers["webhook-id"] not in seen:  # a retry of a handled event: skip it
                seen.add(self.headers["webhook-id"])
                print(json.dumps(event), flush=True)
            self.send_response(204)  # any 2xx within 10 s; else Herald retries
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "register":
        herald_url, url, *events = args
        print(register(herald_url, url, events)["secret"])
    else:
        serve(int(args[0]), os.environ["WEBHOOK_SECRET"])
