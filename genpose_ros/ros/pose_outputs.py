"""The outputs shared by pose_node and tracking_node: detections, TF, markers, hypotheses, overlay."""
from __future__ import annotations

import numpy as np
from geometry_msgs.msg import PoseArray
from rclpy.node import Node
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection3DArray
from visualization_msgs.msg import MarkerArray

from genpose_ros.ros.conversions import (detections_to_msg, hypotheses_to_pose_array,
                                         instance_transforms, markers_to_msg, numpy_to_image)
from genpose_ros.overlay import draw_overlay
from genpose_ros.ros.qos import qos_from_name
from genpose_ros.ros.tf import TransformBroadcaster


class PoseOutputs:
    """Publishers under ``prefix``: detections, markers, hypotheses (optional), overlay (optional)."""

    def __init__(self, node: Node, prefix: str = "genpose", hypotheses: bool = False,
                 overlay: bool = True):
        qos = qos_from_name("reliable", 5)
        prefix = prefix.rstrip("/")
        self.detections = node.create_publisher(Detection3DArray, f"{prefix}/detections", qos)
        self.markers = node.create_publisher(MarkerArray, f"{prefix}/markers", qos)
        self.hypotheses = (node.create_publisher(PoseArray, f"{prefix}/hypotheses", qos)
                           if hypotheses else None)
        self.overlay = node.create_publisher(Image, f"{prefix}/overlay", qos) if overlay else None
        self.tf = TransformBroadcaster(node)

    def publish(self, header, names, categories, R, t, size, score, covariance=None,
                hypotheses=None, color=None, K=None) -> None:
        """Publish one frame's results (B instances; B may be 0: empty detections are sent too).
        ``covariance``: B (6, 6) arrays or None; ``hypotheses``: B (K, 4, 4) arrays or None."""
        self.detections.publish(detections_to_msg(header, names, categories, R, t, size, score,
                                                  covariance))
        self.markers.publish(markers_to_msg(header, names, categories, R, t, size))
        if names:
            self.tf.send_transform(instance_transforms(header, names, R, t))
        if self.hypotheses is not None and hypotheses is not None:
            self.hypotheses.publish(hypotheses_to_pose_array(header, hypotheses))
        if self.overlay is not None and color is not None:
            labels = [f"{n} {s:.2f}" for n, s in zip(names, score)]
            img = draw_overlay(color, K, R, t, size, labels, categories)
            self.overlay.publish(numpy_to_image(img, "rgb8", header))


def empty_result(n: int = 0):
    z = np.zeros
    return z((n, 3, 3), np.float32), z((n, 3), np.float32), z((n, 3), np.float32), z((n,), np.float32)
