"""`Mode`: whether a server runs predictions or trainings."""

from __future__ import annotations

from enum import Enum


class Mode(Enum):
    PREDICT = "predict"
    TRAIN = "train"

    def __str__(self) -> str:
        return str(self.value)
