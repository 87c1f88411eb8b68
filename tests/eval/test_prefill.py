"""The shared prompt pass (`e2wm.eval.prefill`): prompts of one length run with no mask (attention's causal
fast path) and are placed in a left-padded cache; that cache and the last logits equal one padded pass under
the mask, and so does the next step. Caches with sliding-window layers take the padded pass itself."""
import pytest
import torch

from e2wm.eval.prefill import padded, prefill
from e2wm.train.model import tiny_causal_lm

PROMPTS = [[5, 9, 13, 2, 7, 7, 40], [3, 4], [8, 8, 8, 1, 60, 61, 62, 63, 64], [11, 12], [70, 71, 72, 73]]


def _mistral():
    from transformers import MistralConfig, MistralForCausalLM
    torch.manual_seed(0)
    return MistralForCausalLM(MistralConfig(vocab_size=259, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                            num_attention_heads=4, num_key_value_heads=2, sliding_window=4,
                                            max_position_embeddings=128)).eval()


def _reference(model, prompts):
    """One left-padded pass under the mask (transformers' way) and its cache."""
    ids, mask, pos = padded(prompts, 0, "cpu")
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
    return out, mask


def _masks_seen(model):
    seen = []
    model.register_forward_pre_hook(lambda m, a, kw: seen.append(kw.get("attention_mask")), with_kwargs=True)
    return seen


@pytest.mark.parametrize("make,grouped", [(tiny_causal_lm, True), (_mistral, False)])
@torch.no_grad()
def test_prefill_equals_one_padded_pass_and_so_does_the_next_step(make, grouped):
    model = make()
    seen = _masks_seen(model)
    ours = prefill(model, PROMPTS, 0, grouped_from=0)
    # the Llama's prompts ran by length with no mask (4 lengths: 4 passes); the sliding-window Mistral's in one
    # padded pass
    assert [m is None for m in seen] == ([True] * 4 if grouped else [False])
    ref, mask = _reference(model, PROMPTS)
    assert ours.width == 9 and torch.equal(ours.mask, mask)
    torch.testing.assert_close(ours.last, ref.logits[:, -1], rtol=0, atol=1e-5)
    real = mask.bool() if grouped else torch.ones_like(ref.cache.layers[0].keys[:, 0, :, 0], dtype=torch.bool)
    for a, b in zip(ours.cache.layers, ref.cache.layers):   # (a sliding window keeps its last keys only)
        torch.testing.assert_close(a.keys.transpose(1, 2)[real], b.keys.transpose(1, 2)[real], rtol=0, atol=1e-5)
        torch.testing.assert_close(a.values.transpose(1, 2)[real], b.values.transpose(1, 2)[real], rtol=0, atol=1e-5)
    nxt = torch.tensor([[17], [18], [19], [20], [21]])
    pos = torch.tensor([[len(p)] for p in PROMPTS])
    step = torch.cat([mask, torch.ones((5, 1), dtype=mask.dtype)], 1)
    a = model(input_ids=nxt, attention_mask=step, position_ids=pos, cache=ours.cache, use_cache=True).logits
    b = model(input_ids=nxt, attention_mask=step, position_ids=pos, cache=ref.cache, use_cache=True).logits
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


@torch.no_grad()
def test_prompts_of_one_length_run_in_one_pass_with_no_mask():
    model = tiny_causal_lm()
    seen = _masks_seen(model)
    ours = prefill(model, [[1, 2, 3], [4, 5, 6]], 0, grouped_from=0)
    assert seen == [None] and ours.mask is None and ours.last.shape == (2, 259)


@torch.no_grad()
def test_short_prompts_of_several_lengths_run_in_one_padded_pass():
    model = tiny_causal_lm()
    seen = _masks_seen(model)
    ours = prefill(model, PROMPTS, 0, grouped_from=10)   # the longest holds 9 tokens
    assert len(seen) == 1 and seen[0] is not None and ours.mask is not None
    ref, _ = _reference(model, PROMPTS)
    torch.testing.assert_close(ours.last, ref.logits[:, -1], rtol=0, atol=0)
