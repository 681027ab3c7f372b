"""Declared dependencies match the code: every third-party module genpose_ros imports is declared
(package.xml for what rosdep installs, requirements-workstation.txt for pip-only packages), and
nothing is declared that the code or the launch files do not use."""
import ast
import pathlib
import re
import sys

from catkin_pkg.package import parse_package

ROOT = pathlib.Path(__file__).resolve().parents[1]
# rosdep key -> the module it provides
ROSDEP_MODULES = {"python3-numpy": "numpy", "python3-scipy": "scipy", "python3-opencv": "cv2",
                  "python3-yaml": "yaml", "python3-tqdm": "tqdm", "python3-matplotlib": "matplotlib",
                  "python3-trimesh-pip": "trimesh"}
PIP_MODULES = {"torch": "torch", "torchvision": "torchvision", "pyrealsense2": "pyrealsense2",
               "embreex": "embreex", "fpsample": "fpsample", "safetensors": "safetensors",
               "tensorboard": "torch"}   # tensorboard: through torch.utils.tensorboard
FROM_LAUNCH_FILES = {"launch", "launch_ros", "launch_yaml", "rviz2"}
OPTIONAL = {"detectron2"}   # an optional segmentation backend, not on PyPI


def _imported_modules() -> set[str]:
    out = set()
    for path in (ROOT / "genpose_ros").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                out |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                out.add(node.module.split(".")[0])
    return out - set(sys.stdlib_module_names) - {"genpose_ros", "__future__"} - OPTIONAL


def _workstation_requirements() -> set[str]:
    lines = (ROOT / "requirements-workstation.txt").read_text().splitlines()
    names = {re.split(r"[<>=\s#]", ln.strip(), maxsplit=1)[0] for ln in lines}
    return {n for n in names if n} | {"tensorboard"}  # the optional one, named in a comment


def test_every_import_is_declared_and_every_declaration_used():
    deps = {d.name for d in parse_package(str(ROOT / "package.xml")).exec_depends}
    pip = _workstation_requirements()
    assert not {"tf2_ros", "python3-transforms3d"} & deps
    assert not any(n.startswith(("ros-", "rosidl", "colcon", "ament")) for n in pip), pip
    declared = ({ROSDEP_MODULES[d] for d in deps if d in ROSDEP_MODULES}
                | {PIP_MODULES[p] for p in pip} | (deps - set(ROSDEP_MODULES)))
    imported = _imported_modules()
    assert imported <= declared, f"imported but not declared: {sorted(imported - declared)}"
    unknown = {d for d in deps if d.startswith("python3-")} - set(ROSDEP_MODULES)
    assert not unknown, f"python dependencies without a module mapping here: {unknown}"
    unused = (deps - set(ROSDEP_MODULES) - FROM_LAUNCH_FILES) - imported
    unused |= {d for d, m in ROSDEP_MODULES.items() if d in deps and m not in imported}
    unused |= {p for p in pip if PIP_MODULES[p] not in imported}
    assert not unused, f"declared but never imported: {sorted(unused)}"
    launch_text = "".join(p.read_text() for p in (ROOT / "launch").glob("*.yaml"))
    assert "pkg: rviz2" in launch_text
