"""A Web Push service on 127.0.0.1, for the push tests: what a browser vendor's push service
does with Herald's requests, checked as strictly as it would.

For each request ``POST /push/<name>`` it

- checks the VAPID authorization (RFC 8292 §3): ``Authorization: vapid t=<JWT>, k=<key>``, the
  JWT an ES256 signature by ``k`` (verified with PyJWT + cryptography), ``aud`` this service's
  origin, ``exp`` in the future and at most 24 h away, ``sub`` a ``mailto:`` or ``https:`` URI,
  and ``k`` the deployment's public key when one is expected;
- checks ``TTL`` and ``Content-Encoding: aes128gcm`` (RFC 8030 §5.2, RFC 8188);
- decrypts the body with http_ece and the subscription's private key and authentication
  secret, generated here as a browser would (RFC 8291), and records the plaintext;
- answers ``201``, or the status a test chose for that subscription (``410``: gone).

A request that fails a check is answered ``400``/``401`` and recorded in ``rejected``, so a test
can assert there were none.
"""

import base64
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import http_ece
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

_AUTH = re.compile(r"^vapid\s+t=([^,\s]+)\s*,\s*k=([A-Za-z0-9_-]+)\s*$", re.IGNORECASE)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class Subscription:
    """One fake browser's subscription: what it POSTs to Herald, and its private half."""

    name: str
    endpoint: str
    private_key: ec.EllipticCurvePrivateKey
    auth: bytes

    @property
    def p256dh(self) -> str:
        return b64url(
            self.private_key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        )

    def as_json(self) -> dict[str, Any]:
        """The Push API's ``PushSubscription.toJSON()``."""
        return {
            "endpoint": self.endpoint,
            "keys": {"p256dh": self.p256dh, "auth": b64url(self.auth)},
        }


@dataclass
class Received:
    """One push that passed every check: the decrypted JSON, its headers, when it came."""

    message: dict[str, Any]
    headers: dict[str, str]
    at: float


@dataclass
class PushService:
    """The service; :meth:`start` it, :meth:`subscribe` browsers, read :attr:`received`."""

    expected_key: str | None = None  # the VAPID public key every request must carry
    received: dict[str, list[Received]] = field(default_factory=dict)
    rejected: list[str] = field(default_factory=list)
    answers: dict[str, int] = field(default_factory=dict)  # name → status to answer
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def origin(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "PushService":
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status = service.handle(self.path, dict(self.headers.items()), body)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def subscribe(self, name: str) -> Subscription:
        """A new browser subscription ``name`` with fresh keys (RFC 8291 §3)."""
        sub = Subscription(
            name,
            f"{self.origin}/push/{name}",
            ec.generate_private_key(ec.SECP256R1()),
            os.urandom(16),
        )
        self.subscriptions[name] = sub
        return sub

    def _reject(self, why: str, status: int) -> int:
        with self.lock:
            self.rejected.append(why)
        return status

    def handle(self, path: str, headers: dict[str, str], body: bytes) -> int:
        headers = {k.lower(): v for k, v in headers.items()}
        name = path.removeprefix("/push/")
        sub = self.subscriptions.get(name)
        if sub is None:
            return self._reject(f"unknown endpoint {path}", 404)
        match = _AUTH.match(headers.get("authorization", ""))
        if match is None:
            return self._reject(f"no vapid authorization: {headers.get('authorization')}", 401)
        token, key = match.groups()
        if self.expected_key is not None and key != self.expected_key:
            return self._reject(f"VAPID key {key} is not the deployment's", 401)
        try:
            public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(key))
            claims = jwt.decode(
                token,
                key=public,
                algorithms=["ES256"],
                audience=self.origin,
                options={"require": ["exp", "aud", "sub"]},
            )
        except (ValueError, jwt.PyJWTError) as error:
            return self._reject(f"bad VAPID JWT: {error!r}", 401)
        if claims["exp"] > time.time() + 86_400:
            return self._reject("VAPID exp more than 24 h away", 401)
        if not str(claims["sub"]).startswith(("mailto:", "https:")):
            return self._reject(f"VAPID sub {claims['sub']!r}", 401)
        if "ttl" not in headers:
            return self._reject("no TTL header", 400)
        if headers.get("content-encoding") != "aes128gcm":
            return self._reject(f"content encoding {headers.get('content-encoding')}", 400)
        try:
            plain = http_ece.decrypt(
                body, private_key=sub.private_key, auth_secret=sub.auth, version="aes128gcm"
            )
            message = json.loads(plain)
        except Exception as error:  # noqa: BLE001 (any decryption failure is the sender's)
            return self._reject(f"cannot decrypt: {error!r}", 400)
        with self.lock:
            self.received.setdefault(name, []).append(Received(message, headers, time.time()))
        return self.answers.get(name, 201)

    def messages(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r.message for r in self.received.get(name, [])]

    def wait_for(self, name: str, count: int = 1, timeout: float = 5.0) -> list[Received]:
        """The pushes received for ``name`` once there are ``count``; ``AssertionError`` after
        ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                got = list(self.received.get(name, []))
            if len(got) >= count:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(got)} of {count} pushes to {name} within {timeout} s; "
                    f"rejected: {self.rejected}"
                )
            time.sleep(0.02)
