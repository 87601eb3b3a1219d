"""From annotations to types, as Cog resolves them (pkg/schema/types.go, schema_type.go):
inputs are JSON-native (primitives, lists, unions, opaque objects); outputs may also be
models (BaseModel, TypedDict) of the predict file or of local modules it imports."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from cog.project.static_schema.errors import (
    SchemaError,
    concat_iterator_not_str,
    optional_output,
    prefixed,
    unresolvable,
    unresolvable_imported,
    unsupported,
)
from cog.project.static_schema.hints import Ann
from cog.project.static_schema.imports import Imports
from cog.project.static_schema.literals import Lit

PRIMITIVES = ("bool", "float", "int", "str", "Path", "File", "Secret", "Any")
JSON_TYPES: dict[str, dict[str, object]] = {
    "bool": {"type": "boolean"},
    "float": {"type": "number"},
    "int": {"type": "integer"},
    "str": {"type": "string"},
    "Path": {"type": "string", "format": "uri"},
    "File": {"type": "string", "format": "uri"},
    "Secret": {"type": "string", "format": "password", "writeOnly": True, "x-cog-secret": True},
    "Any": {"type": "object"},
}


@dataclass(frozen=True)
class InType:
    kind: str  # prim, any, array, union
    prim: str = "Any"
    elem: InType | None = None
    variants: tuple[InType, ...] = ()
    nullable: bool = False


def in_prim(prim: str) -> InType:
    return InType("any") if prim == "Any" else InType("prim", prim)


@dataclass(frozen=True)
class FieldType:
    prim: str
    rep: str  # required, optional, repeated, optional_repeated


# ---- inputs -------------------------------------------------------------------------------


def resolve_input(ann: Ann, imports: Imports, typed_dicts: set[str]) -> tuple[InType, FieldType]:
    found = _input(ann, imports, typed_dicts)
    return found, field_type_of(found)


def _simple_input(ann: Ann, imports: Imports, typed_dicts: set[str]) -> InType:
    name = ann.name
    if name in typed_dicts:
        return InType("any")
    resolved, entry, qualified = imports.resolve_qualified(name)
    module = ""
    if qualified:
        name = resolved
        module = entry.module if entry else ""
        if f"{entry.original if entry else ''}.{name}" in typed_dicts:
            return InType("any")
    if name in typed_dicts or name in ("dict", "Dict"):
        return InType("any")
    if name not in PRIMITIVES:
        if module:
            raise unresolvable_imported(name, module)
        imported = imports.get(name)
        if imported is not None:
            raise unresolvable_imported(name, imported.module)
        raise unsupported(name)
    return in_prim(name)


def _input(ann: Ann, imports: Imports, typed_dicts: set[str]) -> InType:
    opaque = unwrap_opaque(ann, imports)
    if opaque is not None:
        return in_type_of(opaque_field_type(opaque, imports))
    if ann.kind == "simple":
        return _simple_input(ann, imports, typed_dicts)
    if ann.kind == "generic":
        outer = imports.resolve_qualified(ann.name)[0]
        if outer in ("dict", "Dict"):
            return InType("any")
        if outer == "Optional":
            if len(ann.args) != 1:
                raise unsupported(f"Optional expects exactly 1 type argument, got {len(ann.args)}")
            inner = _input(ann.args[0], imports, typed_dicts)
            return dataclasses.replace(inner, nullable=True)
        if outer == "Union":
            return _input_union(ann.args, imports, typed_dicts)
        if imports.is_annotated(ann.name):
            return _input(ann.args[0], imports, typed_dicts)
        if outer in ("List", "list"):
            if len(ann.args) != 1:
                raise unsupported(f"List expects exactly 1 type argument, got {len(ann.args)}")
            opaque_inner = unwrap_opaque(ann.args[0], imports)
            if opaque_inner is not None:
                inner = in_type_of(opaque_field_type(opaque_inner, imports))
            else:
                inner = _input(ann.args[0], imports, typed_dicts)
            if inner.nullable or inner.kind in ("array", "union"):
                raise unsupported("nested generics like List[Optional[X]] are not supported")
            return InType("array", elem=inner)
        raise unsupported(f"{outer}[...] is not a supported input type")
    return _input_union(ann.args, imports, typed_dicts)


def _input_union(args: tuple[Ann, ...], imports: Imports, typed_dicts: set[str]) -> InType:
    variants: list[InType] = []
    nullable = False
    for arg in args:
        if arg.kind == "simple" and arg.name == "None":
            nullable = True
            continue
        if arg.kind == "union" or (arg.kind == "generic" and arg.name == "Union"):
            raise unsupported("nested union inputs are not supported")
        variant = _input(arg, imports, typed_dicts)
        if variant.kind == "union":
            raise unsupported("nested union inputs are not supported")
        variants.append(variant)
    if not variants:
        raise unsupported("union inputs must include at least one non-None type")
    if len(variants) == 1:
        only = variants[0]
        return dataclasses.replace(only, nullable=only.nullable or nullable)
    for variant in variants:
        _check_union_variant(variant)
    return InType("union", variants=tuple(variants), nullable=nullable)


def _check_union_variant(variant: InType) -> None:
    if variant.nullable:
        raise unsupported("nested nullable variants are not supported in union inputs")
    if variant.kind == "prim" and variant.prim in ("Path", "File", "Secret"):
        raise unsupported(f"{variant.prim} is not supported in union inputs")
    if variant.kind == "array" and variant.elem is not None:
        _check_union_variant(variant.elem)
    if variant.kind == "union":
        raise unsupported("nested union inputs are not supported")


def in_type_of(ft: FieldType) -> InType:
    found = InType("any") if ft.prim == "Any" else in_prim(ft.prim)
    if ft.rep in ("repeated", "optional_repeated"):
        found = InType("array", elem=found)
    if ft.rep in ("optional", "optional_repeated"):
        found = dataclasses.replace(found, nullable=True)
    return found


def field_type_of(t: InType) -> FieldType:
    rep = "optional" if t.nullable else "required"
    if t.kind == "prim":
        return FieldType(t.prim, rep)
    if t.kind == "array":
        array_rep = "optional_repeated" if t.nullable else "repeated"
        if t.elem is not None and t.elem.kind == "prim":
            return FieldType(t.elem.prim, array_rep)
        return FieldType("Any", array_rep)
    return FieldType("Any", rep)


def unwrap_opaque(ann: Ann, imports: Imports) -> Ann | None:
    """`Annotated[X, Opaque]` → X."""
    if ann.kind != "generic" or not imports.is_annotated(ann.name) or len(ann.args) < 2:
        return None
    for metadata in ann.args[1:]:
        if metadata.kind == "simple" and imports.is_opaque(metadata.name):
            return ann.args[0]
    return None


def opaque_field_type(inner: Ann, imports: Imports) -> FieldType:
    unwrapped = unwrap_opaque(inner, imports)
    if unwrapped is not None:
        return opaque_field_type(unwrapped, imports)
    if inner.kind == "simple" and imports.container_name(inner.name) in ("List", "list"):
        return FieldType("Any", "repeated")
    if inner.kind == "generic":
        outer = imports.container_name(inner.name)
        optional_inner = unwrap_opaque_optional(inner, imports)
        if optional_inner is not None:
            return FieldType("Any", _optional_rep(opaque_field_type(optional_inner, imports)))
        if outer is None:
            return FieldType("Any", "required")
        if outer in ("List", "list"):
            return FieldType("Any", "repeated")
        if outer == "Optional" and len(inner.args) == 1:
            return FieldType("Any", _optional_rep(opaque_field_type(inner.args[0], imports)))
    if inner.kind == "union":
        optional_inner = unwrap_optional(inner)
        if optional_inner is not None:
            return FieldType("Any", _optional_rep(opaque_field_type(optional_inner, imports)))
    return FieldType("Any", "required")


def _optional_rep(ft: FieldType) -> str:
    return "optional_repeated" if ft.rep == "repeated" else "optional"


def unwrap_opaque_optional(ann: Ann, imports: Imports) -> Ann | None:
    if ann.kind == "generic":
        name = imports.container_name(ann.name)
        if name is None:
            return None
        if name == "Optional" and len(ann.args) == 1:
            return ann.args[0]
        if name == "Union" and len(ann.args) == 2:
            for i, arg in enumerate(ann.args):
                if arg.kind == "simple" and arg.name == "None":
                    return ann.args[1 - i]
    return unwrap_optional(ann)


def unwrap_optional(ann: Ann) -> Ann | None:
    """Optional[X], Union[X, None] or X | None → X."""
    if ann.kind == "generic" and ann.name == "Optional" and len(ann.args) == 1:
        return ann.args[0]
    if ((ann.kind == "generic" and ann.name == "Union") or ann.kind == "union") and len(
        ann.args
    ) == 2:
        for i, arg in enumerate(ann.args):
            if arg.kind == "simple" and arg.name == "None":
                return ann.args[1 - i]
    return None


# ---- outputs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelField:
    name: str
    type: Ann
    default: Lit | None
    key_required: bool | None


Models = dict[str, list[ModelField]]


@dataclass
class SType:
    kind: str  # prim, any, array, dict, object, iterator, concat
    prim: str = ""
    inner: SType | None = None  # an array's items, a dict's values, an iterator's elements
    fields: list[tuple[str, SField]] | None = None
    nullable: bool = False


@dataclass
class SField:
    type: SType
    default: Lit | None
    required: bool


def resolve_output(ann: Ann, imports: Imports, models: Models) -> SType:
    return _output(ann, imports, models, set())


def _output(ann: Ann, imports: Imports, models: Models, seen: set[str]) -> SType:
    opaque = unwrap_opaque(ann, imports)
    if opaque is not None:
        if unwrap_opaque_optional(opaque, imports) is not None:
            raise optional_output()
        return _opaque_output(opaque, imports)
    if ann.kind == "generic" and imports.is_annotated(ann.name):
        return _output(ann.args[0], imports, models, seen)
    if ann.kind == "simple":
        return _simple_output(ann, imports, models, seen)
    if ann.kind == "generic":
        return _generic_output(ann, imports, models, seen)
    return _union_output(ann)


def _opaque_output(inner: Ann, imports: Imports) -> SType:
    if inner.kind == "simple" and imports.container_name(inner.name) in ("list", "List"):
        return SType("array", inner=SType("prim", "Any"))
    is_list = imports.container_name(inner.name) in ("list", "List")
    if inner.kind == "generic" and is_list and len(inner.args) == 1:
        return SType("array", inner=SType("prim", "Any"))
    return SType("prim", "Any")


def _simple_output(ann: Ann, imports: Imports, models: Models, seen: set[str]) -> SType:
    name = ann.name
    if name in models:
        return _named_model(name, models[name], imports, models, seen)
    resolved, entry, qualified = imports.resolve_qualified(name)
    module = ""
    if qualified:
        name = resolved
        module = entry.module if entry else ""
        key = f"{entry.original if entry else ''}.{name}"
        if key in models:
            return _named_model(key, models[key], imports, models, seen)
    if not qualified and name in models:
        return _named_model(name, models[name], imports, models, seen)
    if name in ("Any", "dict", "Dict"):
        return SType("any")
    if imports.container_name(ann.name) in ("list", "List"):
        return SType("array", inner=SType("any"))
    if name not in PRIMITIVES:
        if module:
            raise unresolvable_imported(name, module)
        imported = imports.get(name)
        if imported is not None:
            raise unresolvable_imported(name, imported.module)
        raise unresolvable(name)
    return SType("prim", name)


def _named_model(
    name: str, fields: list[ModelField], imports: Imports, models: Models, seen: set[str]
) -> SType:
    if name in seen:  # a model that contains itself: an opaque object there
        return SType("any")
    seen.add(name)
    try:
        return _model(fields, imports, models, seen)
    finally:
        seen.discard(name)


def _generic_output(ann: Ann, imports: Imports, models: Models, seen: set[str]) -> SType:
    outer = imports.resolve_qualified(ann.name)[0]
    if outer in ("dict", "Dict"):
        if len(ann.args) == 2:
            try:
                value = _output(ann.args[1], imports, models, seen)
            except SchemaError as e:
                raise prefixed("resolving dict value type", e) from None
            return SType("dict", inner=value)
        raise unsupported("dict expects 0 or 2 type arguments")
    if outer == "Optional":
        if len(ann.args) != 1:
            raise unsupported("Optional expects exactly 1 type argument")
        raise optional_output()
    if outer == "Union":
        return _union_output(Ann("union", args=ann.args))
    if imports.container_name(ann.name) in ("List", "list"):
        if len(ann.args) != 1:
            raise unsupported("list expects exactly 1 type argument")
        return SType("array", inner=_output(ann.args[0], imports, models, seen))
    if outer in ("Iterator", "AsyncIterator"):
        if len(ann.args) != 1:
            raise unsupported("Iterator expects exactly 1 type argument")
        return SType("iterator", inner=_output(ann.args[0], imports, models, seen))
    if outer in ("ConcatenateIterator", "AsyncConcatenateIterator"):
        if len(ann.args) != 1:
            raise unsupported("ConcatenateIterator expects exactly 1 type argument")
        inner = ann.args[0]
        if inner.kind != "simple":
            raise unsupported("ConcatenateIterator element type must be a simple type")
        if inner.name != "str":
            raise concat_iterator_not_str(inner.name)
        return SType("concat", inner=SType("prim", "str"))
    raise unsupported(f"{outer}[...] is not a supported output type")


def _union_output(ann: Ann) -> SType:
    if unwrap_optional(ann) is not None:
        raise optional_output()
    raise unsupported("union types are not supported as output")


def _model(fields: list[ModelField], imports: Imports, models: Models, seen: set[str]) -> SType:
    resolved: list[tuple[str, SField]] = []
    for f in fields:
        try:
            st, required = _field(f.type, imports, models, seen)
        except SchemaError as e:
            raise prefixed(f'field "{f.name}"', e) from None
        if f.key_required is not None:
            required = f.key_required
        if f.default is not None:
            required = False
        resolved.append((f.name, SField(st, f.default, required)))
    return SType("object", fields=_dedupe(resolved))


def _dedupe(fields: list[tuple[str, SField]]) -> list[tuple[str, SField]]:
    """An ordered map: a field declared twice keeps its first place and its last value."""
    order: dict[str, SField] = {}
    for name, f in fields:
        order[name] = f
    return list(order.items())


def _field(ann: Ann, imports: Imports, models: Models, seen: set[str]) -> tuple[SType, bool]:
    opaque = unwrap_opaque(ann, imports)
    if opaque is not None:
        optional_inner = _field_optional(opaque, imports)
        if optional_inner is not None:
            st = _opaque_output(optional_inner, imports)
            st.nullable = True
            return st, False
        return _opaque_output(opaque, imports), True
    if ann.kind == "generic" and imports.is_annotated(ann.name):
        return _field(ann.args[0], imports, models, seen)
    inner = _field_optional(ann, imports)
    if inner is not None:
        st = _output(inner, imports, models, seen)
        st.nullable = True
        return st, False
    return _output(ann, imports, models, seen), True


def _field_optional(ann: Ann, imports: Imports) -> Ann | None:
    found = unwrap_opaque_optional(ann, imports)
    return found if found is not None else unwrap_optional(ann)
