"""Shared pytest set-up.

Every test session talks DDS on its own ROS domain (derived from the process id) and only over
the loopback interface, so parallel test runs on one machine never see each other's topics.
Subprocesses started by the tests inherit these variables.
"""
import os
import time

import pytest

os.environ["ROS_DOMAIN_ID"] = str(1 + os.getpid() % 200)
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("RCUTILS_COLORIZED_OUTPUT", "0")


@pytest.fixture
def ros_context():
    """A freshly initialised rclpy Context, shut down after the test."""
    import rclpy
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        context.try_shutdown()


def spin_until(executor, predicate, timeout_s: float) -> bool:
    """Spin ``executor`` until ``predicate()`` is true or ``timeout_s`` passes; returns it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        executor.spin_once(timeout_sec=0.05)
    return bool(predicate())


@pytest.fixture(scope="session")
def tiny_pose_checkpoint(tmp_path_factory):
    """A freshly initialised light pose model saved as a real checkpoint (untrained: for
    plumbing tests only, its poses are meaningless)."""
    import torch
    from genpose_ros import CATEGORIES
    from genpose_ros.pose.checkpoint import save_checkpoint
    from genpose_ros.config import CONFIG_DIR, load_config
    from genpose_ros.pose.nets import PoseNet
    from genpose_ros.pose.pointnet2 import LIGHT_ENCODER

    cfg = load_config(CONFIG_DIR / "train.yaml")
    model_cfg = dict(cfg["model"], encoder=LIGHT_ENCODER, categories=list(CATEGORIES))
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("models") / "genpose_tiny.pt"
    save_checkpoint(path, PoseNet(model_cfg).state_dict(), model_cfg, 0, {"sde": cfg["sde"]})
    return path


@pytest.fixture(scope="session")
def tiny_maskrcnn_weights(tmp_path_factory):
    """A randomly initialised tiny RGB Mask R-CNN (96 px input) saved as a real fp16 checkpoint."""
    from dataclasses import replace

    import torch
    from genpose_ros.segmentation.model import TINY_CONFIG, build_model, save_checkpoint

    cfg = replace(TINY_CONFIG, input="rgb", min_size=96, max_size=128, train_min_sizes=(96,))
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("maskrcnn") / "tiny.pt"
    return save_checkpoint(path, build_model(cfg), cfg, half=True)


def shipped_pose_checkpoint():
    """The newest shipped models/genpose_*.pt, or None."""
    from genpose_ros.paths import find_model
    return find_model("genpose_*.pt")


TINY_MODEL = {"n_points": 128, "cat_dim": 8, "hidden": 32, "pose_dim": 16, "time_dim": 16,
              "encoder": {"levels": [{"npoint": 32, "radii": [0.03, 0.06], "nsample": [8, 8],
                                      "mlps": [[8, 16], [8, 16]]}], "global_mlp": [32]}}


def tiny_train_config(**overrides) -> dict:
    """config/train.yaml with a tiny model and tiny batches, for training runs of a few seconds."""
    from genpose_ros.config import CONFIG_DIR, load_config

    cfg = load_config(CONFIG_DIR / "train.yaml")
    cfg.update(model=TINY_MODEL, batch_size=4, n_noise=2, log_every=1, eval_every=3, save_every=4,
               val_instances=4, val_steps=2, pool_points=256, warmup=2, **overrides)
    return cfg


@pytest.fixture(scope="session")
def tiny_train_val(tmp_path_factory):
    """A rendered train split (2 scenes x 2 views) and val split (1 scene), for the small nets' training tests."""
    from genpose_ros.data.generate import GenerateConfig, generate

    root = tmp_path_factory.mktemp("train_val")
    generate(GenerateConfig(out=str(root / "train"), split="train", seed=0, scenes=2, views_per_scene=2),
             progress=False)
    generate(GenerateConfig(out=str(root / "val"), split="val", seed=0, scenes=1), progress=False)
    return root


def unreadable_split(root) -> str:
    """A folder that lists as a labelled split but whose one frame cannot be read: an error
    about its contents means the data were read (after what a test checks comes first)."""
    from pathlib import Path

    folder = Path(root) / "unreadable_split"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "0000_color.png").write_bytes(b"not an image")
    (folder / "0000_label.json").write_text("not json")
    return str(folder)
