"""Log lines: JSON with the socket's context, and never a token or ticket (docs/security.md)."""

import io
import json
import logging

import pytest
import structlog
from django.conf import settings

from config.logging import RedactSecretsFilter, bind_connection, json_formatter

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjo0Mn0.c2lnbmF0dXJlLXNlY3JldA"


@pytest.fixture
def json_log():
    """A logger writing JSON lines through the same filter and formatter as the settings."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecretsFilter())
    handler.setFormatter(json_formatter())
    log = logging.getLogger("tests.ops.json")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    yield log, stream
    log.removeHandler(handler)
    structlog.contextvars.clear_contextvars()


def test_lines_are_json_with_the_bound_connection_and_user(json_log):
    log, stream = json_log
    bind_connection(connection_id="c0ffee", user_id=42)
    log.info("socket opened")
    line = json.loads(stream.getvalue())
    assert line["event"] == "socket opened"
    assert line["connection_id"] == "c0ffee"
    assert line["user_id"] == 42
    assert line["level"] == "info"
    assert line["logger"] == "tests.ops.json"
    assert line["time"].endswith("Z")


def test_no_token_survives_in_messages_arguments_or_tracebacks(json_log):
    log, stream = json_log
    log.warning("GET /ws/?token=%s failed", TOKEN)
    log.info("Authorization: Bearer %s", TOKEN)
    try:
        raise ValueError(f"bad subprotocol bearer.{TOKEN} ?ticket={TOKEN}")
    except ValueError:
        log.exception("handshake failed")
    output = stream.getvalue()
    assert TOKEN not in output
    assert TOKEN.rsplit(".", 1)[1] not in output
    lines = [json.loads(line) for line in output.splitlines()]
    assert lines[0]["event"] == "GET /ws/?token=[redacted] failed"
    assert "bearer.[redacted]" in lines[2]["exception"]


def test_djangos_own_handler_does_not_bypass_the_filter():
    """DEFAULT_LOGGING gives ``django`` a console handler of its own (in DEBUG); ours replaces
    it with none, so django's records reach the root handler, filtered, once."""
    assert logging.getLogger("django").handlers == []
    assert logging.getLogger("django.server").handlers == []
    ours = [h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler]
    assert ours  # (pytest adds capture handlers of its own beside it)
    assert all(any(isinstance(f, RedactSecretsFilter) for f in h.filters) for h in ours)
    assert settings.LOGGING["handlers"]["console"]["filters"] == ["redact"]
