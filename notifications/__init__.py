"""Notifications, the WebSocket consumer, the publisher and the REST API for them."""
