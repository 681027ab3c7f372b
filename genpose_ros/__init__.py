"""genpose_ros: category-level 6D pose and size estimation with score-based diffusion, for ROS 2.

The package has a ROS-free core (the ``data``, ``pose``, ``segmentation`` and ``evaluation``
packages and the modules beside them: ``cli``, ``config``, ``checkpoint``, ``geometry``, ...)
that never imports ``rclpy``, and a thin ROS 2 layer in ``genpose_ros.ros`` (nodes, message
conversion, TF, launch, the demo). See docs/ARCHITECTURE.md.
"""

__version__ = "0.1.0"

CATEGORIES = ("bottle", "bowl", "camera", "can", "laptop", "mug")
"""The six NOCS categories, in the NOCS class-id order (class id = index + 1)."""
