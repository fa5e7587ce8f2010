"""What accounts adds to the socket: in-socket token refresh, and ``last_seen_at`` of the login
session while the socket is in use (docs/security.md, "Token lifecycle on an open socket")."""

from typing import Annotated, Literal

from channels.db import database_sync_to_async
from pydantic import Field

from realtime.consumer import Socket
from realtime.events import iso
from realtime.frames import Frame, ServerFrame
from realtime.registry import Handlers, register

from .services import login_session_touch
from .ws_auth import check_refresh


class AuthRefresh(Frame):
    """``auth.refresh {token}``: a new access JWT of the same user and login session →
    ``ack {expires_at}``."""

    type: Literal["auth.refresh"]
    token: Annotated[str, Field(min_length=1, max_length=4096)]


class AuthExpiring(ServerFrame):
    """Sent about 60 s before a token-authenticated socket's access token expires."""

    type: Literal["auth.expiring"]
    expires_at: str


async def auth_refresh(socket: Socket, frame: AuthRefresh) -> None:
    """Extend the socket to the new token's expiry; another user's token closes it with 4403,
    a revoked login session with 4401; a bad token is an ``error`` and changes nothing."""
    outcome = await database_sync_to_async(check_refresh)(
        frame.token, user_id=socket.user.pk, session_id=socket.session_id
    )
    if outcome.error:
        await socket.error(outcome.error, outcome.detail, frame.ref)
    if outcome.close_code:
        await socket.close_with(outcome.close_code)
    elif outcome.expires_at:
        socket.renew_expiry(outcome.warn_at, outcome.expires_at)
        await socket.ack(frame.ref, expires_at=iso(outcome.expires_at))


async def touch(socket: Socket) -> None:
    """Move the login session's ``last_seen_at`` (throttled by the service too)."""
    await database_sync_to_async(login_session_touch)(session_id=socket.session_id)


register(
    Handlers(
        commands={"auth.refresh": (AuthRefresh, auth_refresh)},
        server_frames=[AuthExpiring],
        on_activity=touch,
    )
)
