"""The WebSocket protocol's constants, defined once (docs/protocol.md).

The browser client has the same values in ``realtime/static/herald/protocol.js``; a test checks
that the two agree.
"""

from enum import IntEnum, StrEnum

SUBPROTOCOL = "herald.v1"
BEARER_SUBPROTOCOL_PREFIX = "bearer."


class Close(IntEnum):
    """Close codes Herald sends: 1000, or 4000 + the HTTP status the close means.

    daphne's WebSocket library (autobahn) lets an application close only with 1000 or
    3000-4999 (RFC 6455 §7.4.2 reserves the rest), and daphne drops close reasons, so the code
    alone carries the meaning (docs/security.md, "Close codes a client must handle").
    """

    NORMAL = 1000
    UNAUTHENTICATED = 4401
    FORBIDDEN = 4403
    TOO_LARGE = 4413
    RATE_LIMITED = 4429
    UNAVAILABLE = 4503


class ErrorCode(StrEnum):
    """The ``code`` of an ``error`` frame (docs/protocol.md, "Errors and limits")."""

    INVALID_JSON = "invalid_json"
    INVALID_MESSAGE = "invalid_message"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    TOO_LARGE = "too_large"
    SERVER_ERROR = "server_error"
