"""The package is a valid ROS 2 ament_python package and a working Python distribution."""
import pathlib
import shutil
import subprocess
import sys

import pytest
from catkin_pkg.package import parse_package

import genpose_ros
from genpose_ros import cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
NODES = ["realsense_node", "maskrcnn_node", "pose_node", "tracking_node", "xarm_demo_node"]


def test_package_xml_is_valid_format_3_ament_python():
    package = parse_package(str(ROOT / "package.xml"))
    package.validate()
    assert package.name == "genpose_ros"
    assert package.package_format == 3
    assert package.version == genpose_ros.__version__
    assert package.get_build_type() == "ament_python"
    exec_deps = {dep.name for dep in package.exec_depends}
    assert {"rclpy", "sensor_msgs", "tf2_msgs", "vision_msgs", "visualization_msgs"} <= exec_deps


def test_colcon_build_installs_scripts_and_data_files(tmp_path):
    colcon = shutil.which("colcon", path=str(pathlib.Path(sys.executable).parent))
    assert colcon, "colcon is part of the pinned environment (requirements.txt)"
    result = subprocess.run(
        [colcon, "--log-base", str(tmp_path / "log"), "build", "--paths", str(ROOT),
         "--build-base", str(tmp_path / "build"), "--install-base", str(tmp_path / "install")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    prefix = tmp_path / "install" / "genpose_ros"
    for exe in ["genpose", *NODES]:  # where `ros2 run genpose_ros <exe>` looks
        assert (prefix / "lib" / "genpose_ros" / exe).is_file(), exe
    share = prefix / "share" / "genpose_ros"
    assert (share / "package.xml").is_file()
    assert (prefix / "share" / "ament_index" / "resource_index" / "packages" / "genpose_ros").is_file()
    for folder in ["launch", "config", "models"]:
        if not (ROOT / folder).is_dir():
            continue
        shipped = sorted(p.name for p in (ROOT / folder).iterdir() if p.is_file()
                         and p.suffix in {".yaml", ".rviz", ".pt", ".md", ".py", ".safetensors"})
        installed = sorted(p.name for p in (share / folder).iterdir()) if (share / folder).exists() else []
        assert set(shipped) <= set(installed), (folder, shipped, installed)


def test_cli_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in ["data", "train", "eval", "bench", "demo", "launch"]:
        assert f"    {name}" in out


def test_cli_version_and_console_script():
    exe = pathlib.Path(sys.executable).parent / "genpose"
    result = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout.strip() == f"genpose {genpose_ros.__version__}"


def test_core_never_imports_ros():
    """The ROS-free core must work for users without ROS: no rclpy outside genpose_ros/ros."""
    offenders = []
    for path in (ROOT / "genpose_ros").rglob("*.py"):
        if "ros" in path.relative_to(ROOT / "genpose_ros").parts[:1]:
            continue
        text = path.read_text()
        for needle in ("import rclpy", "from rclpy", "_msgs.msg import", "_msgs import"):
            if needle in text and path.name != "demo.py":
                offenders.append(f"{path.relative_to(ROOT)}: {needle}")
    assert not offenders, offenders
