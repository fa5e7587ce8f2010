"""A tutorial-style Channels app: the baseline Herald is measured against.

What the common tutorials do: the core ``RedisChannelLayer`` with its defaults, a JWT from the
query string checked by a middleware that looks the user up in the database at every connect,
an ``AsyncJsonWebsocketConsumer`` with channels' default per-handler dispatch, one
``Model.objects.create`` and one ``group_send`` per recipient, JSON encoded per socket. It uses
Herald's tables (users, notifications, messages) in its own copy of the bench database.
"""
