"""JSON Schema of the ``-o json`` contract, generated from the typed views.

:func:`document` turns view classes (dataclasses, see :mod:`iovctl.services.views`)
into one JSON Schema (draft 2020-12) with a ``$defs`` entry per view and, under
``x-iovctl-outputs``, what each command prints. The result is committed
(``docs/schema/iovctl-v1.json``); :func:`breaking_changes` says what a newer
schema removed, renamed or narrowed against it, which tests forbid (adding is fine).

Pure: no I/O. Must not import the CLI.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_NAME = "iovctl-v1"

_PRIMITIVES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def _describe(cls: type) -> str:
    doc = (cls.__doc__ or "").strip()
    return doc.split("\n\n")[0].replace("\n", " ")


def schema_of(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """The schema of type ``tp``; dataclasses go into ``defs`` and are referenced."""
    if tp in _PRIMITIVES:
        return {"type": _PRIMITIVES[tp]}
    if tp is Any:
        return {}
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        return {"const": args[0]} if len(args) == 1 else {"enum": list(args)}
    if origin in (types.UnionType, typing.Union):
        kinds = [schema_of(a, defs) for a in args]
        if all(set(k) == {"type"} for k in kinds):
            return {"type": [k["type"] for k in kinds]}
        return {"anyOf": kinds}
    if origin in (list, tuple, frozenset, set):
        return {"type": "array", "items": schema_of(args[0], defs)}
    if origin is dict:
        return {"type": "object", "additionalProperties": schema_of(args[1], defs)}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        name = tp.__name__
        if name not in defs:
            defs[name] = {}  # a placeholder first: recursive views terminate
            hints = typing.get_type_hints(tp)
            properties = {
                f.metadata.get("json", f.name): schema_of(hints[f.name], defs)
                for f in dataclasses.fields(tp)
            }
            defs[name] = {
                "type": "object",
                "description": _describe(tp),
                "properties": properties,
                "required": list(properties),
            }
        return {"$ref": f"#/$defs/{name}"}
    raise TypeError(f"no JSON schema for {tp!r}")


def document(outputs: dict[str, Any], title: str) -> dict[str, Any]:
    """One schema for every command's output: ``outputs`` maps a command to its type."""
    defs: dict[str, Any] = {}
    by_command = {command: schema_of(tp, defs) for command, tp in sorted(outputs.items())}
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": SCHEMA_NAME,
        "title": title,
        "description": "Keys are added, never renamed or removed (iovctl's -o json contract).",
        "x-iovctl-outputs": by_command,
        "$defs": dict(sorted(defs.items())),
    }


# -- compatibility ----------------------------------------------------------------------


def _resolve(node: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = doc["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _types(node: dict[str, Any]) -> set[str]:
    t = node.get("type")
    return set(t) if isinstance(t, list) else {t} if isinstance(t, str) else set()


def _compare(
    old: dict[str, Any],
    new: dict[str, Any],
    old_doc: dict[str, Any],
    new_doc: dict[str, Any],
    path: str,
    seen: set[tuple[int, int]],
) -> list[str]:
    old, new = _resolve(old, old_doc), _resolve(new, new_doc)
    if (id(old), id(new)) in seen:  # a view inside itself: compared further up already
        return []
    seen = seen | {(id(old), id(new))}  # the ancestors of this node, not all visited
    if "anyOf" in old or "anyOf" in new:
        olds = old.get("anyOf", [old])
        news = new.get("anyOf", [new])
        problems: list[str] = []
        for i, alternative in enumerate(olds):
            tries: list[list[str]] = [
                _compare(alternative, n, old_doc, new_doc, f"{path}|{i}", seen) for n in news
            ]
            if all(tries):  # no match: say what the closest alternative lacks
                # An alternative with another constant (action) is another kind of thing.
                problems += sorted(tries, key=lambda f: (_other_kind(f), len(f), f))[0]
        return problems
    if "const" in old and old.get("const") != new.get("const"):
        return [f"{path}: constant {old['const']!r} became {new.get('const')!r}"]
    lost = _types(old) - _types(new)
    if lost:
        return [f"{path}: type {sorted(_types(old))} narrowed to {sorted(_types(new))}"]
    problems = []
    for key, child in old.get("properties", {}).items():
        if key not in new.get("properties", {}):
            problems.append(f"{path}.{key}: removed or renamed")
        else:
            problems += _compare(
                child, new["properties"][key], old_doc, new_doc, f"{path}.{key}", seen
            )
    if "items" in old:
        problems += _compare(
            old["items"], new.get("items", {}), old_doc, new_doc, f"{path}[]", seen
        )
    return problems


def _other_kind(problems: list[str]) -> bool:
    return any(": constant " in p for p in problems)


def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What ``new`` breaks of ``old``: a command or key gone (removed or renamed), a
    type narrowed. Empty when ``new`` only adds."""
    problems = []
    for command, shape in old["x-iovctl-outputs"].items():
        if command not in new["x-iovctl-outputs"]:
            problems.append(f"{command}: output removed")
            continue
        problems += _compare(shape, new["x-iovctl-outputs"][command], old, new, command, set())
    return problems
