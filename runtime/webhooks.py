"""Webhooks: the prediction's state POSTed to its URL as it changes.

Intermediate events (start, logs) are throttled so a chatty prediction sends at most one update
per interval (`COG_THROTTLE_RESPONSE_INTERVAL`, default 0.5 s) and are best effort; as in Cog,
output events are never throttled. The terminal event is always sent, retried with backoff until
it is accepted. `WEBHOOK_AUTH_TOKEN` becomes a bearer token. Bodies and User-Agent are coglet's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

import trio

from runtime.files import Client
from runtime.jsonbody import dumpb
from runtime.version import COG_VERSION

EVENTS = ("start", "output", "logs", "completed")
TERMINAL_TRIES = 8


class Webhook:
    def __init__(self, http: Client, url: str, events: Iterable[str] | None) -> None:
        self.http = http
        self.url = url
        self.events = set(events) if events is not None else set(EVENTS)
        self.interval = float(os.environ.get("COG_THROTTLE_RESPONSE_INTERVAL", "0.5"))
        self.last_sent = 0.0
        token = os.environ.get("WEBHOOK_AUTH_TOKEN")
        self.headers = {"Content-Type": "application/json", "User-Agent": f"coglet/{COG_VERSION}"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.lock = trio.Lock()

    async def _post(self, payload: dict[str, Any]) -> bool:
        """One delivery; a transport failure (a kept-alive connection the receiver had
        closed, a reset) is tried once more at once, so a start or output event is not lost
        to it."""
        content = dumpb(payload)
        for attempt in range(2):
            try:
                response = await self.http().post(self.url, content=content, headers=self.headers)
            except self.http.failures():
                if attempt == 1:
                    return False
                continue
            return response.status_code < 500
        return False

    async def intermediate(
        self, event: str, snapshot: Callable[[], dict[str, Any]], force: bool = False
    ) -> None:
        """Sends `snapshot()` unless throttled: taken only when sent, as a chatty prediction's
        state is large and mostly throttled away."""
        if event not in self.events:
            return
        now = time.monotonic()
        if not force and event != "output" and now - self.last_sent < self.interval:
            return
        async with self.lock:
            self.last_sent = now
            await self._post(snapshot())

    async def terminal(self, payload: dict[str, Any]) -> None:
        if "completed" not in self.events:
            return
        delay = 0.1
        async with self.lock:
            for _ in range(TERMINAL_TRIES):
                if await self._post(payload):
                    return
                await trio.sleep(delay)
                delay = min(delay * 2, 5.0)
