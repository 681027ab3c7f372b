"""SizeNet: canonical frame, extent fit, the shipped network on rendered objects (standard and
wide shape families), safe checkpoints, the estimator's size methods and `genpose train --task size`."""
import json

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from genpose_ros import CATEGORIES
from genpose_ros.config import ConfigError
from genpose_ros.paths import package_share
from genpose_ros.pose.checkpoint import CheckpointError, save_checkpoint
from genpose_ros.pose.size_net import (SIZE_FORMAT, SizeNet, axis_quantile, canonicalize, extent_fit, load_size_net,
                                       tail_quantiles)
from conftest import unreadable_split

SHIPPED = package_share() / "models" / "size_net.pt"
SMALL = {"categories": list(CATEGORIES), "n_points": 64, "widths": [8, 16], "hidden": 16, "cat_dim": 4,
         "quantile": 0.97}


def _box_surface(size, n, rng):
    """(n, 3) points on the surface of a centred box of edge lengths ``size``."""
    pts = rng.uniform(-0.5, 0.5, (n, 3)) * size
    axis = rng.integers(3, size=n)
    pts[np.arange(n), axis] = np.sign(rng.uniform(-1, 1, n)) * size[axis] / 2
    return pts


def test_canonicalize_undoes_the_pose():
    rng = np.random.default_rng(0)
    local = torch.from_numpy(rng.normal(size=(2, 50, 3))).float()
    R = torch.from_numpy(Rotation.random(2, random_state=0).as_matrix()).float()
    t = torch.tensor([[0.1, 0.2, 0.7], [-0.3, 0.0, 1.1]])
    cam = torch.einsum("bij,bnj->bni", R, local) + t[:, None]
    torch.testing.assert_close(canonicalize(cam, R, t), local, atol=1e-5, rtol=0)


@pytest.mark.parametrize("n", [1, 2, 5, 128])
def test_axis_quantile_is_torchs(n):
    x = torch.from_numpy(np.random.default_rng(n).normal(size=(4, n, 3))).float()
    for q in (0.0, 0.03, 0.3, 0.5, 0.8, 0.97, 1.0):
        torch.testing.assert_close(axis_quantile(x, q), torch.quantile(x, q, dim=1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("n", [1, 2, 5, 40, 128, 256])
def test_tail_quantiles_are_axis_quantiles(n):
    rng = np.random.default_rng(n)
    x = torch.from_numpy(rng.normal(size=(4, n, 3))).float()
    x[1] = x[1].round(decimals=1)  # ties
    x[2, :, 0] = 0.5  # one value on a whole axis
    x[3] = x[3].abs()  # no negative values
    for q in (0.5, 0.7, 0.9, 0.97, 1.0):
        lo, hi, mag = tail_quantiles(x, q)
        assert torch.equal(lo, axis_quantile(x, 1.0 - q)) and torch.equal(hi, axis_quantile(x, q))
        assert torch.equal(mag, axis_quantile(x.abs(), q))


def test_untrained_net_is_the_extent_fit_and_fit_follows_the_box():
    rng = np.random.default_rng(1)
    size = np.array([0.3, 0.05, 0.12])
    local = torch.from_numpy(_box_surface(size, 2000, rng)).float()[None]
    fit = extent_fit(local, 0.97)[0].numpy()
    np.testing.assert_allclose(fit, size, rtol=0.04)
    net = SizeNet(SMALL)
    torch.testing.assert_close(net(local, torch.tensor([4])), extent_fit(local, 0.97))


@pytest.fixture(scope="module")
def rendered_instances():
    """(category, family, GT R, t, size, points) of objects rendered in standard and wide scenes."""
    from genpose_ros.data.pointcloud import TooFewPointsError, object_points
    from genpose_ros.data.render import Renderer
    from genpose_ros.data.scenes import sample_camera_pose, sample_scene

    rng = np.random.default_rng(5)
    renderer = Renderer()
    out = {"standard": [], "wide": []}
    for dist in out:
        for _ in range(3):
            scene = sample_scene(rng, distribution=dist)
            frame = renderer.render(scene, sample_camera_pose(rng, scene), rng)
            fam = {o.instance_id: o.model.params.get("family", "") for o in scene.objects}
            for inst in frame.instances:
                try:
                    pts = object_points(frame.depth, frame.mask == inst.instance_id, frame.intrinsics, 512, rng)
                except TooFewPointsError:
                    continue
                out[dist].append((inst.category, fam[inst.instance_id], inst.R, inst.t, inst.size, pts))
    return out


def _log_errors(net, insts, rot_noise_deg=0.0, seed=0):
    rng = np.random.default_rng(seed)
    errs = []
    for cat, _, R, t, size, pts in insts:
        R_est = R @ Rotation.from_rotvec(rng.normal(size=3) * np.radians(rot_noise_deg) / np.sqrt(3)).as_matrix()
        pred = net.predict(torch.from_numpy(pts)[None], torch.from_numpy(R_est).float()[None],
                           torch.from_numpy(t).float()[None], net.category_index([cat]))[0][0].numpy()
        errs.append(np.abs(np.log(pred / size)).mean())
    return np.array(errs)


@pytest.mark.skipif(not SHIPPED.is_file(), reason="no shipped models/size_net.pt")
def test_shipped_net_sizes_rendered_objects_also_of_unseen_families(rendered_instances):
    net = load_size_net(SHIPPED)
    assert set(net.categories) == set(CATEGORIES)
    for dist, limit in (("standard", 0.08), ("wide", 0.14)):  # measured: 0.044, 0.075
        insts = rendered_instances[dist]
        assert len(insts) >= 8
        err = _log_errors(net, insts)
        noisy = _log_errors(net, insts, rot_noise_deg=5.0)
        assert np.median(err) < limit, (dist, np.median(err))
        assert np.median(noisy) < limit + 0.03, (dist, np.median(noisy))  # tolerates pose errors
    # sizes follow the object, not a category mean: scaling the points scales the prediction
    cat, _, R, t, size, pts = rendered_instances["standard"][0]
    args = [torch.from_numpy(R).float()[None], torch.from_numpy(t).float()[None], net.category_index([cat])]
    big = t + 1.3 * (pts - t)
    a = net.predict(torch.from_numpy(pts)[None], *args)[0][0]
    b = net.predict(torch.from_numpy(big).float()[None], *args)[0][0]
    assert float((b / a).mean()) == pytest.approx(1.3, rel=0.1)


def test_centre_output_moves_the_translation_and_is_learnt():
    """The untrained centre output keeps t; a few hundred steps on one box shape learn to find a
    box centre the pose missed by centimetres (the translation fix the estimator applies)."""
    from genpose_ros.pose.size_train import box_loss, make_batch

    rng = np.random.default_rng(3)
    torch.manual_seed(0)
    net = SizeNet(dict(SMALL, centre=True))
    R = torch.from_numpy(Rotation.random(1, random_state=1).as_matrix()).float()
    t = torch.tensor([[0.1, -0.05, 0.8]])
    size = np.array([0.3, 0.2, 0.25])
    local = _box_surface(size, 64, rng)
    local = local[local[:, 2] > -0.1]  # one side unseen: the visible points are off-centre
    cam = torch.from_numpy(local).float()[None] @ R.transpose(1, 2) + t[:, None]
    s0, t0 = net.predict(cam, R, t, torch.tensor([4]))
    torch.testing.assert_close(t0, t)
    n = len(local)
    pool = {"points": torch.from_numpy(np.tile(local, (8, 1, 1))).float() @ R.transpose(1, 2) + t[:, None],
            "R": R.expand(8, 3, 3), "t": t.expand(8, 3), "size": torch.tensor(size).float().expand(8, 3),
            "category": torch.full((8,), 4), "handle_visible": torch.ones(8)}
    aug = {"box_scale": [1.0, 1.0], "rot_sigma_deg": 2.0, "trans_sigma_m": 0.03, "jitter_m": 0.0}
    g = torch.Generator().manual_seed(0)
    net.config["n_points"] = n
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(300):
        loss = box_loss(net, *make_batch(pool, torch.arange(8), n, g, aug))
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert np.mean(losses[-30:]) < 0.5 * np.mean(losses[:5])
    # with outline erosion the points at the eroded side are left out: here every point with a
    # margin below of 0 (x > 0 of the box), so the seen points all lie at x <= 0
    margins = torch.full((8, n, 4), 3, dtype=torch.uint8)
    margins[:, torch.from_numpy(local[:, 0] > 0)] = torch.tensor([0, 3, 3, 3], dtype=torch.uint8)
    eroded = {**aug, "rot_sigma_deg": 0.0, "trans_sigma_m": 0.0, "p_outline": 1.0, "outline_px": [0.0, 1.0]}
    kept = int((local[:, 0] <= 0).sum())
    pts = make_batch({**pool, "margins": margins}, torch.arange(8), kept, g, eroded)[0]
    assert pts.shape == (8, kept, 3) and (pts[..., 0] <= 1e-6).all()
    dt = torch.tensor([[0.02, -0.015, 0.02]])  # the estimator missed the centre by 3 cm
    _, t_box = net.predict(cam, R, t + dt, torch.tensor([4]))
    assert float((t_box - t).norm()) < 0.5 * float(dt.norm())


def test_size_checkpoints_load_safely_with_clear_errors(tmp_path, tiny_pose_checkpoint):
    net = SizeNet(SMALL)
    path = save_checkpoint(tmp_path / "size.pt", net.state_dict(), SMALL, 3, fmt=SIZE_FORMAT)
    again = load_size_net(path)
    local = torch.rand(2, 64, 3) - 0.5
    torch.testing.assert_close(again(local, torch.tensor([0, 5])), net(local, torch.tensor([0, 5])))
    with pytest.raises(CheckpointError,
                       match=r"is not a genpose_ros size checkpoint \(format 'genpose_ros.pose/1', expected 'genpose_ros.size/1'\)"):
        load_size_net(tiny_pose_checkpoint)
    (tmp_path / "broken.pt").write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="cannot read size checkpoint"):
        load_size_net(tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match="size checkpoint not found"):
        load_size_net(tmp_path / "none.pt")
    state = {k: v.clone() for k, v in net.state_dict().items()}
    state["head.0.weight"][0, 0] = float("nan")
    save_checkpoint(tmp_path / "nan.pt", state, SMALL, 3, fmt=SIZE_FORMAT)
    with pytest.raises(CheckpointError, match="size checkpoint .*nan.pt is unusable: NaN or Inf weights"):
        load_size_net(tmp_path / "nan.pt")
    with pytest.raises(ValueError, match=r"does not know the categories \['cup'\]"):
        net.category_index(["mug", "cup"])


def test_estimator_size_methods(tmp_path, tiny_pose_checkpoint):
    from genpose_ros.pose.estimator import PoseEstimator

    rng = np.random.default_rng(0)
    size = np.array([0.12, 0.09, 0.09])
    local = _box_surface(size, 512, rng)
    pts = (local + [0.05, 0.0, 0.6]).astype(np.float32)[None]
    torch.manual_seed(0)
    net = SizeNet(dict(SMALL, n_points=512))
    path = save_checkpoint(tmp_path / "size.pt", net.state_dict(), net.config, 0, fmt=SIZE_FORMAT)
    est = PoseEstimator.from_checkpoint(tiny_pose_checkpoint, config={"size": {"checkpoint": str(path)}})
    head = PoseEstimator.from_checkpoint(tiny_pose_checkpoint, config={"size": {"method": "head"}})
    for mode in ("regression", "score_scaling"):
        a = est.estimate(pts, ["mug"], mode=mode)
        expect, t_box = net.predict(torch.from_numpy(pts), torch.from_numpy(a.R), torch.from_numpy(a.t),
                                    torch.tensor([5]))
        np.testing.assert_allclose(a.size, expect.numpy(), rtol=1e-5)
        np.testing.assert_allclose(t_box.numpy(), a.t)  # no centre output: the pose's translation
    centred = SizeNet(dict(SMALL, n_points=512, centre=True))
    with torch.no_grad():
        centred.head[-1].bias[3:] = 0.1  # the box centre 10 % of the fitted extents off the pose's
    path_c = save_checkpoint(tmp_path / "size_c.pt", centred.state_dict(), centred.config, 0, fmt=SIZE_FORMAT)
    on, off = ({"size": {"checkpoint": str(path_c), "centre": c}} for c in (["mug"], ["laptop"]))
    a_on = PoseEstimator.from_checkpoint(tiny_pose_checkpoint, config=on).estimate(pts, ["mug"], mode="regression")
    a_off = PoseEstimator.from_checkpoint(tiny_pose_checkpoint, config=off).estimate(pts, ["mug"], mode="regression")
    np.testing.assert_allclose(a_on.R, a_off.R)
    shift = np.linalg.inv(a_off.R[0]) @ (a_on.t[0] - a_off.t[0])  # in the object frame
    np.testing.assert_allclose(shift, 0.1 * extent_fit(canonicalize(torch.from_numpy(pts), torch.from_numpy(a_off.R),
                                                                    torch.from_numpy(a_off.t)), 0.97)[0].numpy(),
                               rtol=1e-3, atol=1e-5)
    b = head.estimate(pts, ["mug"], mode="regression")
    assert not np.allclose(b.size, est.estimate(pts, ["mug"], mode="regression").size)
    with pytest.raises(ConfigError, match="size.method 'mean' unknown; expected one of net, head"):
        PoseEstimator.from_checkpoint(tiny_pose_checkpoint, config={"size": {"method": "mean"}})
    with pytest.raises(ConfigError, match="unknown key 'size.methd'; did you mean 'method'"):
        PoseEstimator.from_checkpoint(tiny_pose_checkpoint, config={"size": {"methd": "head"}})
    with pytest.raises(ConfigError, match=r"size.centre names categories the model does not know: \['cup'\]"):
        PoseEstimator.from_checkpoint(tiny_pose_checkpoint, config={"size": {"centre": ["laptop", "cup"]}})
    with pytest.raises(ConfigError, match="size.checkpoint must be a string"):
        PoseEstimator.from_checkpoint(tiny_pose_checkpoint, config={"size": {"checkpoint": 3}})
    few = dict(SMALL, categories=["mug"])
    save_checkpoint(tmp_path / "mug.pt", SizeNet(few).state_dict(), few, 0, fmt=SIZE_FORMAT)
    with pytest.raises(ValueError, match="size network does not know the categories"):
        PoseEstimator.from_checkpoint(tiny_pose_checkpoint, config={"size": {"checkpoint": str(tmp_path / "mug.pt")}})
    with pytest.raises(CheckpointError, match="size checkpoint not found"):
        PoseEstimator.from_checkpoint(tiny_pose_checkpoint, config={"size": {"checkpoint": str(tmp_path / "x.pt")}})


@pytest.mark.parametrize("task,config,file", [("size", "size_net.yaml", "size_net.pt"),
                                               ("verifier", "verifier.yaml", "verifier.pt")])
def test_train_task_small_nets_end_to_end(tmp_path, capsys, tiny_train_val, task, config, file):
    """`genpose train --task size|verifier`: the loop, its log, validation and checkpoint."""
    import yaml

    from genpose_ros.config import CONFIG_DIR, load_config
    from genpose_ros.pose import train
    from genpose_ros.pose.verifier import load_verifier

    cfg = load_config(CONFIG_DIR / config)
    cfg.update(n_points=64, eval_every=10, model=dict(cfg["model"], widths=[8, 16], hidden=16))
    (tmp_path / "small.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    rc = train.main(["--task", task, "--data", str(tiny_train_val / "train"), "--val", str(tiny_train_val / "val"),
                     "--out", str(out), "--config", str(tmp_path / "small.yaml"), "--steps", "30",
                     "--batch-size", "8", "--cache", str(tmp_path / "pool.pt"), "--threads", "1"])
    assert rc == 0 and f"{'size net' if task == 'size' else task}: 30 steps" in capsys.readouterr().out
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [10, 20, 30] and all(np.isfinite(r["val_loss"]) for r in log)
    net = (load_size_net if task == "size" else load_verifier)(out / file)
    assert net.config["n_points"] == 64 and (tmp_path / "pool.pt").is_file()
    # --init: the checkpoint's network and n_points, fine-tuned (a config of another size is overruled)
    cfg.update(n_points=32, lr=1e-9, model=dict(cfg["model"], widths=[4, 8], hidden=8))
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(cfg))
    rc = train.main(["--task", task, "--data", str(tiny_train_val / "train"), "--val", str(tiny_train_val / "val"),
                     "--out", str(tmp_path / "ft"), "--config", str(tmp_path / "other.yaml"), "--steps", "10",
                     "--batch-size", "8", "--cache", str(tmp_path / "pool.pt"), "--threads", "1",
                     "--init", str(out / file)])
    tuned = (load_size_net if task == "size" else load_verifier)(tmp_path / "ft" / file)
    assert rc == 0 and tuned.config == net.config
    for (name, a), b in zip(net.state_dict().items(), tuned.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5), name  # lr 1e-9: still the initial weights
    other = "verifier" if task == "size" else "size"
    with pytest.raises(CheckpointError, match=f"not a genpose_ros {other}"):
        train.main(["--task", other, "--data", str(tiny_train_val / "train"), "--out", str(tmp_path / "x"),
                    "--steps", "2", "--cache", str(tmp_path / "pool.pt"), "--init", str(out / file)])
    with pytest.raises(SystemExit):
        train.main(["--task", task, "--data", str(tiny_train_val / "train"), "--out", str(out), "--steps", "0"])
    assert "argument --steps: must be >= 1, got 0" in capsys.readouterr().err
    # --time-budget ends the loop (counted from the start, reading included) with a last validation
    rc = train.main(["--task", task, "--data", str(tiny_train_val / "train"), "--val", str(tiny_train_val / "val"),
                     "--out", str(tmp_path / "budget"), "--config", str(tmp_path / "small.yaml"),
                     "--steps", "1000000", "--batch-size", "8", "--cache", str(tmp_path / "pool.pt"),
                     "--threads", "1", "--time-budget", "3"])
    printed = capsys.readouterr().out
    assert rc == 0 and "time budget reached after" in printed, printed
    log = [json.loads(line) for line in (tmp_path / "budget" / "log.jsonl").read_text().splitlines()]
    assert 0 < log[-1]["step"] < 1000000 and f": {log[-1]['step']} steps in" in printed
    assert (tmp_path / "budget" / file).is_file()


def test_size_ablation_uses_the_same_poses_for_both_methods(tmp_path, tiny_pose_checkpoint, capsys):
    from genpose_ros.data.generate import GenerateConfig, generate
    from genpose_ros.evaluation import size_ablation

    generate(GenerateConfig(out=str(tmp_path / "test"), split="test", seed=0, scenes=1), progress=False)
    net = SizeNet(dict(SMALL, n_points=512))
    size_ckpt = save_checkpoint(tmp_path / "size.pt", net.state_dict(), net.config, 0, fmt=SIZE_FORMAT)
    out = tmp_path / "ablation.json"
    assert size_ablation.main(["--data", str(tmp_path / "test"), "--checkpoint", str(tiny_pose_checkpoint),
                               "--size-checkpoint", str(size_ckpt), "--modes", "regression", "--json", str(out)]) == 0
    assert "| regression | head |" in capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    assert [r["size"] for r in rows] == ["head", "net", "net+centre"] and rows[0]["5deg2cm"] == rows[1]["5deg2cm"]
    assert rows[0]["rel_pct"] != rows[1]["rel_pct"] and all(0 <= r["IoU25"] <= 100 for r in rows)
    assert size_ablation.main(["--data", str(tmp_path / "none"), "--ckpt", str(tiny_pose_checkpoint)]) == 2  # hidden alias
    assert "size ablation: dataset folder" in capsys.readouterr().err


@pytest.mark.parametrize("change,message", [
    ({"batch_sise": 4}, "unknown key 'batch_sise'; did you mean 'batch_size'?"),
    ({"augment": {"jiter_m": 0.0}}, "unknown key 'augment.jiter_m'; did you mean 'jitter_m'?"),
    ({"model": {"widths": 32}}, "model.widths must be a list (default [32, 64, 128]), got 32"),
    ({"n_points": 0}, "n_points must be > 0, got 0"),
    ({"augment": {"box_scale": [1.4, 0.7]}}, "augment.box_scale must be [low, high] with 0 < low <= high"),
    ({"model": {"quantile": 1.5}}, "model.quantile must be in (0.5, 1], got 1.5"),
    ({"augment": {"outline_px": [0.5, 0.2, 0.1, 0.1, 0.1]}},
     "augment.outline_px must hold 1 to 4 chances (of 0, 1, ... pixels), >= 0 and not all 0, got [0.5, 0.2, 0.1, 0.1, 0.1]"),
])
def test_size_config_mistakes_are_one_line_before_data_loads(tmp_path, capsys, change, message):
    import yaml

    from genpose_ros import cli

    path = tmp_path / "size.yaml"
    path.write_text(yaml.safe_dump(change))
    # --data cannot be read: the config error comes first
    rc = cli.main(["train", "--task", "size", "--data", unreadable_split(tmp_path), "--out", str(tmp_path / "o"),
                   "--config", str(path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "Traceback" not in err and len(err.splitlines()) == 1
    assert err.startswith(f"genpose train: error: {path}: ") and message in err, err


def test_shipped_size_config_passes_the_checks():
    from argparse import Namespace

    from genpose_ros.config import CONFIG_DIR, load_config
    from genpose_ros.pose.size_train import resolve_config

    args = Namespace(config=str(CONFIG_DIR / "size_net.yaml"), steps=None, batch_size=None, lr=None)
    assert resolve_config(args) == load_config(CONFIG_DIR / "size_net.yaml")
    assert resolve_config(Namespace(config=None, steps=7, batch_size=None, lr=None))["steps"] == 7
