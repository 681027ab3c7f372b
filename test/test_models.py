"""PointNet++ pieces and the heads: real modules on small inputs."""
import pytest
import torch

from genpose_ros.pose.nets import PoseNet
from genpose_ros.pose.pointnet2 import (LIGHT_ENCODER, PointNet2Encoder, ball_query,
                                          farthest_point_sample, select_grouping)

TINY = {"categories": ["bottle", "bowl", "camera", "can", "laptop", "mug"], "n_points": 128,
        "encoder": {"levels": [{"npoint": 32, "radii": [0.05, 0.1], "nsample": [8, 16], "mlps": [[8, 16], [8, 16]]}],
                    "global_mlp": [32]},
        "cat_dim": 8, "hidden": 32, "pose_dim": 16, "time_dim": 16}


def test_fps_backends_agree_and_spread_points():
    torch.manual_seed(0)
    xyz = torch.rand(3, 200, 3)
    a = farthest_point_sample(xyz, 40, backend="fpsample")
    b = farthest_point_sample(xyz, 40, backend="torch")
    assert a.shape == (3, 40) and torch.equal(a, b)
    for i in range(3):
        assert len(set(a[i].tolist())) == 40  # no repeats
    # FPS covers the cloud better than the first 40 points
    sel = torch.gather(xyz, 1, a[..., None].expand(-1, -1, 3))
    cover_fps = torch.cdist(xyz, sel).min(-1).values.max()
    cover_first = torch.cdist(xyz, xyz[:, :40]).min(-1).values.max()
    assert cover_fps < cover_first
    with pytest.raises(ValueError, match="cannot pick"):
        farthest_point_sample(xyz, 500)
    with pytest.raises(ValueError, match="backend"):
        farthest_point_sample(xyz, 4, backend="cuda_ext")


@pytest.mark.parametrize("radius, nsample", [(0.2, 8), (0.5, 40), (2.0, 150)])  # 150: more than the cloud has
def test_ball_query_matches_brute_force(radius, nsample):
    torch.manual_seed(1)
    xyz = torch.rand(2, 100, 3)
    centres = xyz[:, :10]
    idx = ball_query(radius, nsample, xyz, centres)
    assert idx.shape == (2, 10, nsample)
    d = torch.cdist(centres, xyz)
    assert torch.equal(ball_query(radius, nsample, xyz, centres, d.square()), idx)  # shared distances
    for b in range(2):
        for s in range(10):
            inside = torch.nonzero(d[b, s] <= radius).flatten().tolist()
            expect = inside[:nsample] + [inside[0]] * (nsample - len(inside[:nsample]))
            assert idx[b, s].tolist() == expect


def test_encoder_shapes_and_config_errors():
    enc = PointNet2Encoder(**LIGHT_ENCODER)
    f = enc(torch.randn(2, 512, 3) * 0.05)
    assert f.shape == (2, enc.out_dim) and torch.isfinite(f).all()
    with pytest.raises(ValueError, match="at least 128 points"):
        enc(torch.randn(2, 64, 3))
    with pytest.raises(ValueError, match="unknown level keys"):
        PointNet2Encoder(levels=[{"npoint": 8, "radii": [0.1], "nsample": [4], "mlps": [[8]], "foo": 1}],
                         global_mlp=[8])


def test_encoder_in_eval_mode_folds_its_batch_norms_and_computes_the_same():
    """The eval path (``folded_mlp``: 1x1 convolution and batch norm as one matrix product on
    channels-last points) gives what the modules give, for a trained-looking batch norm."""
    torch.manual_seed(3)
    enc = PointNet2Encoder(**LIGHT_ENCODER).double()
    for bn in (m for m in enc.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        bn.running_mean.uniform_(-0.5, 0.5), bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5), bn.bias.data.uniform_(-0.2, 0.2)
    enc.eval()
    pts = torch.randn(3, 512, 3, dtype=torch.float64) * 0.05
    fast = enc(pts)
    for sa in enc.levels:
        sa.train()  # the plain modules, but with the running statistics
        for bn in (m for m in sa.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.eval()
    assert torch.allclose(enc(pts), fast, atol=1e-10)


def test_encoder_reuses_the_neighbours_of_a_rolled_cloud():
    """The roll check encodes clouds rotated about the optical axis: their FPS and ball-query
    indices are those of the unrolled cloud, so it passes them instead of searching again."""
    torch.manual_seed(5)
    enc = PointNet2Encoder(**LIGHT_ENCODER).eval()
    pts = torch.randn(3, 512, 3) * torch.tensor([0.03, 0.06, 0.02])
    c, s = torch.cos(torch.tensor(2.0)), torch.sin(torch.tensor(2.0))
    roll = torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    rolled = pts @ roll.T + torch.tensor([0.01, -0.02, 0.0])
    rows = torch.tensor([2, 0])
    grouping = enc.group(pts)
    with torch.no_grad():
        torch.testing.assert_close(enc(rolled[rows], select_grouping(grouping, rows)), enc(rolled[rows]))
        assert not torch.allclose(enc(rolled[rows], select_grouping(grouping, rows.flip(0))), enc(rolled[rows]))


def test_heads_stacked_for_sampling_compute_what_the_modules_compute():
    """Without gradients (sampling) the three heads run as two matrix products of their
    stacked weights; they follow every change of the weights (an optimizer step)."""
    torch.manual_seed(4)
    net = PoseNet(TINY).double()
    heads = net.score
    for lin in heads.out:
        torch.nn.init.normal_(lin.weight, std=0.1)
    cproj = heads.condition(torch.randn(3, heads.cond_in[0].in_features, dtype=torch.float64)).detach()
    opt = torch.optim.SGD(heads.parameters(), lr=0.1)
    for K in (1, 4):
        p, t = torch.randn(3, K, 9, dtype=torch.float64), torch.rand(3, K, dtype=torch.float64)
        for _ in range(2):
            plain = heads.raw(p, t, cproj)  # gradients on: the modules
            with torch.no_grad():
                torch.testing.assert_close(heads.raw(p, t, cproj), plain.detach(), atol=1e-12, rtol=0)
            plain.square().sum().backward()
            opt.step()
            opt.zero_grad()


def test_heads_zero_init_and_energy_score_is_its_gradient():
    torch.manual_seed(2)
    net = PoseNet(TINY).double()
    pts = torch.randn(3, 128, 3, dtype=torch.float64) * 0.05
    cond = net.encode(pts, net.category_index(["mug", "bowl", "can"]))
    p, t = torch.randn(3, 5, 9, dtype=torch.float64), torch.rand(3, 5, dtype=torch.float64)
    sigma = 0.01 * 5000 ** t
    assert torch.all(net.score(p, t, sigma, net.score.condition(cond)) == 0)  # zero-init last layer
    for lin in net.energy.out:  # give the energy net non-trivial weights
        torch.nn.init.normal_(lin.weight, std=0.1)
    cproj = net.energy.condition(cond).detach()
    s = net.energy(p, t, sigma, cproj)
    # finite differences of the total energy
    eps = 1e-6
    for j in (0, 4, 8):
        dp = torch.zeros_like(p)
        dp[1, 2, j] = eps
        e1 = net.energy.energy(p + dp, t, sigma, cproj).sum()
        e0 = net.energy.energy(p - dp, t, sigma, cproj).sum()
        fd = float((e1 - e0).detach()) / (2 * eps)
        assert abs(fd - float(s[1, 2, j])) < 1e-5 * (1 + abs(fd))
    assert s.abs().sum() > 0


def test_category_conditioning_errors_and_effect():
    net = PoseNet(TINY).eval()
    with pytest.raises(ValueError, match="unknown category 'chair'"):
        net.category_index(["mug", "chair"])
    pts = torch.randn(1, 128, 3) * 0.05
    a = net.encode(pts, net.category_index(["mug"]))
    b = net.encode(pts, net.category_index(["can"]))
    assert not torch.allclose(a, b)
    size = net.predict_size(a, net.category_index(["mug"]))
    assert size.shape == (1, 3) and torch.all(size > 0)
    assert net.regress(a).shape == (1, 9)
