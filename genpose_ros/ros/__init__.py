"""The ROS 2 layer of genpose_ros: nodes, message conversion, TF, time synchronisation, launch.

Only modules in this package import ``rclpy`` and ROS message packages.
"""
