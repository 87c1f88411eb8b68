"""The pipeline's general corpus in four slices, in this order (issue 24): the Fisher's first documents, a kl run's,
local pretraining's, perplexity's last. On `builtin:stdlib` all four are disjoint and hold hundreds of documents
each; on a corpus too small for that (`builtin:pydoc`, the presets) kl reads everything between the Fisher's and
perplexity's and pretraining all but perplexity's, as before."""
import pytest

from e2wm.pipeline.config import PipelineConfig
from e2wm.train.corpus import SLICE_MIN, general_slices, load_texts, pretrain_is_own

KL = {"kl": {"regularizer": {"kind": "kl", "lam": 1.0}}, "ewc_lora": {}}


def _cfg(corpus, fisher, ppl, runs=None, **more):
    return PipelineConfig.from_dict({"corpus": corpus, "fisher": {"max_samples": fisher},
                                     "eval": {"ppl_docs": ppl}, "runs": runs or KL, **more})


def _disjoint_in_order(slices, n):
    parts = [slices[k] for k in ("fisher", "kl", "pretrain", "ppl")]
    assert [r.step for r in parts] == [1] * 4
    assert parts[0].start == 0 and parts[-1].stop == n
    assert all(a.stop == b.start for a, b in zip(parts, parts[1:]))   # in order, touching: disjoint, covering


def test_on_builtin_stdlib_the_four_slices_are_disjoint_and_hundreds_each():
    from e2wm.pipeline.run import _general
    docs, slices = _general(_cfg("builtin:stdlib", 400, 300))
    n = len(docs)
    assert list(slices) == ["fisher", "kl", "pretrain", "ppl"]
    _disjoint_in_order(slices, n)
    assert slices["fisher"] == range(400) and slices["ppl"] == range(n - 300, n)
    assert len(slices["kl"]) >= 500 and len(slices["pretrain"]) >= 500
    assert len(slices["pretrain"]) - len(slices["kl"]) in (0, 1)
    assert pretrain_is_own(slices)
    texts = {k: set(docs[r.start:r.stop]) for k, r in slices.items()}
    assert not [(a, b) for a in texts for b in texts if a < b and texts[a] & texts[b]]


def test_a_kl_run_reads_its_slice_and_no_other():
    from e2wm.pipeline.run import _general
    cfg = _cfg("builtin:stdlib", 400, 300)
    kl = _general(cfg)[1]["kl"]
    reg = cfg.train_config("kl", "OUT", "MODEL", kl).regularizer
    assert (reg.corpus, reg.corpus_start, reg.corpus_end) == ("builtin:stdlib", kl.start, kl.stop)


def test_on_builtin_pydoc_the_layout_of_the_presets_is_kept():
    """79 documents: the Fisher's first 16, perplexity's last 12, kl those between; pretraining all but
    perplexity's (it cannot have a slice of its own)."""
    from e2wm.pipeline.run import _general
    docs, slices = _general(_cfg("builtin:pydoc", 16, 12))
    n = len(docs)
    assert slices == {"fisher": range(16), "kl": range(16, n - 12), "pretrain": range(n - 12),
                      "ppl": range(n - 12, n)}
    assert not pretrain_is_own(slices)


@pytest.mark.parametrize("preset, fisher", [("quickstart", 48), ("table2-mini", 60)])
def test_the_pydoc_presets_keep_their_slices(preset, fisher):
    from importlib import resources

    import yaml

    from e2wm.pipeline.run import _general
    data = yaml.safe_load(resources.files("e2wm").joinpath("presets", f"pipeline-{preset}.yaml").read_text())
    docs, slices = _general(PipelineConfig.from_dict(data))
    n = len(docs)
    assert data["corpus"] == "builtin:pydoc" and n - 12 > fisher
    assert slices == {"fisher": range(fisher), "kl": range(fisher, n - 12), "pretrain": range(n - 12),
                      "ppl": range(n - 12, n)}


def test_kl_and_pretraining_get_slices_of_their_own_from_twice_slice_min():
    n, fisher, ppl = 1000, 100, 100
    for between, own in ((2 * SLICE_MIN - 1, False), (2 * SLICE_MIN, True)):
        s = general_slices(fisher + between + ppl, fisher, ppl)
        assert pretrain_is_own(s) == own and s["fisher"] == range(fisher)
        assert s["ppl"] == range(fisher + between, fisher + between + ppl)
        if own:
            _disjoint_in_order(s, fisher + between + ppl)
        else:
            assert s["kl"] == range(fisher, fisher + between) and s["pretrain"] == range(fisher + between)
    # no fisher.max_samples, or one beyond the corpus: the Fisher reads all but perplexity's, kl nothing
    for f in (None, 0, 10 * n):
        assert general_slices(n, f, ppl) == {"fisher": range(n - ppl), "kl": range(n - ppl, n - ppl),
                                             "pretrain": range(n - ppl), "ppl": range(n - ppl, n)}


def test_too_small_a_corpus_is_refused_naming_the_settings():
    from e2wm.errors import E2WMError
    from e2wm.pipeline.run import _general
    n = len(load_texts("builtin:pydoc"))
    with pytest.raises(E2WMError, match=f"{n} documents leave none for the Fisher after eval.ppl_docs={n}"):
        _general(_cfg("builtin:pydoc", 16, n))
    with pytest.raises(E2WMError, match="leave none for the kl run"):
        _general(_cfg("builtin:pydoc", n, 12))
    _general(_cfg("builtin:pydoc", n, 12, runs={"lora": {"regularizer": {"kind": "none"}}}))   # no kl run: fine


@pytest.mark.parametrize("corpus, own", [("builtin:stdlib", True), ("builtin:pydoc", False)])
def test_local_pretraining_reads_the_pretrain_slice(tmp_path, monkeypatch, corpus, own):
    from e2wm.pipeline import local_model, run
    seen, logged = [], []
    monkeypatch.setattr(local_model, "task_texts", lambda path: ["a task row"])
    monkeypatch.setattr(local_model, "make_local_model",
                        lambda cfg, texts, general, out, log: seen.append(general) or {"vocab": 1})
    cfg = _cfg(corpus, 400 if own else 16, 300 if own else 12)
    info = run._model(cfg, tmp_path, logged.append)
    docs, slices = run._general(cfg)
    r = slices["pretrain"]
    assert seen == [docs[r.start:r.stop]] and seen[0]
    assert info == {"vocab": 1, "pretrain_documents": [r.start, r.stop], "pretrain_disjoint": own}
    if own:
        assert not set(seen[0]) & set(docs[:slices["kl"].stop] + docs[slices["ppl"].start:])
    else:   # as before: every document but perplexity's
        assert seen[0] == docs[:slices["ppl"].start]
    assert any(f"general text: documents {r.start}..{r.stop - 1} of {corpus}" in line for line in logged)
