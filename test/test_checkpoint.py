"""Checkpoints round-trip with weights_only=True; broken or foreign files give clear errors."""
import copy

import pytest
import torch

from genpose_ros.pose.checkpoint import CheckpointError, build_model, load_checkpoint, save_checkpoint
from genpose_ros.pose.nets import PoseNet

TINY = {"categories": ["bottle", "bowl", "camera", "can", "laptop", "mug"], "n_points": 64,
        "encoder": {"levels": [{"npoint": 16, "radii": [0.05], "nsample": [8], "mlps": [[8, 16]]}],
                    "global_mlp": [16]},
        "cat_dim": 4, "hidden": 16, "pose_dim": 8, "time_dim": 8}


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = PoseNet(TINY)
    for p in model.parameters():  # non-trivial values everywhere (incl. the zero-init layers)
        torch.nn.init.normal_(p, std=0.1) if p.requires_grad else None
    path = save_checkpoint(tmp_path / "m.pt", model.state_dict(), TINY, step=7, train_config={"lr": 1e-3})
    return model, path


def test_round_trip(saved):
    model, path = saved
    ck = load_checkpoint(path)
    assert ck["step"] == 7 and ck["train_config"] == {"lr": 1e-3} and "torch" in ck["versions"]
    loaded = build_model(ck, str(path))
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    model.eval(), loaded.eval()
    pts = torch.randn(2, 64, 3) * 0.05
    cat = torch.tensor([0, 5])
    assert torch.equal(model.encode(pts, cat), loaded.encode(pts, cat))


def test_truncated_and_garbage_files(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt, truncated"):
        load_checkpoint(cut)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="corrupt, truncated"):
        load_checkpoint(junk)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_foreign_dicts_and_pickled_code_are_refused(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="lacks the keys"):
        load_checkpoint(tmp_path / "other.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="not a checkpoint dict"):
        load_checkpoint(tmp_path / "list.pt")
    torch.save({"format": "x/9", "model": {}, "model_config": {}, "step": 0}, tmp_path / "fmt.pt")
    with pytest.raises(CheckpointError, match="format 'x/9'"):
        load_checkpoint(tmp_path / "fmt.pt")
    # an arbitrary Python object would need unpickling code: weights_only refuses it
    torch.save({"format": "genpose_ros.pose/1", "model": {}, "model_config": {}, "step": 0,
                "payload": Exception("x")}, tmp_path / "code.pt")
    with pytest.raises(CheckpointError, match="corrupt, truncated"):
        load_checkpoint(tmp_path / "code.pt")


def test_mismatched_architecture_and_keys(saved, tmp_path):
    model, path = saved
    ck = load_checkpoint(path)
    wider = copy.deepcopy(ck)
    wider["model_config"] = dict(TINY, hidden=32)  # the file's weights are for hidden=16
    with pytest.raises(CheckpointError, match="shape mismatches: .*score"):
        build_model(wider, "wider.pt")
    fewer = copy.deepcopy(ck)
    del fewer["model"]["size_head.0.weight"]
    fewer["model"]["extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"missing keys: size_head.0.weight; unexpected keys: extra.weight"):
        build_model(fewer, "fewer.pt")
    bad = copy.deepcopy(ck)
    bad["model_config"] = {"n_points": 64}
    with pytest.raises(CheckpointError, match="invalid model_config"):
        build_model(bad, "bad.pt")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_weights_are_refused_at_load_time(saved, tmp_path, bad):
    model, _ = saved
    state = model.state_dict()
    state["size_head.0.weight"][0, 0] = bad
    path = save_checkpoint(tmp_path / "diverged.pt", state, TINY, step=9)
    with pytest.raises(CheckpointError, match=r"diverged.pt is unusable: NaN or Inf weights in 1 "
                                              r"of \d+ tensors \(size_head.0.weight\)"):
        build_model(load_checkpoint(path), str(path))
