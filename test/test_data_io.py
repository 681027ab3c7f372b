"""NOCS-layout writer and reader, the dataset and the `genpose data` commands."""
import json
import os

import cv2
import numpy as np
import pytest

from genpose_ros.cli import main
from genpose_ros.data.camera import D435_640x480
from genpose_ros.data.dataset import InstanceDataset, augment_instance
from genpose_ros.data.frame import Frame, InstanceGT
from genpose_ros.data.nocs_io import list_frames, load_depth, read_frame, read_labels, write_frame
from genpose_ros.data.render import Renderer
from genpose_ros.data.scenes import sample_camera_pose, sample_scene


@pytest.fixture(scope="module")
def rendered():
    rng = np.random.default_rng(11)
    scene = sample_scene(rng, categories=["mug", "laptop", "bottle", "camera"])
    return Renderer().render(scene, sample_camera_pose(rng, scene), rng)


def test_write_read_round_trip(tmp_path, rendered):
    prefix = write_frame(tmp_path / "00000", 3, rendered)
    assert prefix.name == "0003"
    for suffix in ("color.png", "depth.png", "mask.png", "meta.txt", "label.json", "label.pkl"):
        assert os.path.exists(f"{prefix}_{suffix}")
    back = read_frame(prefix)
    np.testing.assert_array_equal(back.color, rendered.color)
    np.testing.assert_array_equal(back.depth, rendered.depth)
    np.testing.assert_array_equal(back.mask, rendered.mask)
    assert back.intrinsics == rendered.intrinsics
    assert len(back.instances) == len(rendered.instances) > 0
    for a, b in zip(rendered.instances, back.instances):
        assert (a.instance_id, a.category, a.handle_visible) == (b.instance_id, b.category,
                                                                 b.handle_visible)
        np.testing.assert_allclose(b.R, a.R)
        np.testing.assert_allclose(b.t, a.t)
        np.testing.assert_allclose(b.size, a.size)
    meta = open(f"{prefix}_meta.txt").read().split("\n")[0].split()
    assert int(meta[0]) == rendered.instances[0].instance_id
    disk_mask = cv2.imread(f"{prefix}_mask.png", cv2.IMREAD_UNCHANGED)
    assert disk_mask.dtype == np.uint8 and (disk_mask[rendered.mask == 0] == 255).all()
    assert list_frames(tmp_path) == [str(prefix)]


def test_pickle_labels_only_on_request(tmp_path, rendered):
    prefix = write_frame(tmp_path, 0, rendered)
    labels = read_labels(prefix)
    os.remove(f"{prefix}_label.json")
    with pytest.raises(PermissionError, match="allow_pickle=True"):
        read_frame(prefix)
    pkl = read_labels(prefix, allow_pickle=True)  # the NOCS/GenPose layout, numpy arrays
    assert pkl["rotations"].shape == (len(labels["class_ids"]), 3, 3)
    np.testing.assert_allclose(pkl["size"] * pkl["scales"][:, None], labels["sizes_m"], rtol=1e-6)
    np.testing.assert_allclose(pkl["poses"][:, :3, :3],
                               pkl["rotations"] * pkl["scales"][:, None, None], rtol=1e-5)
    back = read_frame(prefix, allow_pickle=True)
    np.testing.assert_allclose(back.instances[0].size, rendered.instances[0].size, rtol=1e-6)
    os.remove(f"{prefix}_label.pkl")
    with pytest.raises(FileNotFoundError, match="no labels"):
        read_frame(prefix)
    assert list_frames(tmp_path) == [str(prefix)]   # listing alone does not need them
    with pytest.raises(FileNotFoundError, match=r"^1 of 1 frames under .* have no labels \(first: .*0000\)"):
        list_frames(tmp_path, labelled=True)


def test_nocs_camera_three_channel_depth(tmp_path):
    depth = np.array([[0, 1000], [65535, 4095]], np.uint16)
    enc = np.zeros((2, 2, 3), np.uint8)  # OpenCV order B, G, R: high byte in G, low in R
    enc[..., 1], enc[..., 2] = depth // 256, depth % 256
    cv2.imwrite(str(tmp_path / "d.png"), enc)
    np.testing.assert_array_equal(load_depth(tmp_path / "d.png"), depth)


def _hand_frame(small_pixels: int) -> Frame:
    """A flat 1 m depth image with a 20x20 instance 1 and a tiny instance 2."""
    intr = D435_640x480
    depth = np.full((intr.height, intr.width), 1000, np.uint16)
    mask = np.zeros_like(depth)
    mask[200:220, 300:320] = 1
    mask[100, 100:100 + small_pixels] = 2
    insts = [InstanceGT(1, "can", np.eye(3), np.array([0.0, 0.0, 1.0]), np.array([.06, .1, .06])),
             InstanceGT(2, "mug", np.eye(3), np.array([-0.3, -0.2, 1.0]),
                        np.array([.12, .09, .09]), handle_visible=False)]
    color = np.zeros((intr.height, intr.width, 3), np.uint8)
    return Frame(color, depth, mask, intr, insts)


def test_dataset_reports_crops_with_too_few_points(tmp_path):
    write_frame(tmp_path, 0, _hand_frame(small_pixels=9))
    ds = InstanceDataset(tmp_path, n_points=64, min_points=50)
    assert len(ds) == 1
    assert len(ds.skipped) == 1
    skip = ds.skipped[0]
    assert skip["instance_id"] == 2 and skip["category"] == "mug"
    assert "only 9 valid depth points" in skip["reason"] and "50 needed" in skip["reason"]
    item = ds[0]
    assert item["points"].shape == (64, 3)
    np.testing.assert_allclose(item["points"][:, 2].numpy(), 1.0)
    assert int(item["category"]) == 3  # can
    with pytest.raises(IndexError):
        ds[1]


def test_dataset_items_and_augmentation(tmp_path, rendered):
    write_frame(tmp_path, 0, rendered)
    plain = InstanceDataset(tmp_path, n_points=256)
    a, b = plain[0], plain[0]
    assert torch_equal(a["points"], b["points"])  # deterministic without augmentation
    aug = InstanceDataset(tmp_path, n_points=256, augment=True)
    assert len(aug) == len(plain) == len(rendered.instances)
    for i in range(len(aug)):
        item = aug[i]
        assert set(item) == {"points", "R", "t", "size", "category", "handle_visible", "margins", "index"}
        assert tuple(item["margins"].shape) == (256, 4) and str(item["margins"].dtype) == "torch.uint8"
        R = item["R"].numpy().astype(float)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-5)


def torch_equal(x, y):
    return bool((x == y).all())


def test_augmentation_keeps_points_in_the_box():
    rng = np.random.default_rng(0)
    size = np.array([0.1, 0.2, 0.1])
    local = rng.uniform(-0.5, 0.5, (500, 3)) * size
    t = np.array([0.05, -0.02, 0.7])
    cfg = {"p_box": 1.0, "box_scale": (0.8, 1.2), "p_rt": 1.0, "rot_deg": 15.0, "trans_m": 0.05,
           "p_jitter": 0.0, "jitter_m": 0.0}
    pts, R, t2, s2 = augment_instance(local + t, np.eye(3), t, size, "bottle", rng, cfg)
    back = (pts - t2) @ R
    assert (np.abs(back) <= s2 / 2 + 1e-9).all()
    assert s2[0] == pytest.approx(s2[2])  # round categories keep x = z
    assert not np.allclose(R, np.eye(3)) and np.abs(t2 - t).max() <= 0.05


def test_cli_generate_and_show(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["data", "generate", "--out", str(out), "--scenes", "1", "--views-per-scene", "2",
                 "--split", "val", "--seed", "5", "--objects", "3", "--workers", "1"]) == 0
    card = json.load(open(out / "dataset_card.json"))
    assert card["frames"] == 2 and card["seed"] == 5 and card["split"] == "val"
    assert sum(card["instances_per_category"].values()) == card["instances"] > 0
    assert "mug" in card["object_parameter_ranges"]
    assert (out / "dataset_card.md").exists()
    assert len(list_frames(out)) == 2
    png = tmp_path / "show.png"
    assert main(["data", "show", str(out), "--index", "1", "--out", str(png)]) == 0
    img = cv2.imread(str(png))
    assert img.shape == (960, 1280, 3)
    assert main(["data", "show", str(out), "--index", "7", "--out", str(png)]) == 2
    assert "out of range" in capsys.readouterr().err


def test_generate_another_d435_colour_mode(tmp_path):
    from genpose_ros.data.camera import D435_1280x720
    from genpose_ros.data.dataset import InstanceDataset
    from genpose_ros.data.nocs_io import read_frame

    for resolution in ("640x480", "1280x720"):    # in one process: each split its own camera
        out = tmp_path / resolution
        assert main(["data", "generate", "--out", str(out), "--scenes", "1", "--split", "test", "--seed", "5",
                     "--objects", "3", "--workers", "1", "--resolution", resolution]) == 0
    assert read_frame(list_frames(tmp_path / "640x480")[0]).color.shape == (480, 640, 3)
    frame = read_frame(list_frames(out)[0])
    assert frame.color.shape == (720, 1280, 3) and frame.depth.shape == (720, 1280)
    assert frame.intrinsics == D435_1280x720
    assert json.load(open(out / "dataset_card.json"))["intrinsics"]["fx"] == 922.5
    item = InstanceDataset(str(out), n_points=256)[0]   # points with the frame's own intrinsics
    assert 0.2 < float(item["points"][:, 2].mean()) < 2.0


def test_reads_a_real275_style_folder(tmp_path):
    """Labels as the NOCS/GenPose preprocessing writes them: pickle only, no metric sizes,
    no intrinsics, no point counts; a 3-channel mask."""
    import pickle

    from genpose_ros.data.camera import NOCS_REAL275
    folder = tmp_path / "real" / "test" / "scene_1"
    folder.mkdir(parents=True)
    frame = _hand_frame(small_pixels=30)
    prefix = folder / "0000"
    cv2.imwrite(f"{prefix}_color.png", frame.color)
    cv2.imwrite(f"{prefix}_depth.png", frame.depth)
    mask = np.full(frame.mask.shape, 255, np.uint8)
    mask[frame.mask == 1], mask[frame.mask == 2] = 1, 2
    cv2.imwrite(f"{prefix}_mask.png", np.dstack([mask] * 3))
    scales = np.array([0.2, 0.25], np.float32)
    gts = {"class_ids": np.array([4, 6]), "instance_ids": [1, 2], "model_list": ["can_a", "mug_b"],
           "scales": scales, "size": np.array([[0.3, 0.5, 0.3], [0.6, 0.4, 0.5]], np.float32),
           "rotations": np.stack([np.eye(3)] * 2).astype(np.float32),
           "translations": np.array([[0, 0, 1.0], [-0.3, -0.2, 1.0]], np.float32),
           "bboxes": np.zeros((2, 4), int), "handle_visibility": [1, 0]}
    with open(f"{prefix}_label.pkl", "wb") as f:
        pickle.dump(gts, f)
    with pytest.raises(PermissionError):
        read_frame(prefix)
    back = read_frame(prefix, allow_pickle=True)
    assert back.intrinsics == NOCS_REAL275  # from the folder name
    assert [i.category for i in back.instances] == ["can", "mug"]
    np.testing.assert_allclose(back.instances[1].size, [0.15, 0.1, 0.125], rtol=1e-6)
    assert back.instances[1].handle_visible is False
    assert (back.mask == 1).sum() == 400 and (back.mask == 0).sum() == back.mask.size - 430
    ds = InstanceDataset(tmp_path / "real", n_points=32, min_points=50, allow_pickle=True)
    assert len(ds) == 1 and ds.skipped[0]["reason"].startswith("only 30 valid depth points")


def test_dataset_point_cache_gives_the_same_items(tmp_path, rendered):
    write_frame(tmp_path, 0, rendered)
    cached = InstanceDataset(tmp_path, n_points=128, cache_points=300)
    first = [cached[i]["points"] for i in range(len(cached))]
    again = [cached[i]["points"] for i in range(len(cached))]  # now from memory
    assert all(torch_equal(a, b) for a, b in zip(first, again))
    assert all(len(c) <= 300 for c in cached._cache.values())
    item = cached[0]
    R, t, size = (item[k].numpy().astype(float) for k in ("R", "t", "size"))
    local = (item["points"].numpy() - t) @ R
    assert (np.abs(local) <= size / 2 + 0.03).all(axis=1).mean() > 0.95
