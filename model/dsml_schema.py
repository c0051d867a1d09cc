"""Tool schemas for the DSML tools block: pydantic argument models -> compact OpenAI function specs.

The tools block lists each function as one line of JSON (`json.dumps` with default separators, as the
official encoder writes it), so every key costs prompt tokens and attention. Pydantic's raw schema
carries titles, `$ref` indirections and `anyOf [T, null]` for optional fields; the model reads a plain
schema better, in the shape of the official example: `type`, `description`, then the rest.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

_FIRST_KEYS = ("type", "description", "enum", "items", "properties", "required")
_DROPPED = ("title", "$defs", "definitions")


def schema_from_model(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of an argument model, without titles, `$ref`s or null branches of optional fields."""
    raw = model.model_json_schema()
    defs = raw.get("$defs", {})
    schema = _clean(raw, defs)
    schema.setdefault("type", "object")
    schema.setdefault("properties", {})
    return schema


def function_spec(name: str, description: str, model: type[BaseModel]) -> dict[str, Any]:
    """An OpenAI function spec (the form `tool_schemas_block` and `StreamParser` take)."""
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": schema_from_model(model)},
    }


def _clean(node: Any, defs: dict[str, Any], expanding: tuple[str, ...] = ()) -> Any:
    if isinstance(node, list):
        return [_clean(item, defs, expanding) for item in node]
    if not isinstance(node, dict):
        return node
    node = _drop_null_branch(node)
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        rest = {k: v for k, v in node.items() if k != "$ref"}
        if name in expanding:  # a recursive model: say "object" rather than expand forever
            return _clean({"type": "object", **rest}, defs, expanding)
        return _clean({**defs.get(name, {}), **rest}, defs, (*expanding, name))
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED or (key == "additionalProperties" and value is False):
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {name: _clean(sub, defs, expanding) for name, sub in value.items()}
        else:
            out[key] = _clean(value, defs, expanding)
    first = {k: out.pop(k) for k in _FIRST_KEYS if k in out}
    return {**first, **out}


def _drop_null_branch(node: dict[str, Any]) -> dict[str, Any]:
    """`{"anyOf": [X, {"type": "null"}], "default": null}` (an optional field) -> X."""
    branches = node.get("anyOf")
    if not isinstance(branches, list):
        return node
    kept = [b for b in branches if b != {"type": "null"}]
    if len(kept) == len(branches) or not kept:
        return node
    rest = {k: v for k, v in node.items() if k != "anyOf" and not (k == "default" and v is None)}
    if len(kept) == 1 and isinstance(kept[0], dict):
        return {**kept[0], **rest}
    return {"anyOf": kept, **rest}
