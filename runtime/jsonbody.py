"""JSON exactly as Cog's server (coglet 0.23.1, Rust's serde_json) writes it.

Every JSON body the server writes (responses, webhook bodies, SSE data) goes through `dumps`:
compact separators; keys sorted (coglet builds its bodies as `serde_json::Value`, whose maps
are sorted) except where coglet serializes a struct in field order (the health check, which
passes `sort_keys=False` with its keys already in order); non-ASCII written as UTF-8, not
`\\uXXXX`; non-finite floats as `null`; and floats as serde_json formats them, which differs
from Python's `repr` in one place only: a decimal exponent below -4. Python writes `1e-05` and
`3e-07`, serde_json `0.00001` and `3e-7`; every other float is byte-identical. So the fast path
is the stdlib's C encoder, and the exact (pure Python) one runs only when the fast output
contains `e-0` (or `NaN`/`Infinity`), which ordinary bodies never do.
"""

from __future__ import annotations

import json
import math
from json.encoder import encode_basestring  # ensure_ascii=False: the C implementation
from typing import Any

_SORTED = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)
_ORDERED = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def dumps(value: Any, *, sort_keys: bool = True) -> str:
    text = (_SORTED if sort_keys else _ORDERED).encode(value)
    if "e-0" in text or "NaN" in text or "Infinity" in text:
        return _exact(value, sort_keys)
    return text


def dumpb(value: Any, *, sort_keys: bool = True) -> bytes:
    return dumps(value, sort_keys=sort_keys).encode("utf-8", "replace")  # lone surrogates


def format_float(x: float) -> str:
    """A float as serde_json writes it (shortest round-trip digits, as Python's repr)."""
    if not math.isfinite(x):
        return "null"  # serde_json: a non-finite f64 is null
    text = repr(x)
    at = text.find("e-0")
    if at == -1:
        return text
    mantissa, exponent = text[:at], int(text[at + 1 :])
    if exponent == -5:  # 1.5e-05: serde_json writes decimals down to 1e-5
        sign = "-" if mantissa.startswith("-") else ""
        return f"{sign}0.0000{mantissa.lstrip('-').replace('.', '')}"
    return f"{mantissa}e{exponent}"


def _exact(value: Any, sort_keys: bool) -> str:
    if isinstance(value, str):
        return encode_basestring(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, dict):
        items = [(k if isinstance(k, str) else _key(k), v) for k, v in value.items()]
        if sort_keys:
            items.sort(key=lambda item: item[0])
        inner = ",".join(f"{encode_basestring(k)}:{_exact(v, sort_keys)}" for k, v in items)
        return "{" + inner + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_exact(v, sort_keys) for v in value) + "]"
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _key(key: Any) -> str:
    """A non-string key as json.dumps converts it."""
    if isinstance(key, float):
        return format_float(key)
    if key is None or isinstance(key, (bool, int)):
        return _exact(key, False)
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")
