#!/usr/bin/env bash
# Download, here (with network), the wheels that scripts/gpu_run.sh installs on a GPU machine
# without network (Python 3.12, x86-64, torch / torchvision / numpy / scipy / OpenCV / tensorboard
# already there) into .whl/ (ignored by git; carry it with the call). About 16 MB.
#
#   scripts/fetch_gpu_wheels.sh            # versions pinned in requirements.txt
#
# fpsample: requirements.txt pins a release with no cp312 wheel; the GPU runs its own batched
# FPS in torch, fpsample only serves CPU tensors there, so its newest cp312 wheel is taken.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
pin() { grep -E "^$1==" requirements.txt | cut -d' ' -f1; }
PACKAGES=("$(pin trimesh)" "$(pin embreex)" "fpsample==0.3.3")
PLATFORMS=()
for n in 17 24 27 28 31 34 35; do PLATFORMS+=(--platform "manylinux_2_${n}_x86_64"); done
rm -rf .whl && mkdir -p .whl
"$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLATFORMS[@]}" --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${PACKAGES[@]}"
size=$(du -sm .whl | cut -f1)
ls -l .whl
echo "$(ls .whl | wc -l) wheels, ${size} MB in .whl/"
if [ "$size" -ge 60 ]; then echo "error: .whl/ is over the 64 MiB a call can carry" >&2; exit 1; fi
