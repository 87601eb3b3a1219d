"""Channels: pinned, versioned data (Debian archives, base package sets, Python sources)."""

from cuda_channels.channel import (
    DEFAULT_CHANNEL,
    Archive,
    Channel,
    ChannelError,
    PythonSource,
    available,
    load,
)

__all__ = [
    "DEFAULT_CHANNEL",
    "Archive",
    "Channel",
    "ChannelError",
    "PythonSource",
    "available",
    "load",
]
