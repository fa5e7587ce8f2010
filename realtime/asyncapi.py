"""The WebSocket protocol as an AsyncAPI 3.0 document, generated from the frame models.

Every client frame an app registered (``realtime.registry``) is a message the server receives;
every server frame model is a message it sends. Served at ``GET /api/asyncapi.json``
(``realtime.views``) and described in docs/protocol.md. AsyncAPI 3.0:
https://www.asyncapi.com/docs/reference/specification/v3.0.0
"""

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .protocol import SUBPROTOCOL, Close, ErrorCode
from .registry import registry

_REF = "#/components/schemas/{model}"


def _message(model: type[BaseModel], kind: str) -> dict[str, Any]:
    return {
        "name": kind,
        "title": kind,
        "summary": (model.__doc__ or "").strip().split("\n\n")[0],
        "contentType": "application/json",
        "payload": {"$ref": _REF.format(model=model.__name__)},
    }


def _type_of(model: type[BaseModel]) -> str:
    return str(model.model_fields["type"].annotation.__args__[0])  # type: ignore[union-attr]


@cache
def document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document (a JSON-ready dict), built once per process.

    Message keys are ``client.<type>`` (client → server) and ``server.<type>`` (server →
    client); ``x-close-codes`` and ``x-error-codes`` list ``realtime.protocol``.
    """
    client = sorted(registry.models.items())
    server = sorted(((_type_of(m), m) for m in registry.server_frames), key=lambda p: p[0])
    models = [(m, "validation") for _, m in client] + [(m, "serialization") for _, m in server]
    _, schema = models_json_schema(models, ref_template=_REF)
    messages = {f"client.{kind}": _message(model, kind) for kind, model in client}
    messages |= {f"server.{kind}": _message(model, kind) for kind, model in server}

    def refs(prefix: str) -> list[dict[str, str]]:
        return [
            {"$ref": f"#/channels/socket/messages/{k}"} for k in messages if k.startswith(prefix)
        ]

    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Herald WebSocket protocol",
            "version": "1",
            "description": (
                "One socket per browser tab or device at /ws/ carries notifications and every "
                f"subscribed room. Subprotocol {SUBPROTOCOL}. Every frame is a JSON text frame "
                "with a `type`; a client frame may carry `ref`, echoed in its `ack` or `error`. "
                "See docs/protocol.md."
            ),
        },
        "servers": {
            "herald": {
                "host": "localhost:8000",
                "protocol": "ws",
                "pathname": "/ws/",
                "description": "Any Herald server; wss behind TLS.",
            }
        },
        "channels": {
            "socket": {
                "address": "/ws/",
                "messages": {key: {"$ref": f"#/components/messages/{key}"} for key in messages},
            }
        },
        "operations": {
            "receiveClientFrames": {
                "action": "receive",
                "channel": {"$ref": "#/channels/socket"},
                "messages": refs("client."),
            },
            "sendServerFrames": {
                "action": "send",
                "channel": {"$ref": "#/channels/socket"},
                "messages": refs("server."),
            },
        },
        "components": {"messages": messages, "schemas": schema.get("$defs", {})},
        "x-close-codes": {str(int(code)): code.name.lower() for code in Close},
        "x-error-codes": [str(code) for code in ErrorCode],
    }
