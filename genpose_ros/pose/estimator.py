"""``PoseEstimator``: the one entry point to the pose model (eval, bench, demo, ROS nodes).

    est = PoseEstimator.from_checkpoint("models/genpose_light.pt", device="cpu")
    out = est.estimate(points, ["mug", "bowl"], mode="score_scaling")   # points (B, N, 3) camera frame
    out.R (B, 3, 3), out.t (B, 3), out.size (B, 3), out.score (B,)     # numpy float32, metres
    est.last_timing  # {"encode_ms", "sample_ms", "total_ms", "n_objects", "mode"}

Modes (``MODES``, the samplers registered in ``genpose_ros.pose.sampling``): ``genpose``,
``score_scaling``, ``regression``, ``tracking`` (needs ``prev_poses`` (B, 4, 4) camera-frame
transforms of the previous frame). The default mode and the sampler settings come from
``config/estimator.yaml``; settings can be overridden per call (``n_steps=10``,
``solver="rk45"``, ...) and are checked against it. The SDE (noise schedule) is the one the
checkpoint was trained with. The encoder runs once per object; all candidates and ODE steps
reuse its feature. The genpose and score_scaling modes end with a roll check (``roll_*``
settings): an object the pose verifier rates badly is estimated again from its cloud rolled
about the optical axis, and keeps a rolled estimate the verifier rates better (``_roll_check``;
then the encoder runs a second time, on those objects' rolled clouds) and a tilt check
(``tilt_*`` settings): the verifier rates the pose with its up axis tilted a few degrees each
way and a clearly better tilt replaces it (``sampling.best_tilt``). Sizes come from the
SizeNet on the points seen in the estimated object frame (``size`` in config/estimator.yaml;
``method: head`` uses the pose model's own size head instead). Given the table's plane, the
boxes are fitted to it (``pose/support.py``); given the objects' masks and the intrinsics,
boxes the image border cuts are extended beyond it (``pose/border.py``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from genpose_ros import geometry
from genpose_ros.config import ConfigError, checked, did_you_mean, estimator_config, sampler_settings
from genpose_ros.evaluation.metrics import SYMMETRIC_CATEGORIES
from genpose_ros.pose import sampling
from genpose_ros.pose.border import BorderSettings, border_cuts, extend_cut
from genpose_ros.pose.category import fused_log_probs
from genpose_ros.pose.pointnet2 import select_grouping
from genpose_ros.pose.sde import VESDE, get_sde
from genpose_ros.pose.support import RestSettings, rest_on_plane

MODES = tuple(sampling.SAMPLERS)
SINGLE_FRAME_MODES = tuple(m for m in MODES if m != "tracking")
MAX_SPREAD_M = 1.0   # points spread further from their median are not one object in metres (millimetres?)
SIZE_METHODS = ("net", "head")
VERIFIED_MODES = ("genpose", "score_scaling", "tracking")  # samplers that take the pose verifier (``verify``)
ROLL_KEYS = ("roll_turns", "roll_above_deg", "roll_margin_deg", "roll_turn_check")  # the estimator's roll check, not the sampler's
TILT_KEYS = ("tilt_deg", "tilt_margin_deg")  # the estimator's tilt check (sampling.best_tilt)


def check_mode(mode: str, allowed=MODES) -> str:
    """``mode`` if it is one of ``allowed``, else ValueError naming the closest."""
    if mode not in allowed:
        raise ValueError(f"unknown mode {mode!r}{did_you_mean(mode, allowed)}; expected one of {', '.join(allowed)}")
    return mode


@dataclass
class Estimate:
    """Per-object results in the camera frame (numpy float32)."""

    R: np.ndarray  # (B, 3, 3) object -> camera rotation
    t: np.ndarray  # (B, 3) metres
    size: np.ndarray  # (B, 3) box edge lengths, metres
    score: np.ndarray  # (B,) candidate consensus in (0, 1] (1 for single-candidate modes)
    hypotheses: np.ndarray | None = None  # (B, K, 4, 4) candidate poses when requested
    rating: np.ndarray | None = None  # (B,) the pose verifier's rotation error of each pose (deg), when requested
    rejected: np.ndarray | None = None  # (B,) bool, with mask scores: the poses config ``reject`` drops

    def take(self, idx) -> Estimate:
        """The results of the objects ``idx`` (indices or a (B,) bool mask), in that order."""
        return Estimate(*(None if a is None else a[idx] for a in
                          (self.R, self.t, self.size, self.score, self.hypotheses, self.rating, self.rejected)))


class PoseEstimator:
    def __init__(self, model, sde: VESDE, device: str | torch.device = "cpu", config: dict | None = None,
                 seed: int = 0, t_max: float = 1.0):
        """``t_max``: the largest diffusion time the model was trained on (``dsm_t_max`` of its
        training config); samplers starting later (``t0``) are refused."""
        self.device = torch.device(device)
        self.t_max = float(t_max)
        self.model = model.to(self.device).eval()
        self.config = checked(config or {}, estimator_config(), "estimator config", free=("modes.*.schedule_kwargs",))
        self.sde = sde
        self.n_points = int(model.config["n_points"])
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.last_timing: dict = {}
        self._encoded = None   # (clouds, grouping, feature) of the last category_evidence call, for estimate
        self.size_net = self._load_size_net(self.config["size"])
        self.verifier = self._load_verifier(self.config["verifier"]["checkpoint"])
        self.category_head, self.category_note = self._load_category_head(self.config["category"]["checkpoint"])
        self.polish = sampler_settings("tracking", {}, self.config)  # the turn check's polish samples as tracking does
        try:
            self.rest = RestSettings.from_config(self.config["support"])
            self.border = BorderSettings.from_config(self.config["border"])
        except ValueError as e:
            raise ConfigError(f"estimator config: {e}") from None
        self._check_known("border.categories", self.border.categories)
        reject = self.config["reject"]
        if not reject["rating_deg"] >= 0 or not 0 <= reject["mask_score"] <= 1:
            raise ConfigError(f"estimator config: reject.rating_deg must be >= 0 (0: off) and reject.mask_score "
                              f"in [0, 1], got {reject['rating_deg']} and {reject['mask_score']}")

    def _check_known(self, key: str, names) -> None:
        """ConfigError when the config list ``key`` names categories the pose model does not know."""
        unknown = [c for c in names if c not in self.categories]
        if unknown:
            raise ConfigError(f"estimator config: {key} names categories the model does not know: {unknown}; "
                              f"it knows {', '.join(self.categories)}")

    def _load_size_net(self, cfg: dict):
        """The SizeNet of ``cfg`` (config/estimator.yaml ``size``), or None for the size head."""
        method = cfg["method"]
        if method not in SIZE_METHODS:
            raise ConfigError(f"estimator config: size.method {method!r} unknown{did_you_mean(method, SIZE_METHODS)}; "
                              f"expected one of {', '.join(SIZE_METHODS)}")
        self._check_known("size.centre", cfg["centre"])
        if method == "head":
            return None
        from genpose_ros.paths import resolve
        from genpose_ros.pose.size_net import load_size_net

        net = load_size_net(resolve(cfg["checkpoint"]))
        net.category_index(self.categories)  # every category of the pose model must be known
        return net.to(self.device)

    def _load_verifier(self, checkpoint: str):
        """The pose verifier of config/estimator.yaml ``verifier.checkpoint`` ("" = none, then no
        mode may be set up to need it)."""
        if not checkpoint:
            modes = self.config["modes"]
            needs = ["modes.genpose.ranking is 'verifier'"] if modes["genpose"]["ranking"] == "verifier" else []
            needs += [f"modes.{m}.verify_turns is {v['verify_turns']}" for m, v in modes.items()
                      if v.get("verify_turns", 0) > 1]
            needs += [f"reject.rating_deg is {self.config['reject']['rating_deg']:g}"] \
                if self.config["reject"]["rating_deg"] > 0 else []
            if needs:
                raise ConfigError(f"estimator config: {' and '.join(needs)} but verifier.checkpoint is empty; "
                                  "give a verifier checkpoint or set ranking: energy, verify_turns: 0 and "
                                  "reject.rating_deg: 0")
            return None
        from genpose_ros.paths import resolve
        from genpose_ros.pose.verifier import load_verifier

        net = load_verifier(resolve(checkpoint))
        net.category_index(self.categories)  # every category of the pose model must be known
        return net.to(self.device)

    def _load_category_head(self, checkpoint: str):
        """(the category head of config/estimator.yaml ``category.checkpoint``, None) or, when there
        is none ("") or it was trained on another pose model's features, (None, why not)."""
        if not checkpoint:
            return None, None
        from genpose_ros.paths import resolve
        from genpose_ros.pose.category import encoder_digest, load_category_head

        path = resolve(checkpoint)
        head = load_category_head(path)
        if head.config.get("encoder_digest") != encoder_digest(self.model) or head.categories != self.categories:
            return None, (f"category head {path} was trained on another pose model's features; the "
                          "segmenter's categories are used as they are (train one for this model: "
                          "genpose train --task category --init <pose checkpoint>)")
        return head.to(self.device), None

    def category_evidence(self, points, categories: list[str], mask_scores) -> np.ndarray | None:
        """(B, C) log-probabilities over ``self.categories`` of objects a segmenter classified
        (``categories``, with its scores ``mask_scores``), its class weighed against what the
        category head reads off their points (B, N, 3) (``pose/category.py`` ``fused_log_probs``;
        config/estimator.yaml ``category``); None without a head."""
        if self.category_head is None or not len(categories):
            return None
        pts, _ = geometry.normalize_points(self._prepare_points(points))
        with torch.inference_mode():
            grouping = self.model.encoder.group(pts)
            feature = self.model.encoder(pts, grouping)
            probs = self.category_head(feature).softmax(-1).cpu().numpy()
        self._encoded = (pts, grouping, feature)   # `estimate` of these clouds (or some of them) reuses them
        return fused_log_probs(probs, list(categories), mask_scores, self.categories,
                               self.config["category"]["prior_weight"])

    def _encoder_inputs(self, pts: torch.Tensor):
        """(grouping, encoder feature or None) of the centred clouds ``pts`` (B, N, 3): the last
        `category_evidence` call's when it saw every one of them (the encoder is deterministic),
        else a fresh grouping and no feature."""
        if self._encoded is not None:
            seen, grouping, feature = self._encoded
            rows = [next((j for j in range(len(seen)) if seen[j].shape == p.shape and torch.equal(seen[j], p)), None)
                    for p in pts]
            if len(rows) and None not in rows:
                rows = torch.tensor(rows, device=pts.device)
                return select_grouping(grouping, rows), feature[rows]
        return self.model.encoder.group(pts), None

    @classmethod
    def from_checkpoint(cls, path, device: str | torch.device = "cpu", config: dict | None = None,
                        seed: int = 0) -> "PoseEstimator":
        from genpose_ros.pose.checkpoint import CheckpointError, build_model, load_checkpoint

        ckpt = load_checkpoint(path, map_location="cpu")
        model = build_model(ckpt, str(path))
        sde_cfg = dict(ckpt.get("train_config", {}).get("sde") or {})
        try:
            sde = get_sde(sde_cfg.pop("name", "ve"), **sde_cfg)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {path}: invalid or missing train_config.sde (the noise "
                                  f"schedule the model was trained with): {exc}") from None
        t_max = float(ckpt.get("train_config", {}).get("dsm_t_max", 1.0))
        return cls(model, sde, device=device, config=config, seed=seed, t_max=t_max)

    def _verify(self, pts: torch.Tensor, categories: list[str]):
        """The verifier as a sampler's ``verify``: hypotheses (B, K, 9) relative to the centred
        cloud ``pts`` (B, N, 3) -> predicted rotation errors (B, K) (or those of the objects
        ``rows`` when given: hypotheses (len(rows), K, 9)); None without a verifier."""
        if self.verifier is None:
            return None
        vcat = self.verifier.category_index(list(categories), self.device)

        def verify(hyp: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
            p, c = (pts, vcat) if rows is None else (pts[rows], vcat[rows])
            return self.verifier.rotation_error(p, geometry.rot6d_to_rotmat(hyp[..., :6]), hyp[..., 6:], c)

        return verify

    def _turnable(self, categories: list[str]) -> torch.Tensor:
        """(B,) bool: the objects a turn about their y axis changes (not bottle, bowl, can)."""
        return torch.tensor([c not in SYMMETRIC_CATEGORIES for c in categories], device=self.device)

    def _roll_check(self, points: torch.Tensor, cat: torch.Tensor, categories: list[str], R: torch.Tensor,
                    t: torch.Tensor, roll: dict, settings: dict, grouping: list) -> tuple[torch.Tensor, torch.Tensor]:
        """The roll check (``roll_*`` settings of the genpose and score_scaling modes): the model
        has learnt that objects mostly stand upright in the image, so a camera or a can lying on
        its side gets no right candidate. Objects whose pose (R (B, 3, 3), t (B, 3), camera frame)
        the verifier rates worse than ``roll_above_deg`` are estimated again from their cloud
        (``points`` (B, N, 3), camera frame) rolled about the optical axis by each of
        ``roll_turns`` - 1 equal steps (the view a rolled camera has of them), with the
        score_scaling sampler and its ``settings`` (without roll keys). Its turn check and polish
        run on every rolled estimate (``roll_turn_check: all``) or only on the one the verifier
        rates best without them (``best``: a third of the work with 4 turns). The rolled
        estimate the verifier rates best, rolled back, replaces the pose when it is rated
        ``roll_margin_deg`` better. ``grouping``: the encoder's neighbour indices of the
        unrolled clouds, which the rolled ones share (a roll keeps every distance).
        Without a verifier: off."""
        if self.verifier is None:
            return R, t
        vcat = self.verifier.category_index(categories, self.device)
        rating = self.verifier.rotation_error(points, R[:, None], t[:, None], vcat)[:, 0]
        redo = torch.nonzero(rating > float(roll["roll_above_deg"]))[:, 0]
        if len(redo) == 0:
            return R, t
        G, n = len(redo), int(roll["roll_turns"]) - 1
        rows = torch.arange(G, device=self.device)
        angles = torch.arange(1, n + 1, device=self.device, dtype=points.dtype) * (2 * torch.pi / (n + 1))
        Rz = geometry.axis_rotation(angles, 2)  # (n, 3, 3) about the optical axis
        rolled = torch.einsum("rij,bnj->brni", Rz, points[redo]).reshape(G * n, -1, 3)
        pts, centroid = geometry.normalize_points(rolled)
        names = [categories[i] for i in redo.tolist() for _ in range(n)]
        every = roll["roll_turn_check"] == "all"
        first = settings if every else dict(settings, verify_turns=0, polish=0)
        cond = self.model.encode(pts, cat[redo].repeat_interleave(n),
                                 select_grouping(grouping, redo.repeat_interleave(n)))
        verify = self._verify(pts, names)
        turnable = self._turnable(names)
        pose = sampling.get_sampler("score_scaling")(self.model, self.sde, cond, generator=self.generator,
                                                     verify=verify, tracking=self.polish, turnable=turnable,
                                                     **first).pose  # (G n, 9)
        roll_of = torch.arange(n, device=self.device).expand(G, n)  # (G, m): the roll of each estimate
        if not every:  # the best roll of each object, then its turn check and polish
            roll_of = verify(pose[:, None])[:, 0].reshape(G, n).argmin(dim=1, keepdim=True)
            pick = rows * n + roll_of[:, 0]
            pose, _ = sampling.turn_check(self.model, self.sde, cond[pick], pose[pick], 0,
                                          self._verify(pts[pick], [names[i] for i in pick.tolist()]),
                                          settings, self.generator, self.polish, turnable[pick])
            centroid = centroid[pick]
        Rr, tr = geometry.denormalize_pose(pose, centroid)  # rolled camera frames
        Rz_back = Rz.transpose(1, 2)[roll_of.reshape(-1)]
        m = roll_of.shape[1]
        Rr, tr = (Rz_back @ Rr).reshape(G, m, 3, 3), (Rz_back @ tr[..., None])[..., 0].reshape(G, m, 3)
        alt = self.verifier.rotation_error(points[redo], Rr, tr, vcat[redo])  # (G, m)
        best = alt.argmin(dim=1)
        better = alt[rows, best] < rating[redo] - float(roll["roll_margin_deg"])
        R, t = R.clone(), t.clone()
        R[redo] = torch.where(better[:, None, None], Rr[rows, best], R[redo])
        t[redo] = torch.where(better[:, None], tr[rows, best], t[redo])
        return R, t

    def _tilt_check(self, points: torch.Tensor, categories: list[str], R: torch.Tensor, t: torch.Tensor,
                    tilt: dict) -> torch.Tensor:
        """The tilt check (``tilt_*`` settings, ``sampling.best_tilt``) of the poses R (B, 3, 3),
        t (B, 3) rated by the verifier on ``points`` (B, N, 3), camera frame. Without a
        verifier or with ``tilt_deg`` 0: off."""
        deg = float(tilt.get("tilt_deg", 0.0))
        if self.verifier is None or deg <= 0:
            return R
        vcat = self.verifier.category_index(categories, self.device)
        return sampling.best_tilt(R, lambda cand: self.verifier.rotation_error(
            points, cand, t[:, None].expand(-1, cand.shape[1], 3), vcat), deg, float(tilt.get("tilt_margin_deg", 0.0)))

    def _extend_cut(self, R, t, size, masks, intrinsics, categories: list[str], cat: torch.Tensor, plane):
        """(t, size) with the boxes of ``border.categories`` that the image border cuts extended."""
        wanted = np.array([c in self.border.categories for c in categories])
        if not wanted.any():
            return t, size
        cuts = border_cuts(masks, self.border.border_px, self.border.min_pixels) & wanted[:, None]
        return extend_cut(R, t, size, cuts, float(intrinsics.fx), float(intrinsics.fy),
                          self.model.size_prior[cat].to(t.dtype), plane, self.border)

    @property
    def categories(self) -> list[str]:
        return list(self.model.categories)

    def _prepare_points(self, points) -> torch.Tensor:
        pts = torch.as_tensor(np.asarray(points, dtype=np.float32))
        if pts.dim() != 3 or pts.shape[-1] != 3:
            raise ValueError(f"points: expected (B, N, 3), got {tuple(pts.shape)}")
        if pts.shape[1] < 3:
            raise ValueError(f"points: need at least 3 points per object, got {pts.shape[1]}")
        if not torch.isfinite(pts).all():
            raise ValueError("points: contains NaN or inf")
        if len(pts):   # a category object's points lie within a few decimetres of their median
            spread = (pts - pts.median(dim=1, keepdim=True).values).norm(dim=-1).median(dim=1).values
            if spread.max() > MAX_SPREAD_M:
                raise ValueError(f"points: object {int(spread.argmax())}'s points lie a median {spread.max():.3g} m "
                                 f"from their centre (at most {MAX_SPREAD_M:g} m for these categories): "
                                 "millimetres instead of metres?")
        if pts.shape[1] != self.n_points:  # resample to the model's input size
            N = pts.shape[1]
            idx = np.stack([self.rng.choice(N, self.n_points, replace=N < self.n_points) for _ in range(len(pts))])
            pts = torch.gather(pts, 1, torch.from_numpy(idx)[..., None].expand(-1, -1, 3))
        return pts.to(self.device)

    @property
    def rejects(self) -> bool:
        """Whether config ``reject`` is on (``rating_deg`` > 0, with a verifier)."""
        return self.verifier is not None and self.config["reject"]["rating_deg"] > 0

    def rejected(self, rating, mask_scores) -> np.ndarray:
        """(B,) bool: the poses config ``reject`` drops, from their verifier ``rating`` (deg) and
        their masks' scores: rated worse than ``rating_deg`` with a mask score below ``mask_score``."""
        mask_scores = np.asarray(mask_scores, np.float32).reshape(-1)
        if not self.rejects:
            return np.zeros(len(mask_scores), bool)
        rating = np.asarray(rating, np.float32).reshape(-1)
        if len(rating) != len(mask_scores):
            raise ValueError(f"got {len(rating)} ratings but {len(mask_scores)} mask scores")
        cfg = self.config["reject"]
        return (rating > cfg["rating_deg"]) & (mask_scores < cfg["mask_score"])

    @torch.inference_mode()
    def estimate(self, points, categories: list[str], mode: str | None = None, prev_poses=None,
                 return_hypotheses: bool = False, support_plane=None, masks=None, intrinsics=None,
                 rate: bool = False, mask_scores=None, **overrides) -> Estimate:
        """Estimate pose and size of B objects.

        Args:
            points: (B, N, 3) object points in the camera frame (metres); resampled to the
                model's input size if N differs.
            categories: B category names (must be known to the model).
            mode: one of ``MODES``; None = config/estimator.yaml's ``default_mode``.
            prev_poses: (B, 4, 4) previous camera-frame poses (tracking only).
            return_hypotheses: also return the K candidate poses (B, K, 4, 4).
            support_plane: the table's plane (n (3,), d), camera frame (``support.table_plane``):
                the poses are fitted to it (``support.rest_on_plane``, config ``support``).
            masks, intrinsics: the objects' B image masks ((H, W) bool each) and the camera's
                intrinsics (``fx``, ``fy``): boxes the image border cuts are extended beyond it
                (``border.extend_cut``, config ``border``).
            rate: also return the pose verifier's estimate of each pose's rotation error (degrees;
                NaN without a verifier), e.g. to doubt a tracked pose.
            mask_scores: (B,) the segmenter's scores of the objects' masks: ``Estimate.rejected``
                tells which poses config ``reject`` drops (the caller drops them; rated).
            overrides: sampler settings (num_candidates, n_steps, solver, t0, ranking, schedule, ...).
        """
        mode = check_mode(mode or self.config["default_mode"])
        kwargs = sampler_settings(mode, overrides, self.config)
        if float(kwargs.get("t0", 0.0)) > self.t_max + 1e-9:
            raise ValueError(f"t0 {kwargs['t0']:g} is beyond the diffusion times this model was trained "
                             f"on (<= {self.t_max:g}): its samples would be noise")
        points = np.asarray(points, dtype=np.float32)
        if points.ndim != 3 or points.shape[-1] != 3:
            raise ValueError(f"points: expected (B, N, 3), got {points.shape}")
        if len(categories) != len(points):
            raise ValueError(f"got {len(points)} point clouds but {len(categories)} categories")
        if (masks is None) != (intrinsics is None):
            raise ValueError("masks and intrinsics go together (the border extension needs both)")
        if masks is not None and len(masks) != len(points):
            raise ValueError(f"got {len(points)} point clouds but {len(masks)} masks")
        if mask_scores is not None:
            mask_scores = np.asarray(mask_scores, np.float32).reshape(-1)
            if len(mask_scores) != len(points):
                raise ValueError(f"got {len(points)} point clouds but {len(mask_scores)} mask scores")
            rate = rate or self.rejects
        t_start = time.perf_counter()
        cat = self.model.category_index(list(categories))
        if len(cat) == 0:
            empty = np.zeros((0, 3), np.float32)
            return Estimate(np.zeros((0, 3, 3), np.float32), empty, empty, np.zeros(0, np.float32),
                            np.zeros((0, 0, 4, 4), np.float32) if return_hypotheses else None,
                            np.zeros(0, np.float32) if rate else None,
                            np.zeros(0, bool) if mask_scores is not None else None)
        pts, centroid = geometry.normalize_points(self._prepare_points(points))
        if mode == "tracking":
            if prev_poses is None:
                raise ValueError("tracking mode needs prev_poses (B, 4, 4)")
            prev = torch.as_tensor(np.asarray(prev_poses, dtype=np.float32), device=self.device)
            if prev.shape != (len(cat), 4, 4):
                raise ValueError(f"prev_poses: expected ({len(cat)}, 4, 4), got {tuple(prev.shape)}")
            kwargs["prev"] = geometry.normalize_pose(prev[:, :3, :3], prev[:, :3, 3], centroid)
        elif prev_poses is not None:
            raise ValueError(f"prev_poses is only used by the tracking mode, not {mode!r}")
        if mode in VERIFIED_MODES:
            kwargs["verify"] = self._verify(pts, categories)
            kwargs["turnable"] = self._turnable(list(categories))
        if mode in ("genpose", "score_scaling"):
            kwargs["tracking"] = self.polish
        roll = {k: kwargs.pop(k) for k in ROLL_KEYS if k in kwargs}
        tilt = {k: kwargs.pop(k) for k in TILT_KEYS if k in kwargs}
        grouping, feature = self._encoder_inputs(pts)  # neighbour indices, shared with the roll check's rolled clouds
        cond = self.model.encode(pts, cat, grouping, feature)  # (B, F) once per object
        t_enc = time.perf_counter()
        sample = sampling.get_sampler(mode)(self.model, self.sde, cond, generator=self.generator, **kwargs)
        R, t = geometry.denormalize_pose(sample.pose, centroid)
        cam = pts + centroid[:, None]  # the points in the camera frame, for the checks and the SizeNet
        if roll.get("roll_turns", 0) > 1:  # rolled estimates: score scaling, this call's settings when it is the mode
            rolled = kwargs if mode == "score_scaling" else sampler_settings("score_scaling", {}, self.config)
            passed = ROLL_KEYS + TILT_KEYS + ("verify", "tracking", "turnable")  # not sampler settings
            rolled = {k: v for k, v in rolled.items() if k not in passed}
            R, t = self._roll_check(cam, cat, list(categories), R, t, roll, rolled, grouping)
        R = self._tilt_check(cam, list(categories), R, t, tilt)
        if self.size_net is None:
            size = self.model.predict_size(cond, cat)
        else:
            size, t_box = self.size_net.predict(cam, R, t,
                                                self.size_net.category_index(list(categories), self.device))
            moved = torch.tensor([c in self.config["size"]["centre"] for c in categories], device=self.device)
            t = torch.where(moved[:, None], t_box, t)
        if support_plane is not None:
            R, t, size = rest_on_plane(R, t, size, support_plane, self.rest)
        if masks is not None:
            t, size = self._extend_cut(R, t, size, masks, intrinsics, list(categories), cat, support_plane)
        hyp = None
        if return_hypotheses:
            Rh, th = geometry.denormalize_pose(sample.hypotheses, centroid[:, None])
            hyp = geometry.rt_to_matrix(Rh, th).cpu().numpy().astype(np.float32)
        out = Estimate(R.cpu().numpy().astype(np.float32), t.cpu().numpy().astype(np.float32),
                       size.cpu().numpy().astype(np.float32), sample.score.cpu().numpy().astype(np.float32), hyp)
        if rate:
            out.rating = np.full(len(cat), np.nan, np.float32)
            if self.verifier is not None:
                vcat = self.verifier.category_index(list(categories), self.device)
                out.rating[:] = self.verifier.rotation_error(cam, R[:, None], t[:, None], vcat)[:, 0].cpu().numpy()
        if mask_scores is not None:
            out.rejected = self.rejected(out.rating, mask_scores)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t_end = time.perf_counter()
        self.last_timing = {"mode": mode, "n_objects": len(cat), "encode_ms": 1e3 * (t_enc - t_start),
                            "sample_ms": 1e3 * (t_end - t_enc), "total_ms": 1e3 * (t_end - t_start),
                            "nfe": sample.nfe}
        return out
