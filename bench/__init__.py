"""``make bench``: Herald beside a raw floor, daphne serving a raw ASGI app, and a tutorial-style
Channels app, measured in one run (method and numbers in docs/performance.md)."""
