"""One parameter table per node (its PARAMS dict): the params files of config/ and the launch
files agree with it."""
import pathlib

import pytest
import yaml

from genpose_ros.ros import launcher, maskrcnn_node, pose_node, realsense_node, tracking_node, xarm_demo_node

ROOT = pathlib.Path(__file__).resolve().parents[1]
TABLES = {
    "realsense_node": realsense_node.PARAMS,
    "maskrcnn_node": maskrcnn_node.PARAMS,
    "pose_node": pose_node.PARAMS,
    "tracking_node": {**pose_node.PARAMS, **tracking_node.TRACKING_PARAMS},
    "xarm_demo_node": xarm_demo_node.PARAMS,
}
# launch arguments that default to another value than the node's table, on purpose
LAUNCH_OVERRIDES = {(launch, "realsense_node", param)  # a real camera at a real camera's rate
                    for launch in ("d435.launch.yaml", "xarm.launch.yaml") for param in ("source", "frame_rate")}
LAUNCH_OVERRIDES.add(("xarm.launch.yaml", "tracking_node", "gravity_frame"))  # the robot's base is up
PARAMS_FILES = {"realsense_node": "realsense.yaml", "maskrcnn_node": "maskrcnn.yaml", "pose_node": "pose_node.yaml",
                "tracking_node": "tracking_node.yaml", "xarm_demo_node": "xarm6.yaml"}


@pytest.mark.parametrize("node", sorted(TABLES))
def test_params_file_matches_the_node_table(node):
    data = yaml.safe_load((ROOT / "config" / PARAMS_FILES[node]).read_text())
    assert list(data) == [f"/**/{node}"]  # the node's parameters in any namespace
    params = data[f"/**/{node}"]["ros__parameters"]
    table = TABLES[node]
    assert list(params) == list(table), "same parameters in the same order"
    for name, default in table.items():
        value = params[name]
        if isinstance(default, float):
            assert isinstance(value, (int, float)) and value == pytest.approx(default), name
        else:
            assert type(value) is type(default) and value == default, name


def _launch_files():
    return sorted(p.name for p in (ROOT / "launch").glob("*.launch.yaml"))


@pytest.mark.parametrize("name", _launch_files())
def test_launch_files_use_the_node_tables(name):
    """Every parameter a launch file sets exists in the node's table, its params file is the node's
    own, and a launch argument passed straight to a parameter defaults to the table's value
    (except the listed, deliberate overrides)."""
    doc = yaml.safe_load((ROOT / "launch" / name).read_text())["launch"]
    arg_defaults = {e["arg"]["name"]: e["arg"].get("default") for e in doc if "arg" in e}
    for entry in (e["node"] for e in doc if "node" in e and e["node"]["pkg"] == "genpose_ros"):
        table = TABLES[entry["exec"]]
        for param in entry.get("param", []):
            if "from" in param:
                assert param["from"].endswith(f"/config/{PARAMS_FILES[entry['exec']]}"), (name, param)
                continue
            assert param["name"] in table, (name, entry["exec"], param["name"])
            value = str(param["value"])
            if (value.startswith("$(var ") and value.endswith(")")
                    and (name, entry["exec"], param["name"]) not in LAUNCH_OVERRIDES):
                default = arg_defaults[value[len("$(var "):-1]]
                want = table[param["name"]]
                assert launcher.substitute(default, {}) == (str(want).lower() if isinstance(want, bool)
                                                            else str(want)), (name, param["name"])


def test_pose_node_seed_and_overrides_reach_the_estimator(tiny_pose_checkpoint):
    est, path = pose_node.load_estimator(str(tiny_pose_checkpoint), "cpu", seed=7)
    assert path == tiny_pose_checkpoint and est.generator.initial_seed() == 7
    assert pose_node.sampler_overrides("{n_steps: 3, solver: heun}", "genpose") == {"n_steps": 3, "solver": "heun"}
    assert pose_node.sampler_overrides("", "regression") == {}
    with pytest.raises(ValueError, match="mode regression: unknown key 'n_steps'"):
        pose_node.sampler_overrides("{n_steps: 3}", "regression")


NODE_CLASSES = {"realsense_node": realsense_node.RealSenseNode, "maskrcnn_node": maskrcnn_node.MaskRCNNNode,
                "pose_node": pose_node.PoseNode, "tracking_node": tracking_node.TrackingNode,
                "xarm_demo_node": xarm_demo_node.XArmDemoNode}


@pytest.mark.parametrize("node,name,value,message", [
    ("realsense_node", "frame_rate", 0.0, "parameter 'frame_rate' must be > 0, got 0.0"),
    ("realsense_node", "n_objects", -2, "parameter 'n_objects' must be >= 0, got -2"),
    ("maskrcnn_node", "depth_wait", -1.0, "parameter 'depth_wait' must be >= 0, got -1.0"),
    ("maskrcnn_node", "device", "tpu", "parameter 'device' must be cpu, cuda or cuda:N, got 'tpu'"),
    ("pose_node", "min_score", 30.0, "parameter 'min_score' must be between 0 and 1, got 30.0"),
    ("pose_node", "max_depth", float("nan"), "parameter 'max_depth' must be > 0, got nan"),
    ("pose_node", "min_depth", 20.0,
     "parameters 'min_depth' (20 m) and 'max_depth' (10 m): min_depth must be the smaller"),
    ("tracking_node", "reinit_every", -3, "reinit_every and max_lost must be >= 0 frames, got -3 and 5"),
    ("tracking_node", "iou_min", 2.0, "parameter 'iou_min' must be between 0 and 1, got 2.0"),
    ("xarm_demo_node", "pour_angle_deg", 270.0, "parameter 'pour_angle_deg' must be between 0 and 180, got 270.0"),
])
def test_values_out_of_range_stop_the_node_with_one_line(ros_context, node, name, value, message):
    from rclpy.parameter import Parameter

    with pytest.raises(ValueError) as exc:
        NODE_CLASSES[node](context=ros_context, parameter_overrides=[Parameter(name, value=value)])
    assert str(exc.value) == message


def test_ranges_are_in_the_parameter_descriptions(ros_context):
    node = xarm_demo_node.XArmDemoNode(context=ros_context)
    try:
        assert node.describe_parameter("pour_angle_deg").additional_constraints == "0..180"
        assert node.describe_parameter("approach").additional_constraints == ">=0"
        assert node.describe_parameter("task").additional_constraints == ""
    finally:
        node.destroy_node()


def test_parameters_read_at_start_up_are_read_only(ros_context, tiny_pose_checkpoint):
    """`ros2 param set` on a parameter a node reads once is refused, not reported as done; one
    it reads at every frame is checked and taken."""
    from rclpy.parameter import Parameter

    nodes = [xarm_demo_node.XArmDemoNode(context=ros_context),
             pose_node.PoseNode(context=ros_context,
                                parameter_overrides=[Parameter("checkpoint", value=str(tiny_pose_checkpoint))])]
    try:
        for node, name, value in ((nodes[0], "pour_angle_deg", 45.0), (nodes[1], "min_depth", 0.2),
                                  (nodes[1], "mode", "genpose")):
            before = node.get_parameter(name).value, node.p[name]
            result = node.set_parameters([Parameter(name, value=value)])[0]
            assert not result.successful and result.reason == f"Trying to set a read-only parameter: {name}."
            assert (node.get_parameter(name).value, node.p[name]) == before
            assert node.describe_parameter(name).read_only
        # what pose_node reads at every frame can change: checked as at start-up
        pose = nodes[1]
        assert pose.set_parameters([Parameter("min_score", value=0.8)])[0].successful
        assert pose.p["min_score"] == 0.8 and not pose.describe_parameter("min_score").read_only
        result = pose.set_parameters([Parameter("min_score", value=80.0)])[0]   # a percentage?
        assert not result.successful and result.reason == "parameter 'min_score' must be between 0 and 1, got 80.0"
        assert pose.set_parameters([Parameter("max_instances", value="5")])[0].successful   # YAML-typed
        assert pose.p["max_instances"] == 5 and pose.p["min_score"] == 0.8
    finally:
        for node in nodes:
            node.destroy_node()
