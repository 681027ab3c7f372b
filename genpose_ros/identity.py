"""Object identities across frames: names ``<category>_<n>`` that follow an object.

An instance of a new frame takes the identity of the previous object of its class that it
matches best (mask IoU with that object's last mask, or the distance between point-cloud
centroids); an unmatched instance takes the smallest number of its class not held by a live
identity. Identities unseen for more than ``max_lost`` frames are dropped and their numbers
become free again, so a long run reuses a handful of names (and TF child frames) instead of
minting new ones.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks (0 when their shapes differ)."""
    if a.shape != b.shape:
        return 0.0
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


def associate(known, masks, centroids, categories, iou_min: float, max_dist: float) -> list:
    """Greedy one-to-one matching of instances to ``known`` objects (anything with
    ``category``, ``mask`` and ``centroid``) -> index into ``known`` (or None) per instance.

    A pair qualifies when the classes agree and the mask IoU is at least ``iou_min`` or the
    centroids are at most ``max_dist`` apart; pairs are taken by IoU + centroid closeness."""
    pairs = []
    for i, (m, c, cat) in enumerate(zip(masks, centroids, categories)):
        for j, obj in enumerate(known):
            if obj.category != cat:
                continue
            iou, dist = mask_iou(m, obj.mask), float(np.linalg.norm(c - obj.centroid))
            if iou >= iou_min or dist <= max_dist:
                pairs.append((iou + max(0.0, 1.0 - dist / max(max_dist, 1e-9)), i, j))
    match, used = [None] * len(masks), set()
    for _, i, j in sorted(pairs, reverse=True):
        if match[i] is None and j not in used:
            match[i] = j
            used.add(j)
    return match


def lowest_free(used) -> int:
    """The smallest non-negative integer not in ``used``."""
    used = set(used)
    n = 0
    while n in used:
        n += 1
    return n


@dataclass
class Identity:
    number: int
    category: str
    mask: np.ndarray       # (H, W) bool, last mask
    centroid: np.ndarray   # (3,) last point-cloud centroid, metres
    lost: int = 0

    @property
    def name(self) -> str:
        return f"{self.category}_{self.number}"


class IdentityTable:
    """Stable names for the instances of consecutive frames (see the module docstring)."""

    def __init__(self, iou_min: float, max_dist: float, max_lost: int):
        self.iou_min, self.max_dist, self.max_lost = iou_min, max_dist, max_lost
        self.known: list[Identity] = []

    def assign(self, categories, masks, centroids) -> list[str]:
        """One name per instance of this frame; updates the table."""
        match = associate(self.known, masks, centroids, categories, self.iou_min, self.max_dist)
        names, seen = [], set()
        for cat, m, c, j in zip(categories, masks, centroids, match):
            if j is None:
                held = {k.number for k in self.known if k.category == cat}
                ident = Identity(lowest_free(held), cat, m, np.asarray(c))
                self.known.append(ident)
            else:
                ident = self.known[j]
                ident.mask, ident.centroid, ident.lost = m, np.asarray(c), 0
            seen.add(id(ident))
            names.append(ident.name)
        for ident in self.known:
            if id(ident) not in seen:
                ident.lost += 1
        self.known = [k for k in self.known if k.lost <= self.max_lost]
        return names
