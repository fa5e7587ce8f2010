"""Channel-layer group names of the transport, built only from ids (channels ``layers.py``:
ASCII, under 100 characters; never user input). Apps build their own groups the same way."""

from uuid import UUID


def user_group(user_id: int) -> str:
    """The group of every socket of one user: ``user.<id>``."""
    return f"user.{int(user_id)}"


def session_group(session_id: UUID | str) -> str:
    """The group of every socket opened under one login session: ``session.<uuid hex>``."""
    return f"session.{UUID(str(session_id)).hex}"
