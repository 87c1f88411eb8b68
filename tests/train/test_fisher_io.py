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
