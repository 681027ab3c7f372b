"""Declaring node parameters from a dict of defaults, tolerant of launch-file typing.

Values given on the command line or in launch files are YAML-typed (``frame_rate:=2`` is an
int, ``serial:=0123`` a number), so every parameter is declared with dynamic typing and cast to
the type of its default here, with an error naming the parameter when that is impossible.
"""
from __future__ import annotations

from rcl_interfaces.msg import ParameterDescriptor


def _cast(name: str, value, default):
    if value is None:
        return default
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() in ("true", "false"):
                    return value.lower() == "true"
                raise ValueError
            return bool(value)
        if isinstance(default, (int, float, str)):
            return type(default)(value)
        if isinstance(default, list):
            if not isinstance(value, (list, tuple)):
                raise ValueError
            return [_cast(name, v, default[0]) for v in value] if default else list(value)
    except (TypeError, ValueError):
        pass
    raise ValueError(f"parameter {name!r}: cannot use {value!r} as a {type(default).__name__} "
                     f"(default {default!r})")


def declare(node, defaults: dict) -> dict:
    """Declare every ``defaults`` key on ``node``; returns {name: value cast to the default's type}."""
    out = {}
    for name, default in defaults.items():
        node.declare_parameter(name, default, ParameterDescriptor(dynamic_typing=True))
        out[name] = _cast(name, node.get_parameter(name).value, default)
    return out
