"""Two nodes (network namespaces joined by a veth pair, each with its own /tmp and processes) run the Fisher and
EWC-LoRA training with `torchrun --nnodes 2 --nproc_per_node 1` (c10d rendezvous at node 0's veth address, gloo
over the veth interface), through e2wm's own stage entries; the results equal one node's 2-process run."""
import os
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch
import yaml
from nodes import IFNAME, Node, kill_node, unavailable, veth_pair
from run_helpers import ROOT, check, launch
from safetensors.torch import load_file

from e2wm.train import dist as edist

pytestmark = pytest.mark.multinode

STAGE_TIMEOUT_S = 300


def _fisher_args(model: Path, out: Path) -> list[str]:
    return ["--model", str(model), "--corpus", "builtin:pydoc", "--max-samples", "8", "--max-length", "48",
            "--micro-batch", "2", "--zero-stage", "3", "--out", str(out)]


def _train_config(path: Path, model: Path, data: Path, fisher: Path, out: Path) -> Path:
    """EWC-LoRA at ZeRO-3 for 4 steps, a checkpoint at step 2, the Fisher of the same run."""
    path.write_text(yaml.safe_dump({
        "seed": 3, "out": str(out), "model": {"name_or_path": str(model)},
        "lora": {"r": 8, "alpha": 32, "dropout": 0.0},
        "data": {"path": str(data), "max_length": 128},
        "optim": {"lr": 1e-2, "max_steps": 4, "global_batch_size": 4, "micro_batch_size": 2, "precision": "fp32"},
        "regularizer": {"kind": "ewc_lora", "lam": 1000.0, "fisher": str(fisher)},
        "deepspeed": {"config": "zero3"}, "checkpoint": {"every": 2, "resume": "never"},
        "logging": {"every": 1, "tensorboard": False}}))
    return path


def _two_nodes(nodes: list[Node], module: str, args: list[str], logs: Path) -> None:
    """`torchrun --nnodes 2 --nproc_per_node 1 -m MODULE ARGS` on both nodes; node 0 hosts the c10d store."""
    endpoint = f"{nodes[0].address}:{edist.free_port()}"   # a free port on the host is as good as any in a netns
    env = edist.cpu_env({"PYTHONPATH": str(ROOT), "GLOO_SOCKET_IFNAME": IFNAME,
                         # one JIT cache (the host's, which has the shm op): a node without it builds it
                         "TORCH_EXTENSIONS_DIR": os.environ.get("TORCH_EXTENSIONS_DIR", edist.cpu_env()[
                             "TORCH_EXTENSIONS_DIR"])})
    rdzv_id = uuid.uuid4().hex[:8]
    procs = []
    try:
        for k, node in enumerate(nodes):
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
                   "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", rdzv_id,
                   "--rdzv-conf", f"is_host={int(k == 0)}", "--local-addr", node.address, "-m", module, *args]
            procs.append(node.popen(cmd, env, logs / f"{Path(module).name}-node{k}.log"))
        deadline = time.monotonic() + STAGE_TIMEOUT_S
        for k, p in enumerate(procs):
            rc = p.wait(timeout=max(1.0, deadline - time.monotonic()))
            log = (logs / f"{Path(module).name}-node{k}.log").read_text()
            assert rc == 0, f"{module} on node {k} exited {rc}:\n{log[-6000:]}"
    finally:
        for p in procs:
            if p.poll() is None:
                kill_node(p)


def _assert_same_tensors(a: Path, b: Path) -> None:
    ta, tb = load_file(a), load_file(b)
    assert sorted(ta) == sorted(tb) and ta
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k


def _losses(run: Path) -> list[tuple]:
    rows = [yaml.safe_load(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r["penalty"], r["grad_norm"]) for r in rows]


def test_fisher_and_training_on_two_netns_nodes_equal_one_node(tmp_path, tiny_model_dir, built_dataset):
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    shared = tmp_path / "shared"   # what both nodes see, at the same path: the cluster's shared file system
    shared.mkdir()
    ext = Path(edist.cpu_env()["TORCH_EXTENSIONS_DIR"])
    ext.mkdir(parents=True, exist_ok=True)

    # one node, 2 processes on loopback
    one = shared / "one"
    check(launch(edist.torchrun_cmd(2, edist.free_port(), "e2wm.train.fisher_run",
                                    _fisher_args(tiny_model_dir, one / "fisher")), timeout=STAGE_TIMEOUT_S))
    cfg = _train_config(shared / "one.yaml", tiny_model_dir, built_dataset, one / "fisher", one / "run")
    check(launch(edist.torchrun_cmd(2, edist.free_port(), "e2wm.train", ["--config", str(cfg)]),
                 timeout=STAGE_TIMEOUT_S))

    # two nodes, 1 process each, over the veth pair
    two = shared / "two"
    with veth_pair() as pair:
        nodes = [Node(ns, address, tmp_path / f"node{k}-tmp", [shared, tiny_model_dir, built_dataset, ext])
                 for k, (ns, address) in enumerate(pair)]
        _two_nodes(nodes, "e2wm.train.fisher_run", _fisher_args(tiny_model_dir, two / "fisher"), tmp_path)
        cfg = _train_config(shared / "two.yaml", tiny_model_dir, built_dataset, two / "fisher", two / "run")
        _two_nodes(nodes, "e2wm.train", ["--config", str(cfg)], tmp_path)

    # each node had its own /tmp: torchrun's per-run folders landed in the node's, none is shared
    for k in range(2):
        assert any(p.name.startswith("torchelastic_") for p in (tmp_path / f"node{k}-tmp").iterdir()), k
    _assert_same_tensors(one / "fisher" / "fisher.safetensors", two / "fisher" / "fisher.safetensors")
    assert _losses(one / "run") == _losses(two / "run") and len(_losses(one / "run")) == 4
    _assert_same_tensors(one / "run" / "adapter" / "adapter_model.safetensors",
                         two / "run" / "adapter" / "adapter_model.safetensors")
    _assert_same_tensors(one / "run" / "checkpoints" / "step-00000002" / "trainable.safetensors",
                         two / "run" / "checkpoints" / "step-00000002" / "trainable.safetensors")
