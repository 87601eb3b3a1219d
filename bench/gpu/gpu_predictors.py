"""GPU predictors served by both servers (ours and coglet) in the GPU runtime benchmark.

Copied from shared/gpu/predictors.py (only `Iterator` now comes from collections.abc, for ruff).
"""

from collections.abc import Iterator

import torch

from cog import BasePredictor


class ResNet(BasePredictor):
    """ResNet-50, fp16, batch 1, random weights: a few ms of real GPU work per request."""

    def setup(self) -> None:
        import torchvision

        self.model = torchvision.models.resnet50().cuda().half().eval()
        self.x = torch.randn(1, 3, 224, 224, device="cuda", dtype=torch.half)
        with torch.inference_mode():
            for _ in range(20):
                self.model(self.x)
        torch.cuda.synchronize()

    def predict(self, x: int = 1) -> int:
        with torch.inference_mode():
            return int(self.model(self.x).argmax().item())


class Tokens(BasePredictor):
    """An LLM-shaped stream: 256 small GPU steps, one yielded token each."""

    def setup(self) -> None:
        self.w = torch.randn(4096, 4096, device="cuda", dtype=torch.half) / 64
        self.h = torch.randn(1, 4096, device="cuda", dtype=torch.half)

    def predict(self, x: int = 1) -> Iterator[str]:
        h = self.h
        for _ in range(256):
            h = torch.tanh(h @ self.w)
            yield "1" if h[0, 0].item() > 0 else "0"
