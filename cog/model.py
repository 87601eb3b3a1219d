"""`BaseModel`: structured outputs. Subclasses become dataclasses; fields are their annotations."""

from __future__ import annotations

from dataclasses import dataclass, is_dataclass


class BaseModel:
    """Subclass it with annotated fields; each subclass is made a dataclass (`dataclass`
    keywords such as `frozen=True` go in the class statement), unless it says
    `auto_dataclass=False`, after which that subclass and its own are left as written."""

    def __init_subclass__(
        cls, *, auto_dataclass: bool = True, init: bool = True, **kwargs: object
    ) -> None:
        super().__init_subclass__()
        primary = cls.__bases__[0]
        if not issubclass(primary, BaseModel):
            raise TypeError(f'Primary base class of "{cls.__name__}" must inherit from BaseModel')
        if not auto_dataclass:
            try:
                # a manual class under an automatic one would inherit its fields half-made
                if primary is not BaseModel and primary.__auto_dataclass is True:  # type: ignore[attr-defined]
                    raise ValueError(
                        f'Primary base class of "{cls.__name__}" ("{primary.__name__}") has '
                        f'auto_dataclass=True, but "{cls.__name__}" has auto_dataclass=False. '
                        "This creates broken field inheritance."
                    )
            except AttributeError:
                raise RuntimeError(
                    f'Primary base class of "{cls.__name__}" is a child of a child of '
                    "`BaseModel`, but `auto_dataclass` tracking does not exist. "
                    "This is likely a bug or other programming error."
                ) from None
        for base in cls.__bases__[1:]:
            if is_dataclass(base):
                raise TypeError(
                    f'Cannot mixin dataclass "{base.__name__}" while inheriting from `BaseModel`'
                )
        if not auto_dataclass:
            cls.__auto_dataclass = False  # type: ignore[attr-defined]
            return
        dataclass(init=init, **kwargs)(cls)  # type: ignore[call-overload]
        cls.__auto_dataclass = True  # type: ignore[attr-defined]
