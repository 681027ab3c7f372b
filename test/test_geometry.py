"""Rotation utilities against scipy, and Markley averaging against a brute-force optimum."""
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from genpose_ros import geometry as g


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_quat_matches_scipy(dtype):
    rot = Rotation.random(200, random_state=0)
    R = torch.tensor(rot.as_matrix(), dtype=dtype)
    q = g.rotmat_to_quat(R)
    q_ref = rot.as_quat()
    q_ref *= np.sign(q_ref[:, 3:4])
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    np.testing.assert_allclose(q.numpy(), q_ref, atol=tol)
    np.testing.assert_allclose(g.quat_to_rotmat(q).numpy(), rot.as_matrix(), atol=tol)


def test_quat_edge_cases_180_degrees():
    rots = Rotation.from_rotvec(np.pi * np.eye(3))  # w = 0 cases
    R = torch.tensor(rots.as_matrix())
    np.testing.assert_allclose(g.quat_to_rotmat(g.rotmat_to_quat(R)).numpy(), R.numpy(), atol=1e-10)


def test_rot6d_round_trip_and_gram_schmidt():
    R = torch.tensor(Rotation.random(50, random_state=1).as_matrix())
    np.testing.assert_allclose(g.rot6d_to_rotmat(g.rotmat_to_rot6d(R)).numpy(), R.numpy(), atol=1e-12)
    noisy = g.rotmat_to_rot6d(R) * 3.0 + 0.1 * torch.randn(50, 6, dtype=torch.float64)
    Rn = g.rot6d_to_rotmat(noisy)
    eye = torch.eye(3, dtype=torch.float64).expand(50, 3, 3)
    np.testing.assert_allclose((Rn.transpose(-1, -2) @ Rn).numpy(), eye.numpy(), atol=1e-10)
    np.testing.assert_allclose(torch.linalg.det(Rn).numpy(), np.ones(50), atol=1e-10)
    # the first column keeps the direction of the first input vector
    x = noisy[:, :3] / noisy[:, :3].norm(dim=-1, keepdim=True)
    np.testing.assert_allclose(Rn[..., 0].numpy(), x.numpy(), atol=1e-12)


def test_leading_batch_dims():
    R = torch.tensor(Rotation.random(24, random_state=2).as_matrix()).reshape(2, 3, 4, 3, 3)
    q = g.rotmat_to_quat(R)
    assert q.shape == (2, 3, 4, 4)
    assert g.rot6d_to_rotmat(g.rotmat_to_rot6d(R)).shape == R.shape
    assert g.quat_average(q).shape == (2, 3, 4)


def test_bad_shapes_raise_clear_errors():
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, 3\)"):
        g.rotmat_to_quat(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="6"):
        g.rot6d_to_rotmat(torch.zeros(5, 9))
    with pytest.raises(ValueError, match="weights"):
        g.quat_average(torch.zeros(2, 5, 4), torch.ones(2, 4))


def test_markley_average_matches_brute_force_optimum():
    rng = np.random.default_rng(3)
    centre = Rotation.random(random_state=4)
    rots = centre * Rotation.from_rotvec(rng.normal(scale=0.4, size=(30, 3)))
    q = torch.tensor(rots.as_quat())
    q[::2] *= -1  # sign flips must not matter
    w = torch.tensor(rng.uniform(0.2, 1.0, 30))
    avg = g.quat_average(q, w).numpy()

    def cost(qa):  # sum_i w_i (1 - <qa, q_i>^2): chordal distance, sign-invariant
        return float((w.numpy() * (1 - (q.numpy() @ qa) ** 2)).sum())

    # brute force: many random candidates plus refinement around the best
    cands = Rotation.random(20000, random_state=5).as_quat()
    best = cands[np.argmin([cost(c) for c in cands])]
    for scale in (0.05, 0.01, 0.002):
        local = (Rotation.from_quat(best) * Rotation.from_rotvec(rng.normal(scale=scale, size=(3000, 3)))).as_quat()
        local = np.vstack([local, best])
        best = local[np.argmin([cost(c) for c in local])]
    assert cost(avg) <= cost(best) + 1e-9
    angle = (Rotation.from_quat(avg).inv() * Rotation.from_quat(best)).magnitude()
    assert angle < np.deg2rad(0.5)
    # same result as scipy's Markley implementation
    ref = Rotation.from_quat(rots.as_quat()).mean(weights=w.numpy()).as_quat()
    assert abs(abs(float(ref @ avg)) - 1) < 1e-9


def test_pose_normalisation_round_trip():
    R = torch.tensor(Rotation.random(8, random_state=6).as_matrix(), dtype=torch.float32)
    t = torch.randn(8, 3)
    pts = torch.randn(8, 100, 3) + t[:, None]
    centred, c = g.normalize_points(pts)
    assert torch.allclose(centred.mean(1), torch.zeros(8, 3), atol=1e-5)
    p = g.normalize_pose(R, t, c)
    R2, t2 = g.denormalize_pose(p, c)
    assert torch.allclose(R2, R, atol=1e-5) and torch.allclose(t2, t, atol=1e-5)
    T = g.rt_to_matrix(R, t)
    assert T.shape == (8, 4, 4) and torch.all(T[:, 3] == torch.tensor([0, 0, 0, 1.0]))


def test_geodesic_distance():
    a = Rotation.random(10, random_state=7)
    b = Rotation.random(10, random_state=8)
    d = g.rotmat_geodesic_distance(torch.tensor(a.as_matrix()), torch.tensor(b.as_matrix()))
    np.testing.assert_allclose(d.numpy(), (a.inv() * b).magnitude(), atol=1e-6)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_axis_rotation_matches_scipy(axis):
    angles = torch.linspace(-3.0, 3.0, 7, dtype=torch.float64)
    R = g.axis_rotation(angles, axis).numpy()
    ref = Rotation.from_euler("xyz"[axis], angles.numpy()[:, None]).as_matrix()
    np.testing.assert_allclose(R, ref, atol=1e-12)
