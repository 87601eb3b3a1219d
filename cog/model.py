"""`BaseModel`: structured outputs. Subclasses become dataclasses; fields are their annotations."""

from __future__ import annotations

import dataclasses
from typing import Any


class BaseModel:
    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        dataclasses.dataclass(cls)

    def __init__(self, **kwargs: Any) -> None:  # replaced by the dataclass __init__
        for name, value in kwargs.items():
            setattr(self, name, value)
