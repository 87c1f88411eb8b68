"""The Fisher stage: `run(FisherConfig)`, called by `e2wm fisher`, by `python -m e2wm.train.fisher_run` under a
launcher, and by the pipeline. In one plain process, or (under a launcher, or with a ZeRO stage) inside a
DeepSpeed engine on every rank."""
from __future__ import annotations

import argparse
from pathlib import Path

from e2wm.train.fisher_config import FisherConfig

CONFIG = FisherConfig


def run(cfg: FisherConfig, force: bool = False, log=print) -> dict:
    """Check every input, then compute F and write OUT/fisher.safetensors; the run's metadata."""
    from e2wm.files import output_dir
    from e2wm.train import dist as edist
    from e2wm.train import fisher
    from e2wm.train.corpus import check_corpus, load_texts
    from e2wm.train.fisher_io import FISHER_FILE
    from e2wm.train.model import add_lora, check_model_spec, load_model, load_tokenizer

    # every check before any model loads; the output folder is created only when the result is written
    output_dir(cfg.out, "--out", ours=(FISHER_FILE, "checkpoint"), force=force,
               inputs={"--model": cfg.model, "--corpus": cfg.corpus})
    check_model_spec(cfg.model, "--model")
    check_corpus(cfg.corpus, "--corpus")
    texts = load_texts(cfg.corpus, cfg.max_samples, field="--corpus")
    tok = load_tokenizer(cfg.model, field="--model")
    kw = dict(max_length=cfg.max_length, micro_batch=cfg.micro_batch, modules=cfg.modules, method=cfg.method,
              out_dir=cfg.out, checkpoint_every=cfg.checkpoint_every, model_name=cfg.model)

    def model():   # zero-init B: the base's outputs unchanged
        return add_lora(load_model(cfg.model, field="--model"), targets=cfg.targets(), field="--lora-targets")
    rank = 0
    if cfg.zero_stage is None and not edist.is_distributed_env():
        _, meta = fisher.compute_fisher(model().to(edist.device()), texts, tok, **kw)
    else:   # a caller's group is kept; a model that fails to load leaves no group (nor its variables) behind
        with edist.process_group() as (rank, _):
            engine = _engine(model(), cfg.zero_stage or 0, cfg.micro_batch)
            try:
                _, meta = fisher.compute_fisher_deepspeed(engine, texts, tok, zero_stage=cfg.zero_stage or 0, **kw)
            finally:   # before the group goes: ZeRO-3 aborts at exit otherwise
                engine.destroy()
    if rank == 0:
        log(f"fisher: {meta['samples']} samples, {meta['tokens']} tokens -> {Path(cfg.out) / FISHER_FILE}")
    return meta


def _engine(model, zero_stage: int, micro_batch: int):
    """deepspeed.initialize over the LoRA model: an fp32 engine whose optimizer never steps."""
    import deepspeed
    import torch

    from e2wm.train.ds_config import fisher_config
    params = [p for p in model.parameters() if p.requires_grad]
    engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.AdamW(params, lr=1e-4),
                                      config=fisher_config(zero_stage, micro_batch))
    return engine


def entry(argv=None) -> int:
    """`e2wm fisher ARGS`: one flag per FisherConfig field, and --force; bad input raises E2WMError."""
    from e2wm.argparser import Parser
    from e2wm.config import add_field_flags, flag_values
    ap = Parser(prog="e2wm fisher", description="Empirical Fisher diagonal of base weights.")
    names = add_field_flags(ap, FisherConfig, required=("model", "out"), checked=True)
    ap.add_argument("--force", action="store_true", help="write into a non-empty directory that is not an "
                    "`e2wm fisher` output")
    ap.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    run(FisherConfig(**flag_values(a, names)), a.force)
    return 0


if __name__ == "__main__":
    from e2wm.train.dist import exit_now, guarded
    exit_now(guarded(entry))
