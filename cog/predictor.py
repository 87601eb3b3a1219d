"""`BaseRunner` / `BasePredictor`: classes with `setup()` and `run()` / `predict()`, and how
Cog loads one from a reference (`predict.py:Predictor`), with its deprecation warnings."""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any, cast

from cog.scope import current_scope
from cog.types import Path


class BaseRunner:
    """Subclass it: `setup()` loads the model once, `run()` runs it (`predict()`, its old
    name, still works and warns)."""

    # the class in a subclass's MRO that defines run / predict (below the SDK's), if any
    _run_owner: type[Any] | None = None
    _predict_owner: type[Any] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__module__ == __name__:
            return  # BasePredictor: the SDK's own, defining neither
        cls._run_owner = _user_method_owner(cls, "run")
        cls._predict_owner = _user_method_owner(cls, "predict")

    def setup(self, weights: Path | str | None = None) -> None:
        """Loads the model once, before any prediction."""

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Runs the model once: define it. A runner that defines only `predict()` runs that."""
        if self.__class__._predict_owner is not None and self.__class__._run_owner is None:
            return self.predict(*args, **kwargs)
        raise NotImplementedError("run has not been implemented by parent class.")

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        """Deprecated: `run()`'s old name."""
        warnings.warn(
            f"{self.__class__.__name__}.predict() is deprecated; use run() instead",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.run(*args, **kwargs)

    @property
    def scope(self) -> Any:
        """The running prediction's scope (outside one, a scope that ignores everything)."""
        return current_scope()

    def record_metric(self, key: str, value: Any, mode: str = "replace") -> None:
        """Records a metric of the running prediction: `replace`, `incr` or `append`."""
        self.scope.record_metric(key, value, mode=mode)


class BasePredictor(BaseRunner):
    """Deprecated: `BaseRunner`'s old name."""


class CancelationException(BaseException):
    """Raised inside a synchronous predictor when its prediction is cancelled."""


def _user_method_owner(cls: type[Any], method_name: str) -> type[Any] | None:
    """The class that defines `method_name` for `cls`, looking no further than the SDK's own
    (a mixin listed after BaseRunner does not count)."""
    for owner in inspect.getmro(cls):
        if owner is object or owner.__module__ == __name__:  # BaseRunner, BasePredictor
            break
        if callable(owner.__dict__.get(method_name)):
            return owner
    return None


def _validate_runner_class(cls: type[Any], class_name: str, *, stacklevel: int = 3) -> None:
    defines_run = _user_method_owner(cls, "run") is not None
    defines_predict = _user_method_owner(cls, "predict") is not None
    if defines_run and defines_predict:
        raise ValueError(f"{class_name} must define either run() or predict(), not both")
    if not defines_run and not defines_predict:
        raise ValueError(f"run or predict method not found: {class_name}")
    if defines_predict:
        warnings.warn(
            f"{class_name}.predict() is deprecated; use run() instead",
            DeprecationWarning,
            stacklevel=stacklevel,
        )
    if any(base is BasePredictor for base in inspect.getmro(cls)[1:]):
        warnings.warn(
            "BasePredictor is deprecated; use BaseRunner instead",
            DeprecationWarning,
            stacklevel=stacklevel,
        )


def _runner_class_validation_error(cls: type[Any], class_name: str) -> ValueError | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            _validate_runner_class(cls, class_name)
    except ValueError as error:
        return error
    return None


def load_predictor_from_ref(ref: str) -> BaseRunner | Callable[..., Any]:
    """`file.py:Name` -> an instance of the class Name (or the function Name); without a name,
    the module's `Runner`, else its deprecated `Predictor`."""
    module_path, explicit_class_name = ref.split(":", 1) if ":" in ref else (ref, None)
    module_name = os.path.basename(module_path).replace(".py", "")
    spec = importlib.util.spec_from_file_location(module_name, module_path)
    if spec is None or spec.loader is None:
        raise ImportError(f"Cannot load module from {module_path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # so that pickle finds the module's classes
    spec.loader.exec_module(module)

    if explicit_class_name is not None:
        class_name = explicit_class_name
    else:
        runner = getattr(module, "Runner", None)
        runner_error: Exception | None = None
        if inspect.isclass(runner):
            runner_error = _runner_class_validation_error(runner, "Runner")
            valid_runner = runner_error is None
        else:
            valid_runner = runner is not None and callable(runner)
            if runner is not None and not valid_runner:
                runner_error = TypeError("Runner exists but is not a class or callable")
        if valid_runner:
            if hasattr(module, "Predictor"):
                warnings.warn(
                    "Both Runner and Predictor are defined; using Runner. Specify a class "
                    "name explicitly if this is not intended.",
                    UserWarning,
                    stacklevel=2,
                )
            class_name = "Runner"
        elif hasattr(module, "Predictor"):
            warnings.warn(
                "Predictor is deprecated; use Runner instead", DeprecationWarning, stacklevel=2
            )
            class_name = "Predictor"
        elif runner_error is not None:
            raise runner_error
        else:
            raise AttributeError(f"module {module_name!r} has no Runner or Predictor")

    predictor = getattr(module, class_name)
    if inspect.isclass(predictor):  # a class is instantiated; a function (training) is not
        _validate_runner_class(predictor, class_name, stacklevel=3)
        return cast(BaseRunner, predictor())
    return cast(Callable[..., Any], predictor)


def has_setup_weights(predictor: BaseRunner) -> bool:
    """Whether the predictor's `setup()` takes `weights`."""
    if not hasattr(predictor, "setup"):
        return False
    return "weights" in inspect.signature(predictor.setup).parameters


def extract_setup_weights(predictor: BaseRunner) -> Path | str | None:
    """The weights `setup()` is given: `$COG_WEIGHTS`, when set."""
    return os.environ.get("COG_WEIGHTS") or None
