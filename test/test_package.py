"""The package is a valid ROS 2 ament_python package and a working Python distribution."""
import ast
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


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: pathlib.Path) -> set[str]:
    """Every module named by an import statement of ``path`` (also inside functions), absolute,
    with ``from a import b`` giving both ``a`` and ``a.b``."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return found


SOURCES = {_module_name(p): p for p in sorted((ROOT / "genpose_ros").rglob("*.py"))}
IMPORTS = {name: _imports(path) for name, path in SOURCES.items()}


def test_core_never_imports_ros():
    """The ROS-free core must work for users without ROS: no rclpy or ROS message package is
    imported (anywhere in a module, functions included) outside genpose_ros.ros."""
    def is_ros(module: str) -> bool:
        top = module.split(".")[0]
        return top in ("rclpy", "rcl_interfaces") or top.endswith("_msgs")

    offenders = [f"{name}: {imp}" for name, found in IMPORTS.items()
                 if not name.startswith("genpose_ros.ros") for imp in sorted(found) if is_ros(imp)]
    assert not offenders, offenders
    assert any(is_ros(i) for i in IMPORTS["genpose_ros.ros.pose_node"])  # the check sees real imports


def test_no_import_cycles_among_package_modules():
    graph = {name: sorted(i for i in found if i in SOURCES and i != name) for name, found in IMPORTS.items()}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def cycle_from(node, path):
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = cycle_from(nxt, path + [nxt])
                if found:
                    return found
        state[node] = 2
        return None

    for start in graph:
        if start not in state:
            found = cycle_from(start, [start])
            assert found is None, " -> ".join(found)
    assert "genpose_ros.pose.sampling" in graph["genpose_ros.pose.estimator"]  # edges are seen
