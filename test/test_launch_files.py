"""The YAML launch files as `ros2 launch` reads them: every argument described, conditions only
with the values ros2 launch accepts, safe defaults, namespaces and the xArm sim camera rate."""
import os
import sys

import pytest
import yaml

from genpose_ros.paths import package_share
from genpose_ros.ros import launcher

FILES = ["sim.launch.yaml", "d435.launch.yaml", "xarm.launch.yaml"]


def _doc(name):
    return yaml.safe_load((package_share() / "launch" / name).read_text())["launch"]


def _params(proc) -> dict:
    return dict(proc.cmd[i + 1].split(":=", 1) for i, a in enumerate(proc.cmd) if a == "-p")


@pytest.mark.parametrize("name", FILES)
def test_every_argument_has_a_description_and_rviz_is_off(name):
    args = [item["arg"] for item in _doc(name) if "arg" in item]
    missing = [a["name"] for a in args if not str(a.get("description", "")).strip()]
    assert not missing, f"{name}: arguments without a description: {missing}"
    assert {a["name"]: a["default"] for a in args}["rviz"] == "false"
    assert "rviz2" not in [p.name for p in launcher.parse(name)]


@pytest.mark.parametrize("name", FILES)
def test_conditions_use_only_what_ros2_launch_accepts(name):
    conditions = [e[k] for item in _doc(name) for e in item.values() if isinstance(e, dict)
                  for k in ("if", "unless") if k in e]
    assert conditions and all(c.startswith("$(var ") for c in conditions)
    for value in ("true", "false", "1", "0", "True"):
        launcher.parse(name, {"rviz": value})
    for value in ("yes", "on", ""):
        with pytest.raises(launcher.LaunchError, match=r"must be true, false, 1 or 0"):
            launcher.parse(name, {"rviz": value})


def test_a_broken_launch_file_is_one_line_with_its_line_and_column(tmp_path):
    path = tmp_path / "mine.launch.yaml"
    path.write_text("launch:\n- node: {pkg: genpose_ros\n")   # the brace is never closed
    with pytest.raises(launcher.LaunchError) as exc:
        launcher.parse(path)
    message = str(exc.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: not valid YAML: line 3, column 1: expected ',' or '}}'"), message


@pytest.mark.parametrize("name", FILES)
def test_namespace_argument_moves_every_node(name):
    for p in launcher.parse(name):
        assert not any(a.startswith("__ns:=") for a in p.cmd), p.cmd  # default: no namespace
    procs = launcher.parse(name, {"namespace": "robot1"})
    assert procs and all("__ns:=/robot1" in p.cmd for p in procs)
    with pytest.raises(launcher.LaunchError, match="namespace '/1robot' is not a valid ROS namespace "
                       r"\(namespace must not have a token that starts with a number\)"):
        launcher.parse(name, {"namespace": "1robot"})
    # the topic parameters the files set are relative, so they follow the namespace
    for p in procs:
        for key, value in _params(p).items():
            if key.endswith("_topic"):
                assert not value.startswith("/"), (p.name, key, value)


def test_xarm_sim_honours_frame_rate_and_publish_tf():
    procs = {p.name: p for p in launcher.parse("xarm.launch.yaml", {"sim": "true", "frame_rate": "3.5",
                                                                  "publish_tf": "false"})}
    cam = _params(procs["realsense_node"])
    assert cam["source"] == "sim" and cam["frame_rate"] == "3.5" and cam["publish_tf"] == "false"
    assert _params(procs["xarm_demo_node"])["publish_tf"] == "false"
    assert _params(procs["tracking_node"])["gravity_frame"] == "link_base"   # the table plane faces up in the base


def test_node_commands_run_our_modules():
    for p in launcher.parse("sim.launch.yaml", {"namespace": "/a/b/"}):
        assert p.cmd[:4] == [sys.executable, "-m", "genpose_ros.ros.start", p.name] and "__ns:=/a/b" in p.cmd


def test_dds_profile_holds_whole_images_and_a_users_profile_wins(monkeypatch, tmp_path):
    """genpose demo / genpose launch start their nodes with Fast DDS pointed at config/fastdds.xml
    (its shared-memory segment holds a whole 640x480 colour image) unless the user names a
    profiles file; their own environment stays as it is."""
    import xml.etree.ElementTree as ET

    from genpose_ros.ros.launcher import DDS_PROFILE_VARS, dds_profile_env

    for var in DDS_PROFILE_VARS:
        monkeypatch.delenv(var, raising=False)
    env = dds_profile_env()
    path = env["FASTDDS_DEFAULT_PROFILES_FILE"]
    assert path == str(package_share() / "config" / "fastdds.xml")
    assert "FASTRTPS_DEFAULT_PROFILES_FILE" not in env  # deprecated: Fast DDS warns about it
    assert not any(var in os.environ for var in DDS_PROFILE_VARS)
    ns = {"d": "http://www.eprosima.com"}
    root = ET.parse(path).getroot()
    shm = [t for t in root.iterfind(".//d:transport_descriptor", ns) if t.findtext("d:type", namespaces=ns) == "SHM"]
    assert len(shm) == 1 and int(shm[0].findtext("d:segment_size", namespaces=ns)) >= 4 * 640 * 480 * 3
    used = {e.text for e in root.iterfind(".//d:participant//d:userTransports/d:transport_id", ns)}
    assert used == {t.findtext("d:transport_id", namespaces=ns) for t in root.iterfind(".//d:transport_descriptor", ns)}
    mine = tmp_path / "mine.xml"
    monkeypatch.setenv("FASTRTPS_DEFAULT_PROFILES_FILE", str(mine))
    assert "FASTDDS_DEFAULT_PROFILES_FILE" not in dds_profile_env()
