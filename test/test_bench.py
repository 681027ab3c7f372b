"""`genpose bench` end to end on tiny splits (untrained model: checks the report, not accuracy):
the modes, the size ablation (SizeNet vs size head), the roll, tilt check and support plane
ablation and the wide split beside the standard one."""
import json


def test_bench_reports_size_ablation_and_wide_split(tmp_path, tiny_pose_checkpoint):
    from genpose_ros.data.generate import GenerateConfig, generate
    from genpose_ros.evaluation import bench

    generate(GenerateConfig(out=str(tmp_path / "test"), split="test", seed=0, scenes=1, views_per_scene=2,
                            n_objects=8), progress=False)
    generate(GenerateConfig(out=str(tmp_path / "test_wide"), split="test", seed=0, scenes=1, n_objects=4,
                            distribution="wide"), progress=False)
    out = tmp_path / "bench.json"
    assert bench.main(["--data", str(tmp_path / "test"), "--ckpt", str(tiny_pose_checkpoint), "--json", str(out),
                       "--images", str(tmp_path / "img"), "--solver-frames", "1", "--threads", "1"]) == 0
    report = json.loads(out.read_text())
    assert report["wide"]["data"] == str(tmp_path / "test_wide") and report["wide"]["n_frames"] == 1
    assert set(report["wide"]["modes"]) == {"genpose_energy", "score_scaling", "genpose_verifier",
                                            "score_scaling_verifier"}
    rows = report["ablations"]["size"]
    assert [(r["mode"], r["size"]) for r in rows] == [(m, s) for m in ("genpose", "score_scaling")
                                                      for s in ("head", "net", "net+centre")]
    assert rows[0]["5deg2cm"] == rows[1]["5deg2cm"]  # same poses for both size methods
    checks = report["ablations"]["checks"]  # the verifier rows without each of the estimator's checks
    assert {name: sorted(rows) for name, rows in checks.items()} == {
        name: ["border extension", "roll check", "support plane", "tilt check"]
        for name in ("genpose_verifier", "score_scaling_verifier")}
    # the size ablation runs without the table plane: its defaults row is the verifier row without it
    assert abs(rows[2]["IoU75"] - checks["genpose_verifier"]["support plane"]["iou75"]) < 0.01
    modes = report["modes"]
    plane = {name: row["settings"]["support_plane"] for name, row in modes.items() if "support_plane" in row["settings"]}
    assert not plane["genpose_energy"] and not plane["score_scaling"]            # the papers' samplers
    assert plane["genpose_verifier"] and plane["score_scaling_verifier"]
    border = {name: row["settings"]["border"] for name, row in modes.items() if "border" in row["settings"]}
    assert not border["genpose_energy"] and border["score_scaling_verifier"]
    # latency over several calls of the 6-object frame: their median and 90th percentile
    assert all(0 < row["ms_per_frame"] <= row["ms_p90"] for row in modes.values())
    assert all(0 < row["ms_per_frame"] <= row["ms_p90"] for rows in checks.values() for row in rows.values())
    md = (tmp_path / "bench.md").read_text()
    assert "| ms_per_frame | ms_p90 |" in md
    assert "| score_scaling_verifier | without the tilt check |" in md
    assert "## Size: SizeNet (net) against the pose model's size head" in md
    assert f"## Wide split (`{tmp_path / 'test_wide'}`, 1 frames)" in md and "| wide | score_scaling |" in md
