import subprocess

from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def predict(
        self,
        document: str = Input(default='{"greeting": "hello"}'),
        query: str = ".greeting",
    ) -> str:
        # jq comes from Debian (system_packages), not from Python.
        result = subprocess.run(
            ["jq", "-r", query], input=document, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise ValueError(result.stderr.strip())
        return result.stdout.strip()
