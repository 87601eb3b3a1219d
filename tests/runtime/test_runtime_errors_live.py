"""The recording of coglet's answers (tests/conformance/coglet_runtime.json) is what Cog
0.23.1's server answers now: each failure mode run on coglet itself, beside ours (whose
OpenAPI schema coglet validates inputs against, as `cog build` would have written it)."""

from __future__ import annotations

import pytest

from tests.conformance.runtime_compare import recorded, run_all

pytestmark = pytest.mark.slow  # coglet's server for every group: a minute


def test_coglet_answers_as_recorded() -> None:
    live = run_all(("ours", "coglet"))["coglet"]
    stored = recorded()
    changed = {k: (stored[k], v) for k, v in live.items() if stored.get(k) != v}
    assert not changed, "\n".join(
        f"{k}:\n  recorded {old.code} {old.body}\n  now      {new.code} {new.body}"
        for k, (old, new) in changed.items()
    )
