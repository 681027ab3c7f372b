"""Rotation and pose utilities (torch), any number of leading batch dimensions.

Naming follows ``<src>_to_<dst>``. Conventions:

- rotation matrices ``(..., 3, 3)`` map object -> camera (columns are the object axes);
- the 6-D representation is the first two columns ``[Rx | Ry]`` concatenated, ``(..., 6)``;
  it is turned back into a rotation by Gram-Schmidt with ``Rx`` as the primary axis;
- unit quaternions are ``(..., 4)`` in **XYZW** order (scipy's order);
- a 9-D pose vector is ``[Rx | Ry | t]``, ``(..., 9)``, with ``t`` in metres.

Pose normalisation: the network sees points centred on the point-cloud mean, so a camera-frame
pose ``(R, t)`` becomes ``(R, t - centroid)`` and back.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_last(x: torch.Tensor, shape: tuple[int, ...], name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if tuple(x.shape[-len(shape):]) != shape or x.dim() < len(shape):
        raise ValueError(f"{name}: expected shape (..., {', '.join(map(str, shape))}), "
                         f"got {tuple(x.shape)}")


def rotmat_to_rot6d(R: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation -> (..., 6) first two columns [Rx | Ry]."""
    _check_last(R, (3, 3), "R")
    return torch.cat([R[..., :, 0], R[..., :, 1]], dim=-1)


def rot6d_to_rotmat(d6: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(..., 6) [Rx | Ry] (not necessarily orthonormal) -> (..., 3, 3) rotation (det +1).

    Gram-Schmidt: x = normalise(Rx); y = normalise(Ry - <x, Ry> x); z = x cross y.
    """
    _check_last(d6, (6,), "d6")
    a, b = d6[..., :3], d6[..., 3:6]
    x = F.normalize(a, dim=-1, eps=eps)
    y = F.normalize(b - (x * b).sum(-1, keepdim=True) * x, dim=-1, eps=eps)
    z = torch.cross(x, y, dim=-1)
    return torch.stack([x, y, z], dim=-1)


def rotmat_to_quat(R: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotation -> (..., 4) unit quaternion XYZW with w >= 0.

    Branch-free Shepperd-style method: the largest of the four candidate denominators is used.
    """
    _check_last(R, (3, 3), "R")
    m = R
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    # 4 q_i^2 for i in (x, y, z, w)
    qsq = torch.stack([1 + m00 - m11 - m22, 1 - m00 + m11 - m22,
                       1 - m00 - m11 + m22, 1 + m00 + m11 + m22], dim=-1)
    # candidate quaternions, each computed from one large component (rows: x, y, z, w pivot)
    c = torch.stack([
        torch.stack([qsq[..., 0], m[..., 1, 0] + m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0],
                     m[..., 2, 1] - m[..., 1, 2]], dim=-1),
        torch.stack([m[..., 1, 0] + m[..., 0, 1], qsq[..., 1], m[..., 2, 1] + m[..., 1, 2],
                     m[..., 0, 2] - m[..., 2, 0]], dim=-1),
        torch.stack([m[..., 0, 2] + m[..., 2, 0], m[..., 2, 1] + m[..., 1, 2], qsq[..., 2],
                     m[..., 1, 0] - m[..., 0, 1]], dim=-1),
        torch.stack([m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0],
                     m[..., 1, 0] - m[..., 0, 1], qsq[..., 3]], dim=-1),
    ], dim=-2)  # (..., 4, 4)
    best = qsq.argmax(dim=-1)  # (...)
    q = torch.gather(c, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = F.normalize(q, dim=-1)
    return torch.where(q[..., 3:4] < 0, -q, q)


def quat_to_rotmat(q: torch.Tensor) -> torch.Tensor:
    """(..., 4) quaternion XYZW (normalised here) -> (..., 3, 3) rotation."""
    _check_last(q, (4,), "q")
    x, y, z, w = F.normalize(q, dim=-1).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
    ], dim=-1).reshape(*q.shape[:-1], 3, 3)


def rot6d_to_quat(d6: torch.Tensor) -> torch.Tensor:
    """(..., 6) -> (..., 4) XYZW."""
    return rotmat_to_quat(rot6d_to_rotmat(d6))


def quat_average(q: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Markley's quaternion average: top eigenvector of sum_i w_i q_i q_i^T.

    Args:
        q: (..., K, 4) unit quaternions (sign-free: q and -q give the same result).
        weights: (..., K) non-negative weights, or None for uniform.
    Returns:
        (..., 4) unit quaternion XYZW with w >= 0, the rotation minimising the weighted sum of
        squared chordal quaternion distances.
    """
    _check_last(q, (4,), "q")
    if q.dim() < 2:
        raise ValueError(f"q: expected (..., K, 4), got {tuple(q.shape)}")
    if weights is None:
        weights = torch.ones(q.shape[:-1], dtype=q.dtype, device=q.device)
    elif weights.shape != q.shape[:-1]:
        raise ValueError(f"weights: expected shape {tuple(q.shape[:-1])}, got {tuple(weights.shape)}")
    M = torch.einsum("...k,...ki,...kj->...ij", weights, q, q)  # (..., 4, 4)
    _, vecs = torch.linalg.eigh(M)  # ascending eigenvalues
    avg = vecs[..., :, -1]
    return torch.where(avg[..., 3:4] < 0, -avg, avg)


def rotmat_average(R: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """(..., K, 3, 3) rotations -> (..., 3, 3) Markley average."""
    return quat_to_rotmat(quat_average(rotmat_to_quat(R), weights))


def rotmat_geodesic_distance(R1: torch.Tensor, R2: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) x (..., 3, 3) -> (...) angle of R1^T R2 in radians."""
    _check_last(R1, (3, 3), "R1")
    _check_last(R2, (3, 3), "R2")
    cos = ((R1 * R2).sum(dim=(-2, -1)) - 1) / 2
    return torch.arccos(cos.clamp(-1.0, 1.0))


def axis_rotation(angles: torch.Tensor, axis: int) -> torch.Tensor:
    """Rotations by ``angles`` (n,) radians about the coordinate axis ``axis`` (0, 1, 2 = x, y, z)
    -> (n, 3, 3)."""
    c, s = torch.cos(angles), torch.sin(angles)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]  # the plane the rotation turns, right-handed
    R = torch.zeros(len(angles), 3, 3, device=angles.device, dtype=angles.dtype)
    R[:, axis, axis] = 1.0
    R[:, i, i], R[:, i, j], R[:, j, i], R[:, j, j] = c, -s, s, c
    return R


def pose_to_vec(R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3), (..., 3) -> (..., 9) pose vector [Rx | Ry | t]."""
    _check_last(t, (3,), "t")
    return torch.cat([rotmat_to_rot6d(R), t], dim=-1)


def vec_to_pose(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., 9) pose vector -> rotation (..., 3, 3) (Gram-Schmidt), translation (..., 3)."""
    _check_last(p, (9,), "p")
    return rot6d_to_rotmat(p[..., :6]), p[..., 6:9]


def normalize_points(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre a cloud on its mean. (..., N, 3) -> centred (..., N, 3), centroid (..., 3)."""
    _check_last(points, (3,), "points")
    centroid = points.mean(dim=-2)
    return points - centroid[..., None, :], centroid


def normalize_pose(R: torch.Tensor, t: torch.Tensor, centroid: torch.Tensor) -> torch.Tensor:
    """Camera-frame pose -> 9-D pose vector relative to the cloud centroid (..., 9)."""
    return pose_to_vec(R, t - centroid)


def denormalize_pose(p: torch.Tensor, centroid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """9-D normalised pose vector (..., 9) + centroid (..., 3) -> camera-frame R (..., 3, 3), t (..., 3)."""
    R, t = vec_to_pose(p)
    return R, t + centroid


def rt_to_matrix(R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3), (..., 3) -> (..., 4, 4) homogeneous transform."""
    T = torch.zeros(*R.shape[:-2], 4, 4, dtype=R.dtype, device=R.device)
    T[..., :3, :3] = R
    T[..., :3, 3] = t
    T[..., 3, 3] = 1
    return T
