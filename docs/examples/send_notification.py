"""Send a notification from a service: ``python send_notification.py URL USER PASSWORD ID...``.

The service user needs the permission ``notifications.send_notification`` (Django admin, user →
permissions). It logs in once for a token pair, posts, and retries safely: the same
``idempotency_key`` twice stores nothing twice (docs/protocol.md, "HTTP API"). Needs ``pip install httpx``.
"""

import sys
import uuid

import httpx


def send(base_url: str, username: str, password: str, recipients: list[int]) -> dict:
    with httpx.Client(base_url=base_url, timeout=30) as http:
        login = http.post("/api/auth/token/", json={"username": username, "password": password})
        login.raise_for_status()  # 401 {"detail", "code": "invalid_credentials"}
        auth = {"Authorization": f"Bearer {login.json()['access']}"}
        body = {
            "recipients": recipients,
            "title": "Deploy finished",
            "body": "herald 1.0 is live",
            "data": {"url": "https://ci.example.com/deploys/1"},
            "idempotency_key": str(uuid.uuid4()),  # keep it to retry this exact send
        }
        for attempt in range(3):
            try:
                answer = http.post("/api/notifications/", json=body, headers=auth)
            except httpx.TransportError:
                if attempt == 2:
                    raise
                continue  # same key: a retry after a lost answer stores nothing twice
            if answer.status_code >= 400:  # {"detail": ..., "code": ...}
                raise RuntimeError(f"{answer.status_code} {answer.json()}")
            return answer.json()  # {"count": N, "ids": [...]}
    raise AssertionError("unreachable")


if __name__ == "__main__":
    url, user, password, *ids = sys.argv[1:]
    print(send(url, user, password, [int(i) for i in ids]))
