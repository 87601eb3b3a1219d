"""`BaseRunner` / `BasePredictor`: classes with `setup()` and `run()` / `predict()`."""

from __future__ import annotations

from typing import Any

from cog.scope import Scope, current_scope


class BaseRunner:
    def setup(self, weights: Any = None) -> None:
        """Loads the model once, before any prediction."""

    def run(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("define run() (or predict()) on your runner")

    @property
    def scope(self) -> Scope:
        return current_scope()

    def record_metric(self, name: str, value: Any, mode: str | None = None) -> None:
        current_scope().record_metric(name, value, mode)


class BasePredictor(BaseRunner):
    def predict(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("define predict() on your predictor")


class CancelationException(BaseException):
    """Raised inside a synchronous predictor when its prediction is cancelled."""
