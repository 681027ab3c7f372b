"""The locally generated interface packages are the upstream types, as DDS sees them.

ROS 2 announces a type hash (RIHS01) with every endpoint; a workstation with the apt packages
talks to our nodes only if these hashes match. The golden values are those that stock Jazzy /
Kilted installations announce for the upstream definitions.
"""
import rclpy
from tf2_msgs.msg import TF2Error, TFMessage
from vision_msgs.msg import Detection3DArray

UPSTREAM_HASHES = {
    TFMessage: "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087",
    TF2Error: "RIHS01_db2485e7d6a0ec75bf087e058ee45df682acc3a621ca7780503d10aac141809a",
    Detection3DArray: "RIHS01_793f5eab9595ac1c0da07873cc859db42eae51f0ee76056db8562515d830e018",
}


def test_generated_types_announce_the_upstream_type_hashes(ros_context):
    node = rclpy.create_node("type_hash_probe", context=ros_context)
    try:
        for index, (msg_type, expected) in enumerate(UPSTREAM_HASHES.items()):
            topic = f"/type_hash_probe_{index}"
            node.create_publisher(msg_type, topic, 1)
            (info,) = node.get_publishers_info_by_topic(topic)
            assert str(info.topic_type_hash) == expected, msg_type.__name__
    finally:
        node.destroy_node()


def test_detection3d_field_layout_matches_vision_msgs_4():
    detection = Detection3DArray().detections
    assert detection == []
    from vision_msgs.msg import Detection3D, ObjectHypothesisWithPose
    fields = Detection3D.get_fields_and_field_types()
    assert list(fields) == ["header", "results", "bbox", "id"]
    assert list(ObjectHypothesisWithPose.get_fields_and_field_types()) == ["hypothesis", "pose"]
