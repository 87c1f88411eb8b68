#!/bin/bash
# The Fisher and training stages on several nodes with the DeepSpeed launcher (one rank per slot).
#
#   launch/deepspeed_multinode.sh HOSTFILE [train] CONFIG [--set section.key=value ...]
#   launch/deepspeed_multinode.sh HOSTFILE fisher --model PATH --out DIR [FISHER ARGS...]
#   e.g. launch/deepspeed_multinode.sh launch/hostfile.example fisher --model /shared/models/gpt-j-6b \
#            --corpus /shared/pile-val.jsonl --max-samples 20000 --max-length 800 --zero-stage 3 --out /shared/e2wm/fisher-6b
#        launch/deepspeed_multinode.sh launch/hostfile.example my_train.yaml --set deepspeed.config=zero3
#
# The first form runs `python -m e2wm.train --config CONFIG` (what `e2wm train` does, on every rank); the
# second `python -m e2wm.train.fisher_run` (what `e2wm fisher` does; see `e2wm fisher --help` for its flags).
# For EWC-LoRA set `regularizer.fisher` in the train config to the Fisher's --out. Relative paths (HOSTFILE,
# CONFIG, ...) are taken from the repository root, where the script runs.
#
# Run it on the first host of the hostfile (it becomes the rendezvous point). Every host needs this
# checkout at the same path with its venv at .venv (or VENV), passwordless ssh from here, and every output
# folder (the Fisher's --out, the config's `out`) on a filesystem every node sees: every rank writes its
# partition there. The launcher (pdsh by default) starts the module once per slot; variables listed in
# ./.deepspeed_env (e.g. NCCL_SOCKET_IFNAME=eth0) reach every rank. Rerun the same command to resume
# (training from the newest checkpoint, also with another hostfile: the global batch stays fixed and
# accumulation absorbs the change; the Fisher from its last saved sample).
#   MASTER_ADDR   this host's address the ranks meet at   (default: the first address of `hostname -I`)
#   MASTER_PORT   the rendezvous port                      (default 29500)
set -euo pipefail
usage="usage: $0 HOSTFILE [train] CONFIG [--set k=v ...] | HOSTFILE fisher FISHER ARGS..."
HOSTFILE="${1:?$usage}"
shift
case "${1:?$usage}" in
  fisher) shift; stage_args=(--module e2wm.train.fisher_run "$@") ;;
  train) CONFIG="${2:?$usage}"; shift 2; stage_args=(--module e2wm.train --config "$CONFIG" "$@") ;;
  *) CONFIG="$1"; shift; stage_args=(--module e2wm.train --config "$CONFIG" "$@") ;;
esac
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source "${VENV:-.venv}/bin/activate"
MASTER_ADDR="${MASTER_ADDR:-$(hostname -I | awk '{print $1}')}"
exec deepspeed --hostfile "$HOSTFILE" --master_addr "$MASTER_ADDR" --master_port "${MASTER_PORT:-29500}" \
    "${stage_args[@]}"
