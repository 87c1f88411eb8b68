"""The Fisher stage: `run(FisherConfig)`, called by `e2wm fisher`, by `python -m e2wm.train.fisher_run` under a
launcher, and by the pipeline. In one plain process, or (under a launcher, or with a ZeRO stage) inside a
DeepSpeed engine on every rank.

The model loads in `precision` (fp32 or bf16). Under ZeRO-3 it loads partitioned, as training's does: a
`HfDeepSpeedConfig` is alive while `from_pretrained` (or `from_config`, for `shape:`) runs, so each rank
reads and keeps only its partition and no rank or device ever holds the whole model. The built-in `tiny`
is built whole and partitioned by `deepspeed.initialize`. The metadata's `load` says which happened.
"""
from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from e2wm.train.fisher_config import FisherConfig

CONFIG = FisherConfig


def run(cfg: FisherConfig, force: bool = False, log=print) -> dict:
    """Check every input, then compute F and write OUT/fisher.safetensors; the run's metadata."""
    from e2wm.files import output_dir
    from e2wm.train import dist as edist
    from e2wm.train import fisher
    from e2wm.train.corpus import check_corpus, load_texts
    from e2wm.train.ds_config import fisher_config
    from e2wm.train.fisher_io import FISHER_FILE
    from e2wm.train.model import DTYPES, check_model_spec, load_model, load_tokenizer

    # every check before any model loads; the output folder is created only when the result is written
    output_dir(cfg.out, "--out", ours=(FISHER_FILE, "checkpoint"), force=force,
               inputs={"--model": cfg.model, "--corpus": cfg.corpus})
    check_model_spec(cfg.model, "--model")
    check_corpus(cfg.corpus, "--corpus")
    texts = load_texts(cfg.corpus, cfg.max_samples, field="--corpus")
    tok = load_tokenizer(cfg.model, field="--model")
    kw = dict(max_length=cfg.max_length, micro_batch=cfg.micro_batch, modules=cfg.modules, method=cfg.method,
              out_dir=cfg.out, checkpoint_every=cfg.checkpoint_every, model_name=cfg.model,
              gradient_checkpointing=cfg.gradient_checkpointing)

    def base():
        return load_model(cfg.model, DTYPES[cfg.precision], field="--model")
    rank = 0
    if cfg.zero_stage is None and not edist.is_distributed_env():
        _, meta = fisher.compute_fisher(lora_model(base(), cfg.targets()).to(edist.device()), texts, tok, **kw)
    else:   # a caller's group is kept; a model that fails to load leaves no group (nor its variables) behind
        with edist.process_group() as (rank, _):
            stage = cfg.zero_stage or 0
            ds = fisher_config(stage, cfg.micro_batch, cfg.precision)
            with partitioned_loading(ds):
                model = base()
                load = "partitioned" if all(hasattr(p, "ds_id") for p in model.parameters()) else "full"
                engine = _engine(lora_model(model, cfg.targets()), ds)
            try:
                _, meta = fisher.compute_fisher_deepspeed(engine, texts, tok, zero_stage=stage, load=load, **kw)
            finally:   # before the group goes: ZeRO-3 aborts at exit otherwise
                engine.destroy()
    if rank == 0:
        log(f"fisher: {meta['samples']} samples, {meta['tokens']} tokens -> {Path(cfg.out) / FISHER_FILE}")
    return meta


def lora_model(base, targets=None):
    """The model a Fisher runs on: `base` (loaded in the run's precision) with a zero-init LoRA adapter, so
    the base's outputs are unchanged and the covered weights are named as a LoRA run names them."""
    from e2wm.train.model import add_lora
    return add_lora(base, targets=targets, field="--lora-targets")


@contextlib.contextmanager
def partitioned_loading(ds: dict):
    """Under ZeRO-3 (`ds`'s stage), transformers partitions weights as they load while this is open."""
    if ds["zero_optimization"]["stage"] != 3:
        yield
        return
    from transformers.integrations import HfDeepSpeedConfig
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    keep = HfDeepSpeedConfig(ds)   # transformers holds it by weak reference: alive until the engine exists
    try:
        yield
    finally:
        unset_hf_deepspeed_config()   # a later load in this process (a run at another stage) loads whole
        del keep


def _engine(model, ds: dict):
    """deepspeed.initialize over the LoRA model: an engine (fp32 or bf16) whose optimizer never steps."""
    import deepspeed
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.AdamW(params, lr=1e-4), config=ds)
    return engine


def entry(argv=None) -> int:
    """`e2wm fisher ARGS`: one flag per FisherConfig field, and --force; bad input raises E2WMError."""
    from e2wm.argparser import Parser
    from dataclasses import fields

    from e2wm.config import add_field_flags, flag_values, help_of
    ap = Parser(prog="e2wm fisher", description="Empirical Fisher diagonal of base weights.")
    names = add_field_flags(ap, FisherConfig, required=("model", "out"), checked=True)
    ap.add_argument("--gradient-checkpointing", action="store_true", default=None,
                    help=help_of(next(f for f in fields(FisherConfig) if f.name == "gradient_checkpointing")))
    names.append("gradient_checkpointing")
    ap.add_argument("--force", action="store_true", help="write into a non-empty directory that is not an "
                    "`e2wm fisher` output")
    ap.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    run(FisherConfig(**flag_values(a, names)), a.force)
    return 0


if __name__ == "__main__":
    from e2wm.train.dist import exit_now, guarded
    exit_now(guarded(entry))
