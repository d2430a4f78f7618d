"""Typed settings: one frozen dataclass per stage, each default written once with its help beside it.

The flow of a stage's settings (open-r1's `configs.py` habit, over a Snakemake workflow):
1. `XSettings.from_config(config, ...)` builds them from the merged config (workflow/rules call it);
2. the rule passes `settings.to_json()` as the stage's `--settings` (sorted keys, so that the same
   config in another key order never reruns a job);
3. the stage's CLI parses the JSON back with `XSettings.argument` (an argparse type): an unknown or
   missing key, or a value of the wrong type, is a usage error naming the key.
Help texts come from the fields (`XSettings.describe()`).

The dataclasses live by stage group, as the package does: settings/data.py, model.py,
inference.py, evaluation.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import types
import typing
from typing import Any, ClassVar, Literal, TypeVar, Union

S = TypeVar("S", bound="Settings")
_MISSING = dataclasses.MISSING


class SettingsError(ValueError):
    """A settings value that does not fit its field (turned into a usage error by `argument`)."""


def option(default: Any = _MISSING, help: str = "", *, factory: Any = _MISSING) -> Any:
    """A settings field with its help text; `factory` for mutable defaults; neither: required."""
    if factory is not _MISSING:
        return dataclasses.field(default_factory=factory, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def _type_name(kind: Any) -> str:
    if isinstance(kind, type):
        return kind.__name__
    return str(kind).replace("typing.", "")


def _coerce(value: Any, kind: Any, where: str) -> Any:
    """`value` (from JSON) checked against the annotation `kind`; nested settings become dataclasses."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option_kind in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option_kind, where)
            except SettingsError as error:
                errors.append(str(error))
        raise SettingsError(errors[0] if len(errors) == 1 else f"{where}: {value!r} is not a {_type_name(kind)}")
    if origin is Literal:
        if value not in args:
            raise SettingsError(f"{where}: {value!r}, expected one of {', '.join(map(repr, args))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise SettingsError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise SettingsError(f"{where}: expected a mapping, got {value!r}")
        item = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, item, f"{where}.{k}") for k, v in value.items()}
    if isinstance(kind, type) and issubclass(kind, Settings):
        if not isinstance(value, dict):
            raise SettingsError(f"{where}: expected a mapping, got {value!r}")
        return kind.from_dict(value, where)
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind in (int, str, bool) and type(value) is kind:
        return value
    raise SettingsError(f"{where}: {value!r} is not a {_type_name(kind)}")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Base of every stage's settings."""

    # the stage's name in messages (`adfm train --settings`): set by each subclass
    STAGE: ClassVar[str] = "settings"

    @classmethod
    def from_dict(cls: type[S], data: dict, where: str | None = None) -> S:
        where = where or cls.STAGE
        if not isinstance(data, dict):
            raise SettingsError(f"{where}: expected a mapping, got {data!r}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise SettingsError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(fields)}")
        missing = [
            name
            for name, f in fields.items()
            if name not in data and f.default is _MISSING and f.default_factory is _MISSING
        ]
        if missing:
            raise SettingsError(f"{where}: missing key(s) {', '.join(missing)}")
        return cls(**{name: _coerce(value, hints[name], f"{where}.{name}") for name, value in data.items()})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls: type[S], text: str) -> S:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise SettingsError(f"{cls.STAGE}: not valid JSON ({error})") from None
        return cls.from_dict(data)

    @classmethod
    def argument(cls: type[S], text: str) -> S:
        """argparse type of `--settings`: a bad value is a usage error naming the key."""
        try:
            return cls.from_json(text)
        except SettingsError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    @classmethod
    def describe(cls) -> str:
        """One line per field (name, type, default, help): the `--settings` help text."""
        hints = typing.get_type_hints(cls)
        lines = []
        for f in dataclasses.fields(cls):
            if f.default is not _MISSING:
                default = f" = {json.dumps(f.default)}"
            elif f.default_factory is not _MISSING:
                made = f.default_factory()
                default = f" = {json.dumps(made.to_dict() if isinstance(made, Settings) else made)}"
            else:
                default = " (required)"
            lines.append(f"{f.name} ({_type_name(hints[f.name])}){default}: {f.metadata.get('help', '')}")
        return "JSON object with keys: " + "; ".join(lines)
