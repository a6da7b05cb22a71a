"""Settings of ``bench/live_latency.py --layer pubsub``: production, with Channels' Redis
pub/sub layer (``RedisPubSubChannelLayer``) instead of the configured one, to compare."""

from __future__ import annotations

from config.settings.prod import *  # noqa: F403
from config.settings.prod import CHANNEL_LAYERS

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": CHANNEL_LAYERS["default"]["CONFIG"],
    }
}
