# launch/ray_submit_common.sh: what launch/ray_job_submit.sh and launch/ray_pipeline_submit.sh share;
# each sources it first, as `. "$(dirname "$0")/ray_submit_common.sh"`.
# It answers -h/--help with the sourcing script's header, moves to the repository root (working_dir in
# runtime_env.yaml is relative to the current directory) and sets RAY_ADDRESS and RAY's defaults;
# `absolute NAME VALUE WHY` stops unless VALUE is an absolute path, and `submit E2WM ARGS...` runs
# `python -m e2wm.cli E2WM ARGS...` as the job SUBMISSION_ID (tailing it unless NO_WAIT=1).

case "${1:-}" in
  -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"; exit 0 ;;
esac

cd "$(dirname "$0")/.."

RAY_ADDRESS="${RAY_ADDRESS:-http://127.0.0.1:8265}"
RAY="${RAY:-ray}"

absolute() {
  case "$2" in
    /*) ;;
    *) echo "$(basename "$0"): $1 must be an absolute path $3: $2" >&2
       exit 2 ;;
  esac
}

submit() {
  local wait_flag=()
  if [ "${NO_WAIT:-0}" = "1" ]; then wait_flag=(--no-wait); fi
  exec "$RAY" job submit \
    --address "$RAY_ADDRESS" \
    --runtime-env launch/runtime_env.yaml \
    --submission-id "$SUBMISSION_ID" \
    ${wait_flag[@]+"${wait_flag[@]}"} \
    -- python -m e2wm.cli "$@"
}
