"""Object identities across frames: names ``<category>_<n>`` that follow an object.

An instance of a new frame takes the identity of the previous object of its class that it
matches best (mask IoU with that object's last mask, or the distance between point-cloud
centroids); an unmatched instance takes the smallest number of its class not held by a live
identity. Identities unseen for more than ``max_lost`` frames are dropped and their numbers
become free again, so a long run reuses a handful of names (and TF child frames) instead of
minting new ones.

With a segmenter's masks the category check gives each instance log-probabilities over the
classes (`PoseEstimator.category_evidence`). An object then sums them over its frames (the sum
so far times ``memory``, plus the frame's) and its class is the most likely of the sum, so one
frame's wrong class neither renames it nor starts a second object: an instance of another class
continues an object when its evidence gives the object's class at least ``min_p``
(``class_test``, ``summed_evidence``). An object whose sum comes to favour another class takes
that class and a free number of it. The tracker (``pose/tracker.py``) keeps its tracks the same
way.
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


def associate(known, masks, centroids, categories, iou_min: float, max_dist: float, same_class=None) -> list:
    """Greedy one-to-one matching of instances to ``known`` objects (anything with
    ``category``, ``mask`` and ``centroid``) -> index into ``known`` (or None) per instance.

    A pair qualifies when the classes agree (``same_class(i, obj)`` when given, else the
    instance's category is the object's) and the mask IoU is at least ``iou_min`` or the
    centroids are at most ``max_dist`` apart; pairs are taken by IoU + centroid closeness."""
    if same_class is None:
        def same_class(i, obj):
            return obj.category == categories[i]
    pairs = []
    for i, (m, c) in enumerate(zip(masks, centroids)):
        for j, obj in enumerate(known):
            if not same_class(i, obj):
                continue
            iou, dist = mask_iou(m, obj.mask), float(np.linalg.norm(c - obj.centroid))
            if iou >= iou_min or dist <= max_dist:
                pairs.append((iou + max(0.0, 1.0 - dist / max(max_dist, 1e-9)), i, j))
    taken = one_to_one((i, j) for _, i, j in sorted(pairs, reverse=True))
    return [taken.get(i) for i in range(len(masks))]


def one_to_one(pairs) -> dict:
    """{a: b} from ``(a, b)`` pairs ordered best first: each pair taken unless a or b is taken."""
    match, used = {}, set()
    for a, b in pairs:
        if a not in match and b not in used:
            match[a] = b
            used.add(b)
    return match


def class_test(categories: list[str], evidence, names: list[str], min_p: float):
    """``associate``'s ``same_class`` with the category check's ``evidence`` ((B, C)
    log-probabilities over ``names``): the same class, or an instance whose evidence gives the
    object's class at least ``min_p``; None (the classes as given) without evidence."""
    if evidence is None:
        return None
    floor = np.log(min_p) if min_p > 0 else -np.inf

    def same_class(i: int, obj) -> bool:
        return obj.category == categories[i] or evidence[i, names.index(obj.category)] >= floor

    return same_class


def summed_evidence(known, match, evidence, memory: float) -> np.ndarray | None:
    """(B, C): each instance's ``evidence`` plus ``memory`` times the summed evidence of the
    object of ``known`` it continues (``match``, from ``associate``); None without evidence."""
    if evidence is None:
        return None
    return np.stack([np.asarray(evidence[i], np.float64)
                     + (0.0 if j is None or known[j].evidence is None else memory * known[j].evidence)
                     for i, j in enumerate(match)])


def most_likely(evidence: np.ndarray, names: list[str]) -> list[str]:
    """The most likely class of each row of ``evidence`` (B, C) over ``names``."""
    return [names[k] for k in np.asarray(evidence).argmax(axis=1)]


def associate_classes(known, masks, centroids, categories, evidence, names: list[str], iou_min: float,
                      max_dist: float, memory: float, min_p: float):
    """``associate`` with the category check's ``evidence`` (None: the classes as given):
    (match, each instance's summed evidence (B, C) or None, each instance's class)."""
    match = associate(known, masks, centroids, categories, iou_min, max_dist,
                      class_test(categories, evidence, names, min_p))
    votes = summed_evidence(known, match, evidence, memory)
    return match, votes, list(categories) if votes is None else most_likely(votes, names)


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
    evidence: np.ndarray | None = None   # (C,) summed category log-probabilities (with the category check)

    @property
    def name(self) -> str:
        return f"{self.category}_{self.number}"


class IdentityTable:
    """Stable names for the instances of consecutive frames (see the module docstring); ``names``:
    the classes of the evidence's columns; ``memory`` and ``min_p`` as there (pose_node passes its
    parameters; the defaults here give each frame's own class)."""

    def __init__(self, iou_min: float, max_dist: float, max_lost: int, names=(), memory: float = 0.0,
                 min_p: float = 1.0):
        self.iou_min, self.max_dist, self.max_lost = iou_min, max_dist, max_lost
        self.names, self.memory, self.min_p = list(names), memory, min_p
        self.known: list[Identity] = []

    def _match(self, categories, masks, centroids, evidence):
        return associate_classes(self.known, masks, centroids, categories, evidence, self.names,
                                 self.iou_min, self.max_dist, self.memory, self.min_p)

    def classes(self, categories, masks, centroids, evidence=None) -> list[str]:
        """The class `assign` would give each instance now; the table unchanged."""
        return self._match(categories, masks, centroids, evidence)[2]

    def assign(self, categories, masks, centroids, evidence=None) -> tuple[list[str], list[str]]:
        """(a name per instance of this frame, its class); updates the table. ``evidence``: the
        category check's (B, C), or None (the classes as given)."""
        match, votes, classes = self._match(categories, masks, centroids, evidence)
        names, seen = [], set()
        for i, (cat, m, c, j) in enumerate(zip(classes, masks, centroids, match)):
            if j is None:
                ident = Identity(lowest_free(k.number for k in self.known if k.category == cat), cat, m, np.asarray(c))
                self.known.append(ident)
            else:
                ident = self.known[j]
                if ident.category != cat:   # its evidence now favours another class: a number of that class
                    ident.number = lowest_free(k.number for k in self.known if k.category == cat and k is not ident)
                    ident.category = cat
                ident.mask, ident.centroid, ident.lost = m, np.asarray(c), 0
            ident.evidence = None if votes is None else votes[i]
            seen.add(id(ident))
            names.append(ident.name)
        for ident in self.known:
            if id(ident) not in seen:
                ident.lost += 1
        self.known = [k for k in self.known if k.lost <= self.max_lost]
        return names, classes
