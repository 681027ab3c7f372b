"""Shape families of the ``wide`` distribution: more shapes and real-world sizes per category.

Each family is a weight, its own parameter ranges for the category's maker in
``genpose_ros.data.objects`` (metres, degrees) and fixed maker options. The ``standard``
distribution does not use this module (its splits reproduce bit-for-bit).

    model = sample_object("bottle", rng, distribution="wide")   # model.params["family"] says which
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from genpose_ros import CATEGORIES
from genpose_ros.data import DISTRIBUTIONS
from genpose_ros.data.objects import MAKERS, PARAM_RANGES, ObjectModel, make_object


@dataclass(frozen=True)
class Family:
    weight: float
    ranges: dict[str, tuple[float, float]]
    options: dict = field(default_factory=dict)


def _like(category: str, **changes) -> dict[str, tuple[float, float]]:
    """The category's standard ranges with some of them changed (or added)."""
    return {**PARAM_RANGES[category], **changes}


WIDE_FAMILIES: dict[str, dict[str, Family]] = {
    "bottle": {
        "round": Family(0.4, _like("bottle", height=(0.10, 0.34), radius=(0.02, 0.055))),
        "squeeze": Family(0.3, _like("bottle", height=(0.12, 0.24), radius=(0.03, 0.055), shoulder_frac=(0.7, 0.85),
                                     neck_radius_frac=(0.25, 0.4), flatness=(0.4, 0.7))),
        "wine": Family(0.3, _like("bottle", height=(0.28, 0.38), radius=(0.033, 0.045), shoulder_frac=(0.5, 0.65),
                                  neck_radius_frac=(0.28, 0.36), cap_height=(0.02, 0.04))),
    },
    "bowl": {
        "round": Family(0.4, _like("bowl", radius=(0.045, 0.15))),
        "ramekin": Family(0.3, _like("bowl", radius=(0.035, 0.06), height_frac=(0.5, 0.85), foot_frac=(0.85, 0.95),
                                     roundness=(0.9, 1.0), wall=(0.004, 0.008))),
        "deep": Family(0.3, _like("bowl", radius=(0.06, 0.13), height_frac=(0.7, 1.0), foot_frac=(0.3, 0.5),
                                  roundness=(0.4, 0.8))),
    },
    "camera": {
        "compact": Family(0.5, _like("camera", width=(0.085, 0.12), height_frac=(0.5, 0.65), depth_frac=(0.2, 0.32),
                                     lens_radius_frac=(0.22, 0.35), lens_length=(0.005, 0.025),
                                     lens_offset_frac=(-0.25, 0.25)), {"grip_prob": 0.2, "hump_prob": 0.1}),
        "dslr": Family(0.5, _like("camera", width=(0.12, 0.16), height_frac=(0.65, 0.85), depth_frac=(0.45, 0.65),
                                  lens_radius_frac=(0.3, 0.45), lens_length=(0.05, 0.13),
                                  lens_offset_frac=(-0.12, 0.05)), {"grip_prob": 1.0, "hump_prob": 1.0}),
    },
    "can": {
        "regular": Family(0.4, _like("can", radius=(0.025, 0.05), height=(0.06, 0.17))),
        "short": Family(0.3, _like("can", radius=(0.035, 0.05), height=(0.03, 0.06)), {"min_aspect": 0.5}),
        "tall": Family(0.3, _like("can", radius=(0.026, 0.033), height=(0.13, 0.2))),
    },
    "laptop": {
        "any": Family(1.0, _like("laptop", width=(0.22, 0.42), depth_frac=(0.6, 0.78), base_thickness=(0.01, 0.03),
                                 lid_thickness=(0.004, 0.012), lid_angle_deg=(20.0, 160.0))),
    },
    "mug": {
        "mug": Family(0.6, _like("mug", radius=(0.03, 0.065), height=(0.06, 0.15), taper=(0.7, 1.1),
                                 handle_height_frac=(0.3, 0.85), handle_reach=(0.012, 0.06),
                                 handle_tube=(0.003, 0.012), handle_squareness=(1.2, 6.0))),
        "espresso": Family(0.2, _like("mug", radius=(0.025, 0.035), height=(0.045, 0.065), taper=(0.65, 0.9),
                                      handle_height_frac=(0.3, 0.6), handle_reach=(0.01, 0.02),
                                      handle_tube=(0.003, 0.006))),
        "tall": Family(0.2, _like("mug", radius=(0.035, 0.05), height=(0.12, 0.17), taper=(0.85, 1.0),
                                  handle_height_frac=(0.5, 0.85), handle_reach=(0.02, 0.05))),
    },
}
"""Families per category: weight, parameter ranges (uniform) and maker options."""


def check_distribution(distribution: str) -> None:
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {distribution!r}; expected one of {DISTRIBUTIONS}")


def mixture(spec) -> dict[str, float]:
    """A mixture of distributions as {name: share} in the order of ``DISTRIBUTIONS``, the shares
    summing to 1 (zero weights left out). ``spec``: one name (``"wide"``),
    ``"standard=0.5,wide=0.3,close=0.2"`` (the ``--stream-mix`` form) or a mapping name -> weight
    (config/train.yaml ``stream_mix``)."""
    if isinstance(spec, str):
        if "=" not in spec:
            spec = {spec.strip(): 1.0}
        else:
            parts: dict[str, float] = {}
            for part in spec.split(","):
                name, sep, weight = (s.strip() for s in part.partition("="))
                if not sep or not name or name in parts:
                    raise ValueError(f"distribution mixture {spec!r}: expected name=weight pairs, each "
                                     f"name once (names: {', '.join(DISTRIBUTIONS)})")
                try:
                    parts[name] = float(weight)
                except ValueError:
                    raise ValueError(f"distribution mixture {spec!r}: weight {weight!r} of {name} "
                                     "is not a number") from None
            spec = parts
    if not isinstance(spec, dict):
        raise ValueError(f"a distribution mixture is a name, name=weight pairs or a mapping, got {spec!r}")
    shares = {}
    for name, weight in spec.items():
        check_distribution(name)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < float("inf"):
            raise ValueError(f"distribution mixture: the weight of {name} must be a finite number >= 0, got {weight!r}")
        if weight > 0:
            shares[name] = float(weight)
    if not shares:
        raise ValueError(f"distribution mixture {spec!r}: no distribution has a weight > 0")
    total = sum(shares.values())
    return {name: shares[name] / total for name in DISTRIBUTIONS if name in shares}


def mix_text(mix: dict[str, float]) -> str:
    """{"standard": 0.6, "wide": 0.4} -> "standard 60 %, wide 40 %"."""
    return ", ".join(f"{name} {100 * share:.0f} %" for name, share in mix.items())


def sample_object(category: str, rng: np.random.Generator, distribution: str = "standard") -> ObjectModel:
    """A random instance of ``category`` from ``distribution``: "standard", "tilted", "close"
    (``make_object``, the standard ranges) or "wide" (one of the category's shape families,
    ``params["family"]``)."""
    check_distribution(distribution)
    if distribution != "wide":
        return make_object(category, rng)
    if category not in WIDE_FAMILIES:
        raise ValueError(f"unknown category {category!r}; known: {', '.join(CATEGORIES)}")
    families = WIDE_FAMILIES[category]
    names = list(families)
    weights = np.array([f.weight for f in families.values()])
    name = names[rng.choice(len(names), p=weights / weights.sum())]
    fam = families[name]
    model = MAKERS[category](rng, fam.ranges, **fam.options)
    model.params["family"] = name
    return model


def family_ranges() -> dict:
    """JSON-friendly summary of the families (for the dataset card)."""
    return {cat: {name: {"weight": f.weight, "ranges": f.ranges, "options": f.options} for name, f in fams.items()}
            for cat, fams in WIDE_FAMILIES.items()}
