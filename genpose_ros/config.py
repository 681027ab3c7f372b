"""YAML configuration files (``config/*.yaml``) and the checks every config consumer shares.

``load_config(path)`` reads one file; ``estimator_config()`` the packaged estimator defaults
(sampler settings per mode); ``checked(values, defaults, where)`` merges user values over the
defaults after rejecting unknown keys (naming the closest valid one) and values whose type does
not match the default's. Every problem raises ``ConfigError`` with one line naming it.
"""
from __future__ import annotations

import copy
import difflib
import fnmatch
import functools
import math
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"


class ConfigError(ValueError):
    """A configuration file or value is missing, malformed, unknown or of the wrong type."""


def yaml_problem(exc) -> str:
    """A YAML parse error in one line: where (line, column) and what."""
    mark, problem = getattr(exc, "problem_mark", None), getattr(exc, "problem", None) or str(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + " ".join(str(problem).split())


def load_config(path: str | Path) -> dict:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping, got {type(data).__name__}")
    return data


def find_config(name: str) -> Path:
    """config/<name> of the package (source checkout or installed share directory)."""
    from genpose_ros.paths import package_share

    path = package_share() / "config" / name
    if not path.is_file():
        raise ConfigError(f"config file {name} not found in {path.parent}")
    return path


@functools.lru_cache(maxsize=1)
def _estimator_yaml() -> dict:
    return load_config(find_config("estimator.yaml"))


def estimator_config() -> dict:
    """Sampler defaults per mode, from config/estimator.yaml (the one owner of these values)."""
    return copy.deepcopy(_estimator_yaml())


def default_mode() -> str:
    """The estimator mode used unless one is given (config/estimator.yaml ``default_mode``)."""
    return _estimator_yaml()["default_mode"]


ROLL_TURN_CHECKS = ("all", "best")
"""``roll_turn_check`` values: the roll check's turn check and polish on every rolled estimate or
on the best-rated one (``PoseEstimator._roll_check``)."""


def sampler_settings(mode: str, overrides: dict | None = None, defaults: dict | None = None) -> dict:
    """The settings of sampling ``mode``: ``defaults`` (config/estimator.yaml) for the mode,
    with ``overrides`` checked against them and merged over them; ``schedule_kwargs`` are
    completed from and checked against the chosen schedule's parameters (``schedules``)."""
    root = defaults or _estimator_yaml()  # read only: checked() copies
    modes = root["modes"]
    if mode not in modes:
        raise ConfigError(f"unknown mode {mode!r}{did_you_mean(mode, modes)}; available: {sorted(modes)}")
    settings = checked(overrides or {}, modes[mode], f"mode {mode}", free=("schedule_kwargs",))
    if "schedule" in settings:  # the schedule's parameters: its defaults, then schedule_kwargs
        name, schedules = settings["schedule"], root["schedules"]
        if name not in schedules:
            raise ConfigError(f"mode {mode}: unknown schedule {name!r}{did_you_mean(name, schedules)}; "
                              f"available: {sorted(schedules)}")
        settings["schedule_kwargs"] = checked(settings["schedule_kwargs"], schedules[name],
                                              f"mode {mode}: schedule_kwargs of schedule {name}")
    if settings.get("num_candidates", 1) < 1:
        raise ConfigError(f"mode {mode}: num_candidates must be >= 1, got {settings['num_candidates']}")
    for key in ("verify_turns", "verify_refine", "polish", "tilt_deg", "tilt_margin_deg"):
        if settings.get(key, 0) < 0:
            raise ConfigError(f"mode {mode}: {key} must be >= 0 (0: off), got {settings[key]}")
    if settings.get("roll_turn_check", "all") not in ROLL_TURN_CHECKS:
        check = settings["roll_turn_check"]
        raise ConfigError(f"mode {mode}: roll_turn_check {check!r} unknown{did_you_mean(check, ROLL_TURN_CHECKS)}; "
                          f"expected one of {', '.join(ROLL_TURN_CHECKS)}")
    if not 0 < settings.get("keep_ratio", 1.0) <= 1:
        raise ConfigError(f"mode {mode}: keep_ratio must be in (0, 1], got {settings['keep_ratio']}")
    return settings


def did_you_mean(name: str, choices) -> str:
    """'; did you mean 'x'?' for the closest of ``choices`` (difflib), or ''."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def task_config(name: str, path=None, free: tuple[str, ...] = ()) -> tuple[dict, str]:
    """config/``name`` with the YAML file ``path`` (a training's ``--config``, if given) checked
    against it and merged over it (`checked`), and the name errors should point at."""
    defaults = load_config(find_config(name))
    where = str(path) if path else f"config/{name}"
    return (checked(load_config(path), defaults, where, free) if path else defaults), where


def checked(values: dict, defaults: dict, where: str, free: tuple[str, ...] = (), _prefix: str = "") -> dict:
    """``values`` merged over ``defaults`` after checking them.

    Every key of ``values`` must exist in ``defaults`` (nested dicts are checked key by key)
    and every value must have the default's type (ints are accepted for floats, numeric
    strings such as YAML's ``1e-3`` are read as numbers). Keys matching one of the ``free``
    glob patterns (dotted paths, e.g. ``model.encoder``) take any value.
    """
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: {_prefix.rstrip('.') or 'the config'} must be a mapping, "
                          f"got {values!r}")
    out = copy.deepcopy(defaults)
    for key, value in values.items():
        path = f"{_prefix}{key}"
        if key not in defaults:
            hint = did_you_mean(key, defaults) or f"; valid keys: {', '.join(map(str, defaults)) or 'none'}"
            raise ConfigError(f"{where}: unknown key {path!r}{hint}")
        default = defaults[key]
        if any(fnmatch.fnmatchcase(path, pat) for pat in free):
            out[key] = copy.deepcopy(value)
        elif isinstance(default, dict):
            out[key] = checked(value, default, where, free, f"{path}.")
        else:
            out[key] = typed(value, default, f"{where}: {path}")
    return out


def typed(value, default, name: str):
    """``value`` as the type of ``default``; ConfigError naming ``name`` when it is not one."""
    if default is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value):
            return float(value)
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, (list, tuple)):
        if isinstance(value, (list, tuple)):
            return list(value)
    else:
        return value
    kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        type(default), f"a {type(default).__name__}")
    raise ConfigError(f"{name} must be {kind} (default {default!r}), got {value!r}")


def require_positive(cfg: dict, keys, where: str) -> None:
    """ConfigError unless every ``cfg[key]`` of ``keys`` is > 0."""
    for key in keys:
        if not cfg[key] > 0:
            raise ConfigError(f"{where}: {key} must be > 0, got {cfg[key]!r}")

