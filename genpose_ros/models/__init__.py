"""Neural networks of the pose estimator: PointNet++ encoder and the score / energy /
regression / size heads."""
from genpose_ros.models.nets import EnergyNet, PoseNet, ScoreNet
from genpose_ros.models.pointnet2 import GENPOSE_ENCODER, LIGHT_ENCODER, PointNet2Encoder

__all__ = ["PoseNet", "ScoreNet", "EnergyNet", "PointNet2Encoder", "GENPOSE_ENCODER", "LIGHT_ENCODER"]
