"""Send a notification from a service: ``HERALD_API_KEY=<key> python send_notification.py URL ID...``.

The key is a service account's, with the scope ``notifications:send``:
``python manage.py herald_service_key create my-service --scope notifications:send`` prints it
once, on its last line (docs/security.md, "Service keys"). It comes from the environment, not
the command line, so it stays out of shell history and process lists. The request retries safely:
the same ``idempotency_key`` twice stores nothing twice (docs/protocol.md, "HTTP API"). Needs
``pip install httpx``.
"""

import os
import sys
import uuid

import httpx


def send(base_url: str, api_key: str, recipients: list[int]) -> dict:
    auth = {"Authorization": f"Api-Key {api_key}"}  # 401 invalid_api_key once revoked
    with httpx.Client(base_url=base_url, headers=auth, timeout=30) as http:
        body = {
            "recipients": recipients,
            "title": "Deploy finished",
            "body": "herald 1.0 is live",
            "data": {"url": "https://ci.example.com/deploys/1"},
            "idempotency_key": str(uuid.uuid4()),  # keep it to retry this exact send
        }
        for attempt in range(3):
            try:
                answer = http.post("/api/notifications/", json=body)
            except httpx.TransportError:
                if attempt == 2:
                    raise
                continue  # same key: a retry after a lost answer stores nothing twice
            if answer.status_code >= 400:  # {"detail": ..., "code": ...}
                raise RuntimeError(f"{answer.status_code} {answer.json()}")
            return answer.json()  # {"count": N, "ids": [...]}
    raise AssertionError("unreachable")


if __name__ == "__main__":
    url, *ids = sys.argv[1:]
    print(send(url, os.environ["HERALD_API_KEY"], [int(i) for i in ids]))
