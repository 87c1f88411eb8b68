#!/usr/bin/env bash
# Submit the whole pipeline as ONE Ray job to an existing Ray cluster, uploading this checkout:
# collection on the cluster's CPUs, then Fisher, training and evaluation as Ray Train workers (one
# DeepSpeed rank each) on its GPUs, then the report.
#
# Usage:  [RAY_ADDRESS=http://HEAD:8265] [OUT=/shared/...] [PRESET=NAME] [MODEL=/shared/...] \
#           launch/ray_pipeline_submit.sh [PIPELINE ARGS...]
# e.g.    OUT=/shared/e2wm/neo MODEL=/shared/models/gpt-neo-1.3B WORKERS=8 launch/ray_pipeline_submit.sh
#         PRESET=llama-13b MODEL=/shared/models/llama-13b WORKERS=32 OUT=/shared/e2wm/llama launch/ray_pipeline_submit.sh
#         PRESET=quickstart GPUS=0 WORKERS=2 OUT=/shared/e2wm/qs launch/ray_pipeline_submit.sh --stages collect,data
#
# Environment:
#   RAY_ADDRESS    the cluster's dashboard (Jobs API) address      (default http://127.0.0.1:8265)
#   PRESET         quickstart, table2-mini, gpt-neo-1.3b, gpt-j-6b, llama-13b  (default gpt-neo-1.3b)
#   OUT            output directory, absolute, on a filesystem every node sees: the driver writes
#                  the collection and stage records there and every Ray Train worker its part of
#                  each checkpoint. Rerun with the same OUT and arguments to resume: finished
#                  stages are skipped, an interrupted one continues. (default /shared/e2wm/pipeline)
#   MODEL          a local copy of the base model's weights, at a path every GPU node sees
#                  (paper presets; default: the preset's own model)
#   WORKERS        Ray Train workers for Fisher, training and evaluation  (default 8)
#   GPUS           1: one GPU per worker, nccl (default); 0: CPU workers on gloo
#   SUBMISSION_ID  the job's id                                    (default e2wm-pipeline-<timestamp>)
#   NO_WAIT=1      return after submitting instead of tailing the logs until the job ends
#   RAY            the ray executable                              (default ray)
# Arguments are passed through to `e2wm pipeline` (--stages ..., --set section.key=value, ...).
# The exit status is the job's: 0 when it succeeded (unless NO_WAIT=1).
set -euo pipefail

. "$(dirname "$0")/ray_submit_common.sh"   # --help, cd to the repository root, absolute, submit

PRESET="${PRESET:-gpt-neo-1.3b}"
OUT="${OUT:-/shared/e2wm/pipeline}"   # placeholder: a shared-filesystem path, visible to every node
WORKERS="${WORKERS:-8}"
SUBMISSION_ID="${SUBMISSION_ID:-e2wm-pipeline-$(date +%Y%m%d-%H%M%S)}"
absolute OUT "$OUT" "(the job runs in a copy of the checkout)"
absolute MODEL "${MODEL:-/}" "that every GPU node sees"

pipeline_args=(--preset "$PRESET" --launcher ray --address auto --workers "$WORKERS" --out "$OUT")
if [ "${GPUS:-1}" = "1" ]; then pipeline_args+=(--gpus); fi
if [ -n "${MODEL:-}" ]; then pipeline_args+=(--model "$MODEL"); fi

echo "submitting $SUBMISSION_ID ($PRESET, $WORKERS workers) to $RAY_ADDRESS, output in $OUT" >&2
# `python -m e2wm.cli` rather than the `e2wm` script: it runs the uploaded checkout. `--address auto`
# makes the driver join the cluster the job runs in; the Ray Train workers are placed by Ray on the
# nodes with free GPUs, so the driver itself (on the head node) needs none.
submit pipeline "${pipeline_args[@]}" "$@"
