"""Settings dataclasses: fields with help text (forms reuse it as widget help), typed building from
YAML/dicts/`--set` strings, and checks whose ConfigError names the field, the value and the fix.

Used by RunConfig, SweepConfig, GenerateConfig and SamplingSettings.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from functools import cache

from .errors import ConfigError


def setting(default, help: str, **meta):
    """A dataclass field with help text; lists, dicts and dataclasses are copied per instance."""
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default),
                                 metadata={"help": help, **meta})
    return dataclasses.field(default=default, metadata={"help": help, **meta})


def check(ok: bool, name: str, value, fix: str) -> None:
    """Raise a ConfigError naming the field `name`, its value and the fix, unless `ok`."""
    if not ok:
        raise ConfigError(f"{name} is {value!r}.", fix, field=name)


def field_help(cls) -> dict[str, str]:
    """Help text per field, dotted for nested settings (`lora.r`)."""
    out = {}
    for f in dataclasses.fields(cls):
        out[f.name] = f.metadata.get("help", "")
        nested = hints(cls)[f.name]
        if dataclasses.is_dataclass(nested):
            out.update({f"{f.name}.{k}": v for k, v in field_help(nested).items()})
    return out


@cache
def hints(cls) -> dict:
    return typing.get_type_hints(cls)


def build(cls, data: dict, noun: str = "config field", prefix: str = ""):
    """An instance of `cls` from a mapping, each value turned into its field's type; an unknown
    or mistyped field is a ConfigError naming it."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"Unknown {noun} '{prefix}{unknown[0]}'.",
                          f"Use one of: {', '.join(sorted(names))}.", field=prefix + unknown[0])
    types = hints(cls)
    return cls(**{k: _coerce(prefix + k, v, types[k], noun) for k, v in data.items()})


def _coerce(name: str, value, hint, noun: str):
    """A YAML/CLI value as the field's type, or a ConfigError naming the field."""
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a mapping, got {value!r}.",
                              f"Write {name}: {{field: value}} or use {name}.FIELD=VALUE.",
                              field=name)
        return build(hint, value, noun, name + ".")
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, _UnionType) \
        else (hint,)
    if isinstance(value, str) and str in options:
        return value
    for option in options:
        try:
            return _as(option, value)
        except (TypeError, ValueError):
            pass
    wanted = " or ".join(_KIND.get(typing.get_origin(o) or o, str(o)) for o in options)
    raise ConfigError(f"{name} is {value!r}, which is not a {wanted}.",
                      f"Set {name} to a {wanted}.", field=name)


_UnionType = type(int | str)
_KIND = {int: "whole number", float: "number", bool: "true/false", str: "text", list: "list",
         dict: "mapping"}
_BOOL_WORDS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _as(option, value):
    """`value` as `option` (bool, int, float, str, list, dict), or TypeError/ValueError."""
    origin = typing.get_origin(option) or option
    if origin is list:
        return _as_list(option, value)
    if origin not in _CONVERT:
        raise TypeError(f"unsupported type {option}")
    if isinstance(value, bool) and option in (int, float):
        raise ValueError("a bool is not a number")
    return _CONVERT[origin](value)


def _as_bool(value) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _BOOL_WORDS:
        return _BOOL_WORDS[value.lower()]
    raise ValueError("not a bool")


def _as_int(value) -> int:
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("not an int")
    return int(value) if isinstance(value, (int, float)) else int(str(value))


def _as_str(value) -> str:
    if isinstance(value, (dict, list)):
        raise ValueError("not a str")
    return "" if value is None else str(value)


def _as_dict(value) -> dict:
    if not isinstance(value, dict):
        raise ValueError("not a dict")
    return value


_CONVERT = {bool: _as_bool, int: _as_int, float: float, str: _as_str, dict: _as_dict}


def _as_list(option, value) -> list:
    """A list; `list[str]` also takes comma-separated text and makes every item text."""
    item = typing.get_args(option)
    if isinstance(value, str) and item == (str,):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list):
        raise ValueError("not a list")
    return [str(v) for v in value] if item == (str,) else value


def read_yaml(path, what: str, example: str) -> dict:
    """A YAML file's mapping of settings; a missing file, bad YAML or another shape is a
    ConfigError naming the file and the fix."""
    from pathlib import Path

    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist.", f"Pass a YAML file, e.g. {example}.")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}",
                          "Fix the YAML syntax (indentation, colons, quotes).") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} holds a {type(data).__name__}, not a mapping of settings.",
                          "Write one 'field: value' per line.")
    return data
