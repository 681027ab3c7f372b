"""The `wide` distribution: shape families (valid meshes, sizes in range, canonical frame),
wider scenes and cameras, random sensors; the standard distribution unchanged."""
import json

import numpy as np
import pytest
import trimesh

from genpose_ros import CATEGORIES
from genpose_ros.data.families import WIDE_FAMILIES, Family, sample_object
from genpose_ros.data.objects import MAKERS
from genpose_ros.data.scenes import (SCENE_RANGES, WIDE_SCENE_RANGES, sample_camera_pose, sample_scene,
                                     sample_sequence)
from genpose_ros.data.sensor import WIDE_SENSOR_RANGES, sample_sensor

FAMILIES = [(c, name) for c in CATEGORIES for name in WIDE_FAMILIES[c]]
ROUND = {("bottle", "round"), ("bottle", "wine"), ("bowl", "round"), ("bowl", "ramekin"), ("bowl", "deep"),
         ("can", "regular"), ("can", "short"), ("can", "tall")}


def _only(category: str, name: str) -> Family:
    return WIDE_FAMILIES[category][name]


@pytest.mark.parametrize("category,name", FAMILIES)
def test_families_give_valid_canonical_meshes_in_range(category, name):
    fam = _only(category, name)
    for seed in range(4):
        m = MAKERS[category](np.random.default_rng(seed), fam.ranges, **fam.options)
        v = m.triangles.reshape(-1, 3)
        assert np.isfinite(v).all() and len(m.triangles) > 20
        mesh = trimesh.Trimesh(v, np.arange(len(v)).reshape(-1, 3), process=True)
        assert mesh.area > 0 and (mesh.area_faces > 0).mean() > 0.95  # few degenerate faces
        assert len(m.part) == len(m.triangles) and m.part.max() < len(m.textures)
        np.testing.assert_allclose(v.max(0) + v.min(0), 0, atol=1e-6)  # centred on the tight box
        np.testing.assert_allclose(v.max(0) - v.min(0), m.size, atol=1e-6)
        assert 0.02 < m.size.max() < 0.6 and m.size.min() > 0.002  # real-world sizes in metres
        for key, (lo, hi) in fam.ranges.items():
            assert lo <= m.params[key] <= hi
        if category == "bottle":
            assert m.size[1] == pytest.approx(m.params["height"], rel=1e-3)  # y up
        if (category, name) in ROUND:
            assert m.size[0] == pytest.approx(m.size[2], rel=0.02)  # round about y
        if name == "squeeze":
            assert m.size[0] < 0.75 * m.size[2]  # flattened along x
        if category == "camera":  # lens along +z: the lens tip is the front of the box
            assert m.size[2] > m.params["depth_frac"] * m.params["width"]
        if category == "mug":
            assert m.handle_part == 1 and m.size[0] > m.size[2]  # handle along +x


def test_family_ranges_reach_past_the_standard_ones():
    rng = np.random.default_rng(3)
    short = [MAKERS["can"](rng, _only("can", "short").ranges, **_only("can", "short").options) for _ in range(5)]
    assert all(m.size[1] < 0.065 for m in short)  # below the standard 6.5 cm minimum
    lids = [MAKERS["laptop"](rng, _only("laptop", "any").ranges).params["lid_angle_deg"] for _ in range(40)]
    assert min(lids) < 50 and max(lids) > 140
    wine = [MAKERS["bottle"](rng, _only("bottle", "wine").ranges).size[1] for _ in range(5)]
    assert max(wine) > 0.3


def test_wide_objects_name_their_family_and_cover_all():
    rng = np.random.default_rng(0)
    for c in CATEGORIES:
        seen = {sample_object(c, rng, "wide").params["family"] for _ in range(30)}
        assert seen == set(WIDE_FAMILIES[c])


def test_standard_distribution_is_unchanged():
    """Values of the generator before the wide distribution existed (seed 7): standard splits
    reproduce bit-for-bit."""
    rng = np.random.default_rng(7)
    scene = sample_scene(rng)
    T = sample_camera_pose(rng, scene)
    assert [o.model.category for o in scene.objects] == ["can", "laptop", "mug", "can", "mug", "bowl"]
    assert len(scene.clutter) == 6
    np.testing.assert_allclose(np.stack([o.model.size for o in scene.objects]),
                               [[0.084942, 0.065553, 0.084942], [0.342641, 0.232275, 0.360962],
                                [0.108937, 0.098185, 0.073875], [0.055328, 0.078722, 0.055328],
                                [0.114877, 0.088581, 0.084579], [0.158971, 0.029557, 0.158971]], atol=1e-6)
    np.testing.assert_allclose(T[:3, 3], [0.568983, 0.829425, 0.475186], atol=1e-6)
    np.testing.assert_allclose(scene.objects[0].T_world_obj[:3, 3], [0.31316, -0.093474, 0.032776], atol=1e-6)


def _distance_elevation(T, scene):
    centre = np.mean([o.T_world_obj[:3, 3] for o in scene.objects], axis=0)
    d = np.linalg.norm(T[:3, 3] - centre)
    z_cam = T[:3, 2]
    elev = np.degrees(np.arcsin(-z_cam[2]))
    return d, elev


def test_wide_scenes_and_cameras_cover_the_wider_ranges():
    rng = np.random.default_rng(1)
    dist, elev, clutter, objects = [], [], [], []
    for _ in range(25):
        scene = sample_scene(rng, distribution="wide")
        clutter.append(len(scene.clutter))
        objects.append(len(scene.objects))
        for _ in range(4):
            d, e = _distance_elevation(sample_camera_pose(rng, scene, "wide"), scene)
            dist.append(d)
            elev.append(e)
    lo, hi = WIDE_SCENE_RANGES["camera_distance_m"]
    assert min(dist) < SCENE_RANGES["camera_distance_m"][0] and max(dist) > SCENE_RANGES["camera_distance_m"][1]
    assert lo - 0.25 < min(dist) and max(dist) < hi + 0.25  # look-at jitter moves the target a little
    assert max(elev) > SCENE_RANGES["camera_elevation_deg"][1]
    assert np.mean(clutter) > np.mean(SCENE_RANGES["n_clutter"]) and max(objects) <= 10
    seq = sample_sequence(rng, 3, distribution="wide")
    assert len(seq) == 3 and all("family" in o.model.params for o in seq.scene.objects)


def test_tilted_scenes_lay_most_objects_down_with_standard_objects():
    """The tilted distribution: standard objects and cameras, most objects tilted or lying."""
    from genpose_ros.data.scenes import TILTED_SCENE_RANGES

    up = {"standard": [], "tilted": []}
    for dist in up:
        rng = np.random.default_rng(2)
        for _ in range(40):
            for o in sample_scene(rng, distribution=dist).objects:
                up[dist].append(o.T_world_obj[2, 1] / np.linalg.norm(o.T_world_obj[:3, 1]))  # object y . world z
            if dist == "tilted":
                assert not any("family" in o.model.params for o in sample_scene(rng, distribution=dist).objects)
    upright = {d: float(np.mean(np.array(v) > np.cos(np.radians(3)))) for d, v in up.items()}
    assert 0.62 < upright["standard"] < 0.82 and upright["tilted"] < 0.3  # pose_probs upright 0.72 / 0.2
    assert TILTED_SCENE_RANGES["camera_distance_m"] == SCENE_RANGES["camera_distance_m"]


def test_random_sensor_parameters_are_in_range():
    rng = np.random.default_rng(0)
    sensors = [sample_sensor(rng) for _ in range(20)]
    for key, (lo, hi) in WIDE_SENSOR_RANGES.items():
        vals = [getattr(s, key) for s in sensors]
        assert lo <= min(vals) and max(vals) <= hi and np.ptp(vals) > 0


def test_unknown_distribution_is_rejected():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="unknown distribution 'huge'"):
        sample_scene(rng, distribution="huge")
    with pytest.raises(ValueError, match="unknown distribution 'huge'"):
        sample_object("mug", rng, "huge")


def test_cli_generates_a_wide_split(tmp_path, capsys):
    from genpose_ros.cli import main
    from genpose_ros.data.nocs_io import list_frames, read_frame

    out = tmp_path / "wide"
    assert main(["data", "generate", "--out", str(out), "--scenes", "2", "--split", "test",
                 "--distribution", "wide", "--workers", "1"]) == 0
    card = json.loads((out / "dataset_card.json").read_text())
    assert card["distribution"] == "wide" and "wide" in card["name"]
    assert set(card["object_families"]) == set(CATEGORIES) and card["sensor_ranges_per_frame"]
    assert card["scene_parameter_ranges"]["camera_distance_m"] == [0.25, 1.6]
    assert "bottle / squeeze" in (out / "dataset_card.md").read_text()
    frames = [read_frame(p) for p in list_frames(out)]
    assert len(frames) == 2 and all(f.instances for f in frames)
    with pytest.raises(SystemExit):
        main(["data", "generate", "--out", str(out), "--scenes", "1", "--split", "test", "--distribution", "huge"])
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def test_examples_of_another_distribution_are_named_by_it(tmp_path):
    from genpose_ros.data.examples import write_examples

    written = write_examples(tmp_path, seed=1, distribution="tilted")
    assert sorted(p.name for p in written) == sorted(f"tilted_{c}.png" for c in CATEGORIES)
    assert all(p.stat().st_size > 1000 for p in written) and not (tmp_path / "data_sequence.png").exists()


def _border_cut_share(folder) -> float:
    import cv2

    from genpose_ros.segmentation.evaluate import touches_border

    cut = []
    for path in sorted(folder.glob("*/*_mask.png")):
        mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        cut += [touches_border(mask == i) for i in set(np.unique(mask)) - {255}]
    return float(np.mean(cut)) if cut else 0.0


def test_close_scenes_are_seen_from_near_with_objects_cut_by_the_border(tmp_path):
    """The close distribution: standard objects, cameras 0.25-0.55 m; most objects the frames
    show are cut by the image border, far more than in standard frames; its card says so."""
    from genpose_ros.cli import main
    from genpose_ros.data.scenes import CLOSE_SCENE_RANGES

    rng = np.random.default_rng(4)
    dist = []
    for _ in range(40):
        scene = sample_scene(rng, distribution="close")
        assert not any("family" in o.model.params for o in scene.objects)
        target = np.mean([o.T_world_obj[:3, 3] for o in scene.objects], axis=0)
        dist.append(np.linalg.norm(sample_camera_pose(rng, scene, "close")[:3, 3] - target))
    lo, hi = CLOSE_SCENE_RANGES["camera_distance_m"]
    assert (lo, hi) == (0.25, 0.55) and lo - 0.2 < min(dist) and max(dist) < hi + 0.3
    share = {}
    for name in ("standard", "close"):
        main(["data", "generate", "--out", str(tmp_path / name), "--scenes", "6", "--views-per-scene", "2",
              "--split", "test", "--seed", "3", "--distribution", name, "--workers", "1", "--no-pickle"])
        share[name] = _border_cut_share(tmp_path / name)
    assert share["close"] > 0.6 and share["close"] > 2 * share["standard"], share
    card = json.loads((tmp_path / "close" / "dataset_card.json").read_text())
    assert card["distribution"] == "close" and "close distribution" in card["name"]
