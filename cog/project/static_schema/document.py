"""The OpenAPI 3.0.2 document of a predictor, as Cog's pkg/schema/openapi_spec.go builds it:
the same components, paths and keys, and the same rule for `default=None` (no default, so
required, unless the input is nullable or a Secret)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cog.project.static_schema.gojson import Ordered, encode
from cog.project.static_schema.predictor import InputField
from cog.project.static_schema.types import JSON_TYPES, InType, SType


@dataclass
class PredictorInfo:
    inputs: dict[str, InputField]
    output: SType
    train: bool
    streaming: bool
    concurrency_max: int | None
    is_async: bool


def title_case(name: str) -> str:
    return " ".join(p[:1].upper() + p[1:] if p else p for p in name.split("_"))


def _json_type(prim: str) -> dict[str, Any]:
    return dict(JSON_TYPES.get(prim, {"type": "object"}))


def output_schema(t: SType, top: bool = True) -> dict[str, Any]:
    schema = _core(t)
    if top:
        schema["title"] = "Output"
    if t.nullable:
        schema["nullable"] = True
    return schema


def _core(t: SType) -> dict[str, Any]:
    if t.kind == "prim":
        return _json_type(t.prim)
    if t.kind == "any":
        return {"type": "object"}
    if t.kind == "array":
        items = output_schema(t.inner, False) if t.inner else {"type": "object"}
        return {"type": "array", "items": items}
    if t.kind == "dict":
        schema: dict[str, Any] = {"type": "object"}
        if t.inner is not None:
            schema["additionalProperties"] = output_schema(t.inner, False)
        return schema
    if t.kind == "object":
        if t.fields is None:
            return {"type": "object"}
        properties = Ordered()
        required = []
        for name, f in t.fields:
            prop = output_schema(f.type, False)
            prop["title"] = title_case(name)
            if f.required and f.default is None:
                required.append(name)
            properties[name] = prop
        schema = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        return schema
    items = output_schema(t.inner, False) if t.inner else {"type": "object"}
    schema = {"type": "array", "items": items, "x-cog-array-type": "iterator"}
    if t.kind == "concat":
        schema["x-cog-array-display"] = "concatenate"
    return schema


def _input_type(t: InType) -> dict[str, Any]:
    if t.kind == "prim":
        schema = _json_type(t.prim)
    elif t.kind == "array":
        schema = {"type": "array", "items": _input_type(t.elem) if t.elem else _json_type("Any")}
    elif t.kind == "union":
        variants = []
        for variant in t.variants:
            member = _input_type(variant)
            if t.nullable:
                member["nullable"] = True
            variants.append(member)
        schema = {"anyOf": variants}
    else:
        schema = _json_type("Any")
    if t.nullable:
        schema["nullable"] = True
    return schema


def input_schema(info: PredictorInfo) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    properties = Ordered()
    required: list[str] = []
    enums: list[tuple[str, dict[str, Any]]] = []
    for name, f in info.inputs.items():
        prop: dict[str, Any] = {"x-order": f.order}
        data = f.info
        if data.choices:
            kind = _json_type(f.field_type.prim).get("type") or "string"
            enums.append(
                (
                    name,
                    {
                        "title": name,
                        "description": "An enumeration.",
                        "enum": [c.to_json() for c in data.choices],
                        "type": kind,
                    },
                )
            )
            prop["allOf"] = [{"$ref": "#/components/schemas/" + name}]
        else:
            prop["title"] = title_case(name)
            prop.update(_input_type(f.input_type))
        rep = f.field_type.rep
        nullable = rep in ("optional", "optional_repeated") or f.input_type.nullable
        default = data.default
        if (
            f.field_type.prim == "Secret"
            and rep == "required"
            and default is not None
            and default.kind == "none"
        ):
            nullable = True
        effective = default is not None and not (default.kind == "none" and not nullable)
        if not effective and (f.input_type.kind == "union" or rep in ("required", "repeated")):
            required.append(name)
        if effective and default is not None:
            prop["default"] = default.to_json()
        if nullable:
            prop["nullable"] = True
        if data.description is not None:
            prop["description"] = data.description
        if data.ge is not None:
            prop["minimum"] = data.ge
        if data.le is not None:
            prop["maximum"] = data.le
        if data.min_length is not None:
            prop["minLength"] = data.min_length
        if data.max_length is not None:
            prop["maxLength"] = data.max_length
        if data.regex is not None:
            prop["pattern"] = data.regex
        if data.deprecated:
            prop["deprecated"] = True
        if data.accept is not None:
            prop["x-cog-accept"] = data.accept
        properties[name] = prop
    schema: dict[str, Any] = {"title": "Input", "type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema, enums


_OK = {"description": "Successful Response", "content": {"application/json": {"schema": {}}}}
_INVALID = {
    "description": "Validation Error",
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}
    },
}


def document(info: PredictorInfo, version: str) -> dict[str, Any]:
    inputs, enums = input_schema(info)
    if info.train:
        noun, request, response, in_key, out_key = (
            "trainings",
            "TrainingRequest",
            "TrainingResponse",
            "TrainingInput",
            "TrainingOutput",
        )
        summary, description, op_id, param = (
            "Train",
            "Run a single training on the model",
            "train_trainings_post",
            "training_id",
        )
    else:
        noun, request, response, in_key, out_key = (
            "predictions",
            "PredictionRequest",
            "PredictionResponse",
            "Input",
            "Output",
        )
        summary, description, op_id, param = (
            "Predict",
            "Run a single prediction on the model",
            "predict_predictions_post",
            "prediction_id",
        )
    components = Ordered()
    inputs["title"] = in_key
    components[in_key] = inputs
    components[out_key] = output_schema(info.output)
    for name, schema in enums:
        components[name] = schema
    in_ref, out_ref = f"#/components/schemas/{in_key}", f"#/components/schemas/{out_key}"
    components[request] = {
        "title": request,
        "type": "object",
        "properties": {"id": {"title": "Id", "type": "string"}, "input": {"$ref": in_ref}},
    }
    components[response] = {
        "title": response,
        "type": "object",
        "properties": {
            "input": {"$ref": in_ref},
            "output": {"$ref": out_ref},
            "id": {"title": "Id", "type": "string"},
            "version": {"title": "Version", "type": "string"},
            "created_at": {"title": "Created At", "type": "string", "format": "date-time"},
            "started_at": {"title": "Started At", "type": "string", "format": "date-time"},
            "completed_at": {"title": "Completed At", "type": "string", "format": "date-time"},
            "status": {"title": "Status", "type": "string"},
            "error": {"title": "Error", "type": "string"},
            "logs": {"title": "Logs", "type": "string"},
            "metrics": {"title": "Metrics", "type": "object"},
        },
    }
    components["Status"] = {
        "title": "Status",
        "description": "An enumeration.",
        "enum": ["starting", "processing", "succeeded", "canceled", "failed"],
        "type": "string",
    }
    components["HTTPValidationError"] = {
        "title": "HTTPValidationError",
        "type": "object",
        "properties": {
            "detail": {
                "title": "Detail",
                "type": "array",
                "items": {"$ref": "#/components/schemas/ValidationError"},
            }
        },
    }
    components["ValidationError"] = {
        "title": "ValidationError",
        "required": ["loc", "msg", "type"],
        "type": "object",
        "properties": {
            "loc": {
                "title": "Location",
                "type": "array",
                "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            },
            "msg": {"title": "Message", "type": "string"},
            "type": {"title": "Error Type", "type": "string"},
        },
    }
    paths = Ordered()
    paths["/"] = {"get": {"summary": "Root", "operationId": "root__get", "responses": {"200": _OK}}}
    paths["/health-check"] = {
        "get": {
            "summary": "Healthcheck",
            "operationId": "healthcheck_health_check_get",
            "responses": {"200": _OK},
        }
    }
    main: dict[str, Any] = {
        "summary": summary,
        "description": description,
        "operationId": op_id,
        "requestBody": {
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{request}"}}}
        },
        "responses": {
            "200": {
                "description": "Successful Response",
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{response}"}}
                },
            },
            "422": _INVALID,
        },
    }
    if not info.train and info.streaming:
        main["x-cog-streaming"] = True
    paths[f"/{noun}"] = {"post": main}
    paths[f"/{noun}/{{{param}}}/cancel"] = {
        "post": {
            "summary": "Cancel",
            "operationId": f"cancel_{noun}__{param}__cancel_post",
            "parameters": [
                {
                    "required": True,
                    "schema": {"title": title_case(param), "type": "string"},
                    "name": param,
                    "in": "path",
                }
            ],
            "responses": {"200": _OK, "422": _INVALID},
        }
    }
    return {
        "openapi": "3.0.2",
        "info": {"title": "Cog", "version": version},
        "paths": paths,
        "components": {"schemas": components},
    }


def document_bytes(info: PredictorInfo, version: str) -> str:
    return encode(document(info, version))
