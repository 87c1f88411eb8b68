"""Empirical Fisher: per-sample exactness, DeepSpeed ZeRO-0/2/3 parity on 2 gloo ranks, storage, resume."""
import json
import math
import subprocess
from pathlib import Path

import pytest
import torch

from e2wm.errors import E2WMError
from e2wm.train import dist as edist
from e2wm.train.corpus import corpus_hash, load_texts
from e2wm.train.fisher import FisherInterrupted, compute_fisher
from e2wm.train.fisher_io import load_fisher, save_fisher, shard_name
from e2wm.train.fisher_run import entry as main_fisher
from e2wm.train.model import add_lora, byte_tokenizer, tiny_causal_lm

TOK = byte_tokenizer()

ARGS = ["--model", "tiny", "--corpus", "builtin:pydoc", "--max-samples", "9", "--max-length", "40",
        "--micro-batch", "2"]


def rel(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(((a[k] - b[k]).norm() / b[k].norm()).item() for k in a)


def varied_texts(n=8):
    return [t[:10 + 7 * i] for i, t in enumerate(load_texts("builtin:pydoc", n))]  # unequal lengths -> padding


def test_micro_batch_4_equals_1():
    m = add_lora(tiny_causal_lm())
    f1, m1 = compute_fisher(m, varied_texts(), TOK, max_length=64, micro_batch=1)
    f4, m4 = compute_fisher(m, varied_texts(), TOK, max_length=64, micro_batch=4)
    assert rel(f4, f1) <= 1e-6
    assert m1["samples"] == m4["samples"] == "8" and m1["tokens"] == m4["tokens"]
    assert sorted(f1) == [f"model.layers.{i}.self_attn.{p}_proj.weight" for i in (0, 1) for p in "qv"]
    assert all(v.dtype == torch.float32 and (v >= 0).all() and v.sum() > 0 for v in f1.values())


def test_all_modules_and_plain_model():
    texts = varied_texts(3)
    fa, _ = compute_fisher(add_lora(tiny_causal_lm()), texts, TOK, max_length=32, modules="all")
    assert set(fa) == {n for n, _ in tiny_causal_lm().named_parameters()}
    fp, _ = compute_fisher(tiny_causal_lm(), texts, TOK, max_length=32)  # no LoRA: default q/v targets
    fl, _ = compute_fisher(add_lora(tiny_causal_lm()), texts, TOK, max_length=32)
    assert rel(fp, fl) <= 1e-6


@pytest.mark.parametrize("micro_batch", [1, 4, 8])
@pytest.mark.parametrize("modules,targets", [("lora-targets", None), ("lora-targets", ["q_proj", "v_proj", "lm_head"]),
                                             ("all", None)])
@pytest.mark.slow
def test_batch_method_equals_the_loop(micro_batch, modules, targets):
    """One backward per micro-batch gives the per-sample squares of one backward per sample: padded
    batches of uneven lengths, a partial last batch (9 samples), every linear or every parameter."""
    texts = varied_texts(9)
    ref, rm = compute_fisher(add_lora(tiny_causal_lm(), targets=targets), texts, TOK, max_length=64,
                             micro_batch=1, modules=modules, method="loop")
    got, gm = compute_fisher(add_lora(tiny_causal_lm(), targets=targets), texts, TOK, max_length=64,
                             micro_batch=micro_batch, modules=modules, method="batch")
    assert rel(got, ref) <= 1e-5
    assert (gm["samples"], gm["tokens"], gm["method"]) == (rm["samples"], rm["tokens"], "batch")


def test_batch_method_runs_one_backward_per_micro_batch(monkeypatch):
    calls = []
    real = torch.autograd.backward
    monkeypatch.setattr(torch.autograd, "backward", lambda *a, **k: calls.append(1) or real(*a, **k))
    compute_fisher(add_lora(tiny_causal_lm()), varied_texts(9), TOK, max_length=64, micro_batch=4)
    assert len(calls) == 3   # ceil(9 / 4); no per-sample backward for q/v


def test_gpt2_conv1d_biases_and_tied_embeddings_match_the_loop():
    """GPT-2 keeps its linears as Conv1D (weight in x out) with biases, and ties lm_head to wte: the
    Conv1D weights and biases take the hooks, the tied and non-linear weights the per-sample path."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from e2wm.train.per_sample import split_linear
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=259, n_positions=64, n_embd=32, n_layer=2, n_head=4)).eval()
    texts = varied_texts(6)
    ref, _ = compute_fisher(model, texts, TOK, max_length=48, micro_batch=1, modules="all", method="loop")
    got, _ = compute_fisher(model, texts, TOK, max_length=48, micro_batch=4, modules="all", method="batch")
    assert rel(got, ref) <= 1e-5
    linear, rest = split_linear(model, dict(model.named_parameters()))
    assert "transformer.h.0.attn.c_attn.weight" in linear and "transformer.h.0.attn.c_attn.bias" in linear
    assert {"transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.ln_1.weight"} <= set(rest)


def test_a_linear_run_twice_per_forward_is_refused():
    model = add_lora(tiny_causal_lm())
    inner = model.base_model.model.model.layers
    inner[1].self_attn.q_proj = inner[0].self_attn.q_proj   # one module, two uses: squares would be wrong
    with pytest.raises(E2WMError, match="runs twice in one forward.*--method loop"):
        compute_fisher(model, varied_texts(2), TOK, max_length=32, micro_batch=2)


@pytest.mark.slow
def test_storage_metadata_round_trip(tmp_path):
    texts = varied_texts(4)
    f, meta = compute_fisher(add_lora(tiny_causal_lm()), texts, TOK, max_length=32, out_dir=tmp_path, model_name="tiny")
    g, gm = load_fisher(tmp_path)
    assert rel(g, f) == 0.0 and gm == meta
    assert gm["corpus_sha256"] == corpus_hash(texts) and gm["modules"] == "lora-targets"
    assert {"model", "samples", "tokens", "zero_stage", "world_size"} <= gm.keys()
    save_fisher(tmp_path, {"x": torch.ones(2)}, {"n": 3}, name="o.safetensors")
    assert load_fisher(tmp_path / "o.safetensors")[1] == {"n": "3"}
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["batch", "loop"])
def test_resume_equals_uninterrupted(tmp_path, method):
    texts = varied_texts(7)
    ref, _ = compute_fisher(add_lora(tiny_causal_lm()), texts, TOK, max_length=48, micro_batch=2, method=method)
    with pytest.raises(FisherInterrupted):
        compute_fisher(add_lora(tiny_causal_lm()), texts, TOK, max_length=48, micro_batch=2,
                       out_dir=tmp_path, checkpoint_every=2, stop_after=4, method=method)
    assert json.loads((tmp_path / "checkpoint" / "state.json").read_text())["position"] == 4
    got, meta = compute_fisher(add_lora(tiny_causal_lm()), texts, TOK, max_length=48, micro_batch=2,
                               out_dir=tmp_path, checkpoint_every=2, method=method)
    assert rel(got, ref) == 0.0 and meta["samples"] == "7"


@pytest.mark.slow
@pytest.mark.parametrize("first, second", [(2, 3), (4, 1)])
def test_resume_with_another_micro_batch_continues_where_it_stopped(tmp_path, first, second):
    """The checkpoint counts samples, not micro-batches: no sample is skipped or counted twice."""
    texts = varied_texts(9)
    ref, ref_meta = compute_fisher(add_lora(tiny_causal_lm()), texts, TOK, max_length=48, micro_batch=1)
    with pytest.raises(FisherInterrupted):
        compute_fisher(add_lora(tiny_causal_lm()), texts, TOK, max_length=48, micro_batch=first,
                       out_dir=tmp_path, checkpoint_every=4, stop_after=4)
    got, meta = compute_fisher(add_lora(tiny_causal_lm()), texts, TOK, max_length=48, micro_batch=second,
                               out_dir=tmp_path, checkpoint_every=4)
    assert (meta["samples"], meta["tokens"]) == (ref_meta["samples"], ref_meta["tokens"]) == ("9", ref_meta["tokens"])
    assert rel(got, ref) <= 1e-6


def test_corrupt_checkpoint_is_a_named_error(tmp_path):
    texts = varied_texts(5)
    with pytest.raises(FisherInterrupted):
        compute_fisher(add_lora(tiny_causal_lm()), texts, TOK, max_length=32, out_dir=tmp_path,
                       checkpoint_every=2, stop_after=2)
    for f in (tmp_path / "checkpoint").glob("rank*.safetensors"):
        f.write_bytes(b"garbage")
    with pytest.raises(E2WMError, match="unreadable Fisher checkpoint"):
        compute_fisher(add_lora(tiny_causal_lm()), texts, TOK, max_length=32, out_dir=tmp_path, checkpoint_every=2)


def test_cli_single_process(tmp_path):
    assert main_fisher(["--model", "tiny", "--out", str(tmp_path), "--max-samples", "3", "--max-length", "24"]) == 0
    f, meta = load_fisher(tmp_path / "fisher.safetensors")
    assert meta["model"] == "tiny" and meta["samples"] == "3" and len(f) == 4


def test_corpus_loaders(tmp_path):
    (tmp_path / "a.txt").write_text("one\nline two\n\n\nsecond doc\n")
    assert load_texts(str(tmp_path / "a.txt")) == ["one\nline two", "second doc"]
    (tmp_path / "b.jsonl").write_text('{"text": "x"}\n\n{"text": "y"}\n')
    assert load_texts(str(tmp_path / "b.jsonl"), max_samples=1) == ["x"]
    (tmp_path / "bad.jsonl").write_text('{"text": "x"}\n{oops\n')
    with pytest.raises(E2WMError, match=r"bad.jsonl:2: malformed JSON"):
        load_texts(str(tmp_path / "bad.jsonl"))
    (tmp_path / "nofield.jsonl").write_text('{"body": "x"}\n')
    with pytest.raises(E2WMError, match=r"nofield.jsonl:1: .*\"text\""):
        load_texts(str(tmp_path / "nofield.jsonl"))
    with pytest.raises(E2WMError, match="not found"):
        load_texts(str(tmp_path / "missing.txt"))
    from datasets import Dataset
    Dataset.from_dict({"text": ["p", "q"]}).save_to_disk(str(tmp_path / "ds"))
    assert load_texts(str(tmp_path / "ds")) == ["p", "q"]
    pyd = load_texts("builtin:pydoc")
    assert len(pyd) > 50 and corpus_hash(pyd) == corpus_hash(load_texts("builtin:pydoc"))
    assert corpus_hash(["ab", "c"]) != corpus_hash(["a", "bc"])


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory):
    """One torchrun launch (2 ranks, gloo) runs ZeRO-0, 2, 3 and an interrupted+resumed ZeRO-3 run."""
    root = tmp_path_factory.mktemp("fisher2")
    cmd = edist.torchrun_cmd(2, edist.free_port(), str(Path(__file__).with_name("fisher_worker.py")),
                             [str(root), "0,2,3", *ARGS])
    env = edist.cpu_env({"PYTHONPATH": str(Path(__file__).parents[2])})
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]
    texts = load_texts("builtin:pydoc", 9)
    ref, _ = compute_fisher(add_lora(tiny_causal_lm()), texts, TOK, max_length=40, micro_batch=1)
    return root, ref


@pytest.mark.slow
@pytest.mark.parametrize("micro_batch", [1, 4, 8])
@pytest.mark.parametrize("stage", [0, 2, 3])
def test_two_ranks_match_the_single_process_loop(two_rank_run, stage, micro_batch):
    """The batch method on 2 gloo ranks at ZeRO-0/2/3 equals one backward per sample in one process."""
    root, ref = two_rank_run
    got, meta = load_fisher(root / f"z{stage}-mb{micro_batch}")
    assert rel(got, ref) <= 1e-5
    assert (meta["zero_stage"], meta["world_size"], meta["samples"], meta["method"]) == (str(stage), "2", "9", "batch")
    assert (meta["precision"], meta["load"]) == ("fp32", "full")   # the built-in tiny is built whole


@pytest.mark.slow
def test_two_rank_loop_method_matches(two_rank_run):
    root, ref = two_rank_run
    got, meta = load_fisher(root / "z3-loop")
    assert rel(got, ref) <= 1e-5 and meta["method"] == "loop"


@pytest.mark.slow
def test_zero3_shards_hold_half(two_rank_run):
    root, ref = two_rank_run
    full = sum(v.numel() for v in ref.values())
    shards = [load_fisher(root / "z3-mb4" / shard_name(r, 2)) for r in range(2)]
    for r, (t, meta) in enumerate(shards):
        local = sum(v.numel() for v in t.values())
        assert local == sum(math.ceil(v.numel() / 2) for v in ref.values())  # ~ full / 2, padding only
        assert local <= full / 2 + len(ref)
        assert meta["rank"] == str(r)
    shapes = json.loads(shards[0][1]["shapes"])
    for k, v in ref.items():  # the two partitions concatenate to the reference
        cat = torch.cat([shards[0][0][k], shards[1][0][k]])[:v.numel()].view(shapes[k])
        assert ((cat - v).norm() / v.norm()).item() <= 1e-5


@pytest.mark.slow
def test_two_rank_resume_is_exact_and_may_change_the_micro_batch(two_rank_run):
    root, _ = two_rank_run
    uninterrupted, _ = load_fisher(root / "z3-mb4")
    same, meta = load_fisher(root / "resume-same")
    assert rel(same, uninterrupted) == 0.0 and meta["samples"] == "9"   # same batches, same sums
    other, meta = load_fisher(root / "resume-other")
    assert rel(other, uninterrupted) <= 1e-6 and meta["samples"] == "9"   # rounding of other batch shapes
