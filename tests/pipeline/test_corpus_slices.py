"""The pipeline's general corpus in three disjoint slices (the Fisher's first documents, a kl run's next ones,
perplexity's last), each recorded by what read it and checked by evaluation; and a full fine-tuning (ewc) run
makes the Fisher cover every weight."""
import json
import shutil

import pytest
import yaml

from e2wm.cli import main
from e2wm.pipeline.config import PipelineConfig
from e2wm.train.corpus import corpus_hash, load_texts

SMALL = {   # a model of one layer, a few steps: what matters here is which documents each stage reads
    "corpus": "builtin:pydoc",
    "model": {"base": "local", "vocab_size": 300, "hidden": 16, "layers": 1, "heads": 2, "pretrain_steps": 0},
    "fisher": {"max_samples": 16, "max_length": 32, "micro_batch": 8, "checkpoint_every": 0},
    "train": {"lora": {"r": 4, "alpha": 8, "dropout": 0.0}, "data": {"max_length": 128},
              "optim": {"max_steps": 2, "global_batch_size": 4, "micro_batch_size": 4, "precision": "fp32"},
              "checkpoint": {"every": 0}, "logging": {"tensorboard": False}},
    "runs": {"kl": {"regularizer": {"kind": "kl", "lam": 1.0, "kl_batch_size": 2, "kl_max_length": 32}}},
    "eval": {"limit": 1, "num_beams": 1, "max_new_tokens": 4, "ppl_docs": 12, "ppl_max_length": 32},
}
EWC = {"lora": {"enabled": False}, "regularizer": {"kind": "ewc"}}


def _with_data(out, cfg: PipelineConfig, built_dataset) -> None:
    """OUT as if collect and data had run: the session's built dataset, both stages marked finished."""
    from e2wm.pipeline.run import _hashes
    from e2wm.pipeline.state import State
    shutil.copytree(built_dataset, out / "data")
    state, hashes = State(out), _hashes(cfg)
    for stage in ("collect", "data"):
        state.mark(stage, hashes[stage], True)


@pytest.mark.slow
def test_the_fisher_a_kl_run_and_perplexity_read_disjoint_documents(tmp_path, built_dataset, cli_error):
    from e2wm.pipeline.run import pipeline
    from e2wm.train.export import kl_corpus
    from e2wm.train.fisher_io import open_fisher
    out = tmp_path / "run"
    cfg = PipelineConfig.from_dict({**SMALL, "out": str(out)})
    _with_data(out, cfg, built_dataset)
    pipeline(cfg, stages=("model", "fisher", "train", "eval"), log=lambda *a: None)

    docs = load_texts("builtin:pydoc")
    n = len(docs)
    with open_fisher(out / "fisher") as fh:
        fisher = fh.metadata()
    kl = json.loads((out / "train" / "kl" / "run.json").read_text())["kl_corpus"]
    ppl = json.loads((out / "eval" / "kl" / "results.json").read_text())["perplexity"]
    # [0, 16) | [16, n - 12) | [n - 12, n), each recorded by its documents' hash
    assert fisher["samples"] == "16" and fisher["corpus_sha256"] == corpus_hash(docs[:16])
    assert kl == {"corpus": "builtin:pydoc", "start": 16, "end": n - 12, "corpus_sha256": corpus_hash(docs[16:n - 12])}
    assert ppl["documents"] == 12 and ppl["corpus_sha256"] == corpus_hash(docs[n - 12:])
    assert ppl["fisher"] == "disjoint: the Fisher read documents 0..15"
    assert ppl["kl"] == f"disjoint: the kl run read documents 16..{n - 13}"
    adapter = out / "train" / "kl" / "adapter"
    assert kl_corpus(adapter) == kl   # evaluation finds it from the adapter alone

    # perplexity raised after training reaches into the kl run's documents: refused before the model loads
    suite = sorted((out / "data" / "eval").iterdir())[0]
    cli_error(["eval", "--model", out / "model", "--adapter", adapter, "--suites", suite, "--ppl-corpus",
               "builtin:pydoc", "--ppl-docs", "20", "--fisher", out / "fisher", "--out", tmp_path / "e"],
              [f"its last 20 of {n} documents", f"the kl run read (--adapter {adapter}: 16..{n - 13})",
               f"in {n - 20}..{n - 13}", "lower --ppl-docs to 12"])
    assert not (tmp_path / "e").exists()


def test_a_kl_run_with_no_documents_left_is_refused_before_the_first_stage(tmp_path, cli_error):
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({**SMALL, "fisher": {**SMALL["fisher"], "max_samples": 70}}))
    n = len(load_texts("builtin:pydoc"))
    cli_error(["pipeline", "--config", tmp_path / "p.yaml", "--out", tmp_path / "run"],
              [f"{n} documents leave none for the kl run(s) kl", f"Fisher's first {n - 12}",
               "fisher.max_samples=70", "perplexity's last 12 (eval.ppl_docs)"])
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("runs, modules", [({"lora": {"regularizer": {"kind": "none"}}}, "lora-targets"),
                                           ({"lora": {"regularizer": {"kind": "none"}}, "ewc": EWC}, "all")])
def test_an_ewc_run_makes_the_fisher_cover_every_weight(tmp_path, monkeypatch, runs, modules):
    """Full fine-tuning trains every weight, so the Fisher stage computes one over every weight (ewc_lora runs
    read their subset), and its config hash says so: a Fisher of the LoRA targets is never taken for it."""
    from e2wm.pipeline import launch, run
    seen = []
    monkeypatch.setattr(launch, "run_stage", lambda stage, cfg, **kw: seen.append(cfg))
    cfg = PipelineConfig.from_dict({**SMALL, "runs": runs})
    run._fisher(cfg, tmp_path, log=lambda *a: None)
    assert seen[0].modules == modules
    as_configured = PipelineConfig.from_dict({**SMALL, "runs": runs, "fisher": {**SMALL["fisher"], "modules": modules}})
    assert run._hashes(cfg)["fisher"] == run._hashes(as_configured)["fisher"]
