"""Cog's OpenAPI document for a predictor, built from the worker's description of its signature
(plain JSON): `Input`, `Output`, `x-order`, `x-cog-*` extensions, the paths and their bodies.

It needs nothing but the standard library: the image builder runs it in the image's own runtime
environment on every build, and the server's validation (runtime/schema.py) is not needed there.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from runtime.version import COG_VERSION

_JSON: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "any": {},
    "path": {"type": "string", "format": "uri"},
    "file": {"type": "string", "format": "uri"},
    "url": {"type": "string", "format": "uri"},
    "secret": {"type": "string", "format": "password", "writeOnly": True, "x-cog-secret": True},
    "dict": {"type": "object"},
}


def _title(name: str) -> str:
    """A property's title as Cog writes it: each `_`-separated word's first letter upper-cased."""
    return " ".join(word[:1].upper() + word[1:] for word in name.split("_"))


def omittable(kind: dict[str, Any]) -> bool:
    """An input without a default that may be left out (and is then None): `X | None`. As in
    Cog, a union of several members stays required without a default, even with None."""
    return bool(kind.get("nullable")) and kind["kind"] != "union"


def _json_type(kind: dict[str, Any]) -> dict[str, Any]:
    """An input's JSON Schema (and an output's, through `_output_type`)."""
    if kind["kind"] == "list":
        schema: dict[str, Any] = {"type": "array", "items": _json_type(kind["items"])}
    elif kind["kind"] == "union":
        # As Cog: each member, marked nullable as well when the union is
        variants = []
        for variant in kind["variants"]:
            member = _json_type(variant) if variant["kind"] != "any" else {"type": "object"}
            variants.append({**member, "nullable": True} if kind.get("nullable") else member)
        schema = {"anyOf": variants}
    elif kind["kind"] == "object":
        return _output_type(kind)
    else:
        schema = dict(_JSON[kind["kind"]])
    if kind.get("nullable"):
        schema["nullable"] = True
    return schema


def _output_type(kind: dict[str, Any]) -> dict[str, Any]:
    """An output's JSON Schema, as Cog's: models become objects whose properties carry titles
    (`required` lists the fields with neither a default nor Optional), lists and `dict[str, V]`
    nest, a bare list holds objects."""
    if kind["kind"] == "object":
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {
                name: {**_output_type(sub), "title": _title(name)}
                for name, sub in kind["fields"].items()
            },
        }
        if kind.get("required"):
            schema["required"] = list(kind["required"])
    elif kind["kind"] == "list":
        schema = {"type": "array", "items": _output_type(kind["items"])}
    elif kind["kind"] == "dict" and "values" in kind:
        schema = {"type": "object", "additionalProperties": _output_type(kind["values"])}
    else:
        schema = dict(_JSON[kind["kind"]])
    if kind.get("nullable"):
        schema["nullable"] = True
    return schema


def input_schema(signature: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The `Input` schema and the enum schemas its `choices` need (Cog names them by input)."""
    properties: dict[str, Any] = {}
    enums: dict[str, Any] = {}
    required = []
    for item in signature["inputs"]:
        name = item["name"]
        prop: dict[str, Any] = {"title": _title(name), "x-order": item["order"]}
        if "choices" in item:
            enums[name] = {
                "title": name,
                "description": "An enumeration.",
                "enum": item["choices"],
                **{k: v for k, v in _json_type(item["type"]).items() if k == "type"},
            }
            prop["allOf"] = [{"$ref": f"#/components/schemas/{name}"}]
        else:
            prop.update(_json_type(item["type"]))
        for key, target in (
            ("description", "description"),
            ("ge", "minimum"),
            ("le", "maximum"),
            ("min_length", "minLength"),
            ("max_length", "maxLength"),
            ("regex", "pattern"),
            ("deprecated", "deprecated"),
            ("accept", "x-cog-accept"),
        ):
            if key in item:
                prop[target] = item[key]
        if "default" in item:
            prop["default"] = item["default"]
        elif not omittable(item["type"]):
            required.append(name)
        properties[name] = prop
    schema: dict[str, Any] = {"title": "Input", "type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema, enums


def output_schema(signature: dict[str, Any]) -> dict[str, Any]:
    out = signature["output"]
    item = _output_type({k: v for k, v in out.items() if k not in ("iterator", "concatenate")})
    if out.get("iterator"):
        schema: dict[str, Any] = {"type": "array", "items": item, "x-cog-array-type": "iterator"}
        if out.get("concatenate"):
            schema["x-cog-array-display"] = "concatenate"
    else:
        schema = item
    return {"title": "Output", **schema}


_STATUS = {"title": "Status", "enum": ["starting", "processing", "succeeded", "canceled", "failed"]}


def openapi(signature: dict[str, Any], training: bool = False) -> dict[str, Any]:
    kind = "Training" if training else "Prediction"
    noun = "trainings" if training else "predictions"
    inputs, enums = input_schema(signature)
    output = output_schema(signature)
    in_name, out_name = ("TrainingInput", "TrainingOutput") if training else ("Input", "Output")
    request = {
        "title": f"{kind}Request",
        "type": "object",
        "properties": {
            "id": {"title": "Id", "type": "string"},
            "input": {"$ref": f"#/components/schemas/{in_name}"},
            "webhook": {"title": "Webhook", "type": "string", "format": "uri"},
            "webhook_events_filter": {
                "type": "array",
                "items": {"enum": ["start", "output", "logs", "completed"]},
                "default": ["start", "output", "logs", "completed"],
            },
            "context": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }
    response = {
        "title": f"{kind}Response",
        "type": "object",
        "properties": {
            "id": {"title": "Id", "type": "string"},
            "input": {"$ref": f"#/components/schemas/{in_name}"},
            "output": {"$ref": f"#/components/schemas/{out_name}"},
            "logs": {"title": "Logs", "type": "string", "default": ""},
            "error": {"title": "Error", "type": "string"},
            "status": {"$ref": "#/components/schemas/Status"},
            "metrics": {"title": "Metrics", "type": "object"},
        },
    }

    def operation(summary: str, body: bool, path_id: bool) -> dict[str, Any]:
        op: dict[str, Any] = {
            "summary": summary,
            "responses": {
                "200": {
                    "description": "Successful Response",
                    "content": {
                        "application/json": {
                            "schema": {"$ref": f"#/components/schemas/{kind}Response"}
                        }
                    },
                },
                "422": {"description": "Validation Error"},
            },
        }
        if body:
            op["requestBody"] = {
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{kind}Request"}}
                }
            }
            op["parameters"] = [
                {"name": "prefer", "in": "header", "required": False, "schema": {"type": "string"}}
            ]
        if path_id:
            op.setdefault("parameters", []).append(
                {
                    "name": f"{kind.lower()}_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                }
            )
        return op

    paths = {
        "/": {
            "get": {"summary": "Root", "responses": {"200": {"description": "Successful Response"}}}
        },
        "/health-check": {
            "get": {
                "summary": "Healthcheck",
                "responses": {"200": {"description": "Successful Response"}},
            }
        },
        f"/{noun}": {"post": operation(f"{kind}", True, False)},
        f"/{noun}/{{{kind.lower()}_id}}": {"put": operation(f"{kind} Idempotent", True, True)},
        f"/{noun}/{{{kind.lower()}_id}}/cancel": {"post": operation("Cancel", False, True)},
        "/shutdown": {
            "post": {
                "summary": "Start Shutdown",
                "responses": {"200": {"description": "Successful Response"}},
            }
        },
    }
    if signature.get("streaming"):
        paths[f"/{noun}"]["post"]["x-cog-streaming"] = True
    schemas = {
        in_name: inputs,
        out_name: output,
        f"{kind}Request": request,
        f"{kind}Response": response,
        "Status": _STATUS,
        **copy.deepcopy(enums),
    }
    return {
        "openapi": "3.0.2",
        # Cog writes its own version here, the one the image's run.cog.version label carries.
        "info": {"title": "Cog", "version": COG_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def static_rules(document: dict[str, Any]) -> dict[str, Any]:
    """`document` as Cog's static schema generator (COG_STATIC_SCHEMA=1) writes it: there,
    `default=None` on an input that is not nullable means "no default" (a seed made at run
    time), so the input is required; a Secret is the exception, where None means "no
    credential given", so it is nullable with its null default."""
    schemas = document["components"]["schemas"]
    for name in ("Input", "TrainingInput"):
        schema = schemas.get(name)
        if schema is None:
            continue
        properties: dict[str, Any] = schema["properties"]
        required = set(schema.get("required", []))
        for key, prop in properties.items():
            if prop.get("default", ...) is not None or prop.get("nullable"):
                continue
            if prop.get("x-cog-secret"):
                prop["nullable"] = True
            else:
                del prop["default"]
                required.add(key)
        if required:
            schema["required"] = sorted(required, key=lambda k: properties[k]["x-order"])
    return document


def main(argv: list[str]) -> int:
    """`python -m runtime.openapi SIGNATURE OUT [--static]`: the OpenAPI document for a
    signature the worker described, as the image's `run.cog.openapi_schema` label holds it.
    The image builder runs this from the image's own runtime environment, so the label is what
    that image's server serves."""
    source, target, *flags = argv
    with open(source) as f:
        document = openapi(json.load(f))
    if "--static" in flags:
        document = static_rules(document)
    with open(target, "w") as f:
        json.dump(document, f, sort_keys=True, separators=(",", ":"))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
