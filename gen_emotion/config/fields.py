"""A typed-config engine: dataclasses whose fields are declared with ``arg`` (default, help, range, choices),
built from plain dicts (as read from YAML) with every value checked against its field's type and constraints.

``build`` makes a dataclass (nested dataclasses for sections) from a dict: an unknown key is refused with the
closest known one, a YAML-ish value is coerced to the declared type (``5e-5`` to a float, one string to a
one-item list), ranges and choices are checked. ``read_yaml`` reads a YAML file (UTF-8, no key given twice) and
``apply_override`` applies one ``section.key=value``. Every problem is one ``ConfigError`` line naming where.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable
from dataclasses import field
from pathlib import Path
from typing import Any

import yaml

from gen_emotion.core.errors import GenEmotionError


class ConfigError(GenEmotionError):
    """A config file, value or override is invalid."""


def arg(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    low: float | None = None,
    high: float | None = None,
    above: float | None = None,
    choices: tuple[str, ...] | None = None,
    factory: Callable[[], Any] | None = None,
) -> Any:
    """A config field: default, help, and its constraints (``low <= v <= high``, ``v > above``, ``choices``)."""
    metadata = {"help": help, "low": low, "high": high, "above": above, "choices": choices}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0])
    if tp is Any:
        return value
    if origin is list:
        (item_type,) = typing.get_args(tp)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{where}: {key} must be a non-empty list, got {value!r}")
        return [_coerce(item, item_type, key, where) for item in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        if isinstance(value, str):  # YAML reads 5e-5 as a string
            try:
                number = float(value)
            except ValueError:
                pass
            else:
                if math.isfinite(number):
                    return number
    elif tp is str and isinstance(value, str):
        return value
    raise ConfigError(f"{where}: {key} must be {_type_name(tp)}, got {value!r}")


def describe_constraints(meta: typing.Mapping[str, Any], name: Callable[[str], str] = str) -> list[str]:
    """A field's declared choices and range in words (``one of a, b``, ``>= 1``, ...), each choice written by
    ``name``: what ``gen-emotion show`` and the recipe-field reference print beside its help."""
    parts = []
    if meta.get("choices"):
        parts.append("one of " + ", ".join(name(c) for c in meta["choices"]))
    if meta.get("low") is not None:
        parts.append(f">= {meta['low']:g}")
    if meta.get("above") is not None:
        parts.append(f"> {meta['above']:g}")
    if meta.get("high") is not None:
        parts.append(f"<= {meta['high']:g}")
    return parts


def _check_field(value: Any, meta: typing.Mapping[str, Any], key: str, where: str) -> None:
    """The declared range and choices of one field (``None`` passes: it means "not set"; the choices of a list
    field are those of each item)."""
    if value is None:
        return
    choices = meta.get("choices")
    for item in value if isinstance(value, list) else [value]:  # a list's choices hold for each of its items
        if choices and item not in choices:
            raise ConfigError(f"{where}: {key} must be one of {', '.join(choices)}, got {item!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        low, high, above = meta.get("low"), meta.get("high"), meta.get("above")
        if low is not None and value < low:
            raise ConfigError(f"{where}: {key} must be at least {low:g}, got {value!r}")
        if above is not None and value <= above:
            raise ConfigError(f"{where}: {key} must be above {above:g}, got {value!r}")
        if high is not None and value > high:
            raise ConfigError(f"{where}: {key} must be at most {high:g}, got {value!r}")


def build(cls: type, values: Any, where: str, whole: str = "the config", prefix: str = "") -> Any:
    """Dataclass ``cls`` from the dict ``values`` (a section's ``None`` is its defaults), every value checked;
    ``where`` (a file) starts every error, ``whole`` names the top-level mapping in them."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: {prefix.rstrip('.') or whole} must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        full = f"{prefix}{key}"
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean {prefix}{close[0]}?" if close else f"; known keys: {', '.join(fields)}"
            raise ConfigError(f"{where}: unknown key {full!r}{hint}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = build(tp, value if value is not None else {}, where, whole, f"{full}.")
        else:
            kwargs[key] = _coerce(value, tp, full, where)
            _check_field(kwargs[key], fields[key].metadata, full, where)
    return cls(**kwargs)


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (first on line {seen[key]})", key_node.start_mark
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
    """A YAML file's contents; not UTF-8, not YAML, or a key given twice is a one-line error with the line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: line {line}: not UTF-8 (byte {err.object[err.start]:#04x}); save it as UTF-8"
        ) from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f" line {mark.line + 1}:" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        if "given twice" in problem:
            raise ConfigError(f"{path}:{line} {problem}") from None
        raise ConfigError(f"{path}:{line} not valid YAML ({problem})") from None


def apply_override(values: dict[str, Any], override: str) -> None:
    """Apply one ``section.key=value`` override (the value is read as YAML) to a config dict."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} must look like section.key=value")
    dotted, raw = override.split("=", 1)
    parts = [p for p in dotted.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override {override!r} has no key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    node = values
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {part} is not a section")
        node = child
    node[parts[-1]] = value
