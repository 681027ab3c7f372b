"""Declaring node parameters from a dict of defaults, tolerant of launch-file typing.

Values given on the command line or in launch files are YAML-typed (``frame_rate:=2`` is an
int, ``serial:=0123`` a number), so every parameter is declared with dynamic typing and cast to
the type of its default here, with an error naming the parameter when that is impossible.
"""
from __future__ import annotations

from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult

from genpose_ros.arguments import DEVICE


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


def check_range(name: str, value, bound: str):
    """``value`` within ``bound``: ``">0"``, ``">=0"`` or ``"0..1"`` (both ends included); a
    ValueError naming the parameter otherwise (NaN is never within)."""
    if bound.startswith(">="):
        ok, need = value >= float(bound[2:]), f">= {bound[2:]}"
    elif bound.startswith(">"):
        ok, need = value > float(bound[1:]), f"> {bound[1:]}"
    else:
        low, high = (float(x) for x in bound.split(".."))
        ok, need = low <= value <= high, f"between {low:g} and {high:g}"
    if not ok or value != value:
        raise ValueError(f"parameter {name!r} must be {need}, got {value!r}")


def check_device(value: str):
    """The ``device`` parameter: cpu, cuda or cuda:N (whether CUDA is there is torch's to say)."""
    if not DEVICE.fullmatch(value):
        raise ValueError(f"parameter 'device' must be cpu, cuda or cuda:N, got {value!r}")


def declare(node, defaults: dict, bounds: dict[str, str] | None = None, dynamic: tuple[str, ...] = ()) -> dict:
    """Declare every ``defaults`` key on ``node``; returns {name: value cast to the default's type},
    each within its ``bounds`` entry (``check_range``). Parameters not named in ``dynamic`` are
    read once, at start-up, and declared read-only: ``ros2 param set`` refuses them ("Trying to
    set a read-only parameter") instead of reporting a change the node would never see."""
    out = {}
    for name, default in defaults.items():
        bound = (bounds or {}).get(name, "")   # shown by `ros2 param describe`
        node.declare_parameter(name, default, ParameterDescriptor(
            dynamic_typing=True, additional_constraints=bound, read_only=name not in dynamic))
        out[name] = _cast(name, node.get_parameter(name).value, default)
        if bound:
            check_range(name, out[name], bound)
    return out


def accept_changes(node, defaults: dict, bounds: dict[str, str], names: tuple[str, ...]) -> None:
    """Let ``ros2 param set`` change ``names`` (declared ``dynamic``) of a node that reads them
    from ``node.p`` at every frame: a value is cast and range-checked as at start-up, then
    stored; a bad one is refused with the reason and the old one kept."""
    def on_set(params):
        new = {}
        for prm in params:
            if prm.name in names:
                try:
                    new[prm.name] = _cast(prm.name, prm.value, defaults[prm.name])
                    if bounds.get(prm.name):
                        check_range(prm.name, new[prm.name], bounds[prm.name])
                except ValueError as exc:
                    return SetParametersResult(successful=False, reason=str(exc))
        node.p.update(new)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
