"""`genpose` with a user's mistakes: one line naming the problem, a non-zero exit, no traceback
(unless --debug), and the check done before any data or model loads."""
import pytest
import yaml

from genpose_ros import cli
from genpose_ros.config import CONFIG_DIR, ConfigError, checked, load_config, sampler_settings
from conftest import unreadable_split


def _run(capsys, *argv):
    rc = cli.main(list(argv))
    err = capsys.readouterr().err.strip()
    return rc, err


def _one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_sampler_override_type_is_checked_before_the_model_loads(capsys, tmp_path):
    # the checkpoint does not exist: the override error comes first, so nothing was loaded
    rc, err = _run(capsys, "eval", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                   "--checkpoint", str(tmp_path / "none.pt"), "--set", "n_steps=abc")
    assert rc == 2
    default = sampler_settings("score_scaling")["n_steps"]  # config/estimator.yaml's
    assert _one_line(err) == ("genpose eval: error: mode score_scaling: n_steps must be an integer "
                              f"(default {default}), got 'abc'")
    rc, err = _run(capsys, "eval", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                   "--set", "n_step=5")
    assert rc == 2 and "unknown key 'n_step'; did you mean 'n_steps'?" in _one_line(err)
    rc, err = _run(capsys, "eval", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--mode", "score_scalling")
    assert rc == 2 and "unknown mode 'score_scalling'; did you mean 'score_scaling'?" in _one_line(err)
    # tracker settings: only with --mode tracking, known names, numbers within their ranges
    for args, message in ((["--tracker", "category_memory=0"], "--tracker sets the tracker of --mode tracking"),
                          (["--mode", "tracking", "--tracker", "memory=0.5"], "unknown tracker setting 'memory'"),
                          (["--mode", "tracking", "--tracker", "max_lost=many"],
                           "tracker setting 'max_lost' must be a number, got 'many'"),
                          (["--mode", "tracking", "--tracker", "max_lost=1.5"],
                           "tracker setting 'max_lost' must be a whole number, got 1.5"),
                          (["--mode", "tracking", "--tracker", "category_memory=2"],
                           "category_memory and category_min_p must be in [0, 1], got 2.0 and 0.001")):
        rc, err = _run(capsys, "eval", "--data", str(tmp_path), "--out", str(tmp_path / "o"),
                       "--checkpoint", str(tmp_path / "none.pt"), *args)
        assert rc == 2 and message in _one_line(err), (args, err)


def test_a_folder_that_is_not_a_dataset_stops_eval_and_bench_before_the_first_run(capsys, tmp_path):
    (tmp_path / "holiday_color.png").write_bytes(b"")   # a colour image, but no labels beside it
    for command, out in (("eval", "--out"), ("bench", "--json")):
        rc, err = _run(capsys, command, "--data", str(tmp_path), out, str(tmp_path / "o"))
        assert rc == 2
        assert _one_line(err) == (f"genpose {command}: error: 1 of 1 frames under {tmp_path} have no labels "
                                  f"(first: {tmp_path / 'holiday'}): not a dataset written by `genpose data "
                                  "generate` or the NOCS/GenPose preprocessing")
    rc, err = _run(capsys, "bench", "--data", str(tmp_path), "--wide", str(tmp_path / "nowhere"))
    assert rc == 2 and _one_line(err) == f"genpose bench: error: --wide {tmp_path / 'nowhere'}: no such folder"


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(ConfigError, match="n_steps must be an integer"):
        cli.main(["--debug", "eval", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--set", "n_steps=abc"])


@pytest.mark.parametrize("argv,message", [
    (["eval", "--max-frames", "-1"], "argument --max-frames: must be >= 1, got -1"),
    (["eval", "--threads", "two"], "argument --threads: 'two' is not an integer"),
    (["train", "--data", "d", "--out", "o", "--steps", "0"], "argument --steps: must be >= 1, got 0"),
    (["train", "--data", "d", "--out", "o", "--lr", "fast"], "argument --lr: 'fast' is not a number"),
    (["bench", "--data", "d", "--solver-frames", "0"], "argument --solver-frames: must be >= 1, got 0"),
    (["demo", "--frames", "0"], "argument --frames: must be >= 1, got 0"),
    (["data", "generate", "--out", "o", "--split", "test", "--frames", "0"], "argument --frames: must be >= 1"),
    (["eval", "--device", "gpu"], "argument --device: expected cpu, cuda or cuda:N, got 'gpu'"),
    (["demo", "--device", "auto"], "argument --device: expected cpu, cuda or cuda:N, got 'auto'"),
    (["train", "--data", "d", "--out", "o", "--device", "tpu"],
     "argument --device: expected auto, cpu, cuda or cuda:N, got 'tpu'"),
    (["bench", "--data", "d", "--device", "cuda:99"], "argument --device: cuda:99: torch "),   # no such GPU
    (["eval", "--data", "d", "--erode-masks", "1:bellow"],
     "argument --erode-masks: expected PX[:SIDES] with PX 1-3 and SIDES from below, above, right, left, got '1:bellow'"),
])
def test_bad_numbers_and_names_are_argument_errors(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("change,message", [
    ({"batch_sise": 4}, "unknown key 'batch_sise'; did you mean 'batch_size'?"),
    ({"model": {"hiden": 8}}, "unknown key 'model.hiden'; did you mean 'hidden'?"),
    ({"lr": "fast"}, "lr must be a number (default 0.001), got 'fast'"),
    ({"steps": 0}, "steps must be > 0, got 0"),
    ({"sde": {"sigma_max": [50]}}, "sde.sigma_max must be a number (default 50.0), got [50]"),
    ({"category_weights": {"camra": 2.0}}, "unknown key 'category_weights.camra'; did you mean 'camera'?"),
    ({"augment": {"outline_px": [0, 0]}},
     "augment.outline_px must hold 1 to 4 chances (of 0, 1, ... pixels), >= 0 and not all 0, got [0, 0]"),
    ({"category_weights": {"camera": -1}},
     "category_weights must be >= 0 and not all 0, got {'bottle': 1.0, 'bowl': 1.0, 'camera': -1.0, 'can': 1.0, "
     "'laptop': 1.0, 'mug': 1.0}"),
])
def test_train_config_mistakes_are_rejected_before_data_loads(capsys, tmp_path, change, message):
    path = tmp_path / "my.yaml"
    path.write_text(yaml.safe_dump(change))
    # --data cannot be read: the config error comes first
    rc, err = _run(capsys, "train", "--data", unreadable_split(tmp_path), "--out", str(tmp_path / "o"),
                   "--config", str(path))
    assert rc == 2
    line = _one_line(err)
    assert line.startswith(f"genpose train: error: {path}: ") and line.endswith(message), line


def test_a_config_file_that_is_not_yaml_is_one_line_with_its_line_and_column(capsys, tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("lr: 1e-3\nsteps: [10\n")
    rc, err = _run(capsys, "train", "--data", unreadable_split(tmp_path), "--out", str(tmp_path / "o"),
                   "--config", str(path))
    assert rc == 2
    assert _one_line(err).startswith(f"genpose train: error: config file {path} is not valid YAML: line 3, column 1: ")


def test_train_config_accepts_partial_files_and_yaml_numbers():
    defaults = load_config(CONFIG_DIR / "train.yaml")
    cfg = checked({"lr": "1e-3", "model": {"encoder": {"levels": []}}, "steps": 10}, defaults, "x",
                  free=("model.encoder",))
    assert cfg["lr"] == 1e-3 and cfg["steps"] == 10 and cfg["model"]["encoder"] == {"levels": []}
    assert cfg["batch_size"] == defaults["batch_size"] and cfg["model"]["hidden"] == defaults["model"]["hidden"]
    with pytest.raises(ConfigError, match="x: model must be a mapping"):
        checked({"model": 3}, defaults, "x")
    with pytest.raises(ConfigError, match="ema must be a number"):
        checked({"ema": True}, defaults, "x")  # a bool is not a number


def test_sampler_settings_merge_and_check():
    s = sampler_settings("genpose", {"n_steps": 5, "schedule": "gaussian", "schedule_kwargs": {"k": 2.0}})
    assert s["n_steps"] == 5 and s["num_candidates"] == 50 and s["schedule_kwargs"] == {"k": 2.0, "s": 0.05}
    assert sampler_settings("genpose")["schedule"] == "none" and sampler_settings("genpose")["schedule_kwargs"] == {}
    with pytest.raises(ConfigError, match="mode genpose: ranking must be a string"):
        sampler_settings("genpose", {"ranking": 3})
    with pytest.raises(ConfigError, match="unknown mode 'icp'"):
        sampler_settings("icp")
    assert sampler_settings("tracking")["schedule_kwargs"] == {"k": 8.0, "s": 0.05}  # the gaussian's own
    assert sampler_settings("tracking", {"schedule": "exponential"})["schedule_kwargs"] == {"k": 4.0, "tau": 0.1}
    with pytest.raises(ConfigError, match="schedule_kwargs of schedule gaussian: unknown key 'tau'"):
        sampler_settings("score_scaling", {"schedule_kwargs": {"tau": 0.2}})
    with pytest.raises(ConfigError, match="unknown schedule 'gauss'; did you mean 'gaussian'"):
        sampler_settings("score_scaling", {"schedule": "gauss"})
    with pytest.raises(ConfigError, match="mode tracking: num_candidates must be >= 1, got 0"):
        sampler_settings("tracking", {"num_candidates": 0})
    with pytest.raises(ConfigError, match=r"mode genpose: keep_ratio must be in \(0, 1\], got 1.5"):
        sampler_settings("genpose", {"keep_ratio": 1.5})
    with pytest.raises(ConfigError, match=r"mode score_scaling: polish must be >= 0 \(0: off\), got -2"):
        sampler_settings("score_scaling", {"polish": -2})
    with pytest.raises(ConfigError, match=r"mode tracking: verify_refine must be >= 0 \(0: off\), got -1"):
        sampler_settings("tracking", {"verify_refine": -1})
    with pytest.raises(ConfigError, match="mode score_scaling: polish must be an integer"):
        sampler_settings("score_scaling", {"polish": True})
    with pytest.raises(ConfigError, match=r"mode tracking: verify_turns must be >= 0"):
        sampler_settings("tracking", {"verify_turns": -1})


def test_checkpoint_flag_with_hidden_alias_and_threads_everywhere(capsys):
    parser = cli.build_parser()
    for command in (["eval"], ["bench", "--data", "d"], ["demo"]):
        assert parser.parse_args(command + ["--ckpt", "a.pt"]).checkpoint == "a.pt"
        assert parser.parse_args(command + ["--checkpoint", "b.pt"]).checkpoint == "b.pt"
    for command in (["eval"], ["bench", "--data", "d"], ["demo"], ["train", "--data", "d", "--out", "o"]):
        assert parser.parse_args(command + ["--threads", "1"]).threads == 1
    with pytest.raises(SystemExit):
        cli.main(["eval", "--help"])
    out = capsys.readouterr().out
    assert "--checkpoint" in out and "--ckpt" not in out and "--threads" in out


def test_broken_label_file_is_named(tmp_path, capsys):
    from genpose_ros.data import nocs_io

    prefix = tmp_path / "0000"
    (tmp_path / "0000_label.json").write_text('{"class_ids": [1, 2], "instance_ids": [1')
    with pytest.raises(ValueError, match=r"label file .*0000_label.json is not valid JSON \(truncated"):
        nocs_io.read_labels(prefix)
    (tmp_path / "0000_label.json").write_text('{"class_ids": [1]}')
    with pytest.raises(ValueError, match=r"0000_label.json lacks the keys \['instance_ids'"):
        nocs_io.read_labels(prefix)


def test_corrupt_checkpoint_is_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint" * 32)
    rc, err = _run(capsys, "eval", "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--checkpoint", str(bad))
    assert rc == 2
    assert _one_line(err).startswith(f"genpose eval: error: cannot read pose checkpoint {bad} (corrupt, truncated")


@pytest.mark.parametrize("argv, message", [
    (["--task", "size", "--init", "{bad}"], "cannot read size checkpoint {bad} (corrupt, truncated"),
    (["--task", "verifier", "--init", "{bad}"], "cannot read verifier checkpoint {bad} (corrupt, truncated"),
    (["--task", "verifier", "--init", "{size}"], "{size} is not a genpose_ros verifier checkpoint"),
    (["--task", "verifier", "--candidates", "{bad}"], "cannot read pose checkpoint {bad} (corrupt, truncated"),
    (["--task", "verifier", "--candidates", "{size}"], "{size} is not a genpose_ros pose checkpoint"),
])
def test_bad_init_and_candidates_files_are_named_before_the_data_are_read(capsys, tmp_path, argv, message):
    from genpose_ros.paths import package_share

    files = {"bad": tmp_path / "bad.pt", "size": package_share() / "models" / "size_net.pt"}
    files["bad"].write_bytes(b"not a checkpoint" * 32)
    # --data cannot be read: read first, it would be the error
    rc, err = _run(capsys, "train", "--data", unreadable_split(tmp_path), "--out", str(tmp_path / "o"),
                   *[a.format(**files) for a in argv])
    assert rc == 2
    assert _one_line(err).startswith("genpose train: error: " + message.format(**files)), err


@pytest.mark.parametrize("task", ["pose", "segmentation", "size", "verifier"])
def test_train_folders_and_files_are_checked_before_the_data_are_read(capsys, tmp_path, task):
    data = unreadable_split(tmp_path)
    rc, err = _run(capsys, "train", "--task", task, "--data", data, "--out", str(tmp_path / "o"))
    assert rc == 2 and "unreadable_split" in err.splitlines()[-1]     # reading it is the error
    nowhere, empty = tmp_path / "nowhere", tmp_path / "empty"
    empty.mkdir()
    for flags, message in ((["--val", str(nowhere)], f"dataset folder {nowhere} does not exist"),
                           (["--val", data, str(empty)], f"no frames (*_color.png) under {empty}"),
                           (["--init", str(nowhere / "w.pt")], f"--init {nowhere / 'w.pt'}: no such file")):
        rc, err = _run(capsys, "train", "--task", task, "--data", data, "--out", str(tmp_path / "o"), *flags)
        assert rc == 2 and _one_line(err) == f"genpose train: error: {message}", err
    if task in ("pose", "segmentation"):
        rc, err = _run(capsys, "train", "--task", task, "--data", data, "--out", str(tmp_path / "o"),
                       "--resume", str(nowhere / "state.pt"))
        assert rc == 2 and _one_line(err) == f"genpose train: error: --resume {nowhere / 'state.pt'}: no such file"


def test_shipped_training_configs_pass_the_checks():
    from argparse import Namespace

    from genpose_ros.pose.train import resolve_config

    for name in ("train.yaml", "train_gpu.yaml"):
        args = Namespace(config=str(CONFIG_DIR / name), schedule=None, steps=None, batch_size=None, lr=None,
                         eval_every=None, encoder=None)
        cfg = resolve_config(args)
        assert cfg["steps"] == load_config(CONFIG_DIR / name)["steps"]
