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
# partition there. Rerun the same command to resume (training from the newest checkpoint, also with another
# hostfile: the global batch stays fixed and accumulation absorbs the change; the Fisher from its last saved
# sample).
#
# pdsh starts the ranks over ssh in sshd's environment, so this script first writes the variables they need
# to DS_ENV_FILE (`python -m e2wm.train.hosts deepspeed-env`): the venv's bin ahead of the node's PATH (ninja
# for DeepSpeed's JIT builds), HF_HOME / HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE, NCCL_* / GLOO_* / E2WM_*
# (E2WM_DIST_TIMEOUT_S: the collective timeout, default 3600 s), PYTHONPATH, and a per-node JIT cache
# TORCH_EXTENSIONS_DIR (E2WM_EXTENSIONS_DIR: a template, `{host}` = the node's hostname; default
# ${TMPDIR:-/tmp}/e2wm-torch-ext-{host}). Entries of your ~/.deepspeed_env and ./.deepspeed_env are added and
# win (e.g. NCCL_SOCKET_IFNAME=ib0).
#   MASTER_ADDR   the address the ranks meet at (default: this host's address on the interface that routes
#                 to the second host of the hostfile; not `hostname -I`'s first, which can be docker0)
#   MASTER_PORT   the rendezvous port                      (default 29500)
#   E2WM_DS_ENV_OUT  where the generated file goes         (default out/launch/deepspeed_env)
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
MASTER_ADDR="$(python -m e2wm.train.hosts master-addr "$HOSTFILE")"
ds_env="${E2WM_DS_ENV_OUT:-out/launch/deepspeed_env}"
python -m e2wm.train.hosts deepspeed-env --merge-user-files --out "$ds_env" >/dev/null
DS_ENV_FILE="$(cd "$(dirname "$ds_env")" && pwd)/$(basename "$ds_env")"   # absolute: DeepSpeed joins it to ~ and .
export DS_ENV_FILE
exec deepspeed --hostfile "$HOSTFILE" --master_addr "$MASTER_ADDR" --master_port "${MASTER_PORT:-29500}" \
    "${stage_args[@]}"
