#!/usr/bin/env bash
# Regenerates requirements.txt (the lock) from the current venv: every distribution pip installed,
# pinned. Distributions that the ROS wheels unpack themselves (rclpy, *_msgs, rosidl_*) are
# installed by their ros-* wheels and are left out, and so are the generated interface packages.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
python - <<'PY' > requirements.txt
import importlib.metadata as md
pins = sorted(
    f"{d.metadata['Name']}=={d.version}"
    for d in md.distributions()
    if (d.read_text("INSTALLER") or "").strip() == "pip" and d.metadata["Name"] != "genpose_ros"
)
print("\n".join(pins))
PY
echo "requirements.txt: $(wc -l < requirements.txt) pins"
