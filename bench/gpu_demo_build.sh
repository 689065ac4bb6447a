#!/usr/bin/env bash
# The demo model's pre-training (stage A, B1, B2) on a GPU machine with many cores, for a task lent one:
# stage A for 10,000 steps with the part head over (category, part) pairs (on two cores: 75-88 minutes; it
# learned every attribute there, part 0.71 and mark 0.90 on fresh photos), the photos rendered by worker
# processes (`trainer.prefetch`), then B1 and B2 as the shipped build has them. The RRG stage and the export
# run back on the build machine, where llama.cpp's converter is: see "finish" below.
#
# Run from the repo root: `bash bench/gpu_demo_build.sh RUN [key=value ...]` (RUN: a git-ignored folder in the
# repo, e.g. .gpu-run, so that a second call on the same warm machine resumes; extra overrides as for
# `rrg-train demo-model`). It stops itself after $LIMIT seconds (default 500: the device tool allows 600 a
# call) and packs what finished into $OUT (the device tool's folder, else RUN/out) as run.tar.part-*
# (15 MB each: the tool brings back at most 8 files of 16 MiB); call it again to go on where it stopped.
#
# finish, on the build machine: `mkdir -p RUN && cat OUT/run.tar.part-* | tar xf - -C RUN`, then
# `rrg-train demo-model --out RUN` with the overrides this script printed: the finished phases are skipped
# (`pretrain` returns a complete `hf/` as it is) and the RRG stage, the export and `build.json` follow.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
RUN=${1:?usage: bench/gpu_demo_build.sh RUN [key=value ...]}
shift
WORKERS=${WORKERS:-$(( $(nproc) > 3 ? $(nproc) - 2 : 1 ))}
LIMIT=${LIMIT:-500}
PACK=${OUT:-$RUN/out}
DEVICE=$("$PY" -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OVERRIDES=(
  "pretrain.device=$DEVICE" "pretrain.workers=$WORKERS" "pretrain.vision.workers=$WORKERS"
  pretrain.vision.part_by_category=true pretrain.vision.steps=10000 pretrain.vision.held_out=512
  pretrain.vision.log_every=250 "listener.device=$DEVICE" "listener.workers=$WORKERS" "$@"
)
echo "overrides: ${OVERRIDES[*]}"
mkdir -p "$RUN" "$PACK"
set +e
timeout --signal=INT "$LIMIT" "$PY" -m trainer.cli demo-model --out "$RUN" --pretrain-only "${OVERRIDES[@]}"
status=$?
set -e
[ "$status" = 0 ] && echo "pre-training finished" || echo "stopped (exit $status): call again to resume"
rm -f "$PACK"/run.tar.part-*
tar cf - -C "$RUN" --exclude=checkpoint --exclude=checkpoint.tmp --exclude=init --exclude=hf.tmp pretrain $( [ -d "$RUN/listener" ] && echo listener ) \
  | split -b 15m - "$PACK/run.tar.part-"
ls -la "$PACK"
