"""The concurrency slots: which predictions hold one, how many there are, and recent cancels.

A sync predictor has one slot; an async one as many as it (or COG_MAX_CONCURRENCY) asks for.
A request beyond them is refused with a 409, as coglet does: there is no queue. Only unfinished
predictions are held, so nothing grows with the number served.
"""

from __future__ import annotations

import collections
import time

from runtime.record import Prediction

CANCELED_KEPT_S = 30.0  # how long a repeated cancel of a canceled prediction is still a 200
CANCELED_KEPT = 1024  # and of how many at most


class Slots:
    __slots__ = ("_canceled", "capacity", "running")

    def __init__(self) -> None:
        self.capacity = 1
        self.running: dict[str, Prediction] = {}  # by id
        # Canceled ones, for a while: a cancel repeated after the first took effect is still
        # answered 200, as coglet does while its worker winds the prediction down.
        self._canceled: collections.OrderedDict[str, float] = collections.OrderedDict()

    def busy(self) -> bool:
        return len(self.running) >= self.capacity

    def set_capacity(self, wanted: int, is_async: bool) -> None:
        # A sync predictor runs one prediction at a time, whatever COG_MAX_CONCURRENCY says.
        self.capacity = max(1, wanted) if is_async else 1

    def take(self, prediction: Prediction) -> None:
        self.running[prediction.id] = prediction

    def free(self, prediction: Prediction) -> None:
        """Its slot is free from now on (a newer prediction of the same id keeps its own)."""
        if self.running.get(prediction.id) is prediction:
            del self.running[prediction.id]

    def record_cancel(self, pid: str) -> None:
        self._canceled[pid] = time.monotonic()
        while len(self._canceled) > CANCELED_KEPT:
            self._canceled.popitem(last=False)

    def canceled_lately(self, pid: str) -> bool:
        ended = self._canceled.get(pid)
        return ended is not None and time.monotonic() - ended < CANCELED_KEPT_S
