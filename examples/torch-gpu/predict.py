import torch

from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def setup(self) -> None:
        # The "weights" are made here, so the example ships no files: a doubling matrix.
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.weight = torch.eye(64, device=self.device) * 2

    def predict(self, n: int = Input(description="side of the input matrix", default=64)) -> str:
        x = torch.arange(n * 64, dtype=torch.float32, device=self.device).reshape(n, 64)
        total = (x @ self.weight).sum().item()  # 2 * (0 + 1 + ... + 64n-1), exact in float32
        name = torch.cuda.get_device_name(0) if self.device.type == "cuda" else "cpu"
        return f"cuda={torch.cuda.is_available()} device={name} sum={total:.0f}"
