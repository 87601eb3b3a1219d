"""A prediction's server-sent events: sent to every client listening, and kept for a late one.

coglet keeps the latest COG_STREAM_HISTORY_CAPACITY events of each prediction and replays them
to an SSE client that joins after they were sent; once the history has dropped one, a late
client gets an error event instead of a replay with a hole in it.
"""

from __future__ import annotations

import collections
import os
from typing import Any

import trio

Event = tuple[str, Any]  # the event's name, and its data (written as JSON)
Listener = trio.MemorySendChannel[Event]


def _history_capacity() -> int:
    """COG_STREAM_HISTORY_CAPACITY, as coglet reads it: a count of events, 1024 where it is
    unset or not a whole number."""
    value = os.environ.get("COG_STREAM_HISTORY_CAPACITY", "")
    return int(value) if value.isdigit() else 1024


STREAM_HISTORY_CAPACITY = _history_capacity()


class EventStream:
    """The events of one prediction, its listeners, and the latest events (0 kept: none)."""

    __slots__ = ("dropped", "history", "listeners")

    def __init__(self) -> None:
        self.listeners: list[Listener] = []
        self.history: collections.deque[Event] = collections.deque()
        self.dropped = 0  # how many fell out of the history

    def subscribe(self, channel: Listener, ended: bool) -> None:
        """A new client: the history first, then each event as it comes; where the history has
        dropped events, one error event instead, then the end (as coglet)."""
        if self.dropped:
            error = "SSE stream replay truncated; events were dropped"
            channel.send_nowait(("error", {"error": error, "skipped": self.dropped}))
            channel.close()
            return
        for item in self.history:
            channel.send_nowait(item)
        if ended:  # the history ended with the completed event, if it kept any
            channel.close()
        else:
            self.listeners.append(channel)

    def publish(self, event: str, data: Any) -> None:
        if STREAM_HISTORY_CAPACITY > 0:
            if len(self.history) == STREAM_HISTORY_CAPACITY:
                self.history.popleft()
                self.dropped += 1
            self.history.append((event, data))
        for channel in list(self.listeners):
            try:
                channel.send_nowait((event, data))
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                self.listeners.remove(channel)

    def close(self) -> None:
        """The end of the stream for every client listening."""
        for channel in self.listeners:
            channel.close()
