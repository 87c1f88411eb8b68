"""The training recipe (torchtune's lifecycle): setup -> train -> save -> export -> cleanup.

One process (`e2wm train`), or one per rank under `deepspeed` / `torchrun` (`python -m e2wm.train`).
Each optimizer step takes one global batch (same rows on any world size), deals it over
world × accumulation micro-batches (an empty one runs a filler row of weight 0), and minimises E2WM's
weighted answer loss plus the configured regulariser; see `objective`, `data` and `regularizers` for
the parts.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from e2wm.errors import E2WMError
from e2wm.files import write_atomic, write_json
from e2wm.train import checkpoint as ckpt
from e2wm.train import dist as edist
from e2wm.train.config import TrainConfig, gradient_accumulation
from e2wm.train.data import Example, GeneralText, GlobalBatches, collate, deal, encode_rows, read_rows
from e2wm.train.ds_config import deepspeed_config, offloads_optimizer, zero_stage
from e2wm.train.export import KL_CORPUS, RUN_INFO, export
from e2wm.train.metrics import Logger, count_params, flops_per_token, peak_flops
from e2wm.train.model import (DTYPES, TINY, add_lora, base_name, fan_in_fan_out, load_model, load_tokenizer,
                              lora_pairs, model_config)
from e2wm.train.objective import row_normalisers, weighted_token_loss

# called with the number of steps done after each step (and its checkpoint): tests inject faults here
# (tests/train/kill_worker.py kills every rank at a step), never a user-facing config field
STEP_HOOKS: list = []
SNAPSHOTS = "snapshots"   # RUN/snapshots/step-K: the adapter (or model) exported at step K (checkpoint.snapshots)


def snapshot_dir(run_dir, step: int) -> Path:
    return Path(run_dir) / SNAPSHOTS / f"step-{step}"


def has_snapshot(run_dir, step: int) -> bool:
    """Whether step `step`'s snapshot is complete on disk (an export appears whole, with its marker)."""
    from e2wm.train.export import MARKER
    return (snapshot_dir(run_dir, step) / MARKER).is_file()


def lr_at(cfg: TrainConfig, step: int, total: int) -> float:
    """The learning rate of 0-based step `step` (HF's schedules: warmup, then linear/cosine/constant)."""
    o = cfg.optim
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    progress = (step - o.warmup_steps) / max(1, total - o.warmup_steps)
    if o.schedule == "linear":
        return o.lr * max(0.0, 1.0 - progress)
    if o.schedule == "cosine":
        return o.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    return o.lr


class Recipe:
    def __init__(self, cfg: TrainConfig, resume: str | None = None):
        self.cfg, self.resume_arg = cfg, resume
        self.out = Path(cfg.out)
        self.engine, self.logger = None, None   # what cleanup() undoes, with the process group
        self.group = contextlib.ExitStack()

    # ------------------------------------------------------------ setup

    def setup(self) -> None:
        cfg = self.cfg
        # the user's files first (checkpoint, rows, tokenizer): bad input fails before any process group
        self.resume_dir, state = self._find_resume()
        saved = ckpt.load_trainable(self.resume_dir) if self.resume_dir is not None and cfg.lora.enabled else None
        rows = read_rows(cfg.data.path)
        r = cfg.regularizer
        general, self.kl_corpus = [], None   # the kl regulariser's documents and their record (run.json, export)
        if r.kind == "kl":
            from e2wm.train.corpus import read_range
            general, self.kl_corpus = read_range(r.corpus, r.corpus_start, r.corpus_end,
                                                 "regularizer.corpus_start..corpus_end", field="regularizer.corpus")
        self.tokenizer = load_tokenizer(cfg.model.name_or_path, cfg.model.trust_remote_code)
        self.rank, self.world = self.group.enter_context(edist.process_group())   # a caller's group is kept
        self.device = edist.device()
        self.gas = gradient_accumulation(cfg, self.world)
        truncated = self._load_data(rows, state)
        self.total = cfg.optim.max_steps or cfg.optim.epochs * self.batches.steps_per_epoch
        self.start = state["step"] if state else 0
        if self.start > self.total:   # the trajectory hash fixes the total, so this state is not of this run
            raise E2WMError(f"{'--resume' if self.resume_arg else 'checkpoint.resume'}: {self.resume_dir / ckpt.STATE}"
                            f": step {self.start} is beyond this run's {self.total} steps; not a checkpoint of it")
        self._build_engine(saved)
        self.reg, self.general = self._regularizer(), None
        if r.kind == "kl":
            self.general = GeneralText(general, self.tokenizer, r.kl_max_length, r.kl_batch_size)
        if self.resume_dir is not None:   # after the regulariser took θ* from the pretrained weights
            if cfg.lora.enabled:
                ckpt.restore_optimizer(self.engine, saved, state["optimizer_steps"], self._zero_loss)
            else:
                self._load_full_checkpoint(state)
        self.logger = Logger(self.out, cfg, self.total, self.start, self.rank)
        if self.rank == 0:
            self._describe_run(truncated)

    def _load_data(self, rows: list[dict], state) -> int:
        """Rows -> examples and the batch schedule; returns how many rows were truncated."""
        cfg = self.cfg
        self.data_hash = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()
        if state and state["data_sha256"] != self.data_hash:
            raise E2WMError(f"{self.resume_dir}: data.path {cfg.data.path} holds other rows than when this run "
                            f"started; use another `out`, or --set checkpoint.resume=never to start over")
        self.examples, self.tasks, truncated = encode_rows(rows, self.tokenizer, cfg.data.max_length,
                                                           cfg.data.task_weights, cfg.data.truncation)
        self.lengths = [len(e.ids) for e in self.examples]
        self.answer_tokens = [e.answer_tokens for e in self.examples]
        self.batches = GlobalBatches(self.lengths, cfg.optim.global_batch_size, cfg.seed, cfg.data.sampling,
                                     cfg.data.group_batches)
        return truncated

    def _build_engine(self, saved) -> None:
        """Model (+ LoRA, with the resumed trainable tensors `saved` of a LoRA run) -> DeepSpeed engine."""
        import deepspeed

        cfg = self.cfg
        mcfg = model_config(cfg.model.name_or_path, cfg.model.trust_remote_code)
        self.ds = deepspeed_config(cfg, self.world, hidden=mcfg.hidden_size)
        self.stage = zero_stage(self.ds)
        self._hf_ds = None
        if self.stage == 3 and cfg.model.name_or_path != TINY:   # tiny: built whole, partitioned by initialize
            from transformers.integrations import HfDeepSpeedConfig
            self._hf_ds = HfDeepSpeedConfig(self.ds)   # must stay alive: weights load partitioned
        model = load_model(cfg.model.name_or_path, DTYPES[cfg.optim.precision], cfg.model.trust_remote_code)
        self.partitioned_load = all(hasattr(p, "ds_id") for p in model.parameters())
        self.n_params, self.n_embedding = count_params(model)
        if cfg.model.gradient_checkpointing:
            # reentrant: ZeRO-3 frees gathered weights before the recompute, which the
            # non-reentrant variant's metadata check rejects (transformers #47254)
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})
            model.config.use_cache = False
            model.enable_input_require_grads()
        lo = cfg.lora
        if lo.enabled:
            model = add_lora(model, lo.r, lo.alpha, lo.target_modules or None, lo.dropout, cfg.seed)
            if saved is not None:   # into the model before DeepSpeed copies it
                ckpt.load_params_into(model, saved, self.resume_dir)
        else:
            model.requires_grad_(True)
        self.engine, *_ = deepspeed.initialize(model=model, optimizer=self._optimizer(model), config=self.ds)
        self.engine.train()

    def _find_resume(self):
        how = self.resume_arg or self.cfg.checkpoint.resume
        if how == "never":
            return None, None
        path = ckpt.latest(self.out) if how == "auto" else Path(how)
        if path is None:
            return None, None
        state = ckpt.read_state(path, "--resume" if self.resume_arg else "checkpoint.resume")
        if state["trajectory"] != self.cfg.trajectory_hash():
            raise E2WMError(f"{path}: checkpoint of a run with another model, data, optimizer, regulariser or "
                            f"seed; use another `out`, or --set checkpoint.resume=never to start over")
        return path, state

    def _optimizer(self, model):
        o = self.cfg.optim
        params = [p for p in model.parameters() if p.requires_grad]
        if offloads_optimizer(self.ds):
            from deepspeed.ops.adam import DeepSpeedCPUAdam

            from e2wm.train import extensions
            extensions.check_locks(["cpu_adam"])   # DeepSpeedCPUAdam JIT-builds it; a stale lock would hang
            return DeepSpeedCPUAdam(params, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
        return torch.optim.AdamW(params, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay,
                                 fused=self.device.type == "cuda")

    def _regularizer(self):
        from e2wm.train import regularizers as R
        from e2wm.train.fisher_io import read_for_params

        r, module = self.cfg.regularizer, self.engine.module
        if r.kind in ("none", "kl"):
            return R.make_regularizer(r.kind, module, lam=r.lam)
        named = {base_name(n): p for n, p in module.named_parameters() if "lora_" not in n}
        if r.kind == "ewc_lora":
            params = {name: named[name] for name, *_ in lora_pairs(module)}
        else:
            from e2wm.train.fisher_io import fisher_keys
            keys = fisher_keys(r.fisher)
            missing = sorted(set(keys) - set(named))
            params = {k: named[k] for k in keys if k in named}
            if missing:
                raise E2WMError(f"regularizer.fisher: {r.fisher} covers {missing[0]}, which this model lacks")
            unpenalised = next((n for n, p in named.items() if p.requires_grad and n not in params), None)
            if unpenalised is not None:   # full fine-tuning: a weight F misses would drift freely
                raise E2WMError(f"regularizer.fisher: {r.fisher} has no entry for {unpenalised}, which kind ewc "
                                f"trains; compute it with `e2wm fisher --modules all`")
        fisher = read_for_params(r.fisher, params, self.device, scale=r.fisher_scale)
        if self.stage == 3:
            return R.Zero3EWCLoRA(module, fisher, r.lam) if r.kind == "ewc_lora" else R.Zero3EWC(params, fisher, r.lam)
        return R.make_regularizer(r.kind, module, fisher=fisher, lam=r.lam)

    def _load_full_checkpoint(self, state: dict) -> None:
        if state["world_size"] != self.world:
            raise E2WMError(f"{self.resume_dir}: a full fine-tuning checkpoint from {state['world_size']} ranks "
                            f"resumes on {state['world_size']} ranks only (this run has {self.world}); convert it "
                            f"with DeepSpeed's ds_to_universal first")
        self.engine.load_checkpoint(str(self.resume_dir), tag="ds", load_lr_scheduler_states=False)

    def _zero_loss(self):
        ids = torch.full((1, 2), self.tokenizer.pad_token_id, dtype=torch.long, device=self.device)
        return self.engine(input_ids=ids).logits.float().sum() * 0.0

    def _describe_run(self, truncated: int) -> None:
        cfg = self.cfg
        self.out.mkdir(parents=True, exist_ok=True)
        write_atomic(self.out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        module = self.engine.module
        info = {"base_model": cfg.model.name_or_path, "lora": cfg.lora.enabled, "tasks": self.tasks,
                "world_size": self.world, "zero_stage": self.stage, "partitioned_load": self.partitioned_load}
        if cfg.lora.enabled:
            targets = sorted({name.rsplit(".", 2)[-2] for name, *_ in lora_pairs(module)})
            info["lora_config"] = {"r": cfg.lora.r, "alpha": cfg.lora.alpha, "dropout": cfg.lora.dropout,
                                   "target_modules": targets, "fan_in_fan_out": fan_in_fan_out(module)}
        if self.kl_corpus is not None:
            info[KL_CORPUS] = self.kl_corpus
        write_json(self.out / RUN_INFO, info)
        self.tokenizer.save_pretrained(str(self.out / "tokenizer"))
        getattr(module, "base_model", module).config.save_pretrained(str(self.out / "base_config"))
        trainable = sum(p.ds_numel if hasattr(p, "ds_numel") else p.numel()
                        for p in module.parameters() if p.requires_grad)
        self.logger.print(
            f"e2wm train: {cfg.model.name_or_path} ({self.n_params:,} parameters, {trainable:,} "
            f"trainable), {len(self.examples)} rows in {len(self.tasks)} tasks ({truncated} truncated to "
            f"{cfg.data.max_length} tokens), {cfg.optim.global_batch_size} rows per step ({cfg.data.sampling}) "
            f"over {self.world} rank(s) × {self.gas} micro-batch(es) of <= {cfg.optim.micro_batch_size}, "
            f"ZeRO-{self.stage}, {cfg.optim.precision} on {self.device.type}, regularizer {cfg.regularizer.kind}; "
            + (f"steps {self.start + 1}..{self.total}" if self.start < self.total else f"all {self.total} steps done")
            + (f" (resumed from {self.resume_dir})" if self.resume_dir else ""))

    # ------------------------------------------------------------ train

    def _penalty(self, step: int):
        """(term for the first micro-batch's loss, this rank's share of the value) of the autograd forms.

        The gradient of `term` is averaged over ranks by DeepSpeed and divided by the accumulation,
        hence the factors: replicated penalties are whole on every rank, a KL batch is split."""
        kind, world, gas = self.cfg.regularizer.kind, self.world, self.gas
        if kind == "none" or self.stage == 3 and kind in ("ewc_lora", "ewc"):
            return None, 0.0
        if kind == "kl":
            rows, positions = self.general.rows(step, self.rank, world)
            batch = collate([Example(tuple(r), len(r), 1.0, 0) for r in rows], self.tokenizer.pad_token_id, 1,
                            self.device)
            local = self.reg(batch, positions=positions, forward=self.engine) * (1.0 if rows else 0.0)
            return local * (world * gas), local.detach()
        term = self.reg()
        return term * gas, term.detach() / world

    def train(self) -> None:
        import torch.distributed as dist

        cfg, engine, world, gas = self.cfg, self.engine, self.world, self.gas
        micro, n_tasks = cfg.optim.micro_batch_size, len(self.tasks)
        seq = sum(self.lengths) / len(self.lengths)
        flops = flops_per_token(engine.module.config, self.n_params, self.n_embedding, seq, not cfg.lora.enabled)
        peak = peak_flops(cfg.logging.peak_tflops)
        self._missed_snapshots()
        for step in range(self.start, self.total):
            t0 = time.perf_counter()
            epoch, rows = self.batches.batch(step)
            slots = deal(rows, self.lengths, micro, world, gas)
            norm = row_normalisers(rows, self.answer_tokens, cfg.optim.global_batch_size, cfg.optim.loss_groups)
            lr = lr_at(cfg, step, self.total)
            for g in engine.optimizer.param_groups:
                g["lr"] = lr
            # dropout masks from (seed, step, rank): a resumed run draws the same ones, with no RNG state saved
            torch.manual_seed(int(np.random.SeedSequence([cfg.seed, step, self.rank]).generate_state(1)[0]))
            # [normalised Σ w·ℓ, penalty share, per-task Σ ℓ, per-task token counts], summed over ranks below
            stats = torch.zeros(2 + 2 * n_tasks, dtype=torch.float64, device=self.device)
            for m in range(gas):
                slot = slots[m * world + self.rank]
                batch = collate([self.examples[i] for i in slot], self.tokenizer.pad_token_id,
                                cfg.data.pad_to_multiple_of, self.device, [norm[i] for i in slot])
                engine.set_gradient_accumulation_boundary(m == gas - 1)
                logits = engine(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                wsum, per_task, counts = weighted_token_loss(logits, batch, n_tasks)
                loss = wsum * (world * gas)   # DeepSpeed averages over ranks and accumulation steps
                if m == 0:
                    term, share = self._penalty(step)
                    stats[1] += float(share)
                    if term is not None:
                        loss = loss + term
                engine.backward(loss)
                if m == gas - 1 and hasattr(self.reg, "add_grads"):   # ZeRO-3 penalties: explicit gradients
                    stats[1] += float(self.reg.add_grads(engine)) / world
                engine.step()
                stats[0] += float(wsum.detach())
                stats[2:2 + n_tasks] += per_task.double()
                stats[2 + n_tasks:] += counts.double()
            dist.all_reduce(stats)
            dt = time.perf_counter() - t0
            tokens = sum(self.lengths[i] for i in rows)
            grad_norm = engine.get_global_grad_norm()
            penalty = float(stats[1]) if cfg.regularizer.kind != "none" else None
            row = {"step": step + 1, "epoch": epoch, "loss": float(stats[0]), "lr": lr, "penalty": penalty,
                   # does λ bite? the penalty (λ included) as a share of the task loss
                   "penalty_to_ce": None if penalty is None or not stats[0] else penalty / float(stats[0]),
                   "grad_norm": None if grad_norm is None else float(grad_norm), "tokens": tokens,
                   "tokens_per_s": tokens / dt, "mfu": tokens / dt * flops / (world * peak) if peak else None}
            for t, name in enumerate(self.tasks):
                if stats[2 + n_tasks + t]:
                    row[f"loss_{name}"] = float(stats[2 + t] / stats[2 + n_tasks + t])
            self.logger.step(row)
            done = step + 1
            saved = None
            if cfg.checkpoint.every and done % cfg.checkpoint.every == 0 and done < self.total:
                saved = self.save(done)
            if done in cfg.checkpoint.snapshots and done < self.total:   # the last step is the final export
                self.snapshot(done, saved or self.save(done))
            for hook in STEP_HOOKS:
                hook(done)

    # ------------------------------------------------------------ save, export, cleanup

    def save(self, step: int) -> Path:
        return ckpt.save(self.engine, self.out, step,
                         {"epoch": step // self.batches.steps_per_epoch, "world_size": self.world,
                          "data_sha256": self.data_hash,
                          "trajectory": self.cfg.trajectory_hash(), "config": self.cfg.to_dict()},
                         self.cfg.lora.enabled, self.cfg.checkpoint.keep_last)

    def _missed_snapshots(self) -> None:
        """A resumed run takes the snapshots at or before its first step that are not on disk (stopped between
        the checkpoint and the export) from their checkpoints, if still there; a snapshot on disk is kept."""
        import torch.distributed as dist
        snaps = sorted(self.cfg.checkpoint.snapshots)
        if not snaps:
            return
        late = [k for k in snaps if k >= self.total]
        if late and self.rank == 0:
            self.logger.print(f"checkpoint.snapshots: step(s) {', '.join(map(str, late))} not before the last step "
                              f"{self.total}: the final export is that point")
        todo = None
        if self.rank == 0:   # decided once: another rank looking later would see rank 0's new snapshots
            todo = [k for k in snaps if k <= self.start and k < self.total and not has_snapshot(self.out, k)]
        shared = [todo]
        dist.broadcast_object_list(shared, src=0)
        for k in shared[0]:
            path = ckpt.step_dir(self.out, k)
            if (path / ckpt.STATE).is_file():
                self.snapshot(k, path)
            elif self.rank == 0:
                self.logger.print(f"checkpoint.snapshots: no snapshot at step {k} and no checkpoint of it left "
                                  f"(this run resumed at step {self.start}); not taken")

    def snapshot(self, step: int, step_path: Path) -> Path:
        """Checkpoint `step_path` exported to RUN/snapshots/step-K (rank 0; every rank waits)."""
        import torch.distributed as dist
        target = snapshot_dir(self.out, step)
        if self.rank == 0:
            hf_ds = self._hf_ds   # a full model built by the export must not be partitioned (rank 0 only)
            if hf_ds is not None:
                from transformers.integrations.deepspeed import set_hf_deepspeed_config, unset_hf_deepspeed_config
                unset_hf_deepspeed_config()
            try:
                export(step_path, target, force=True)   # the run's own folder
            finally:
                if hf_ds is not None:
                    set_hf_deepspeed_config(hf_ds)
            self.logger.print(f"wrote snapshot {target} (from {step_path})")
        dist.barrier()
        return target

    def export(self) -> Path:
        import torch.distributed as dist
        final = self.save(self.total)
        # no more partitioned loading: a model built by the export (rank 0 only) must not join collectives
        self._hf_ds = None
        target = self.out / ("adapter" if self.cfg.lora.enabled else "model")
        if self.rank == 0:
            export(final, target, force=True)   # the run's own folder
            self.logger.print(f"wrote {target} (from {final})")
        dist.barrier()
        return target

    def cleanup(self) -> None:
        """Undo what setup got to, also when it failed half-way (bad input found after the group started)."""
        if self.logger is not None:
            self.logger.close()
        if self.engine is not None:   # before the group goes: ZeRO-3 aborts at exit otherwise
            self.engine.destroy()
        self.group.close()


def run(cfg: TrainConfig, resume: str | None = None) -> Path:
    """setup -> train -> save -> export -> cleanup; returns the adapter (or model) directory."""
    recipe = Recipe(cfg, resume)
    try:
        recipe.setup()
        recipe.train()
        return recipe.export()
    finally:
        recipe.cleanup()
