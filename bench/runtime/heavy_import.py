"""A predictor whose import takes 1 s, standing for `import torch` (measured: 1 to 4 s)."""

import time

from cog import BasePredictor

time.sleep(1.0)


class Predictor(BasePredictor):
    def predict(self, x: int = 1) -> int:
        return x
