"""Pose verifier: how far off is a candidate rotation, judged from the points it canonicalises.

GenPose's EnergyNet ranks candidates from the encoder's feature of the camera-frame cloud; for
objects whose turn about their up axis is told by a small part (a camera's lens, a laptop's
lid, a mug's handle) it keeps many candidates that are turned the wrong way, although the best
of the K candidates is often right. The verifier looks at the cloud the other way round: the
points are moved into each candidate's object frame (``size_net.canonicalize``), where a right
pose puts the lens at +z, the hinge at -z and the handle at +x, and a small PointNet on those
canonical points, with the extents they span, predicts the candidate's rotation error (degrees;
for symmetric objects the error of the up axis, as the metrics count it). It is trained on
ground-truth poses turned by random errors (``verifier_train``), so it does not depend on the
pose model whose candidates it ranks.

    net = load_verifier("models/verifier.pt")
    err_deg = net.rotation_error(points, R, t, category_idx)   # (B, N, 3), (B, K, 3, 3), (B, K, 3), (B,) -> (B, K)

Checkpoints are ``genpose_ros.pose.checkpoint`` dicts of format ``VERIFIER_FORMAT`` (read with
``weights_only=True``).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from genpose_ros.pose.size_net import category_index, point_features, point_mlp

VERIFIER_FORMAT = "genpose_ros.verifier/1"
VERIFIER_WHAT = "verifier checkpoint"
MAX_ERROR_DEG = 180.0


class PoseVerifier(nn.Module):
    """Canonical points -> rotation error. Config: ``{"categories": [...], "n_points": 64,
    "widths": [32, 64, 128], "hidden": 128, "cat_dim": 16, "quantile": 0.97}``
    (config/verifier.yaml ``n_points`` and ``model``)."""

    def __init__(self, config: dict):
        super().__init__()
        self.config = dict(config)
        self.categories = list(config["categories"])
        self.quantile = float(config.get("quantile", 0.97))
        widths = [3] + list(config.get("widths", [64, 128, 256]))
        self.point_mlp = point_mlp(widths)
        cat_dim, hidden = config.get("cat_dim", 16), config.get("hidden", 128)
        self.cat_embed = nn.Embedding(len(self.categories), cat_dim)
        self.head = nn.Sequential(nn.Linear(2 * widths[-1] + 9 + cat_dim, hidden), nn.ReLU(),
                                  nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, local: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        """Object-frame points (M, N, 3) under candidate poses, category indices (M,) -> predicted
        rotation error (M,) in degrees, in [0, 180]."""
        pooled, fit, lo, hi, span = point_features(self, local, self.quantile)
        mid = 0.5 * (hi + lo) / fit.amax(dim=-1, keepdim=True)  # where the seen points lie in the frame
        feat = torch.cat([pooled, torch.log(fit), torch.log(span / fit), mid, self.cat_embed(category)], dim=-1)
        return MAX_ERROR_DEG * torch.sigmoid(self.head(feat)[:, 0])

    @torch.no_grad()
    def rotation_error(self, points: torch.Tensor, R: torch.Tensor, t: torch.Tensor,
                       category: torch.Tensor) -> torch.Tensor:
        """Camera-frame points (B, N, 3) (a random sample; the first ``n_points`` are used), K
        candidate poses per object R (B, K, 3, 3), t (B, K, 3), category (B,) -> predicted rotation
        error (B, K) in degrees."""
        B, K = R.shape[:2]
        n = int(self.config.get("n_points", points.shape[1]))
        pts = points[:, None, :n].expand(B, K, -1, 3)
        local = torch.matmul(pts - t[:, :, None, :], R)  # (B, K, n, 3): R^T (p - t) per candidate
        err = self(local.reshape(B * K, -1, 3), category.repeat_interleave(K))
        return err.reshape(B, K)

    def category_index(self, categories: list[str], device=None) -> torch.Tensor:
        return category_index(self.categories, categories, "verifier", device)


def load_verifier(path, map_location: str | torch.device = "cpu") -> PoseVerifier:
    """PoseVerifier from a safe checkpoint; missing, corrupt, non-finite or mismatched files raise
    CheckpointError."""
    from genpose_ros.pose.checkpoint import load_net

    return load_net(PoseVerifier, path, VERIFIER_FORMAT, VERIFIER_WHAT, map_location)
