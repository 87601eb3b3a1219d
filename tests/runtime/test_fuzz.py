"""Fuzzing /predictions from the server's own /openapi.json: no 5xx, and it stays READY.

Valid inputs are drawn from the `Input` schema (each property's type, bounds, pattern and
enum) and must never be refused;
arbitrary JSON, with the schema's names and others, must be answered 200 or 422, never 5xx.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.runtime_server import Server, serve

FUZZED = ("hello.py:Predictor", "function.py:predict", "iterate.py:Predictor")


@pytest.fixture(scope="module", params=FUZZED)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    with serve(request.param) as s:
        yield s


def value_of(prop: dict[str, Any], components: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid for one property of a Cog `Input` schema (the subset Cog emits)."""
    if "allOf" in prop:
        ref = prop["allOf"][0]["$ref"].rsplit("/", 1)[-1]
        base: st.SearchStrategy[Any] = st.sampled_from(components[ref]["enum"])
    elif prop.get("type") == "string":
        if prop.get("format") == "uri":
            base = st.just("data:text/plain;base64,aGk=")
        elif "pattern" in prop:
            base = st.from_regex(prop["pattern"], fullmatch=True)
        else:
            base = st.text(min_size=prop.get("minLength", 0), max_size=prop.get("maxLength", 30))
    elif prop.get("type") == "integer":
        base = st.integers(prop.get("minimum"), prop.get("maximum"))
    elif prop.get("type") == "number":
        base = st.floats(
            prop.get("minimum"), prop.get("maximum"), allow_nan=False, allow_infinity=False
        )
    elif prop.get("type") == "boolean":
        base = st.booleans()
    elif prop.get("type") == "array":
        base = st.lists(value_of(prop["items"], components), max_size=4)
    else:
        base = st.none()
    # `nullable` means the input may be left out: an explicit null is refused, as by Cog
    return base


def valid_inputs(server: Server) -> tuple[st.SearchStrategy[dict[str, Any]], list[str]]:
    components = server.http.get("/openapi.json").json()["components"]["schemas"]
    schema = components["Input"]
    required = set(schema.get("required", []))
    fields = {n: value_of(p, components) for n, p in schema["properties"].items()}
    return (
        st.fixed_dictionaries(
            {n: s for n, s in fields.items() if n in required},
            optional={n: s for n, s in fields.items() if n not in required},
        ),
        list(fields),
    )


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


def test_valid_inputs_from_the_schema_succeed(server: Server) -> None:
    inputs, _ = valid_inputs(server)

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(inputs)
    def check(value: dict[str, Any]) -> None:
        response = server.http.post("/predictions", json={"input": value})
        assert response.status_code == 200, (value, response.text)  # never refused as invalid
        result = response.json()
        # The predictor may fail on purpose (iterate's fail_at); the server must not.
        assert result["status"] == "succeeded" or result["error"].startswith(
            "Prediction failed: Generator iteration error: RuntimeError: failed at"
        )

    check()
    assert server.health()["status"] == "READY"


def test_arbitrary_json_is_never_a_server_error(server: Server) -> None:
    _, names = valid_inputs(server)
    keys = st.sampled_from(names) | st.text(max_size=8) if names else st.text(max_size=8)

    @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.dictionaries(keys, JSON, max_size=5) | JSON)
    def check(value: Any) -> None:
        response = server.http.post("/predictions", json={"input": value})
        assert response.status_code in (200, 422), (value, response.status_code, response.text)
        if response.status_code == 200:
            assert response.json()["status"] in ("succeeded", "failed")

    check()
    assert server.health()["status"] == "READY"
