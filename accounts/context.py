"""The login session of the request being served, for rules that keep "this" session alive.

A password change revokes every other session of the user (docs/security.md, "Login
sessions"); ``User.save`` reads this to know which one is "this". Set by the JWT authentication and the web middleware.
"""

from contextvars import ContextVar

current_login_session: ContextVar[str | None] = ContextVar("current_login_session", default=None)
