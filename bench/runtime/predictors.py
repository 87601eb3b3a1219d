"""The predictors of the runtime benchmark (the same file is served by both servers)."""

import asyncio
import time

import cog
from cog import BasePredictor


class Trivial(BasePredictor):
    def predict(self, x: int = 1) -> int:
        return x


class TenMs(BasePredictor):
    def predict(self, x: int = 1) -> int:
        time.sleep(0.01)
        return x


class Async50ms(BasePredictor):
    @cog.concurrent(max=8)
    async def predict(self, x: int = 1) -> int:
        await asyncio.sleep(0.05)
        return x


class SlowSetup(BasePredictor):
    def setup(self) -> None:
        time.sleep(1.0)  # stands for loading weights

    def predict(self, x: int = 1) -> int:
        return x
