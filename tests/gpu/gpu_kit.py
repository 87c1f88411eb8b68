"""The GPU kit's wheels and environment, for `run_gpu_checks.sh`; imports only the standard library (and
`packaging`) at the top, since it runs before the wheels are installed.

  python3 gpu_kit.py install KIT TARGET RESULTS [--for-target]   the kit's wheels into TARGET (--target)
  python3 gpu_kit.py env RESULTS [--dry] [--kit KIT]               versions, imports, the kit's needs met

Each check writes RESULTS/NAME.json ({"check", "status": PASS/FAIL/SKIP, "why", "figures"}) and prints one
line; the exit code is 0 unless it failed.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# the platforms the GPU machine's Python 3.12 takes wheels of (its processor is x86-64)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")
HIDDEN = ("ray", "datasets", "rouge_score")   # not on the GPU machine: no check may need them


def finish(results: Path, check: str, ok: bool | None, why: str = "", **figures) -> int:
    """Write RESULTS/CHECK.json, print its line; the exit code (SKIP, ok None, is a success)."""
    status = "SKIP" if ok is None else "PASS" if ok else "FAIL"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{check}.json").write_text(json.dumps({"check": check, "status": status, "why": why,
                                                       "figures": figures}, indent=1, default=str))
    shown = "  ".join(f"{k} {_fmt(v)}" for k, v in figures.items() if v is not None and not isinstance(v, (dict, list)))
    print(f"RESULT {check}: {status}{': ' + why if why else ''}{'  |  ' + shown if shown else ''}", flush=True)
    return 0 if ok is not False else 1


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def dist_name(wheel: Path) -> tuple[str, str]:
    """(normalised distribution name, version) from a wheel's file name."""
    name, version = wheel.name.split("-")[:2]
    return name.lower().replace("_", "-").replace(".", "-"), version


def choose(wheels: list[Path], installed) -> tuple[list[Path], list[str]]:
    """The wheels to install (those whose package is missing here or older than the wheel's) and a note per
    package kept; `installed(name)` is the version present, or None. Two wheels of one package are refused."""
    from packaging.version import Version

    names = [dist_name(w)[0] for w in wheels]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise ValueError(f"two wheels of {', '.join(dups)}: keep one of each")
    chosen, kept = [], []
    for w in wheels:
        name, version = dist_name(w)
        have = installed(name)
        if have is None or Version(have) < Version(version):
            chosen.append(w)
        else:
            kept.append(f"{name} {have} (kit {version})")
    return chosen, kept


def _installed(name: str) -> str | None:
    import importlib.metadata as md
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def install(kit: Path, target: Path, results: Path, for_target: bool) -> int:
    """Install the kit's wheels into `target`. `for_target` (dry mode, on another machine): install all of them
    as for the GPU machine's Python 3.12 x86_64, which checks the set, not this machine's packages."""
    wheels = sorted(kit.glob("*.whl"))
    size = sum(w.stat().st_size for w in wheels) / 2**20
    if not wheels:
        if for_target:
            return finish(results, "kit", None, f"no wheels in {kit} here (tests/gpu/prepare_kit.sh makes them)")
        return finish(results, "kit", False, f"no wheels in {kit}: run tests/gpu/prepare_kit.sh on a machine that "
                      "reaches the package index, and bring the folder along")
    try:
        chosen, kept = choose(wheels, (lambda _: None) if for_target else _installed)
    except ValueError as e:
        return finish(results, "kit", False, f"{kit}: {e}", kit_mib=round(size, 2))
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
           "--no-cache-dir", "--disable-pip-version-check", "--upgrade", "--target", str(target)]
    if for_target:
        cmd += ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp"]
        cmd += [f"--platform={p}" for p in PLATFORMS]
    if chosen:
        p = subprocess.run(cmd + [str(w) for w in chosen], capture_output=True, text=True)
        if p.returncode:
            said = (p.stderr or p.stdout).strip()[-600:]
            return finish(results, "kit", False, f"pip install --target failed: {said}", kit_mib=round(size, 2))
    return finish(results, "kit", True, "" if not kept else f"kept this machine's {', '.join(kept)}",
                  kit_mib=round(size, 2), installed=len(chosen), kept=len(kept),
                  wheels=[w.name for w in chosen])


def unmet_needs(names: list[str]) -> list[str]:
    """The needs (Requires-Dist, extras left out) of the distributions `names` that this Python does not meet."""
    import importlib.metadata as md

    from packaging.requirements import Requirement
    out = []
    for name in names:
        try:
            needs = md.requires(name) or []
        except md.PackageNotFoundError:
            out.append(f"{name} is not importable")
            continue
        for text in needs:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            have = _installed(req.name)
            if have is None or not req.specifier.contains(have, prereleases=True):
                out.append(f"{name} needs {req}, found {have or 'none'}")
    return out


def env(results: Path, dry: bool, kit: Path | None) -> int:
    """Versions, device, the kit's needs met, e2wm's modules importable without the packages that machine
    lacks; what the CPU-Adam JIT build needs (a note: zero3_offload is the check that needs it)."""
    import importlib
    import shutil
    import sysconfig

    figures, problems, notes = {"python": sys.version.split()[0]}, [], []
    for name in ("torch", "transformers", "peft", "deepspeed", "accelerate", "pydantic", "typing-extensions",
                 "huggingface-hub", "safetensors", "tokenizers", "numpy"):
        figures[name] = _installed(name) or "missing"
    for module in ("torch", "transformers", "peft", "deepspeed", "e2wm.cli", "e2wm.train.recipe",
                   "e2wm.train.fisher_run", "e2wm.bench.eval", "e2wm.eval.harness"):
        try:
            importlib.import_module(module)
        except Exception as e:   # noqa: BLE001 - any failure to import is the finding
            problems.append(f"import {module}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    used = [m for m in HIDDEN if m in sys.modules]
    if used:
        problems.append(f"e2wm's modules imported {', '.join(used)}, which the GPU machine lacks")
    if kit is not None and kit.is_dir():
        problems += unmet_needs(sorted({dist_name(w)[0] for w in kit.glob("*.whl")}))
    if "torch" in sys.modules and "deepspeed" in sys.modules:
        import torch
        from deepspeed.accelerator import get_accelerator
        figures["cuda"] = torch.version.cuda
        figures["device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
        figures["gpus"] = torch.cuda.device_count()
        figures["accelerator"] = get_accelerator().device_name()
        if not dry and figures["accelerator"] != "cuda":
            problems.append(f"DeepSpeed's accelerator is {figures['accelerator']}, not cuda")
        if not dry and figures["gpus"] > 1:
            notes.append(f"{figures['gpus']} GPUs: the checks still use one")
    header = Path(sysconfig.get_paths()["include"]) / "Python.h"
    figures["jit_ready"] = header.is_file() and bool(shutil.which("c++")) and bool(shutil.which("ninja"))
    if not figures["jit_ready"]:
        notes.append(f"the CPU-Adam JIT build (zero3_offload) needs {header}, c++ and ninja: "
                     f"Python.h {'found' if header.is_file() else 'missing'}, c++ {shutil.which('c++') or 'missing'}, "
                     f"ninja {shutil.which('ninja') or 'missing'}")
    try:
        from dataclasses import fields

        from e2wm.train.fisher_config import FisherConfig
        if "precision" not in {f.name for f in fields(FisherConfig)}:
            notes.append("FisherConfig has no `precision` field: the fisher check (--precision bf16) will fail")
    except Exception:   # noqa: BLE001 - reported as an import problem above
        pass
    return finish(results, "env", not problems, "; ".join(problems + notes), **figures)


def main(argv: list[str]) -> int:
    if argv[:1] == ["install"] and len(argv) >= 4:
        return install(Path(argv[1]), Path(argv[2]), Path(argv[3]), "--for-target" in argv[4:])
    if argv[:1] == ["env"] and len(argv) >= 2:
        kit = Path(argv[argv.index("--kit") + 1]) if "--kit" in argv else None
        return env(Path(argv[1]), "--dry" in argv, kit)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    os.environ.setdefault("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    sys.exit(main(sys.argv[1:]))
