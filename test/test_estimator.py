"""PoseEstimator on a small real model saved as a real checkpoint (untrained weights: the tests
check frames, shapes, bookkeeping and errors, not accuracy; accuracy is `genpose bench`'s job)."""
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from genpose_ros.config import sampler_settings
from genpose_ros.pose.checkpoint import save_checkpoint
from genpose_ros.pose.estimator import PoseEstimator
from genpose_ros.pose.nets import PoseNet

TINY = {"categories": ["bottle", "bowl", "camera", "can", "laptop", "mug"], "n_points": 128,
        "encoder": {"levels": [{"npoint": 32, "radii": [0.03, 0.06], "nsample": [8, 8], "mlps": [[8, 16], [8, 16]]}],
                    "global_mlp": [32]},
        "cat_dim": 8, "hidden": 32, "pose_dim": 16, "time_dim": 16}
CATS = ["mug", "bowl", "laptop"]


@pytest.fixture(scope="module")
def estimator(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("est") / "tiny.pt"
    save_checkpoint(path, PoseNet(TINY).state_dict(), TINY, 0, {"sde": {"sigma_min": 0.01, "sigma_max": 50.0, "eps": 1e-5}})
    return PoseEstimator.from_checkpoint(path, device="cpu", seed=0)


@pytest.fixture(scope="module")
def clouds():
    rng = np.random.default_rng(0)
    R = Rotation.random(3, random_state=1).as_matrix()
    t = np.array([[0.1, 0.0, 0.6], [-0.1, 0.05, 0.7], [0.0, -0.1, 0.8]])
    local = rng.uniform(-0.05, 0.05, (3, 300, 3))
    pts = np.einsum("bij,bnj->bni", R, local) + t[:, None]
    return pts.astype(np.float32), R, t


@pytest.mark.parametrize("mode,k", [("genpose", 50), ("score_scaling", 1), ("regression", 1)])
def test_modes_shapes_rotations_and_single_encoder_pass(estimator, clouds, mode, k):
    pts, _, _ = clouds
    calls = []
    h = estimator.model.encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        fast = {} if mode == "regression" else {"n_steps": 5, "roll_turns": 0}  # (the roll check: test_verifier)
        out = estimator.estimate(pts, CATS, mode=mode, return_hypotheses=True, **fast)
    finally:
        h.remove()
    assert len(calls) == 1  # the encoder runs once for all candidates and ODE steps
    assert out.R.shape == (3, 3, 3) and out.t.shape == (3, 3) and out.size.shape == (3, 3)
    assert out.score.shape == (3,) and out.hypotheses.shape == (3, k, 4, 4)
    assert all(a.dtype == np.float32 for a in (out.R, out.t, out.size, out.score, out.hypotheses))
    np.testing.assert_allclose(np.linalg.det(out.R), 1.0, atol=1e-4)
    np.testing.assert_allclose(out.R @ out.R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (3, 3, 3)), atol=1e-4)
    assert np.all(out.size > 0) and np.all((out.score > 0) & (out.score <= 1))
    t = estimator.last_timing
    assert t["mode"] == mode and t["n_objects"] == 3 and t["total_ms"] >= t["encode_ms"] > 0


def test_tracking_starts_from_previous_pose_in_camera_frame(estimator, clouds):
    pts, R, t = clouds
    prev = np.tile(np.eye(4), (3, 1, 1))
    prev[:, :3, :3], prev[:, :3, 3] = R, t
    # the untrained ScoreNet outputs zero (zero-init heads): the ODE leaves the warm start where
    # it is, so the result is the previous pose up to the averaged start noise (sigma(0.15) ~ 4 cm / sqrt(K))
    out = estimator.estimate(pts, CATS, mode="tracking", prev_poses=prev, num_candidates=64)
    assert np.abs(out.t - t).max() < 0.03
    ang = (Rotation.from_matrix(out.R).inv() * Rotation.from_matrix(R)).magnitude()
    assert np.rad2deg(ang).max() < 5


def test_solvers_and_overrides(estimator, clouds):
    pts, _, _ = clouds
    for solver in ("euler", "heun", "rk45"):
        out = estimator.estimate(pts[:1], ["can"], mode="genpose", solver=solver, num_candidates=4, n_steps=3)
        assert np.isfinite(out.R).all()
    assert estimator.last_timing["nfe"] >= 1
    out = estimator.estimate(pts[:1], ["can"], mode="genpose", ranking="random", num_candidates=4, n_steps=2,
                             return_hypotheses=True)
    assert out.hypotheses.shape == (1, 4, 4, 4)


def test_resampling_and_empty_batch(estimator, clouds):
    pts, _, _ = clouds
    few = estimator.estimate(pts[:, :50], CATS, mode="regression")  # fewer points than the model's 128
    assert few.R.shape == (3, 3, 3)
    empty = estimator.estimate(np.zeros((0, 10, 3), np.float32), [], mode="genpose")
    assert empty.R.shape == (0, 3, 3) and empty.score.shape == (0,)


def test_bad_input_errors(estimator, clouds):
    pts, _, _ = clouds
    with pytest.raises(ValueError, match="unknown category 'chair'"):
        estimator.estimate(pts, ["mug", "chair", "bowl"])
    with pytest.raises(ValueError, match="unknown mode 'icp'"):
        estimator.estimate(pts, CATS, mode="icp")
    with pytest.raises(ValueError, match=r"expected \(B, N, 3\)"):
        estimator.estimate(pts[0], CATS)
    with pytest.raises(ValueError, match="3 point clouds but 2 categories"):
        estimator.estimate(pts, CATS[:2])
    with pytest.raises(ValueError, match="NaN"):
        bad = pts.copy()
        bad[0, 0, 0] = np.nan
        estimator.estimate(bad, CATS)
    with pytest.raises(ValueError, match=r"points: object 1's points lie a median .* m from their centre "
                                         r"\(at most 1 m for these categories\): millimetres instead of metres\?"):
        mm = pts.copy()
        mm[1] *= 1000.0
        estimator.estimate(mm, CATS)
    with pytest.raises(ValueError, match="needs prev_poses"):
        estimator.estimate(pts, CATS, mode="tracking")
    with pytest.raises(ValueError, match=r"prev_poses: expected \(3, 4, 4\)"):
        estimator.estimate(pts, CATS, mode="tracking", prev_poses=np.eye(4)[None])
    with pytest.raises(ValueError, match="only used by the tracking mode"):
        estimator.estimate(pts, CATS, mode="genpose", prev_poses=np.tile(np.eye(4), (3, 1, 1)))


def test_sampler_settings_are_checked_against_estimator_yaml(estimator, clouds):
    pts, _, _ = clouds
    with pytest.raises(ValueError, match="unknown key 'n_step'; did you mean 'n_steps'"):
        estimator.estimate(pts, CATS, mode="genpose", n_step=3)
    default = sampler_settings("score_scaling")["n_steps"]  # config/estimator.yaml's
    with pytest.raises(ValueError, match=rf"n_steps must be an integer \(default {default}\), got 'abc'"):
        estimator.estimate(pts, CATS, mode="score_scaling", n_steps="abc")
    with pytest.raises(ValueError, match="mode regression: unknown key 'n_steps'"):
        estimator.estimate(pts, CATS, mode="regression", n_steps=3)
    with pytest.raises(ValueError, match="unknown mode 'score_scalling'; did you mean 'score_scaling'"):
        estimator.estimate(pts, CATS, mode="score_scalling")


def test_modes_and_default_mode_come_from_the_registry_and_yaml(estimator):
    from genpose_ros.config import default_mode, estimator_config
    from genpose_ros.pose import estimator as est_mod, sampling

    assert est_mod.MODES == tuple(sampling.SAMPLERS) == ("genpose", "score_scaling", "regression", "tracking")
    assert set(estimator_config()["modes"]) == set(est_mod.MODES)
    assert set(estimator_config()["schedules"]) == set(sampling.SCHEDULES)
    assert default_mode() == "score_scaling"
    estimator.estimate(np.zeros((1, 128, 3), np.float32) + 0.01 * np.arange(128)[None, :, None], ["mug"])
    assert estimator.last_timing["mode"] == "score_scaling"


def test_sde_comes_from_the_checkpoint(tmp_path):
    from genpose_ros.pose.checkpoint import CheckpointError

    path = tmp_path / "wide.pt"
    save_checkpoint(path, PoseNet(TINY).state_dict(), TINY, 0, {"sde": {"sigma_min": 0.02, "sigma_max": 20.0,
                                                                       "eps": 1e-4}})
    est = PoseEstimator.from_checkpoint(path)
    assert (est.sde.sigma_min, est.sde.sigma_max, est.sde.eps) == (0.02, 20.0, 1e-4)
    save_checkpoint(path, PoseNet(TINY).state_dict(), TINY, 0, {"lr": 1e-3})
    with pytest.raises(CheckpointError, match="train_config.sde"):
        PoseEstimator.from_checkpoint(path)


def test_start_time_beyond_the_trained_times_is_refused(tmp_path, clouds):
    path = tmp_path / "short.pt"
    save_checkpoint(path, PoseNet(TINY).state_dict(), TINY, 0,
                    {"sde": {"sigma_min": 0.01, "sigma_max": 50.0, "eps": 1e-5}, "dsm_t_max": 0.6})
    est = PoseEstimator.from_checkpoint(path)
    assert est.t_max == 0.6
    assert est.estimate(clouds[0], CATS, mode="score_scaling", t0=0.55).R.shape == (3, 3, 3)
    with pytest.raises(ValueError, match=r"t0 0.8 is beyond the diffusion times this model was trained on \(<= 0.6\)"):
        est.estimate(clouds[0], CATS, mode="genpose", t0=0.8)


@pytest.fixture(scope="module")
def tiny_split(tmp_path_factory):
    from genpose_ros.data.generate import GenerateConfig, generate

    root = tmp_path_factory.mktemp("split")
    generate(GenerateConfig(out=str(root / "test"), split="test", seed=0, scenes=2), progress=False)
    generate(GenerateConfig(out=str(root / "seq"), split="test", seed=0, sequences=1, frames=3), progress=False)
    return root


def test_eval_results_files_round_trip_and_pickle_opt_in(estimator, tiny_split, tmp_path):
    from genpose_ros.data.nocs_io import list_frames
    from genpose_ros.evaluation import nocs_results, report, runner

    res = runner.run_frames(estimator, list_frames(tiny_split / "test"), "genpose", {"n_steps": 2,
                            "num_candidates": 4}, keep_hypotheses=True, progress=False)
    assert res["records"] and len(res["latency_ms"]) == 2 and len(res["hypotheses"]) == len(res["records"])
    n = nocs_results.save_results(res["frames"], tmp_path / "res")
    assert n == 2 and len(list((tmp_path / "res").glob("results_*.pkl"))) == 2
    with pytest.raises(PermissionError, match="allow_pickle"):
        nocs_results.read_results(tmp_path / "res")
    back = nocs_results.read_results(tmp_path / "res", allow_pickle=True)
    assert len(back) == len(res["records"]) and all(r["R_gt"] is not None for r in back)  # no false positives
    key = lambda r: (r["image"], tuple(np.round(r["t_gt"], 5)))  # noqa: E731
    for a, b in zip(sorted(res["records"], key=key), sorted(back, key=key)):
        assert a["category"] == b["category"] and (a["R_pred"] is None) == (b["R_pred"] is None)
        np.testing.assert_allclose(a["size_gt"], b["size_gt"], atol=1e-5)
        if a["R_pred"] is not None:
            np.testing.assert_allclose(a["R_pred"], b["R_pred"], atol=1e-4)
            np.testing.assert_allclose(a["t_pred"], b["t_pred"], atol=1e-5)
            np.testing.assert_allclose(a["size_pred"], b["size_pred"], atol=1e-5)
            assert a["score"] == pytest.approx(b["score"], rel=1e-6)
    # the read-back files score as the run itself, and so does its eval.json (no pickle)
    ours, theirs = report.summary(res["records"], res["latency_ms"]), report.summary(back, [])
    report.write(tmp_path, "run", ours)
    from_json = report.summary(report.records_from_json(tmp_path / "eval.json"), [])
    for s in (theirs, from_json):
        assert s["tables"]["counts"] == ours["tables"]["counts"]
        for kind in ("accuracy", "mAP"):
            for m, row in ours["tables"][kind].items():
                assert s["tables"][kind][m] == pytest.approx(row, abs=1e-3, nan_ok=True), (kind, m)


def test_tracking_over_a_sequence_and_oracle(estimator, tiny_split):
    from genpose_ros.evaluation import bench, metrics, runner
    from genpose_ros.pose.tracker import TrackerSettings

    steady = TrackerSettings(max_jump=float("inf"), doubt_deg=0.0)  # untrained weights: any step is believed
    tr = runner.run_tracking(estimator, tiny_split / "seq", {"n_steps": 2}, progress=False, settings=steady)
    assert len(tr["frames"]) == 3 and len(tr["init_latency_ms"]) == 1 and len(tr["latency_ms"]) == 2
    from genpose_ros.data.nocs_io import list_frames

    res = runner.run_frames(estimator, list_frames(tiny_split / "test"), "genpose",
                            {"n_steps": 2, "num_candidates": 8}, keep_hypotheses=True, progress=False)
    oracle = bench.oracle_records(res["records"], res["hypotheses"])
    for r, o, h in zip(res["records"], oracle, res["hypotheses"]):
        if h is None:
            continue
        # the oracle candidate is one of the K hypotheses and no worse than the first one
        assert any(np.allclose(o["t_pred"], h[k, :3, 3]) for k in range(len(h)))
        cost = lambda R, t: metrics.rotation_error_deg(R, r["R_gt"], r["category"], r["handle_visible"]) / 5 + \
            np.linalg.norm(t - r["t_gt"]) * 50  # noqa: E731
        assert cost(o["R_pred"], o["t_pred"]) <= cost(h[0, :3, :3], h[0, :3, 3]) + 1e-6


def test_tracker_warm_starts_reinitialises_and_forgets(estimator, clouds):
    from genpose_ros.pose.tracker import Tracker, TrackerSettings

    pts, _, _ = clouds
    masks = [np.zeros((20, 30), bool) for _ in CATS]
    for k, m in enumerate(masks):
        m[5:15, 10 * k:10 * k + 8] = True
    tracker = Tracker(estimator, "regression", TrackerSettings(max_jump=float("inf"), reinit_every=3, max_lost=1,
                                                               doubt_deg=0.0))
    first = tracker.step(pts, CATS, masks)
    assert first.names == ["mug_0", "bowl_0", "laptop_0"] and first.full == [0, 1, 2] and not first.warm
    assert first.ms > 0 and np.allclose(np.einsum("bij,bkj->bik", first.R, first.R), np.eye(3), atol=1e-4)
    second = tracker.step(pts, CATS, masks)
    assert second.names == first.names and second.warm == [0, 1, 2]
    assert tracker.step(pts, CATS, masks).warm == [0, 1, 2]
    assert tracker.step(pts, CATS, masks).full == [0, 1, 2]  # reinit_every=3: every third frame
    # the laptop leaves for one frame: its track survives (max_lost=1) and restarts from scratch
    assert tracker.step(pts[:2], CATS[:2], masks[:2]).warm == [0, 1]
    back = tracker.step(pts, CATS, masks)
    assert back.names == first.names and back.full == [2]
    # gone for two frames: forgotten; back, it is a new track (from scratch) that takes the
    # smallest free id of its class, its old one
    tracker.step(pts[:2], CATS[:2], masks[:2])
    tracker.step(pts[:2], CATS[:2], masks[:2])
    again = tracker.step(pts, CATS, masks)
    assert again.names[2] == "laptop_0" and again.full == [2]
    assert tracker.reset() == 3
    after = tracker.step(pts, CATS, masks)
    assert after.names == ["mug_0", "bowl_0", "laptop_0"] and after.full == [0, 1, 2]
    assert all(h is not None and h.shape[1:] == (4, 4) for h in after.hypotheses)
    assert (tracker.n_resets, tracker.n_tracked + tracker.n_full) == (1, 7 * 3 + 3 * 2)  # instances seen
    with pytest.raises(ValueError, match="from-scratch mode"):
        Tracker(estimator, "tracking")


def _evidence(names, readings):
    """(B, C) log-probabilities: each row's {class: probability}, the other classes share the rest."""
    rows = []
    for reading in readings:
        rest = (1.0 - sum(reading.values())) / (len(names) - len(reading))
        rows.append([np.log(reading.get(c, rest)) for c in names])
    return np.array(rows)


def test_tracker_sums_category_evidence_over_a_tracks_frames(estimator, clouds):
    from genpose_ros.pose.tracker import Tracker, TrackerSettings

    pts, _, _ = clouds
    masks = [np.zeros((20, 30), bool) for _ in CATS]
    for k, m in enumerate(masks):
        m[5:15, 10 * k:10 * k + 8] = True
    names = estimator.categories
    sure = _evidence(names, [{c: 0.9} for c in CATS])
    turned = _evidence(names, [{"camera": 0.6, "mug": 0.3}, {"bowl": 0.9}, {"laptop": 0.9}])
    wrong = ["camera", "bowl", "laptop"]
    tracker = Tracker(estimator, "regression", TrackerSettings(max_jump=float("inf"), doubt_deg=0.0))
    for _ in range(3):
        tracker.step(pts, CATS, masks, evidence=sure)
    # one frame reads the mug as a camera: its track keeps its class and name and is warm-started
    step = tracker.step(pts, wrong, masks, evidence=turned)
    assert step.names == ["mug_0", "bowl_0", "laptop_0"] and step.categories == CATS and step.warm == [0, 1, 2]
    # the reading persists: the summed evidence turns, the track takes a camera name, from scratch
    for frames in range(2, 8):
        step = tracker.step(pts, wrong, masks, evidence=turned)
        if step.categories[0] == "camera":
            break
    assert 3 <= frames <= 10 and step.names[0] == "camera_0" and step.full == [0]
    assert len(tracker.tracks) == 3 and tracker.step(pts, wrong, masks, evidence=turned).warm == [0, 1, 2]
    # a detection that gives the track's class almost nothing is another object: a track of its own
    other = _evidence(names, [{"can": 0.999}, {"bowl": 0.9}, {"laptop": 0.9}])
    step = tracker.step(pts, ["can", "bowl", "laptop"], masks, evidence=other)
    assert step.names == ["can_0", "bowl_0", "laptop_0"] and step.full == [0] and len(tracker.tracks) == 4
    # memory 0: each frame's own class; without evidence (true masks): the class as given
    forgetful = Tracker(estimator, "regression", TrackerSettings(max_jump=float("inf"), doubt_deg=0.0,
                                                                 category_memory=0.0))
    forgetful.step(pts, CATS, masks, evidence=sure)
    assert forgetful.step(pts, wrong, masks, evidence=turned).names == ["camera_0", "bowl_0", "laptop_0"]
    plain = Tracker(estimator, "regression", TrackerSettings(max_jump=float("inf"), doubt_deg=0.0))
    plain.step(pts, CATS, masks)
    step = plain.step(pts, wrong, masks)
    assert step.names == ["camera_0", "bowl_0", "laptop_0"] and step.categories == wrong and step.full == [0]
    for bad in ({"category_memory": 1.5}, {"category_min_p": -0.1}):
        with pytest.raises(ValueError, match="category_memory and category_min_p must be in"):
            TrackerSettings(**bad)


def test_tracker_doubts_steps_the_verifier_rates_badly(estimator, clouds):
    from genpose_ros.pose.tracker import Tracker, TrackerSettings

    pts, _, _ = clouds
    masks = [np.zeros((20, 30), bool) for _ in CATS]
    for k, m in enumerate(masks):
        m[5:15, 10 * k:10 * k + 8] = True
    assert estimator.verifier is not None   # config/estimator.yaml's
    rated = estimator.estimate(pts, CATS, mode="regression", rate=True)
    assert rated.rating.shape == (3,) and np.all(rated.rating >= 0)
    for doubt, doubted in ((1e-6, 3), (1e6, 0)):   # untrained weights: every step is rated far off
        tracker = Tracker(estimator, "regression", TrackerSettings(max_jump=float("inf"), doubt_deg=doubt))
        tracker.step(pts, CATS, masks)
        second = tracker.step(pts, CATS, masks)
        # a doubted step is estimated from scratch too and the better rated of the two kept
        assert tracker.n_doubted == doubted and sorted(second.warm + second.full) == [0, 1, 2]
        assert (tracker.n_tracked, tracker.n_full) == (len(second.warm), 3 + len(second.full))
        assert doubted or second.warm == [0, 1, 2]
    with pytest.raises(ValueError, match="doubt_deg must be >= 0"):
        TrackerSettings(doubt_deg=-1.0)


def test_reject_drops_badly_rated_poses_of_low_scoring_masks(estimator, clouds, monkeypatch):
    """config/estimator.yaml reject: rated worse than rating_deg and a mask score below mask_score."""
    from genpose_ros.pose.tracker import Tracker, TrackerSettings

    pts, _, _ = clouds
    assert estimator.rejects and estimator.config["reject"]["mask_score"] == 0.9
    np.testing.assert_array_equal(estimator.rejected([2.0, 30.0, 30.0, np.nan], [0.5, 0.5, 0.95, 0.5]),
                                  [False, True, False, False])
    with pytest.raises(ValueError, match="3 ratings but 2 mask scores"):
        estimator.rejected([1.0, 2.0, 3.0], [0.5, 0.5])
    plain = estimator.estimate(pts, CATS, mode="regression")
    assert plain.rating is None and plain.rejected is None   # no mask scores: nothing rated, nothing dropped
    monkeypatch.setitem(estimator.config["reject"], "rating_deg", 1e-6)   # untrained: every pose rated worse
    out = estimator.estimate(pts, CATS, mode="regression", mask_scores=[0.5, 0.95, 0.5])
    np.testing.assert_array_equal(out.rejected, [True, False, True])
    assert out.rating.shape == (3,) and np.all(out.rating > 1e-6)
    kept = out.take(np.flatnonzero(~out.rejected))
    np.testing.assert_array_equal(kept.R, out.R[[1]]) and np.testing.assert_array_equal(kept.rating, out.rating[[1]])
    with pytest.raises(ValueError, match="3 point clouds but 2 mask scores"):
        estimator.estimate(pts, CATS, mode="regression", mask_scores=[0.5, 0.5])
    # the tracker: a rejected detection gets no name and no track; its track goes unseen
    masks = [np.zeros((20, 30), bool) for _ in CATS]
    for k, m in enumerate(masks):
        m[5:15, 10 * k:10 * k + 8] = True
    tracker = Tracker(estimator, "regression", TrackerSettings(max_jump=float("inf"), doubt_deg=0.0))
    first = tracker.step(pts, CATS, masks, mask_scores=[1.0, 1.0, 1.0])
    assert first.names == ["mug_0", "bowl_0", "laptop_0"] and not first.rejected.any()
    second = tracker.step(pts, CATS, masks, mask_scores=[1.0, 0.5, 1.0])
    assert second.names == ["mug_0", "", "laptop_0"] and second.rejected.tolist() == [False, True, False]
    assert [tr.lost for tr in tracker.tracks] == [0, 1, 0] and tracker.tracks[1].needs_full
    monkeypatch.setitem(estimator.config["reject"], "rating_deg", 0.0)   # off
    assert not estimator.rejects
    assert not estimator.estimate(pts, CATS, mode="regression", mask_scores=[0.1, 0.1, 0.1]).rejected.any()


def test_eval_with_a_segmenters_masks_leaves_out_what_reject_drops(estimator, tiny_split, monkeypatch):
    """`genpose eval --masks`: detections scored by mask confidence x pose agreement (as the nodes
    publish them, for mAP); those config reject drops count as not detected (--no-reject keeps them)."""
    from genpose_ros.data.nocs_io import list_frames
    from genpose_ros.evaluation import runner
    from genpose_ros.paths import package_share
    from genpose_ros.segmentation.load import load_segmenter, segmenter_options

    seg = load_segmenter(str(package_share() / "models" / "maskrcnn_light.pt"), "cpu",
                         **{**segmenter_options(), "score_threshold": 0.05})   # low scores too
    frames = list_frames(tiny_split / "test")
    monkeypatch.setitem(estimator.config["reject"], "rating_deg", 1e-6)   # untrained: every pose rated worse
    kept = runner.run_frames(estimator, frames, "regression", segmenter=seg, progress=False, reject=False)
    dropped = runner.run_frames(estimator, frames, "regression", segmenter=seg, progress=False)
    scores = lambda res: [r["score"] for r in res["records"] if r["R_pred"] is not None]  # noqa: E731
    low = [s for s in scores(kept) if s < 0.9]   # regression: pose agreement 1, the mask's score
    assert kept["rejected"] == 0 and low and min(low) >= 0.05
    assert dropped["rejected"] == len(low) and sorted(scores(dropped)) == sorted(s for s in scores(kept) if s >= 0.9)
    assert len(dropped["records"]) >= sum(r["R_gt"] is not None for r in kept["records"])   # every object: a record
    # --mode tracking --masks: the tracker follows the segmenter's detections, as tracking_node does
    seq = tiny_split / "seq"
    kept = runner.run_tracking(estimator, seq, init_mode="regression", segmenter=seg, progress=False, reject=False)
    dropped = runner.run_tracking(estimator, seq, init_mode="regression", segmenter=seg, progress=False)
    assert len(kept["segment_ms"]) == 3 and len(kept["latency_ms"] + kept["init_latency_ms"]) == 3
    assert kept["rejected"] == 0 and dropped["rejected"] > 0   # (tracking steps: pose agreement < 1)
    n_gt = sum(len(f.instances) for _, f, _ in kept["frames"])
    assert sum(r["R_gt"] is not None for r in dropped["records"]) == n_gt
    assert len(scores(dropped)) == len(scores(kept)) - dropped["rejected"]


def test_reject_config_is_checked(tiny_pose_checkpoint):
    from genpose_ros.config import ConfigError

    bad = {"reject": {"mask_score": 1.5}}
    with pytest.raises(ConfigError, match=r"reject.rating_deg must be >= 0 \(0: off\) and reject.mask_score in \[0, 1\]"):
        PoseEstimator.from_checkpoint(tiny_pose_checkpoint, config=bad)
    none = {"verifier": {"checkpoint": ""}, "modes": {"genpose": {"ranking": "energy", "verify_turns": 0},
                                                      "score_scaling": {"verify_turns": 0}}, "reject": {}}
    with pytest.raises(ConfigError, match="reject.rating_deg is 10 but verifier.checkpoint is empty"):
        PoseEstimator.from_checkpoint(tiny_pose_checkpoint, config=none)
    none["reject"]["rating_deg"] = 0.0
    assert not PoseEstimator.from_checkpoint(tiny_pose_checkpoint, config=none).rejects


def test_bench_runs_end_to_end(tiny_split, tiny_pose_checkpoint, tmp_path):
    """`genpose bench` on a tiny split: every mode row, its sampler settings, the tracking row."""
    import json

    from genpose_ros import cli

    out = tmp_path / "bench.json"
    assert cli.main(["bench", "--data", str(tiny_split / "test"), "--seq", str(tiny_split / "seq"),
                     "--checkpoint", str(tiny_pose_checkpoint), "--json", str(out), "--images", str(tmp_path),
                     "--skip-ablations", "--threads", "1"]) == 0
    report = json.loads(out.read_text())
    assert list(report["modes"]) == ["regression", "genpose_energy", "genpose_random", "genpose_oracle",
                                     "genpose_verifier", "score_scaling", "score_scaling_verifier", "tracking"]
    assert report["modes"]["score_scaling"]["settings"]["schedule_kwargs"] == {"k": 8.0, "s": 0.05}
    assert report["modes"]["genpose_random"]["settings"]["ranking"] == "random"
    assert report["modes"]["genpose_verifier"]["settings"]["ranking"] == "verifier"
    assert report["modes"]["score_scaling"]["settings"]["verify_turns"] == 0  # the successor paper's sampler
    assert report["modes"]["genpose_energy"]["settings"]["tilt_deg"] == 0.0  # the papers' rows: no checks
    assert report["modes"]["score_scaling_verifier"]["settings"]["tilt_deg"] == sampler_settings("score_scaling")["tilt_deg"]
    turns = sampler_settings("score_scaling")["verify_turns"]  # config/estimator.yaml's
    assert report["modes"]["score_scaling_verifier"]["settings"]["verify_turns"] == turns
    tracking = report["modes"]["tracking"]
    assert tracking["settings"]["tracker"]["doubt_deg"] == 5.0 and tracking["ms_sequence_mean"] > 0
    assert (tmp_path / "bench_error_cdf.png").is_file() and out.with_suffix(".md").is_file()
    assert "`tracking` (on `" in out.with_suffix(".md").read_text()


def test_eroded_ground_truth_masks_lose_their_outline(tiny_split):
    """``genpose eval --erode-masks``: the points of each ground-truth mask less its eroded
    outline, on the sides asked for."""
    from genpose_ros.data.nocs_io import list_frames, read_frame
    from genpose_ros.evaluation.runner import frame_batch

    frame = read_frame(list_frames(tiny_split / "test")[0])
    intr = frame.intrinsics

    def pixels(pts):
        return (np.round(pts[:, 1] / pts[:, 2] * intr.fy + intr.cy).astype(int),
                np.round(pts[:, 0] / pts[:, 2] * intr.fx + intr.cx).astype(int))

    whole, ok, _ = frame_batch(frame, 2000, np.random.default_rng(0))
    below, ok_below, _ = frame_batch(frame, 2000, np.random.default_rng(0), erode=(2, (0,)))
    assert [i.instance_id for i in ok_below] == [i.instance_id for i in ok]
    for j, inst in enumerate(ok):
        mask = np.pad(frame.mask == inst.instance_id, ((0, 2), (0, 0)))
        v, u = pixels(whole[j])
        assert not (mask[v + 1, u] & mask[v + 2, u]).all()  # the whole mask has its lower outline
        v, u = pixels(below[j])
        assert (mask[v, u] & mask[v + 1, u] & mask[v + 2, u]).all()  # two mask pixels below each point
