"""Reading a Fisher for training: the weights a run needs, checked against the model it trains."""
import pytest
import torch

from e2wm.errors import E2WMError
from e2wm.train.fisher import compute_fisher, select_base_params
from e2wm.train.fisher_io import _flat_range, read_for_params
from e2wm.train.model import add_lora, byte_tokenizer, tiny_causal_lm


@pytest.fixture(scope="module")
def fisher_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("fisher")
    compute_fisher(add_lora(tiny_causal_lm()), ["some general text", "and some more of it"], byte_tokenizer(),
                   max_length=32, out_dir=out, model_name="tiny")
    return out


def _params(model):
    return select_base_params(model)


def test_reads_the_weights_of_this_model(fisher_dir):
    got = read_for_params(fisher_dir, _params(add_lora(tiny_causal_lm())), "cpu")
    assert len(got) == 4 and all(v.dtype == torch.float32 and v.sum() > 0 for v in got.values())


def test_a_fisher_of_another_model_is_refused(fisher_dir):
    with pytest.raises(E2WMError, match=r"computed for another model \(tiny\): Σ\|model.layers.0"):
        read_for_params(fisher_dir, _params(add_lora(tiny_causal_lm(seed=1))), "cpu")


def test_missing_weight_and_wrong_shape_are_named(fisher_dir, tmp_path):
    wider = add_lora(tiny_causal_lm(hidden=64))
    with pytest.raises(E2WMError, match=r"q_proj.weight has shape \[32, 32\], the model's is \[64, 64\]"):
        read_for_params(fisher_dir, _params(wider), "cpu")
    model = add_lora(tiny_causal_lm(), targets=("q_proj", "k_proj"))
    with pytest.raises(E2WMError, match=r"has no entry for model.layers.0.self_attn.k_proj.weight"):
        read_for_params(fisher_dir, _params(model), "cpu")
    (tmp_path / "broken.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(E2WMError, match="not a readable safetensors file"):
        read_for_params(tmp_path / "broken.safetensors", _params(model), "cpu")


def test_flat_ranges_read_whole_rows_only():
    t = torch.arange(35.0).view(5, 7)
    for start, end in ((0, 35), (3, 12), (14, 21), (20, 35), (34, 35)):
        assert torch.equal(_flat_range(t, [5, 7], start, end), t.reshape(-1)[start:end])
    assert torch.equal(_flat_range(torch.arange(9.0), [9], 2, 5), torch.arange(2.0, 5.0))


# ---------------------------------------------------------------- fisher_scale

def _saved(tmp_path, tensors):
    from e2wm.train.fisher_io import save_fisher
    return save_fisher(tmp_path, tensors, {"model": "hand", "modules": "lora-targets"})


class _Part:
    """A stand-in for a ZeRO-3 parameter: full shape `ds_shape`, a flat partition of `pn` elements."""
    def __init__(self, shape, world):
        n = torch.Size(shape).numel()
        self.ds_shape, self.ds_numel = torch.Size(shape), n
        self.ds_tensor = torch.empty(-(-n // world))


def test_e2wm_int8_codes_by_hand(tmp_path):
    """Row-wise absmax codes of fp16(F): 127 at each row's maximum, zeros for a zero row, fp16's flush
    of tiny values, round-to-nearest."""
    f = torch.tensor([[2.0, 1.0, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0], [1e-9, 1e-3, 4e-3, 2e-3]])
    got = read_for_params(_saved(tmp_path, {"w": f}), {"w": torch.empty(3, 4)}, "cpu", scale="e2wm_int8")["w"]
    assert got.tolist() == [[127.0, 64.0, 32.0, 0.0], [0.0] * 4, [0.0, 32.0, 127.0, 64.0]]
    raw = read_for_params(_saved(tmp_path, {"w": f}), {"w": torch.empty(3, 4)}, "cpu", scale="raw")["w"]
    assert torch.equal(raw, f)


@pytest.mark.parametrize("world", [2, 3, 5])
def test_zero3_partitions_get_the_whole_rows_codes(tmp_path, monkeypatch, world):
    """Rows that span partitions: each rank's slice equals the slice of the whole tensor's codes."""
    import torch.distributed as dist

    g = torch.Generator().manual_seed(0)
    f = torch.rand(9, 7, generator=g)
    f[4, 6] = 50.0     # row 4 (flat 28..34) spans partitions at every world size above
    path = _saved(tmp_path, {"w": f})
    whole = read_for_params(path, {"w": torch.empty(9, 7)}, "cpu", scale="e2wm_int8")["w"].reshape(-1)
    pn = -(-63 // world)
    for rank in range(world):
        monkeypatch.setattr(dist, "get_rank", lambda: rank)
        part = read_for_params(path, {"w": _Part((9, 7), world)}, "cpu", scale="e2wm_int8")["w"]
        expect = torch.zeros(pn)
        piece = whole[rank * pn:(rank + 1) * pn]
        expect[:piece.numel()] = piece
        assert torch.equal(part, expect), rank


def test_mean_scale_divides_by_the_mean_over_covered_weights(tmp_path):
    a, b = torch.full((2, 2), 3.0), torch.full((4,), 1.0)
    got = read_for_params(_saved(tmp_path, {"a": a, "b": b}), {"a": torch.empty(2, 2), "b": torch.empty(4)}, "cpu",
                          scale="mean")
    mean = (12.0 + 4.0) / 8
    assert torch.allclose(got["a"], a / mean) and torch.allclose(got["b"], b / mean)


def test_uniform_scale_is_one_on_every_covered_weight_and_as_strong_as_mean(tmp_path, monkeypatch):
    """The control arm: 1 wherever the Fisher covers a weight (its mean is then 1, as `mean`'s is), zero padding
    in a ZeRO-3 partition; the file is still checked."""
    import torch.distributed as dist
    a, b = torch.tensor([[3.0, 0.0], [1e-8, 7.0]]), torch.tensor([0.0, 2.0, 5.0])
    path = _saved(tmp_path, {"a": a, "b": b})
    params = {"a": torch.empty(2, 2), "b": torch.empty(3)}
    got = read_for_params(path, params, "cpu", scale="uniform")
    assert torch.equal(got["a"], torch.ones(2, 2)) and torch.equal(got["b"], torch.ones(3))
    mean = read_for_params(path, params, "cpu", scale="mean")
    assert torch.cat([v.flatten() for v in mean.values()]).mean().item() == pytest.approx(1.0)
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    part = read_for_params(path, {"b": _Part((3,), 2)}, "cpu", scale="uniform")["b"]
    assert part.tolist() == [1.0, 0.0]   # rank 1 holds element 2 and one element of padding
    bad = _saved(tmp_path, {"a": torch.tensor([[float("nan"), 1.0], [1.0, 1.0]]), "b": b})
    with pytest.raises(E2WMError, match="NaN"):
        read_for_params(bad, params, "cpu", scale="uniform")


def test_unrepresentable_in_fp16_is_named_for_e2wm_int8(tmp_path):
    path = _saved(tmp_path, {"w": torch.tensor([[1e6, 1.0]])})
    with pytest.raises(E2WMError, match=r"w exceeds fp16's range.*fisher_scale raw or mean"):
        read_for_params(path, {"w": torch.empty(1, 2)}, "cpu", scale="e2wm_int8")
    assert read_for_params(path, {"w": torch.empty(1, 2)}, "cpu", scale="mean")["w"].sum() > 0


@pytest.mark.slow
def test_a_fisher_of_every_weight_serves_a_lora_run(fisher_dir, tmp_path):
    """A pipeline with a full fine-tuning (ewc) run computes one Fisher over every weight; its ewc_lora runs
    read their LoRA targets' entries from it, the same as from a Fisher of those alone."""
    compute_fisher(add_lora(tiny_causal_lm()), ["some general text", "and some more of it"], byte_tokenizer(),
                   max_length=32, out_dir=tmp_path, model_name="tiny", modules="all")
    params = _params(add_lora(tiny_causal_lm()))
    got, want = read_for_params(tmp_path, params, "cpu"), read_for_params(fisher_dir, params, "cpu")
    assert got.keys() == want.keys() and all(torch.allclose(got[k], want[k], rtol=1e-5, atol=0) for k in got)
