"""E2WM's weighted answer loss: a hand computation, no gradient through prompt tokens, split invariance."""
import math

import torch

from e2wm.train.data import Example, collate
from e2wm.train.objective import row_normalisers, weighted_token_loss


def _batch():
    # row 0: prompt 3 tokens, answer 2 (weight 1); row 1: prompt 2, answer 3 (weight 0.7); row 1 padded
    ex = [Example((4, 1, 3, 2, 0), 3, 1.0, 0), Example((2, 2, 1, 4), 2, 0.7, 1)]
    return collate(ex, pad_id=0, multiple=1, device="cpu")


def test_weighted_loss_equals_a_hand_computation():
    b = _batch()
    logits = torch.randn(2, 5, 5, generator=torch.Generator().manual_seed(0))
    wsum, per_task, counts = weighted_token_loss(logits, b, n_tasks=2)

    def ce(row, t):   # the loss of predicting token t from position t - 1
        return -torch.log_softmax(logits[row, t - 1], -1)[b["input_ids"][row, t]].item()
    by_hand = 1.0 * (ce(0, 3) + ce(0, 4)) + 0.7 * (ce(1, 2) + ce(1, 3))
    assert math.isclose(float(wsum), by_hand, rel_tol=1e-6)
    assert counts.tolist() == [2.0, 2.0]          # answer tokens per task, whatever their weight
    assert math.isclose(float(per_task[0]), ce(0, 3) + ce(0, 4), rel_tol=1e-6)
    # E2WM normalises by the number of weighted tokens: Σ w·ℓ / #{t : w_t > 0}
    assert math.isclose(float(wsum) / 4, by_hand / 4, rel_tol=1e-6)


def test_prompt_tokens_get_no_gradient():
    b = _batch()
    logits = torch.randn(2, 5, 5, requires_grad=True)
    weighted_token_loss(logits, b, n_tasks=2)[0].backward()
    g = logits.grad.abs().sum(-1)
    # position t predicts token t + 1: row 0's answer starts at 3, so positions 2 and 3 carry gradient
    assert g[0].tolist()[:2] == [0.0, 0.0] and g[0, 2] > 0 and g[0, 3] > 0 and g[0, 4] == 0
    assert g[1, 0] == 0 and g[1, 1] > 0 and g[1, 2] > 0 and g[1, 3] == 0 and g[1, 4] == 0


def test_any_split_of_the_global_batch_gives_the_same_total():
    """Normalising by the whole batch's answer count (as the recipe does) makes micro-batch splits add up."""
    ex = [Example(tuple(range(1, 3 + i)), 1 + i % 2, 0.5 + 0.1 * i, i % 2) for i in range(6)]
    logits = {i: torch.randn(1, len(e.ids), 12, generator=torch.Generator().manual_seed(i)) for i, e in enumerate(ex)}
    n = sum(e.answer_tokens for e in ex)

    def total(groups):
        out = 0.0
        for g in groups:
            b = collate([ex[i] for i in g], 0, 1, "cpu")
            width = b["input_ids"].shape[1]
            lg = torch.cat([torch.nn.functional.pad(logits[i], (0, 0, 0, width - logits[i].shape[1])) for i in g])
            out += float(weighted_token_loss(lg, b, 2)[0]) / n
        return out
    whole = total([[0, 1, 2, 3, 4, 5]])
    assert math.isclose(total([[0, 1], [2, 3], [4, 5]]), whole, rel_tol=1e-6)
    assert math.isclose(total([[5], [0, 2, 4], [1, 3]]), whole, rel_tol=1e-6)


def test_loss_groups_give_e2wm_mean_of_micro_batch_losses():
    """E2WM's 6B script: 4 forwards of 5 rows, each Σ w·ℓ / #{w > 0} of its own rows, averaged by gradient
    accumulation. The row factors applied to one weighted sum over the batch (in any split) give that mean."""
    g = torch.Generator().manual_seed(3)
    ex = [Example(tuple(range(1, 6 + i % 4)), 2 + i % 3, 1.0 if i % 4 else 0.7, i % 2) for i in range(20)]
    ex[7] = Example(ex[7].ids, ex[7].answer_start, 0.0, 0)   # a zero-weight row counts no tokens
    logits = [torch.randn(1, len(e.ids), 12, generator=g) for e in ex]
    order = torch.randperm(20, generator=g).tolist()          # the sampled order of the global batch

    def summed(idx, scales=None):
        b = collate([ex[i] for i in idx], 0, 1, "cpu", scales)
        width = b["input_ids"].shape[1]
        lg = torch.cat([torch.nn.functional.pad(logits[i], (0, 0, 0, width - logits[i].shape[1])) for i in idx])
        return float(weighted_token_loss(lg, b, 2)[0])
    e2wm = sum(summed(order[k:k + 5]) / sum(ex[i].answer_tokens for i in order[k:k + 5])
               for k in range(0, 20, 5)) / 4
    norm = row_normalisers(order, [e.answer_tokens for e in ex], global_batch=20, groups=4)
    ours = sum(summed(part, [norm[i] for i in part]) for part in (sorted(order)[:7], sorted(order)[7:]))
    assert math.isclose(ours, e2wm, rel_tol=1e-6)
    whole = summed(order) / sum(e.answer_tokens for e in ex)
    assert not math.isclose(whole, e2wm, rel_tol=1e-3)   # one group is another objective
    one = row_normalisers(order, [e.answer_tokens for e in ex], global_batch=20, groups=1)
    assert math.isclose(summed(order, [one[i] for i in order]), whole, rel_tol=1e-6)


def test_a_short_last_batch_has_fewer_groups():
    norm = row_normalisers([4, 2, 9], [3] * 10, global_batch=20, groups=4)   # one group of 3 rows
    assert norm == {4: 1 / 9, 2: 1 / 9, 9: 1 / 9}
