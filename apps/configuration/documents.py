"""Pure document mechanics: deep merge, dotted paths, variables, schema defaults, checksum,
diff. No database access."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

__all__ = [
    "UnknownVariable",
    "canonical_checksum",
    "critical_paths",
    "deep_merge",
    "diff",
    "leaf_paths",
    "render",
    "schema_defaults",
    "set_path",
    "touching",
    "unset_path",
]

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)*)\s*\}\}")
_MISSING = object()


class UnknownVariable(Exception):
    """A placeholder names no variable."""

    def __init__(self, name: str, path: str) -> None:
        self.name = name
        self.path = path
        super().__init__(f"Unknown variable {name!r} at {path or '(root)'}.")


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``: objects merge key by key, anything else (lists included)
    replaces. Neither argument is modified; the result may share unmerged parts with them
    (copy it before changing it in place; ``render`` returns a fresh document)."""
    merged = dict(base)
    for key, value in override.items():
        present = merged.get(key)
        if isinstance(value, Mapping) and isinstance(present, Mapping):
            merged[key] = deep_merge(present, value)
        else:
            merged[key] = value
    return merged


def set_path(document: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted ``path`` (``network.wifi.ssid``), creating objects on the way."""
    *parents, last = path.split(".")
    node = document
    for key in parents:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[last] = value


def unset_path(document: dict[str, Any], path: str) -> bool:
    """Remove a dotted ``path``; empty parent objects go too. Whether something was removed."""
    *parents, last = path.split(".")
    trail: list[tuple[dict[str, Any], str]] = []
    node = document
    for key in parents:
        child = node.get(key)
        if not isinstance(child, dict):
            return False
        trail.append((node, key))
        node = child
    if last not in node:
        return False
    del node[last]
    for parent, key in reversed(trail):
        if parent[key]:
            break
        del parent[key]
    return True


def leaf_paths(document: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted paths of every non-object value (an empty object counts as a leaf)."""
    for key, value in document.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from leaf_paths(value, f"{path}.")
        else:
            yield path


def _lookup(variables: Mapping[str, Any], name: str) -> Any:
    node: Any = variables
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _render_text(text: str, variables: Mapping[str, Any], path: str) -> Any:
    whole = PLACEHOLDER.fullmatch(text.strip())
    if whole is not None:  # the value is one placeholder: keep the variable's own type
        found = _lookup(variables, whole.group(1))
        if found is _MISSING:
            raise UnknownVariable(whole.group(1), path)
        return copy.deepcopy(found)

    def replace(match: re.Match[str]) -> str:
        found = _lookup(variables, match.group(1))
        if found is _MISSING:
            raise UnknownVariable(match.group(1), path)
        return found if isinstance(found, str) else json.dumps(found)

    return PLACEHOLDER.sub(replace, text)


def render(value: Any, variables: Mapping[str, Any], path: str = "") -> Any:
    """``value`` with every ``{{ name }}`` in its strings replaced; UnknownVariable if one
    names nothing."""
    if isinstance(value, str):
        return _render_text(value, variables, path) if "{{" in value else value
    if isinstance(value, Mapping):
        return {
            key: render(item, variables, f"{path}.{key}" if path else key)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [render(item, variables, f"{path}[{index}]") for index, item in enumerate(value)]
    return value


def schema_defaults(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The ``default`` of every property of an object schema, recursively."""
    found: dict[str, Any] = {}
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return found
    for key, sub in properties.items():
        if not isinstance(sub, Mapping):
            continue
        if "default" in sub:
            found[key] = copy.deepcopy(sub["default"])
        elif sub.get("type") == "object":
            nested = schema_defaults(sub)
            if nested:
                found[key] = nested
    return found


def critical_paths(schema: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted paths of the properties marked ``"x-critical": true``, recursively."""
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return
    for key, sub in properties.items():
        if isinstance(sub, Mapping):
            if sub.get("x-critical") is True:
                yield f"{prefix}{key}"
            yield from critical_paths(sub, f"{prefix}{key}.")


def touching(keys: Iterable[str], marked: Iterable[str]) -> list[str]:
    """Keys equal to, under or above a marked path (``network`` covers ``network.apn``)."""
    marks = list(marked)
    return sorted(
        key
        for key in keys
        if any(key == m or key.startswith(f"{m}.") or m.startswith(f"{key}.") for m in marks)
    )


def canonical_checksum(document: Any) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no spaces, UTF-8)."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def diff(before: Any, after: Any, path: str = "") -> list[dict[str, Any]]:
    """``[{"op": "add"|"remove"|"replace", "path", "from", "to"}]`` by dotted path, objects
    compared key by key, anything else as a whole."""
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        changes: list[dict[str, Any]] = []
        for key in sorted(set(before) | set(after)):
            child = f"{path}.{key}" if path else key
            if key not in after:
                changes.append({"op": "remove", "path": child, "from": before[key], "to": None})
            elif key not in before:
                changes.append({"op": "add", "path": child, "from": None, "to": after[key]})
            else:
                changes.extend(diff(before[key], after[key], child))
        return changes
    if before == after:
        return []
    return [{"op": "replace", "path": path, "from": before, "to": after}]
