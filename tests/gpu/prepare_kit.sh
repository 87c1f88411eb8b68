#!/usr/bin/env bash
# Prepare, on a machine that reaches the package index, the wheels that the GPU check machine lacks, for its
# Python 3.12 on x86_64 (manylinux): DeepSpeed (sdist only on PyPI: built here as a pure-Python wheel with no
# prebuilt ops; its ops JIT-build there), DeepSpeed's needs that machine has not (hjson, pydantic and its
# parts), transformers at e2wm's version (that machine has 5.17; e2wm needs >= 5.23, and its beam search fails
# on 5.17), and peft at e2wm's version (that machine's is unknown). run_gpu_checks.sh keeps the machine's own
# copy of any package that is not older than the kit's. Versions are this environment's, so the GPU machine
# runs what e2wm is tested with, torch excepted (2.11 there). numpy, ninja, py-cpuinfo, msgpack, einops, psutil,
# accelerate, safetensors, tokenizers, huggingface-hub are there already; ray, datasets and rouge-score are not
# needed by the checks.
#
# usage: tests/gpu/prepare_kit.sh [KIT_DIR]     (default: .gpu-kit at the repo root; emptied first)
# then, on the GPU machine: tests/gpu/run_gpu_checks.sh OUT_DIR   (it installs KIT_DIR's wheels with --target)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
kit=${1:-$root/.gpu-kit}
py=${PYTHON:-python3}
limit_mib=64

version() {   # NAME -> its version in this environment, or an error line
    "$py" -c 'import importlib.metadata as m, sys
try:
    print(m.version(sys.argv[1]))
except m.PackageNotFoundError:
    sys.exit(f"prepare_kit: {sys.argv[1]} is not installed here; activate the environment e2wm runs in")' "$1"
}

ds=$(version deepspeed)
pinned=()
for name in hjson pydantic pydantic-core annotated-types typing-inspection typing-extensions peft transformers; do
    pinned+=("$name==$(version "$name")")
done
rm -rf "$kit"
mkdir -p "$kit"
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$kit" "${pinned[@]}"
# DS_BUILD_OPS=0: no op compiled here (they would be for this machine's Python and CPU); from the sdist, not a
# cached wheel, so every machine builds the same thing; --no-build-isolation: the build reads this torch
DS_BUILD_OPS=0 "$py" -m pip wheel -q --no-deps --no-build-isolation --no-cache-dir -w "$kit" "deepspeed==$ds"

"$py" - "$kit" "$limit_mib" <<'EOF'
import sys
from pathlib import Path

kit, limit = Path(sys.argv[1]), int(sys.argv[2])
wheels = sorted(kit.glob("*.whl"))
names = [w.name.split("-")[0].lower().replace("_", "-") for w in wheels]
dups = sorted({n for n in names if names.count(n) > 1})
if dups:
    sys.exit(f"prepare_kit: two wheels of {', '.join(dups)} in {kit}")
if any(not (w.name.endswith("-none-any.whl") or "-cp312-" in w.name) for w in wheels):
    sys.exit(f"prepare_kit: a wheel that is neither pure Python nor for CPython 3.12 in {kit}")
total = sum(w.stat().st_size for w in wheels)
for w in wheels:
    print(f"{w.stat().st_size / 2**20:7.2f} MiB  {w.name}")
print(f"{total / 2**20:7.2f} MiB  in all, {len(wheels)} wheels in {kit} (limit {limit} MiB)")
if total > limit * 2**20:
    sys.exit(f"prepare_kit: the wheels take {total / 2**20:.1f} MiB, over the {limit} MiB a device call carries")
EOF
