"""YAML configuration files (``config/*.yaml``).

``load_config(path)`` reads one file; ``estimator_config()`` the packaged estimator defaults
(sampler settings per mode). Missing files and malformed YAML raise ``ConfigError``.
"""
from __future__ import annotations

import copy
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"


class ConfigError(ValueError):
    """A configuration file is missing or malformed."""


def load_config(path: str | Path) -> dict:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping, got {type(data).__name__}")
    return data


def _find(name: str) -> Path:
    """config/<name> next to the sources, or in the installed share/ folder."""
    candidates = [CONFIG_DIR / name]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory("genpose_ros")) / "config" / name)
    except Exception:
        pass
    for c in candidates:
        if c.is_file():
            return c
    raise ConfigError(f"config file {name} not found (looked in {[str(c) for c in candidates]})")


def estimator_config() -> dict:
    """Sampler defaults per mode, from config/estimator.yaml."""
    return load_config(_find("estimator.yaml"))


def merge(base: dict, override: dict | None) -> dict:
    """Recursive dict merge (override wins); unknown keys of override are added."""
    out = copy.deepcopy(base)
    for k, v in (override or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out
