// Herald's WebSocket protocol constants (docs/protocol.md). realtime/protocol.py defines the same
// values for the server; tests/realtime/test_protocol.py checks that the two agree.

/** The subprotocol the server selects (docs/protocol.md, "Authentication"). */
export const SUBPROTOCOL = "herald.v1";

/** Close codes: 1000 and 4000 + the HTTP status they mean (docs/protocol.md, "Close codes"). */
export const CLOSE = Object.freeze({
  NORMAL: 1000,
  UNAUTHENTICATED: 4401,
  FORBIDDEN: 4403,
  TOO_LARGE: 4413,
  RATE_LIMITED: 4429,
  UNAVAILABLE: 4503,
});

/** The `code` of an `error` frame (docs/protocol.md, "Errors and limits"). */
export const ERROR = Object.freeze({
  INVALID_JSON: "invalid_json",
  INVALID_MESSAGE: "invalid_message",
  FORBIDDEN: "forbidden",
  NOT_FOUND: "not_found",
  RATE_LIMITED: "rate_limited",
  TOO_LARGE: "too_large",
  SERVER_ERROR: "server_error",
});
