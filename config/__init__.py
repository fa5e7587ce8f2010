"""Herald's project package: settings, URL and WebSocket routing, the ASGI entry point."""
