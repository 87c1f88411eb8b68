#!/usr/bin/env bash
# Submit `e2wm collect` as a Ray job to an existing Ray cluster, uploading this checkout.
# (The whole pipeline as one job: launch/ray_pipeline_submit.sh.)
#
# Usage:  [RAY_ADDRESS=http://HEAD:8265] [OUT=/shared/...] launch/ray_job_submit.sh [COLLECT ARGS...]
# e.g.    OUT=/shared/e2wm/run1 launch/ray_job_submit.sh --workers 64 --plans 20000 --explorations 20000
#
# Environment:
#   RAY_ADDRESS    the cluster's dashboard (Jobs API) address    (default http://127.0.0.1:8265)
#   OUT            output directory, absolute; MUST be on a filesystem visible to every node: the
#                  job's driver writes the shards on the node it runs on (the head node, unless
#                  entrypoint resources or RAY_JOB_ALLOW_DRIVER_ON_WORKER_NODES=1 move it), never
#                  on this machine. Rerun with the same OUT and arguments to resume: finished
#                  shards are skipped.                           (default /shared/e2wm/collect)
#   SUBMISSION_ID  the job's id                                  (default e2wm-collect-<timestamp>)
#   NO_WAIT=1      return after submitting instead of tailing the logs until the job ends
#   RAY            the ray executable                            (default ray)
# Arguments are passed through to `e2wm collect` (--config FILE, --workers N, --plans N, ...);
# a --config path is read by the driver, relative to the uploaded checkout.
# The exit status is the job's: 0 when it succeeded (unless NO_WAIT=1).
set -euo pipefail

. "$(dirname "$0")/ray_submit_common.sh"   # --help, cd to the repository root, absolute, submit

OUT="${OUT:-/shared/e2wm/collect}"   # placeholder: a shared-filesystem path, visible to every node
SUBMISSION_ID="${SUBMISSION_ID:-e2wm-collect-$(date +%Y%m%d-%H%M%S)}"
absolute OUT "$OUT" "(the job runs in a copy of the checkout)"

echo "submitting $SUBMISSION_ID to $RAY_ADDRESS, output in $OUT" >&2
# `python -m e2wm.cli` rather than the `e2wm` script: it runs the uploaded checkout, and works on
# clusters where e2wm is not installed (see the pip: section of runtime_env.yaml).
# `--address auto` makes the driver join the cluster the job runs in.
submit collect --address auto --out "$OUT" "$@"
