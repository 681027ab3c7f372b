"""Tracking across frames: each tracked object is warm-started from its previous pose (estimator
mode ``tracking``) and estimated from scratch (the tracker's ``mode``) when it is new, was
lost, scored low, jumped implausibly, every ``reinit_every`` frames, and after ``reset()``. A
warm-started step the pose verifier rates worse than ``doubt_deg`` is estimated from scratch as
well, in the same frame, and the better rated of the two is kept. Given the masks' scores, a
detection config/estimator.yaml ``reject`` drops gets no track (its track, if any, goes unseen).

Association: same category, then greedily by mask IoU with the track's last mask and by the
distance between point-cloud centroids (`genpose_ros.identity.associate`). Track names are
``<category>_<track id>``; a new track takes the smallest id of its category that no live track
holds, so names are reused once their object is gone. Used by ``ros/tracking_node.py`` and by
``genpose eval --mode tracking``.

With the category check's evidence (a segmenter's masks, `PoseEstimator.category_evidence`) a
track's class is the most likely of that evidence summed over its frames, as an identity's
(`genpose_ros.identity`: ``category_memory``, ``category_min_p``); a track whose class changes
takes a free id of its new class and is estimated from scratch.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from genpose_ros.config import default_mode
from genpose_ros.identity import associate_classes, lowest_free


@dataclass
class TrackerSettings:
    reinit_every: int = 30           # frames between full re-estimates of a track (0 = never)
    min_track_score: float = -1e9    # a track scoring below this is re-estimated next frame
    max_jump: float = 0.08           # m; a tracking step moving the object further is distrusted
    iou_min: float = 0.2             # association: minimum mask IoU ...
    max_centroid_dist: float = 0.05  # ... or maximum centroid distance (m)
    max_lost: int = 5                # frames a track survives unseen
    doubt_deg: float = 5.0           # a tracking step the pose verifier rates worse than this (deg) is
                                     # estimated from scratch too, in the same frame, and the better
                                     # rated of the two kept (0: off; needs the verifier)
    category_memory: float = 0.8     # share of a track's summed category evidence kept each frame (0: each
                                     # frame's own class; 1: all frames alike; with the category check)
    category_min_p: float = 0.001    # a detection of another class continues a track when its evidence gives
                                     # the track's class at least this probability (0: any, 1: none)

    @classmethod
    def with_overrides(cls, overrides: dict) -> "TrackerSettings":
        """The defaults with ``overrides`` ({name: number}, e.g. `genpose eval --tracker`); a
        ValueError naming an unknown setting or a value that is not a number of its kind."""
        defaults = asdict(cls())
        kw = {}
        for key, value in overrides.items():
            if key not in defaults:
                raise ValueError(f"unknown tracker setting {key!r} (known: {', '.join(defaults)})")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"tracker setting {key!r} must be a number, got {value!r}")
            if isinstance(defaults[key], int) and value != int(value):
                raise ValueError(f"tracker setting {key!r} must be a whole number, got {value!r}")
            kw[key] = type(defaults[key])(value)
        return cls(**kw)

    def __post_init__(self):
        if self.reinit_every < 0 or self.max_lost < 0:
            raise ValueError(f"reinit_every and max_lost must be >= 0 frames, got {self.reinit_every} and {self.max_lost}")
        if not self.doubt_deg >= 0:
            raise ValueError(f"doubt_deg must be >= 0 (0: off), got {self.doubt_deg}")
        if not 0 <= self.category_memory <= 1 or not 0 <= self.category_min_p <= 1:
            raise ValueError(f"category_memory and category_min_p must be in [0, 1], got "
                             f"{self.category_memory} and {self.category_min_p}")
        if not self.max_jump > 0 or not self.max_centroid_dist >= 0 or not 0 <= self.iou_min <= 1:
            raise ValueError(f"tracking needs max_jump > 0 m, max_centroid_dist >= 0 m and iou_min in [0, 1], got "
                             f"{self.max_jump}, {self.max_centroid_dist} and {self.iou_min}")


@dataclass
class Track:
    track_id: int
    category: str
    T: np.ndarray          # (4, 4) T_cam_obj, last estimate
    size: np.ndarray       # (3,)
    score: float
    mask: np.ndarray       # (H, W) bool, last mask
    centroid: np.ndarray   # (3,) mean of the last object points
    lost: int = 0
    since_full: int = 0
    needs_full: bool = False
    evidence: np.ndarray | None = None   # (C,) summed category log-probabilities (with the category check)

    @property
    def name(self) -> str:
        return f"{self.category}_{self.track_id}"


@dataclass
class TrackStep:
    """Result of one frame, in the order of the frame's instances."""
    names: list[str]
    categories: list[str]  # the classes the poses were estimated with (the tracks' with evidence)
    R: np.ndarray          # (B, 3, 3)
    t: np.ndarray          # (B, 3)
    size: np.ndarray       # (B, 3)
    score: np.ndarray      # (B,)
    warm: list[int] = field(default_factory=list)   # instances warm-started from their track
    full: list[int] = field(default_factory=list)   # instances estimated from scratch
    ms: float = 0.0        # estimator time of the frame
    hypotheses: list = field(default_factory=list)  # per instance: (K, 4, 4) candidate poses
    rejected: np.ndarray | None = None  # (B,) bool, with mask scores: dropped by config ``reject`` (no name, no track)


class Tracker:
    """Tracks of one camera stream. ``mode`` is the from-scratch mode (None: the default mode of
    config/estimator.yaml); ``overrides`` maps an estimator mode to its sampler overrides
    (e.g. ``{"tracking": {"n_steps": 5}}``)."""

    def __init__(self, estimator, mode: str | None, settings: TrackerSettings | None = None,
                 overrides: dict[str, dict] | None = None):
        if mode == "tracking":
            raise ValueError("the tracker's `mode` is the from-scratch mode (genpose, score_scaling or "
                             "regression); tracking steps use mode tracking")
        self.estimator, self.mode = estimator, mode or default_mode()
        self.settings = settings or TrackerSettings()
        self.overrides = overrides or {}
        self.tracks: list[Track] = []
        self.n_full = self.n_tracked = self.n_resets = self.n_doubted = 0

    def reset(self) -> int:
        """Drops every track (their ids become free again); returns how many there were."""
        n, self.tracks = len(self.tracks), []
        self.n_resets += 1
        return n

    def step(self, points: np.ndarray, categories: list[str], masks: list[np.ndarray],
             support_plane=None, intrinsics=None, mask_scores=None, evidence=None) -> TrackStep:
        """One frame: ``points`` (B, N, 3) camera frame, a category and an (H, W) bool mask per
        instance; ``support_plane``: the table's plane, and ``intrinsics``: the camera's, with the
        masks for boxes the image border cuts, as ``PoseEstimator.estimate`` takes them;
        ``mask_scores``: the segmenter's, for config/estimator.yaml ``reject`` (a rejected
        instance gets no name and leaves its track unseen); ``evidence``: (B, C) category
        log-probabilities over the estimator's categories (`PoseEstimator.category_evidence`),
        summed over each track's frames (module docstring)."""
        s = self.settings
        centroids = [p.mean(axis=0) for p in points]
        match, votes, categories = associate_classes(self.tracks, masks, centroids, categories, evidence,
                                                     list(self.estimator.categories), s.iou_min,
                                                     s.max_centroid_dist, s.category_memory, s.category_min_p)
        warm = [i for i, j in enumerate(match) if j is not None and not self.tracks[j].needs_full
                and self.tracks[j].category == categories[i]
                and not (s.reinit_every and self.tracks[j].since_full + 1 >= s.reinit_every)]
        full = [i for i in range(len(categories)) if i not in warm]
        B = len(categories)
        out = TrackStep([], list(categories), np.tile(np.eye(3, dtype=np.float32), (B, 1, 1)),
                        np.zeros((B, 3), np.float32), np.zeros((B, 3), np.float32), np.zeros(B, np.float32),
                        warm, full, hypotheses=[None] * B)
        reject = mask_scores is not None and self.estimator.rejects
        doubted: dict[int, float] = {}
        rated: dict[int, float] = {}   # the final pose's rating, for reject
        if warm:
            prev = np.stack([self.tracks[match[i]].T for i in warm]).astype(np.float32)
            rating = self._estimate(out, warm, points, categories, "tracking", masks, intrinsics, prev_poses=prev,
                                    support_plane=support_plane, rate=s.doubt_deg > 0 or reject)
            rated.update(zip(warm, [] if rating is None else rating))
            if s.doubt_deg > 0:
                doubted = {i: r for i, r in zip(warm, rating) if r > s.doubt_deg}
            if doubted:   # doubted steps: from scratch too, the better rated kept
                kept = {i: (out.R[i].copy(), out.t[i].copy(), out.size[i].copy(), out.score[i], out.hypotheses[i])
                        for i in doubted}
                warm[:] = [i for i in warm if i not in doubted]
                full[:] = sorted(full + list(doubted))
                self.n_doubted += len(doubted)
        if full:
            rating = self._estimate(out, full, points, categories, self.mode, masks, intrinsics,
                                    support_plane=support_plane, rate=bool(doubted) or reject)
            if rating is not None:   # doubted steps whose warm pose is rated no worse keep it
                back = [i for i, r in zip(full, rating) if i in doubted and r >= doubted[i]]
                for i in back:
                    out.R[i], out.t[i], out.size[i], out.score[i], out.hypotheses[i] = kept[i]
                rated.update((i, r) for i, r in zip(full, rating) if i not in back)
                warm[:] = sorted(warm + back)
                full[:] = [i for i in full if i not in back]
            self.n_full += len(full)
        self.n_tracked += len(warm)
        if mask_scores is not None:
            out.rejected = self.estimator.rejected([rated.get(i, np.nan) for i in range(B)], mask_scores)
        out.names = self._update(match, warm, categories, masks, centroids, votes, out)
        return out

    def _estimate(self, out: TrackStep, idx: list[int], points, categories, mode: str, masks, intrinsics,
                  **kw) -> np.ndarray | None:
        if intrinsics is not None:
            kw.update(masks=[masks[i] for i in idx], intrinsics=intrinsics)
        est = self.estimator.estimate(points[idx], [categories[i] for i in idx], mode=mode,
                                      return_hypotheses=True, **self.overrides.get(mode, {}), **kw)
        out.R[idx], out.t[idx], out.size[idx], out.score[idx] = est.R, est.t, est.size, est.score
        for k, i in enumerate(idx):
            out.hypotheses[i] = est.hypotheses[k]
        out.ms += self.estimator.last_timing["total_ms"]
        return est.rating

    def _update(self, match, warm, categories, masks, centroids, votes, out: TrackStep) -> list[str]:
        s, names, seen = self.settings, [], set()
        for i, cat in enumerate(categories):
            if out.rejected is not None and out.rejected[i]:
                names.append("")
                continue
            T = np.eye(4)
            T[:3, :3], T[:3, 3] = out.R[i], out.t[i]
            j = match[i]
            if j is None:
                tid = lowest_free(k.track_id for k in self.tracks if k.category == cat)
                tr = Track(tid, cat, T, out.size[i], float(out.score[i]), masks[i], centroids[i])
                self.tracks.append(tr)
            else:
                tr = self.tracks[j]
                if tr.category != cat:   # its evidence now favours another class: a name of that class
                    tr.category = cat
                    tr.track_id = lowest_free(k.track_id for k in self.tracks if k.category == cat and k is not tr)
                jump = float(np.linalg.norm(T[:3, 3] - tr.T[:3, 3])) if i in warm else 0.0
                tr.T, tr.size, tr.score, tr.mask, tr.centroid = T, out.size[i], float(out.score[i]), masks[i], centroids[i]
                tr.lost = 0
                tr.since_full = tr.since_full + 1 if i in warm else 0
                tr.needs_full = jump > s.max_jump or tr.score < s.min_track_score
            tr.evidence = None if votes is None else votes[i]
            seen.add(id(tr))
            names.append(tr.name)
        for tr in self.tracks:
            if id(tr) not in seen:
                tr.lost += 1
                tr.needs_full = True
        self.tracks = [tr for tr in self.tracks if tr.lost <= s.max_lost]
        return names
