"""Log output: JSON or console, credentials redacted from every line (docs/security.md, "Logs").

The standard library's ``logging`` does the routing (Django, daphne, channels and our modules
all log through it); structlog's ``ProcessorFormatter`` renders each record as one JSON object
(``HERALD_LOG_FORMAT=json``, production's default) or a readable line (``console``, the default
with ``DJANGO_DEBUG=1``). Every record carries the context bound with :func:`bind_connection`:
a WebSocket consumer binds its ``connection_id`` and ``user_id`` once, and every line logged
while it handles that socket, in its task or in a ``database_sync_to_async`` thread (asgiref
copies the context), carries both.

Two layers keep secrets out: :class:`RedactSecretsFilter` on the handler rewrites the message
before anything formats it, and :func:`redact_event` scrubs every string of the rendered event
(exception text included) before it is written.
"""

import logging
import re
from typing import Any

import structlog

# `token=` / `ticket=` query parameters, bearer subprotocols, Authorization headers (bearer
# and service keys: `Api-Key <key>`) and webhook signing secrets (`whsec_…`).
_SECRET = re.compile(
    r"((?:[?&](?:token|ticket)=)|(?:bearer[.\s])|(?:api-key\s+)|(?:whsec_))[^\s&\"',;]+",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """Return ``text`` with every token, ticket, API key or webhook secret replaced by
    ``[redacted]``."""
    return _SECRET.sub(r"\1[redacted]", text)


class RedactSecretsFilter(logging.Filter):
    """Rewrites a record's message so no token or ticket survives formatting."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def redact_event(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: :func:`redact` every string value of the event (tracebacks too)."""
    return {k: redact(v) if isinstance(v, str) else v for k, v in event.items()}


def bind_connection(*, connection_id: str, user_id: int | None) -> None:
    """Put ``connection_id`` and ``user_id`` on every log line of the current task (a socket)."""
    structlog.contextvars.bind_contextvars(connection_id=connection_id, user_id=user_id)


def _pre_chain() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
    ]


def json_formatter() -> logging.Formatter:
    """One JSON object per line: ``time, level, logger, event`` (the message), bound context,
    ``exception`` when there is one."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_pre_chain(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_event,
            structlog.processors.JSONRenderer(),
        ],
    )


def console_formatter() -> logging.Formatter:
    """A readable line per record, for development; the same fields as :func:`json_formatter`."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_pre_chain(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_event,
            structlog.dev.ConsoleRenderer(
                colors=False, exception_formatter=structlog.dev.plain_traceback
            ),
        ],
    )
