"""The config of one `e2wm pipeline` run: each stage's own config, nested, checked before any stage runs.

Sections reuse the stages' dataclasses: `collect` is an `e2wm collect` job (CollectConfig), `data` an
`e2wm build-data` config (DataConfig), `train` the base `e2wm train` config (TrainConfig, partial) that
each entry of `runs` overrides, `eval` the `e2wm eval` settings (EvalConfig). The folders are the
pipeline's: OUT/collect, OUT/data, OUT/model, OUT/fisher, OUT/train/RUN, OUT/eval/NAME, OUT/report.

A `sweep` section expands the runs into a grid (`expanded_runs`): each run of `sweep.grid` once per
combination of its swept values, every run once per seed of `sweep.seeds`, and `sweep.snapshots` exports
each run's adapter at those steps too (OUT/train/RUN/snapshots/step-K, evaluated into OUT/eval/RUN@step-K).
"""
from __future__ import annotations

import itertools
import re
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace

from e2wm.collect.config import CollectConfig
from e2wm.config import _coerce, build, check_ranges, field_doc as _help, to_plain
from e2wm.data.config import DataConfig
from e2wm.errors import E2WMError
from e2wm.train.fisher_config import FisherConfig

STAGES = ("collect", "data", "model", "fisher", "train", "eval", "report")
LAUNCHERS = ("local", "deepspeed", "ray")


@dataclass(frozen=True)
class ModelStage:
    """The base model: a given one (`base`), or (`base: local`) a tokenizer trained here with `tokenizers`
    on the built data and the general corpus and a small Llama made from a config, optionally first
    trained on the general corpus (`pretrain_steps`)."""
    base: str = field(default="local", **_help("local (made here) | tiny | shape:NAME | a model directory | a hub id"))
    vocab_size: int = field(default=1024, **_help("local: BPE vocabulary size", range=(300, 1_000_000)))
    hidden: int = field(default=64, **_help("local: hidden size", range=(8, 65_536)))
    layers: int = field(default=2, **_help("local: transformer layers", range=(1, 512)))
    heads: int = field(default=4, **_help("local: attention heads", range=(1, 512)))
    pretrain_steps: int = field(default=0, **_help("local: steps of training on the general corpus first",
                                                   range=(0, 10_000_000)))
    pretrain_lr: float = field(default=3e-3, **_help("local: its peak learning rate", range=(0.0, 10.0)))
    pretrain_batch: int = field(default=8, **_help("local: windows per step", range=(1, 4096)))
    pretrain_length: int = field(default=128, **_help("local: tokens per window", range=(8, 131_072)))
    seed: int = field(default=0, **_help("local: weight init and window order", range=(0, 2**32 - 1)))

    def __post_init__(self):
        check_ranges(self, "model.")
        if self.hidden % self.heads:
            raise E2WMError(f"model.hidden={self.hidden}: must be a multiple of model.heads={self.heads}")


# train keys a sweep may not set: the pipeline sets them (folders, inputs), or another sweep field does
PIPELINE_KEYS = {"out": "the pipeline's folder", "model.name_or_path": "the pipeline's base model",
                 "data.path": "the pipeline's data", "regularizer.fisher": "the pipeline's Fisher",
                 "regularizer.corpus": "the pipeline's corpus", "regularizer.corpus_start": "set by the pipeline",
                 "regularizer.corpus_end": "set by the pipeline", "seed": "use sweep.seeds",
                 "checkpoint.snapshots": "use sweep.snapshots"}
_VALUE = re.compile(r"[A-Za-z0-9_.+-]+")   # what a swept value may read as in a run's name


@dataclass(frozen=True)
class SweepConfig:
    """A grid of training runs made from `runs`; empty (the default): the runs as they are."""
    seeds: tuple[int, ...] = field(default=(), **_help(
        "train.seed values: every run once per seed, named RUN.sSEED (empty: each run's own seed, one run)"))
    grid: dict[str, dict[str, list[typing.Any]]] = field(default_factory=dict, **_help(
        "run name -> dotted train key -> values: the run once per combination (cartesian product), named "
        "RUN.KEY=VALUE... with KEY the key's last part, e.g. ewc_lora: {regularizer.lam: [1, 10]} gives "
        "ewc_lora.lam=1 and ewc_lora.lam=10"))
    snapshots: tuple[int, ...] = field(default=(), **_help(
        "optimizer steps at which every run's adapter (or model) is also exported (OUT/train/RUN/snapshots/step-K) "
        "and evaluated (OUT/eval/RUN@step-K): points of its learning and forgetting curve from one run"))

    def __post_init__(self):
        from e2wm.train.config import check_steps
        for i, seed in enumerate(self.seeds):
            if isinstance(seed, bool) or not 0 <= seed <= 2**32 - 1:
                raise E2WMError(f"sweep.seeds[{i}]={seed!r}: a seed is an int in [0, {2**32 - 1}]")
        if len(set(self.seeds)) != len(self.seeds):
            raise E2WMError(f"sweep.seeds: a seed is given twice ({list(self.seeds)})")
        check_steps(self.snapshots, "sweep.snapshots")
        typed = {}   # each value as the train key's type (YAML's `3e-3` is a string): 3e-3 and 0.003 are one
        for run, keys in self.grid.items():
            if not keys:
                raise E2WMError(f"sweep.grid.{run}: no key to sweep")
            typed[run] = {}
            for key, values in keys.items():
                where = f"sweep.grid.{run}.{key}"
                tp = _check_train_key(key, where)
                if not values:
                    raise E2WMError(f"{where}: an empty list of values")
                values = [_coerce(v, tp, f"{where}[{i}]") for i, v in enumerate(values)]
                texts = [_value_text(v, where) for v in values]
                if len(set(texts)) != len(texts):
                    raise E2WMError(f"{where}: values {to_plain(values)} name the same run twice")
                typed[run][key] = values
        object.__setattr__(self, "grid", typed)

    @property
    def active(self) -> bool:
        return bool(self.seeds or self.grid or self.snapshots)


@dataclass(frozen=True)
class SweepRun:
    """One concrete training run of a pipeline: `arm` (its entry of `runs`) with the swept `values` (dotted
    train key -> value) and `seed` (None: the arm's own) laid over it (`overrides`, nested train keys)."""
    name: str
    arm: str
    values: dict
    seed: int | None
    overrides: dict


def _check_train_key(key: str, where: str):
    """`key` names a field of e2wm train's config (TrainConfig), not a section, and not one the pipeline sets;
    the field's type."""
    from e2wm.train.config import TrainConfig
    cls, parts = TrainConfig, key.split(".")
    for i, part in enumerate(parts):
        names = {f.name for f in fields(cls)}
        if part not in names:
            section = ".".join(parts[:i]) or "the train config"
            raise E2WMError(f"{where}: unknown train key {key!r} (no {part!r} in {section}; known: "
                            f"{', '.join(sorted(names))})")
        tp = typing.get_type_hints(cls)[part]
        if i < len(parts) - 1:
            if not is_dataclass(tp):
                raise E2WMError(f"{where}: unknown train key {key!r} ({'.'.join(parts[:i + 1])} is not a section)")
            cls = tp
        elif is_dataclass(tp):
            raise E2WMError(f"{where}: {key!r} is a section; sweep one of its keys ({key}.KEY)")
    if key in PIPELINE_KEYS:
        raise E2WMError(f"{where}: {key} is not swept here ({PIPELINE_KEYS[key]})")
    return tp


def _value_text(v, where: str) -> str:
    """How swept value `v` reads in a run's name: 10 and 10.0 as 10, 0.001 as 0.001, a list joined by +."""
    if isinstance(v, bool):
        text = "true" if v else "false"
    elif isinstance(v, float) and v.is_integer() and abs(v) < 1e16:
        text = str(int(v))
    elif isinstance(v, (int, float, str)):
        text = str(v) if not isinstance(v, float) else repr(v)
    elif isinstance(v, (list, tuple)) and v:
        text = "+".join(_value_text(x, where) for x in v)
    else:
        raise E2WMError(f"{where}: value {v!r} is not a number, string, true/false or list of them")
    if not _VALUE.fullmatch(text):
        raise E2WMError(f"{where}: value {v!r} cannot name a run (letters, digits, -, _, ., + only)")
    return text


def _nested(dotted: dict) -> dict:
    """{"a.b": 1} -> {"a": {"b": 1}}."""
    out: dict = {}
    for key, v in dotted.items():
        node = out
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = v
    return out


# the pipeline's Fisher: its model, corpus, documents and folder are the pipeline's; the ZeRO stage holds
# under the deepspeed and ray launchers (the local one runs a plain process)
FISHER = FisherConfig(max_samples=20_000, max_length=800, zero_stage=2, checkpoint_every=1000)


@dataclass(frozen=True)
class PipelineConfig:
    """One pipeline run, world to report."""
    out: str = field(default="out/pipeline", **_help("output directory (every stage writes under it)"))
    corpus: str = field(default="builtin:pydoc", **_help("general text: the Fisher reads its first documents, "
                                                         "perplexity its last, a kl run those between, local "
                                                         "pretraining all but perplexity's"))
    collect: CollectConfig = field(default_factory=CollectConfig, **_help("the collection job (e2wm collect)"))
    data: DataConfig = field(default_factory=DataConfig, **_help("the dataset build (e2wm build-data)"))
    model: ModelStage = field(default_factory=ModelStage, **_help("the base model"))
    fisher: FisherConfig = field(default_factory=lambda: FISHER, **_help(
        "the Fisher (e2wm fisher) on the corpus's first max_samples documents; model, corpus and out are the "
        "pipeline's, and modules is all when a run is an ewc one"))
    train: dict = field(default_factory=dict, **_help("the base e2wm train config (partial) every run starts from"))
    runs: dict[str, dict] = field(default_factory=lambda: {"ewc_lora": {}}, **_help(
        "run name -> overrides of `train` (e.g. regularizer.kind)"))
    sweep: SweepConfig = field(default_factory=SweepConfig, **_help(
        "a grid of runs: seeds, swept train keys per run, snapshot steps (see expanded_runs)"))
    eval: dict = field(default_factory=dict, **_help("e2wm eval settings: limit, num_beams, max_new_tokens, "
                                                     "ppl_docs, ppl_max_length, ppl_stride"))
    launcher: str = field(default="local", **_help("local (one process) | deepspeed | ray: how the fisher, train "
                                                   "and eval stages get their ranks"))
    workers: int = field(default=1, **_help("ranks of the fisher, train and eval stages", range=(1, 4096)))
    gpus: bool = field(default=False, **_help("one GPU per rank"))
    address: str = field(default="local", **_help("Ray: local, auto or HOST:PORT (collection and --launcher ray)"))
    max_failures: int = field(default=0, **_help(
        "Ray: restarts of the fisher, train and eval workers after a failure (a lost node; -1: no limit); a "
        "restarted training resumes from its latest checkpoint", range=(-1, 10**6)))
    note: str = field(default="", **_help("printed at the start and written into the report"))

    def __post_init__(self):
        check_ranges(self)
        if self.launcher not in LAUNCHERS:
            raise E2WMError(f"launcher={self.launcher!r}: must be one of {', '.join(LAUNCHERS)}")
        if self.launcher == "local" and self.workers != 1:
            raise E2WMError(f"workers={self.workers}: the local launcher runs one process; use deepspeed or ray")
        if not self.runs:
            raise E2WMError("runs: name at least one training run")
        for name in self.runs:
            if not name.replace("_", "").replace("-", "").isalnum() or name == "base":
                raise E2WMError(f"runs.{name}: a run name is letters, digits, - and _ (and not 'base')")
        for name in self.sweep.grid:
            if name not in self.runs:
                raise E2WMError(f"sweep.grid.{name}: no run {name} in runs (have {', '.join(self.runs)})")
        for key in ("model", "corpus", "out"):
            if getattr(self.fisher, key) != getattr(FISHER, key):
                raise E2WMError(f"fisher.{key}: set by the pipeline, not here")
        # every run's TrainConfig and the eval settings are built now, so a typo fails before any stage
        for name in self.expanded_runs():
            self.train_config(name, "OUT", "MODEL")
        self.eval_config("OUT", "MODEL", None)

    def expanded_runs(self) -> dict[str, SweepRun]:
        """The concrete training runs, name -> SweepRun, in order: each entry of `runs`, each combination of
        its `sweep.grid` values (the keys' product, in the order given), each of `sweep.seeds`. A run's name
        is its arm's, then `.KEY=VALUE` per swept key (KEY the dotted key's last part, or all of it where two
        keys share one), then `.sSEED`: ewc_lora.lam=10.s2. Without a sweep: `runs` as they are."""
        seeds = list(self.sweep.seeds) or [None]
        snaps = {"checkpoint": {"snapshots": list(self.sweep.snapshots)}} if self.sweep.snapshots else {}
        out: dict[str, SweepRun] = {}
        for arm in self.runs:
            grid = self.sweep.grid.get(arm, {})
            last = [k.rsplit(".", 1)[-1] for k in grid]
            labels = [k if last.count(k.rsplit(".", 1)[-1]) > 1 else k.rsplit(".", 1)[-1] for k in grid]
            for combo in itertools.product(*grid.values()):
                values = dict(zip(grid, combo))
                base = arm + "".join(f".{label}={_value_text(v, '')}" for label, v in zip(labels, combo))
                for seed in seeds:
                    name = base if seed is None else f"{base}.s{seed}"
                    over = _merge(_nested(values), {"seed": seed} if seed is not None else {})
                    out[name] = SweepRun(name, arm, values, seed, _merge(over, snaps))
        return out

    def train_config(self, name: str, out: str, model: str, kl_docs: range | None = None):
        """Run `name`'s TrainConfig (a name of `expanded_runs`): `train`, then its arm's overrides, then its swept
        values, seed and snapshots, then the pipeline's folders; a `kl` run reads the corpus's documents
        `kl_docs` (neither the Fisher's nor perplexity's)."""
        from e2wm.train.config import TrainConfig
        runs = self.expanded_runs()
        if name not in runs:
            raise E2WMError(f"run {name!r}: not a run of this pipeline (have {', '.join(runs)})")
        run = runs[name]
        merged = _merge(_merge(_merge(self.train, self.runs[run.arm]), run.overrides), {
            "out": f"{out}/train/{name}", "model": {"name_or_path": model},
            "data": {"path": f"{out}/data"}})
        if merged.get("regularizer", {}).get("kind", "ewc_lora") in ("ewc_lora", "ewc"):
            merged = _merge(merged, {"regularizer": {"fisher": f"{out}/fisher"}})
        if merged.get("regularizer", {}).get("kind") == "kl":
            docs = {} if kl_docs is None else {"corpus_start": kl_docs.start, "corpus_end": kl_docs.stop}
            merged = _merge(merged, {"regularizer": {"corpus": self.corpus, **docs}})
        return build(TrainConfig, merged, f"pipeline config: runs.{run.arm}"
                     + (f" (sweep run {name})" if name != run.arm else ""))

    def run_kinds(self) -> dict[str, str]:
        """Each run's regulariser kind (every run of `expanded_runs`)."""
        return {name: self.train_config(name, "OUT", "MODEL").regularizer.kind for name in self.expanded_runs()}

    def fisher_modules(self) -> str:
        """The weights the Fisher covers: every one when a run fine-tunes every weight (kind ewc), or when an
        ewc_lora run names its own `lora.target_modules` (the Fisher's `lora-targets` are the architecture's
        default ones), so that each penalty covers what its run trains (ewc_lora runs read their subset); else
        `fisher.modules`."""
        runs = [self.train_config(name, "OUT", "MODEL") for name in self.expanded_runs()]
        own = any(r.regularizer.kind == "ewc_lora" and r.lora.target_modules for r in runs)
        return "all" if own or any(r.regularizer.kind == "ewc" for r in runs) else self.fisher.modules

    def fisher_config(self, out: str, model: str, samples: int) -> FisherConfig:
        """The Fisher stage's config: `samples` documents of the corpus, on this pipeline's launcher."""
        return replace(self.fisher, model=model, corpus=self.corpus, out=f"{out}/fisher", max_samples=samples,
                       modules=self.fisher_modules(),
                       zero_stage=None if self.launcher == "local" else self.fisher.zero_stage or 0)

    def launch(self) -> dict:
        """How the fisher, train and eval stages get their ranks (e2wm.pipeline.launch.run_stage's keywords)."""
        return {"launcher": self.launcher, "workers": self.workers, "use_gpu": self.gpus, "address": self.address,
                "max_failures": self.max_failures}

    def eval_config(self, out: str, model: str, adapter: str | None, name: str = "base"):
        from e2wm.eval.config import EvalConfig
        return build(EvalConfig, {**self.eval, "model": model, "adapter": adapter, "suites": [f"{out}/data/eval"],
                                  "out": f"{out}/eval/{name}", "ppl_corpus": self.corpus,
                                  "fisher": f"{out}/fisher"}, "pipeline config: eval")

    def to_dict(self) -> dict:
        return to_plain(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "pipeline config") -> "PipelineConfig":
        return build(cls, d, where)


def _merge(base: dict, over: dict) -> dict:
    """`base` with `over` laid on top, section by section."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
