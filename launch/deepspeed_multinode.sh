#!/bin/bash
# `e2wm train` on several nodes with the DeepSpeed launcher.
#
#   launch/deepspeed_multinode.sh HOSTFILE CONFIG [--set section.key=value ...]
#   e.g. launch/deepspeed_multinode.sh launch/hostfile.example my_train.yaml --set deepspeed.config=zero3
#
# Run it on the first host of the hostfile (it becomes the rendezvous point). Every host needs this
# checkout at the same path with its venv at .venv (or VENV), passwordless ssh from here, and `out` of the
# config on a filesystem every node sees: every rank writes its part of a checkpoint there. The launcher
# (pdsh by default) starts `python -m e2wm.train` once per slot; variables listed in ./.deepspeed_env
# (e.g. NCCL_SOCKET_IFNAME=eth0) reach every rank. Rerun the same command to resume from the newest
# checkpoint, also with another hostfile: the global batch stays fixed and accumulation absorbs the change.
set -euo pipefail
HOSTFILE="${1:?usage: $0 HOSTFILE CONFIG [--set k=v ...]}"
CONFIG="${2:?usage: $0 HOSTFILE CONFIG [--set k=v ...]}"
shift 2
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source "${VENV:-.venv}/bin/activate"
MASTER_ADDR="${MASTER_ADDR:-$(hostname -I | awk '{print $1}')}"
exec deepspeed --hostfile "$HOSTFILE" --master_addr "$MASTER_ADDR" --master_port "${MASTER_PORT:-29500}" \
    --module e2wm.train --config "$CONFIG" "$@"
