"""The config of one `e2wm pipeline` run: each stage's own config, nested, checked before any stage runs.

Sections reuse the stages' dataclasses: `collect` is an `e2wm collect` job (CollectConfig), `data` an
`e2wm build-data` config (DataConfig), `train` the base `e2wm train` config (TrainConfig, partial) that
each entry of `runs` overrides, `eval` the `e2wm eval` settings (EvalConfig). The folders are the
pipeline's: OUT/collect, OUT/data, OUT/model, OUT/fisher, OUT/train/RUN, OUT/eval/NAME, OUT/report.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from e2wm.collect.config import CollectConfig
from e2wm.config import build, check_ranges, field_doc as _help, to_plain
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
    eval: dict = field(default_factory=dict, **_help("e2wm eval settings: limit, num_beams, max_new_tokens, "
                                                     "ppl_docs, ppl_max_length, ppl_stride"))
    launcher: str = field(default="local", **_help("local (one process) | deepspeed | ray: how the fisher, train "
                                                   "and eval stages get their ranks"))
    workers: int = field(default=1, **_help("ranks of the fisher, train and eval stages", range=(1, 4096)))
    gpus: bool = field(default=False, **_help("one GPU per rank"))
    address: str = field(default="local", **_help("Ray: local, auto or HOST:PORT (collection and --launcher ray)"))
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
        for key in ("model", "corpus", "out"):
            if getattr(self.fisher, key) != getattr(FISHER, key):
                raise E2WMError(f"fisher.{key}: set by the pipeline, not here")
        # every run's TrainConfig and the eval settings are built now, so a typo fails before any stage
        for name in self.runs:
            self.train_config(name, "OUT", "MODEL")
        self.eval_config("OUT", "MODEL", None)

    def train_config(self, name: str, out: str, model: str, kl_docs: range | None = None):
        """Run `name`'s TrainConfig: `train`, then its overrides, then the pipeline's folders; a `kl` run
        reads the corpus's documents `kl_docs` (neither the Fisher's nor perplexity's)."""
        from e2wm.train.config import TrainConfig
        merged = _merge(_merge(self.train, self.runs[name]), {
            "out": f"{out}/train/{name}", "model": {"name_or_path": model},
            "data": {"path": f"{out}/data"}})
        if merged.get("regularizer", {}).get("kind", "ewc_lora") in ("ewc_lora", "ewc"):
            merged = _merge(merged, {"regularizer": {"fisher": f"{out}/fisher"}})
        if merged.get("regularizer", {}).get("kind") == "kl":
            docs = {} if kl_docs is None else {"corpus_start": kl_docs.start, "corpus_end": kl_docs.stop}
            merged = _merge(merged, {"regularizer": {"corpus": self.corpus, **docs}})
        return build(TrainConfig, merged, f"pipeline config: runs.{name}")

    def run_kinds(self) -> dict[str, str]:
        """Each run's regulariser kind."""
        return {name: self.train_config(name, "OUT", "MODEL").regularizer.kind for name in self.runs}

    def fisher_modules(self) -> str:
        """The weights the Fisher covers: every one when a run fine-tunes every weight (kind ewc), so that its
        penalty covers what it trains (ewc_lora runs read their subset); else `fisher.modules`."""
        return "all" if "ewc" in self.run_kinds().values() else self.fisher.modules

    def fisher_config(self, out: str, model: str, samples: int) -> FisherConfig:
        """The Fisher stage's config: `samples` documents of the corpus, on this pipeline's launcher."""
        return replace(self.fisher, model=model, corpus=self.corpus, out=f"{out}/fisher", max_samples=samples,
                       modules=self.fisher_modules(),
                       zero_stage=None if self.launcher == "local" else self.fisher.zero_stage or 0)

    def launch(self) -> dict:
        """How the fisher, train and eval stages get their ranks (e2wm.pipeline.launch.run_stage's keywords)."""
        return {"launcher": self.launcher, "workers": self.workers, "use_gpu": self.gpus, "address": self.address}

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
