import subprocess

import numpy as np
from PIL import Image

from cog import BasePredictor, Input, Path


class Predictor(BasePredictor):
    def predict(self, size: int = Input(default=8, ge=1, le=512)) -> Path:
        gradient = np.linspace(0, 255, size * size, dtype=np.uint8).reshape(size, size)
        out = Path("/tmp/gradient.png")
        Image.fromarray(gradient).save(out)
        # A console script from the model's environment, found on PATH.
        version = subprocess.run(["tqdm", "--version"], capture_output=True, text=True, check=True)
        print(f"numpy {np.__version__}, tqdm {version.stdout.strip()}, mean {gradient.mean():.1f}")
        return out
