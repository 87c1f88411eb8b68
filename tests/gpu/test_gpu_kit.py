"""The GPU kit (tests/gpu/) on a CPU: `run_gpu_checks.sh --dry` (tiny shapes, gloo, ray/datasets/rouge-score
hidden as on the GPU machine) passes its own checks; a failing check fails the run; the wheels a machine already
has at the kit's version or newer are left to it. (Not marked `gpu`: it runs on every CPU box, CI included.)"""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "gpu" / "run_gpu_checks.sh"
CHECKS = ["kit", "env", "model", "load_zero3", "fisher_bf16_zero3", "train_gc", "resume", "eval", "zero3_offload"]


def _run(out: Path, *args: str, env: dict | None = None, timeout: int = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env or {}),   # the script runs `python3`: this interpreter's
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
           "E2WM_GPU_WORK": str(out.parent / "work")}
    return subprocess.run(["bash", str(SCRIPT), str(out), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.mark.slow
def test_the_dry_run_passes_its_own_checks(tmp_path):
    """About 70-90 s on 2 free cores (13 Python starts: the checks, torchrun's and the deepspeed launcher's)."""
    p = _run(tmp_path / "out", "--dry", timeout=2400)
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    checks = summary["checks"]
    assert summary["dry"] and summary["failed"] == [] and list(checks) == CHECKS
    assert all(c["status"] == "PASS" for n, c in checks.items() if n != "kit")   # kit: SKIP without .gpu-kit
    assert checks["load_zero3"]["figures"]["partitioned"] is True
    assert checks["fisher_bf16_zero3"]["figures"]["precision"] == "bf16"
    assert checks["fisher_bf16_zero3"]["figures"]["load"] == "partitioned"
    resumed = checks["resume"]["figures"]
    assert resumed["resumed_steps"] == 2 and resumed["max_rel_diff"] <= 1e-4
    assert checks["zero3_offload"]["figures"]["cpu_adam_s"] >= 0 and checks["eval"]["figures"]["mc_items_per_s"] > 0
    log = (tmp_path / "out" / "checks.log").read_text()
    assert all(f"PASS {n} " in log for n in CHECKS if n != "kit") and "all checks passed" in log
    assert {f.name for f in (tmp_path / "out").iterdir()} == {"checks.log", "steps.log", "summary.json"}


def test_a_failing_check_fails_the_run(tmp_path):
    """Two wheels of one package in the kit: the kit check fails, and so does the run (about 2 s)."""
    kit = tmp_path / "kit"
    kit.mkdir()
    for v in ("1.0", "2.0"):
        (kit / f"hjson-{v}-py3-none-any.whl").write_bytes(b"")
    p = _run(tmp_path / "out", "--dry", "--only", "kit", env={"E2WM_GPU_KIT": str(kit)})
    assert p.returncode == 1, p.stdout + p.stderr
    assert "FAIL kit" in p.stdout and "two wheels of hjson" in p.stdout
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["failed"] == ["kit"]
    assert _run(tmp_path / "out", "--bogus").returncode == 2


def test_the_machine_keeps_what_it_has_at_the_kits_version_or_newer():
    spec = importlib.util.spec_from_file_location("gpu_kit", ROOT / "tests" / "gpu" / "gpu_kit.py")
    kit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(kit)
    wheels = [Path(n) for n in ("deepspeed-0.19.8-py3-none-any.whl", "peft-0.21.2-py3-none-any.whl",
                                "typing_extensions-4.16.0-py3-none-any.whl", "pydantic_core-2.50.5-cp312-cp312-"
                                "manylinux2014_x86_64.manylinux_2_17_x86_64.whl")]
    have = {"peft": "0.17.1", "typing-extensions": "4.16.0", "pydantic-core": "2.51.0"}
    chosen, kept = kit.choose(wheels, have.get)
    assert [w.name.split("-")[0] for w in chosen] == ["deepspeed", "peft"]
    assert kept == ["typing-extensions 4.16.0 (kit 4.16.0)", "pydantic-core 2.51.0 (kit 2.50.5)"]
