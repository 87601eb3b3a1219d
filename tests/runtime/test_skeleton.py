"""The reduced predictor module (cog.server.skeleton) `cog build` describes signatures from:
wherever it is used, it must describe exactly what importing the module describes, and it
must give way to the import wherever the source alone cannot say what the signature reads.

Each predictor is described twice in a fresh interpreter, from the reduced module and from
the module itself, and the two are compared: the repository's predictors (the runtime's
fixtures, the examples, Cog's own scripts vendored for test_cogsuite) and cases written to
break the reduction.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.cogsuite.run import parse_txtar
from tests.conftest import REPO

BOTH = """\
import json, pathlib, sys
from cog.server import signature as s

def described(load):
    try:
        target = load(sys.argv[1], pathlib.Path(sys.argv[2]))
        if target is None:
            return None
        return {"ok": s.describe(target, s.entry_point(target, sys.argv[3]))}
    except Exception as e:
        return {"error": type(e).__name__}

print(json.dumps({"reduced": described(s.load_reduced), "module": described(s.load)}))
"""


def describe_both(root: Path, ref: str, method: str = "predict") -> dict[str, Any]:
    """The description from the reduced module (None when not reduced) and from the module,
    each in a fresh interpreter (a module imported by one must not help the other)."""
    ran = subprocess.run(
        [sys.executable, "-c", BOTH, ref, str(root), method],
        cwd=root,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    result: dict[str, Any] = json.loads(ran.stdout)
    return result


def repository_predictors(tmp: Path) -> list[tuple[Path, str]]:
    """(project root, predictor reference) of every predictor the repository holds."""
    found = [(p.parent, f"{p.name}:Predictor") for p in (REPO / "examples").glob("*/predict.py")]
    fixtures = REPO / "tests" / "fixtures" / "runtime"
    for path in sorted(fixtures.glob("*.py")):
        source = path.read_text()
        for name in ("Predictor", "Runner", "Logs", "BigOutput", "Size", "FileIterator", "Echo"):
            if f"class {name}(" in source:
                found.append((fixtures, f"{path.name}:{name}"))
        if source.startswith("def predict(") or "\ndef predict(" in source:
            found.append((fixtures, f"{path.name}:predict"))
    for script in sorted((REPO / "tests" / "cogsuite" / "tests").glob("*.txtar")):
        files = dict(parse_txtar(script.read_bytes())[1])
        if "predict.py" in files:
            root = tmp / script.stem
            for name, data in files.items():
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                (root / name).write_bytes(data)
            found.append((root, "predict.py:Predictor"))
    return found


def test_the_repositorys_predictors_describe_alike(tmp_path: Path) -> None:
    reduced = 0
    compared = 0
    for root, ref in repository_predictors(tmp_path):
        method = "run" if ref.endswith(":Runner") else "predict"
        both = describe_both(root, ref, method)
        if both["reduced"] is not None:
            reduced += 1
            if both["module"] != {"error": "ModuleNotFoundError"}:  # torch is not here
                compared += 1
                assert both["reduced"] == both["module"], ref
    assert reduced >= 25 and compared >= 20, (reduced, compared)


def case(tmp_path: Path, source: str, **more: str) -> Path:
    root = tmp_path / "case"
    root.mkdir(exist_ok=True)
    (root / "predict.py").write_text(textwrap.dedent(source))
    for name, text in more.items():
        (root / name).write_text(textwrap.dedent(text))
    return root


REDUCED = {
    "future annotations, an output model below, a class constant, heavy imports": """\
        from __future__ import annotations

        import json
        import torch
        from typing import Optional
        from cog import BaseModel, BasePredictor, Input, Path

        LIMIT = 2**10
        torch.set_grad_enabled(False)


        class Predictor(BasePredictor):
            MODES = ("fast", "slow")

            def setup(self) -> None:
                self.model = torch.load("weights.pt")

            def predict(
                self,
                mode: str = Input(choices=list(MODES), default="fast"),
                size: int = Input(default=LIMIT // 2, le=LIMIT),
                image: Optional[Path] = None,
            ) -> "Output":
                return Output(text=json.dumps(self.model(mode)))


        class Output(BaseModel):
            text: str
            score: Optional[float] = None
        """,
    "pydantic output with a validator, TypedDict input, a union": """\
        import numpy as np
        from typing import TypedDict
        from pydantic import BaseModel, field_validator
        from cog import BasePredictor, Input


        class Options(TypedDict):
            seed: int


        class Result(BaseModel):
            values: list[float]
            label: str | None = None

            @field_validator("values")
            @classmethod
            def finite(cls, v):
                return [x for x in v if np.isfinite(x)]


        class Predictor(BasePredictor):
            def predict(self, options: Options, value: str | int = 3) -> Result:
                return Result(values=[value])
        """,
    "an async streaming generator with concurrency": """\
        from collections.abc import AsyncIterator
        import cog
        from cog import BasePredictor, Secret


        class Predictor(BasePredictor):
            @cog.concurrent(max=2)
            async def predict(self, token: Secret = None, n: int = 3) -> AsyncIterator[str]:
                for i in range(n):
                    yield str(i)

            def healthcheck(self) -> bool:
                return True
        """,
    "a base class of the same file that predicts": """\
        from cog import BasePredictor, Input


        class Base(BasePredictor):
            def predict(self, x: float = Input(ge=0.0, default=1.5)) -> float:
                return x


        class Predictor(Base):
            def setup(self) -> None:
                pass
        """,
    "a pydantic output whose config allows a Path field": """\
        from pydantic import BaseModel, ConfigDict
        from cog import BasePredictor, Path


        class Outputs(BaseModel):
            model_config = ConfigDict(arbitrary_types_allowed=True)
            audio: Path
            spectrogram: Path


        class Predictor(BasePredictor):
            def predict(self, text: str) -> Outputs:
                return Outputs(audio=Path("a"), spectrogram=Path("b"))
        """,
    "failing alike: an import cog does not have, unused": """\
        from cog import BasePredictor
        from cog.types import ExperimentalFeatureWarning


        class Predictor(BasePredictor):
            def predict(self, text: str) -> str:
                return text
        """,
    "refused by both: accept on a string": """\
        from cog import BasePredictor, Input


        class Predictor(BasePredictor):
            def predict(self, text: str = Input(accept="image/*")) -> str:
                return text
        """,
}


@pytest.mark.parametrize("name", sorted(REDUCED))
def test_reduced_where_the_source_says_enough(tmp_path: Path, name: str) -> None:
    root = case(tmp_path, REDUCED[name])
    both = describe_both(root, "predict.py:Predictor")
    assert both["reduced"] is not None
    if both["module"] == {"error": "ModuleNotFoundError"}:  # torch, numpy: not here
        assert "ok" in both["reduced"]
    else:
        assert both["reduced"] == both["module"]


NOT_REDUCED = {
    "a default a helper computes": """\
        from cog import BasePredictor, Input

        def default_steps():
            return 20

        STEPS = default_steps()

        class Predictor(BasePredictor):
            def predict(self, steps: int = Input(default=STEPS)) -> int:
                return steps
        """,
    "an output type from a module of the project": """\
        from cog import BasePredictor
        from outputs import Output

        class Predictor(BasePredictor):
            def predict(self) -> Output:
                return Output(text="x")
        """,
    "a method replaced after the class": """\
        from cog import BasePredictor

        class Predictor(BasePredictor):
            def predict(self, x: int) -> int:
                return x

        def wrap(fn):
            return fn

        Predictor.predict = wrap(Predictor.predict)
        """,
    "an unknown decorator": """\
        import torch
        from cog import BasePredictor

        class Predictor(BasePredictor):
            @torch.inference_mode()
            def predict(self, x: int) -> int:
                return x
        """,
    "a default from a class of the file, whose methods would run": """\
        from dataclasses import dataclass
        from cog import BasePredictor, Input

        @dataclass
        class Config:
            size: int = 4

            def __post_init__(self):
                self.size *= 2

        class Predictor(BasePredictor):
            def predict(self, size: int = Input(default=Config().size)) -> int:
                return size
        """,
    "a name bound twice": """\
        from typing import List
        from cog import BasePredictor

        List = list

        class Predictor(BasePredictor):
            def predict(self, xs: List[int]) -> int:
                return sum(xs)
        """,
    "a name bound under a condition": """\
        from cog import BasePredictor
        try:
            from cog import Path
        except ImportError:
            from pathlib import Path

        class Predictor(BasePredictor):
            def predict(self, image: Path) -> Path:
                return image
        """,
    "a star import": """\
        from cog import BasePredictor
        from helpers import *

        class Predictor(BasePredictor):
            def predict(self, x: Thing) -> str:
                return "x"
        """,
    "a class attribute set by a loop": """\
        from cog import BasePredictor, Input

        class Predictor(BasePredictor):
            for MODE in ("a", "b"):
                pass

            def predict(self, mode: str = Input(default=MODE)) -> str:
                return mode
        """,
    "a base class that changes its subclasses as they are made": """\
        from cog import BasePredictor

        class Base(BasePredictor):
            def __init_subclass__(cls, **kwargs):
                super().__init_subclass__(**kwargs)
                cls.predict.__annotations__["return"] = int

        class Predictor(Base):
            def predict(self, x: int) -> str:
                return str(x)
        """,
    "a syntax error": """\
        from cog import BasePredictor
        class Predictor(BasePredictor:
        """,
}


@pytest.mark.parametrize("name", sorted(NOT_REDUCED))
def test_the_module_is_imported_where_the_source_cannot_say(tmp_path: Path, name: str) -> None:
    root = case(
        tmp_path,
        NOT_REDUCED[name],
        **{"outputs.py": "from cog import BaseModel\nclass Output(BaseModel):\n    text: str\n"},
        **{"helpers.py": "Thing = str\n"},
    )
    both = describe_both(root, "predict.py:Predictor")
    assert both["reduced"] is None
