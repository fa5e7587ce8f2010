"""Users, login sessions, JWT and session authentication, and the Channels auth middleware."""
