"""The one YAML-to-dataclass loader: a mapping (from YAML, JSON or a checkpoint) -> a typed config.

:func:`from_dict` builds a (possibly nested, possibly frozen) dataclass from a mapping: unknown
keys are one error line naming the file and the key(s) with their dotted path; values are checked
against the field types (bool, int, float, str, Path, tuple, optional, nested dataclass) and
converted where the conversion loses nothing. :func:`read_yaml` reads the file with one-line
errors. pipeline.config, PIRender.training.config and vico.models.config use both.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

from common.io import UserError

T = TypeVar("T")


def read_yaml(path: str | Path, what: str = "config") -> Any:
    """The parsed YAML file (``None`` for an empty file); one-line errors for a missing file or bad YAML."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: {what} file not found")
    try:
        return yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"{p}: not valid YAML ({' '.join(str(e).split())})") from None


def from_dict(cls: type[T], data: Any, source: str, *, what: str = "key", path: str = "") -> T:
    """Build dataclass ``cls`` from ``data`` (a mapping); missing keys keep their defaults.

    ``source`` names the file in every message; ``what`` names the keys in the unknown-key message
    (``'key'`` -> "unknown key(s) ['a.b']"); ``path`` is the dotted prefix of nested mappings.
    """
    where = f"{source}: {path.rstrip('.')}:" if path else f"{source}:"
    if not isinstance(data, dict):
        raise UserError(f"{where} expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise UserError(f"{source}: unknown {what}(s) {[path + str(k) for k in unknown]} "
                        f"(known: {', '.join(fields)})")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _convert(hints[k], v, source, f"{path}{k}", what) for k, v in data.items()}
    return cls(**kwargs)


def _convert(tp: Any, v: Any, source: str, key: str, what: str) -> Any:
    """``v`` as type ``tp`` (a field's annotation); UserError naming ``source`` and ``key`` otherwise."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if v is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _convert(options[0], v, source, key, what)
        for a in options:  # several types: the first that accepts the value
            try:
                return _convert(a, v, source, key, what)
            except UserError:
                continue
        raise UserError(f"{source}: {key}: {v!r} is none of {', '.join(_name(a) for a in options)}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, v, source, what=what, path=f"{key}.")
    if tp is bool:
        if not isinstance(v, bool):
            raise UserError(f"{source}: {key}: expected true/false, got {v!r}")
        return v
    if tp is int:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise UserError(f"{source}: {key}: expected a number, got {v!r}")
        if isinstance(v, float) and not v.is_integer():
            raise UserError(f"{source}: {key}: expected an integer, got {v!r}")
        return int(v)
    if tp is float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise UserError(f"{source}: {key}: expected a number, got {v!r}")
        return float(v)
    if tp is str:
        if isinstance(v, (dict, list, tuple)) or v is None:
            raise UserError(f"{source}: {key}: expected a string, got {v!r}")
        return str(v)
    if tp is Path:
        if not isinstance(v, (str, Path)):
            raise UserError(f"{source}: {key}: expected a path, got {v!r}")
        return Path(v)
    if origin in (tuple, list):
        if not isinstance(v, (list, tuple)):
            raise UserError(f"{source}: {key}: expected a list, got {v!r}")
        item = args[0] if args and (origin is list or (len(args) == 2 and args[1] is Ellipsis)) else None
        items = [v_ if item is None else _convert(item, v_, source, f"{key}[{i}]", what) for i, v_ in enumerate(v)]
        return tuple(items) if origin is tuple else items
    return v  # Any, dict and other annotations: as given


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))
