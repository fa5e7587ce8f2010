"""Channel-layer group names, built only from ids (STYLE rule 6; channels ``layers.py``).

Names are ASCII, under 100 characters, and never contain user input.
"""

from uuid import UUID


def user_group(user_id: int) -> str:
    """The group of every socket of one user: ``user.<id>``."""
    return f"user.{int(user_id)}"


def session_group(session_id: UUID | str) -> str:
    """The group of every socket opened under one login session: ``session.<uuid hex>``."""
    return f"session.{UUID(str(session_id)).hex}"


def room_group(room_id: int) -> str:
    """The group of every socket subscribed to one room: ``room.<id>``."""
    return f"room.{int(room_id)}"
