"""Pose estimation: PointNet++ score/energy networks, the VE-SDE, samplers, the estimator and training."""
