#!/usr/bin/env bash
# Render, train (pose and segmentation) and benchmark on a GPU machine without network, in one
# command that fits a 10-minute call. With TRAIN=0 it measures the shipped models instead (no
# training, only the test splits rendered: a few minutes). Results land in $OUT (8 files, each
# < 16 MiB; with TRAIN=0 the first two and pose_log.jsonl are not there):
#   genpose_model.pt   pose model (EMA weights; `genpose bench --checkpoint` / the nodes load it)
#   maskrcnn_light.pt  segmentation weights (fp16)
#   bench.json, bench.md  `genpose bench --device $DEVICE` on the rendered test split
#   seg_eval.json      `genpose eval --task segmentation`: mask AP, confusion, latency
#   pose_log.jsonl     pose training losses and validation curve
#   logs.tgz           pose / segmentation / render logs and TensorBoard scalars
#   run.log            everything this script printed
#
# Here (with network), once:   scripts/fetch_gpu_wheels.sh        -> .whl/ (trimesh, embreex, fpsample)
# There, with .whl carried:    OUT=/path/to/results scripts/gpu_run.sh
#
# The pose model trains on scenes rendered while it trains (--stream-workers; their mixture of
# distributions is POSE_CONFIG's stream_mix); the segmentation model on splits rendered first with
# every core (standard, wide and near scenes), fine-tuned from the shipped RGB-D weights; both
# share the GPU. Settings (environment):
#   TRAIN=1             0: no training; bench, segmenter and pipeline on models/genpose_light.pt and
#                       models/maskrcnn_light.pt (the GPU numbers of the shipped models)
#   BUDGET=400          pose training seconds (render warm-up included); SEG_BUDGET (default BUDGET)
#   DEVICE=cuda         training and benchmark device
#   RENDER_WORKERS      render processes feeding the pose training (default: cores - 5, at least 1)
#   TRAIN_SCENES=600 VAL_SCENES=25 TEST_SCENES=50 WIDE_SCENES=50 (x4 views), TEST_SEQUENCES=10 x
#                       SEQ_FRAMES=30: the splits of docs/data.md (same seeds, so the same frames)
#   SEG_WIDE_SCENES=150 SEG_CLOSE_SCENES=75 (x4 views): wide and near scenes (seeds 103, 111 as
#                       train_wide_i, train_close) the segmentation model trains on beside `train`
#   POSE_CONFIG=config/train_gpu.yaml; POSE_ARGS, SEG_ARGS (default: --workers 2 --batch-size 8
#                       --init models/maskrcnn_light.pt), BENCH_ARGS, SEG_EVAL_ARGS: extra flags
#   PIPELINE_FRAMES=50  test frames run through segmenter + pose stage in one process (their
#                       per-frame time bounds the node graph's rate on this machine; run.log)
#   WHEELS=.whl         wheels installed into /tmp/site (none there: the installed packages are used)
#   WORK=/tmp/genpose_gpu  scratch folder (data, runs); PYTHON=python3
#   DEADLINE=570        seconds after the start: a step still running then is stopped and what
#                       exists is collected (a call ends at 600 s; the models reach $OUT as soon
#                       as they are trained)
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
: "${OUT:?set OUT to the results folder}"
PY=${PYTHON:-python3}
WORK=${WORK:-/tmp/genpose_gpu}
DEVICE=${DEVICE:-cuda}
BUDGET=${BUDGET:-400}
SEG_BUDGET=${SEG_BUDGET:-$BUDGET}
NPROC=$(nproc)
RENDER_WORKERS=${RENDER_WORKERS:-$(( NPROC > 6 ? NPROC - 5 : 1 ))}
TRAIN_SCENES=${TRAIN_SCENES:-600}
VAL_SCENES=${VAL_SCENES:-25}
TEST_SCENES=${TEST_SCENES:-50}
TEST_SEQUENCES=${TEST_SEQUENCES:-10}
WIDE_SCENES=${WIDE_SCENES:-50}
SEG_WIDE_SCENES=${SEG_WIDE_SCENES:-150}
SEG_CLOSE_SCENES=${SEG_CLOSE_SCENES:-75}
SEQ_FRAMES=${SEQ_FRAMES:-30}
POSE_CONFIG=${POSE_CONFIG:-config/train_gpu.yaml}
WHEELS=${WHEELS:-.whl}
DEADLINE=${DEADLINE:-570}
TRAIN=${TRAIN:-1}
POSE_MODEL=$WORK/pose/model.pt
SEG_MODEL=$WORK/seg/maskrcnn_light.pt
if [ "$TRAIN" = 0 ]; then POSE_MODEL=models/genpose_light.pt; SEG_MODEL=models/maskrcnn_light.pt; fi
export PYTHONUNBUFFERED=1

elapsed() { echo "[gpu_run $(( SECONDS ))s] $*"; }
genpose() {  # stopped (SIGINT, then SIGKILL) at DEADLINE; its lines to run.log (fd 3), not to a redirect
    local left=$(( DEADLINE - SECONDS )) rc=0
    if [ "$left" -le 5 ]; then elapsed "DEADLINE ${DEADLINE}s reached: not started: genpose $1" >&3; return 124; fi
    timeout --signal=INT --kill-after=20 "$left" "$PY" -m genpose_ros.cli "$@" || rc=$?
    case $rc in 124|137) elapsed "DEADLINE ${DEADLINE}s reached: stopped: genpose $*" >&3 ;; esac
    return "$rc"
}

install_wheels() {
    if compgen -G "$WHEELS/*.whl" > /dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site "$WHEELS"/*.whl || return 1
        export PYTHONPATH="$REPO:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    else
        echo "no $WHEELS/*.whl: using the packages already installed"
        export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
    fi
    "$PY" -c "import torch, trimesh, embreex, cv2, genpose_ros; print('torch', torch.__version__, \
'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
}

seg_split() {  # in render (its gen flags): the segmentation model's training split of distribution $1, $2 scenes, seed $3
    [ "$2" -gt 0 ] || return 0
    genpose "${gen[@]}" --seed "$3" --out "$WORK/data/train_$1" --split train --scenes "$2" \
        --views-per-scene 4 --distribution "$1"
}

render() {  # the splits of docs/data.md, JSON labels only (TRAIN=0: the test splits only)
    local gen=(data generate --seed 0 --workers "$NPROC" --no-pickle)
    if [ "$TRAIN" != 0 ]; then
        genpose "${gen[@]}" --out "$WORK/data/train" --split train --scenes "$TRAIN_SCENES" --views-per-scene 4 || return 1
        genpose "${gen[@]}" --out "$WORK/data/val" --split val --scenes "$VAL_SCENES" --views-per-scene 4 || return 1
        seg_split wide "$SEG_WIDE_SCENES" 103 && seg_split close "$SEG_CLOSE_SCENES" 111 || return 1
    fi
    genpose "${gen[@]}" --out "$WORK/data/test" --split test --scenes "$TEST_SCENES" --views-per-scene 4 || return 1
    if [ "$TEST_SEQUENCES" -gt 0 ]; then
        genpose "${gen[@]}" --out "$WORK/data/test_seq" --split test --sequences "$TEST_SEQUENCES" \
            --frames "$SEQ_FRAMES" || return 1
    fi
    if [ "$WIDE_SCENES" -gt 0 ]; then  # the robustness split; bench reads <test>_wide
        genpose "${gen[@]}" --out "$WORK/data/test_wide" --split test --scenes "$WIDE_SCENES" \
            --views-per-scene 4 --distribution wide || return 1
    fi
}

train() {  # pose (streamed scenes) in the background, segmentation beside it on the same GPU
    # shellcheck disable=SC2086
    genpose train --out "$WORK/pose" --val "$WORK/data/val" --config "$POSE_CONFIG" --device "$DEVICE" \
        --stream-workers "$RENDER_WORKERS" --time-budget "$BUDGET" ${POSE_ARGS:-} > "$WORK/pose.log" 2>&1 &
    local pose_pid=$! seg_rc=0 pose_rc=0 seg_data=("$WORK/data/train")
    [ "$SEG_WIDE_SCENES" -gt 0 ] && seg_data+=("$WORK/data/train_wide")
    [ "$SEG_CLOSE_SCENES" -gt 0 ] && seg_data+=("$WORK/data/train_close")
    # shellcheck disable=SC2086
    genpose train --task segmentation --data "${seg_data[@]}" --val "$WORK/data/val" --out "$WORK/seg" \
        --device "$DEVICE" --time-budget "$SEG_BUDGET" ${SEG_ARGS---workers 2 --batch-size 8 --init models/maskrcnn_light.pt} \
        > "$WORK/seg.log" 2>&1 || seg_rc=$?
    elapsed "segmentation training exited $seg_rc"
    wait "$pose_pid" || pose_rc=$?
    elapsed "pose training exited $pose_rc"
    tail -n 3 "$WORK/pose.log" | tr '\r' '\n' | tail -n 3
    tail -n 12 "$WORK/seg.log" | tr '\r' '\n' | tail -n 12
    [ "$seg_rc" -eq 0 ] && [ "$pose_rc" -eq 0 ]
}

bench() {
    local logs=()
    [ "$TRAIN" != 0 ] && logs=(--logs "stream=$WORK/pose/log.jsonl")
    # shellcheck disable=SC2086
    genpose bench --device "$DEVICE" --data "$WORK/data/test" --checkpoint "$POSE_MODEL" \
        --json "$OUT/bench.json" --images "$WORK/images" "${logs[@]}" ${BENCH_ARGS:-} || return 1
    # shellcheck disable=SC2086
    genpose eval --task segmentation --device "$DEVICE" --data "$WORK/data/test" \
        --checkpoint "$SEG_MODEL" --out "$WORK/seg_eval" ${SEG_EVAL_ARGS:-} &&
    cp "$WORK/seg_eval/seg_eval.json" "$OUT/seg_eval.json" || return 1
    # the segmenter and the pose stage, frame after frame on this device: what bounds the graph's rate
    genpose eval --device "$DEVICE" --data "$WORK/data/test" --masks "$SEG_MODEL" \
        --checkpoint "$POSE_MODEL" --max-frames "${PIPELINE_FRAMES:-50}" --out "$WORK/pipeline" &&
    grep -E "^(Masks:|[0-9]+ instances)" "$WORK/pipeline/eval.md"
}

keep_models() {
    cp "$WORK/pose/model.pt" "$OUT/genpose_model.pt" 2> /dev/null
    cp "$WORK/seg/maskrcnn_light.pt" "$OUT/maskrcnn_light.pt" 2> /dev/null
    cp "$WORK/pose/log.jsonl" "$OUT/pose_log.jsonl" 2> /dev/null
    return 0
}

collect() {  # whatever exists, also after a failure
    keep_models
    (cd "$WORK" && tar czf "$OUT/logs.tgz" --ignore-failed-read ./*.log pose/tb images pipeline/eval.md \
        data/*/dataset_card.md 2> /dev/null)
    for f in "$OUT"/*; do
        [ "$(stat -c %s "$f")" -le $(( 16 * 1024 * 1024 )) ] || echo "warning: $f is over 16 MiB and will not come back"
    done
    ls -l "$OUT"
}

main() {
    exec 3>&1
    mkdir -p "$OUT" "$WORK"
    if [ "$TRAIN" = 0 ]; then
        elapsed "start: $NPROC cores, device $DEVICE, no training: $POSE_MODEL, $SEG_MODEL, deadline ${DEADLINE}s"
    else
        elapsed "start: $NPROC cores, device $DEVICE, pose budget ${BUDGET}s, segmentation ${SEG_BUDGET}s, deadline ${DEADLINE}s"
    fi
    local rc=0
    install_wheels && elapsed "packages ready" &&
    render && elapsed "rendered" &&
    { [ "$TRAIN" = 0 ] || { train && keep_models && elapsed "trained"; }; } &&
    bench && elapsed "benchmarked" || rc=1
    collect
    elapsed "done (exit $rc)"
    return $rc
}

mkdir -p "$OUT"
main 2>&1 | tee "$OUT/run.log"
