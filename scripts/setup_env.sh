#!/usr/bin/env bash
# One-command, idempotent set-up of the genpose_ros Python environment on a machine without
# ROS 2 apt packages: a Python 3.11 venv (.venv) with the pinned requirements, the ROS 2 Kilted
# wheels, the interface packages that the registry lacks (tf2_msgs, vision_msgs) generated with
# rosidl, and this package installed in editable mode. A second run reuses what is there.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${GENPOSE_VENV:-$root/.venv}
py=${PYTHON:-python3.11}
cd "$root"
log() { printf '[setup] %s\n' "$*" >&2; }
start=$(date +%s)

# 1. librealsense needs libusb at run time.
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
  if [ "$(id -u)" = 0 ]; then
    log "installing libusb-1.0-0 (Debian)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libusb-1.0-0) >/dev/null
  else
    log "WARNING: libusb-1.0-0 missing and not root: pyrealsense2 will not load (sudo apt-get install libusb-1.0-0)"
  fi
fi

# 2. The venv with pinned requirements (re-installed only when requirements.txt changes).
[ -x "$venv/bin/python" ] || { log "creating $venv"; "$py" -m venv "$venv"; }
# shellcheck disable=SC1091
. "$venv/bin/activate"
req_hash=$(sha256sum requirements.txt | cut -c1-16)
if [ "$(cat "$venv/.genpose-req" 2>/dev/null)" != "$req_hash" ]; then
  log "installing pinned requirements (torch, torchvision, ROS 2 Kilted wheels, ...)"
  python -m pip install -q --disable-pip-version-check -r requirements.txt \
    2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
  echo "$req_hash" > "$venv/.genpose-req"
fi

# 3. Interface packages missing from the registry, generated with rosidl into the venv.
iface_hash=$(find interfaces -type f | sort | xargs sha256sum | sha256sum | cut -c1-16)
if [ "$(cat "$venv/.genpose-ifaces" 2>/dev/null)" != "$iface_hash" ]; then
  python scripts/fix_ros_wheel_cmake.py "$venv"
  export AMENT_PREFIX_PATH=$venv CMAKE_PREFIX_PATH=$venv
  for pkg in tf2_msgs vision_msgs; do
    log "generating interface package $pkg"
    build=$venv/build-interfaces/$pkg; mkdir -p "$build"
    cmake -S "interfaces/$pkg" -B "$build" -DCMAKE_INSTALL_PREFIX="$venv" \
      -DPython3_EXECUTABLE="$venv/bin/python" -DBUILD_TESTING=OFF -Wno-dev >"$build.log" 2>&1 \
      && cmake --build "$build" -j2 >>"$build.log" 2>&1 && cmake --install "$build" >>"$build.log" 2>&1 \
      || { log "building $pkg failed, see $build.log"; tail -20 "$build.log" >&2; exit 1; }
  done
  echo "$iface_hash" > "$venv/.genpose-ifaces"
fi

# 4. This package, editable, with its console scripts.
if ! python -c 'import genpose_ros' 2>/dev/null || [ ! -x "$venv/bin/genpose" ]; then
  log "installing genpose_ros (editable)"
  python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
fi
log "environment ready in $(( $(date +%s) - start )) s: $venv ($(du -sh "$venv" | cut -f1))"
