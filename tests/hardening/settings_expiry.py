"""Dev settings with a one-second ``group_expiry`` passed to the channel layer.

The core ``RedisChannelLayer`` would drop a socket's group membership after it; the pub/sub
layer has no such setting and ignores the keyword, which ``test_failures.py`` demonstrates by
holding a socket for several times that long.
"""

from config.settings.dev import *  # noqa: F403
from config.settings.dev import CHANNEL_LAYERS

CHANNEL_LAYERS["default"]["CONFIG"]["group_expiry"] = 1
