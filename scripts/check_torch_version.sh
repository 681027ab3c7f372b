#!/usr/bin/env bash
# Run the ROS-free tests (the GPU script's rehearsal included) with another torch / torchvision
# than the pinned ones, on this CPU: a GPU machine's image may hold older ones (torch 2.11.0 and
# torchvision 0.26.0 on the lent H100 / H200), and scripts/gpu_run.sh uses what is installed there.
# The venv holds only the ML packages of requirements.txt (pinned) beside the two given versions.
#
#   scripts/check_torch_version.sh 2.11.0 0.26.0      # ~4 min of downloads once, ~5 min of tests
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH=${1:?usage: scripts/check_torch_version.sh TORCH_VERSION TORCHVISION_VERSION}
VISION=${2:?usage: scripts/check_torch_version.sh TORCH_VERSION TORCHVISION_VERSION}
VENV=${VENV:-/tmp/genpose_torch_$TORCH}
pins=()
for name in numpy scipy opencv-python-headless PyYAML tqdm trimesh embreex fpsample safetensors matplotlib \
        tensorboard pytest pyrealsense2; do  # pyrealsense2: the simulated D435 some ROS-free tests render with
    pins+=("$(grep -iE "^$name==" requirements.txt | cut -d' ' -f1)")
done
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q "torch==$TORCH" "torchvision==$VISION" "${pins[@]}"
"$VENV/bin/python" -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
mapfile -t tests < <(grep -L -E "rclpy|genpose_ros\.ros|colcon|soak" test/test_*.py)  # soak.py runs the nodes
PATH="$VENV/bin:$PATH" PYTHONPATH="$PWD" python -m pytest -q -p no:cacheprovider "${tests[@]}"
