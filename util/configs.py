"""Frozen-dataclass configs: YAML file + `key=value` overrides, and the resolved config written out.

Every command that takes a config resolves it the same way:

    cfg = resolve_config(BuildConfig, "build.yaml", ["chunk_len=64", "dense=false"])
    write_resolved_config(cfg, out_dir)      # out_dir/config.yaml, so every output says how it was made

Values in overrides are parsed as YAML scalars (`true`, `3`, `1e-3`, `[1, 2]`), then checked against
the field's type, so `chunk_len=abc` fails with a one-line error naming the key.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override is wrong; the message names the file or key and the problem."""


def _coerce(cls: type, name: str, value: Any, hint: Any) -> Any:
    """Check (and gently convert) `value` for the field `name` whose annotation is `hint`."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        hint = args[0] if len(args) == 1 else hint
        origin = typing.get_origin(hint)
    if hint is Any or isinstance(hint, TypeVar):
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{cls.__name__}.{name}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)[:1] or (Any,)
        items = [_coerce(cls, name, v, item) for v in value]
        return tuple(items) if origin is tuple else items
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if hint in (int, float, str, bool) and not (
        isinstance(value, hint) and not (hint is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{cls.__name__}.{name}: expected {hint.__name__}, got {value!r}")
    return value


def config_from_dict(cls: type[T], values: dict[str, Any], source: str = "config") -> T:
    """Build dataclass `cls` from `values`, rejecting unknown keys and wrongly typed values."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(unknown)} for {cls.__name__} (known: {', '.join(sorted(names))})"
        )
    checked = {k: _coerce(cls, k, v, hints[k]) for k, v in values.items()}
    return cls(**checked)


def _is_str_field(cls: type | None, key: str) -> bool:
    if cls is None or key not in {f.name for f in dataclasses.fields(cls)}:
        return False
    hint = typing.get_type_hints(cls)[key]
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    return str in args


def parse_overrides(overrides: list[str], cls: type | None = None) -> dict[str, Any]:
    """['a=1', 'b=x'] -> {'a': 1, 'b': 'x'}; values are YAML scalars, except that a field of `cls`
    typed str keeps its raw text (so `dense=off` stays "off" instead of YAML's False)."""
    out: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value")
        key, raw = (part.strip() for part in item.split("=", 1))
        if _is_str_field(cls, key) and raw not in ("null", "~"):
            out[key] = raw
        else:
            try:
                out[key] = yaml.safe_load(raw) if raw else ""
            except yaml.YAMLError:
                raise ConfigError(f"override {item!r}: value is not a YAML scalar") from None
    return out


def resolve_config(
    cls: type[T],
    path: str | os.PathLike | None = None,
    overrides: list[str] | None = None,
    base: T | None = None,
) -> T:
    """Start from `base` (or the class defaults), apply a YAML file, then `key=value` overrides."""
    values: dict[str, Any] = dataclasses.asdict(base) if base is not None else {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: expected a mapping of key: value")
        values.update(loaded)
    values.update(parse_overrides(overrides or [], cls))
    return config_from_dict(cls, values, source=str(path) if path else "overrides")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass config as plain YAML/JSON-able values (tuples become lists)."""

    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return {k: plain(v) for k, v in dataclasses.asdict(cfg).items()}


def write_resolved_config(cfg: Any, out_dir: str | os.PathLike, name: str = "config.yaml") -> Path:
    """Write the resolved config into `out_dir/name` atomically and return its path."""
    from util.runinfo import atomic_write_text

    path = Path(out_dir) / name
    atomic_write_text(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    return path
