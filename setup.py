"""ament_python build of genpose_ros (also a plain pip-installable package)."""
from glob import glob

from setuptools import find_packages, setup

package_name = "genpose_ros"

NODES = {
    "realsense_node": "genpose_ros.ros.start:realsense_node",
    "maskrcnn_node": "genpose_ros.ros.start:maskrcnn_node",
    "pose_node": "genpose_ros.ros.start:pose_node",
    "tracking_node": "genpose_ros.ros.start:tracking_node",
    "xarm_demo_node": "genpose_ros.ros.start:xarm_demo_node",
}

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.yaml") + glob("launch/*.py")),
        ("share/" + package_name + "/config", glob("config/*.yaml") + glob("config/*.rviz") + glob("config/*.xml")),
        ("share/" + package_name + "/models", glob("models/*")),
    ],
    package_data={package_name: ["py.typed"]},
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="genpose_ros maintainers",
    maintainer_email="maintainers@genpose-ros.dev",
    description="Category-level 6D pose and size estimation with score-based diffusion, for ROS 2.",
    license="Apache-2.0",
    entry_points={
        "console_scripts": ["genpose = genpose_ros.cli:main"]
        + [f"{name} = {target}" for name, target in NODES.items()],
    },
)
