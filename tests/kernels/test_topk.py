"""Radix-select top-k against torch.topk (index_topk_ref): the same multiset of chosen scores, no position twice;
and against its own ordering contract, position for position, which makes it the same on every run."""

from __future__ import annotations

import pytest
import torch
from dsagent.kernels.indexer import index_scores_ref, index_select, index_topk_ref
from dsagent.kernels.indexer_triton import index_scores_triton
from dsagent.kernels.topk_triton import ROW_SCRATCH, radix_scratch, topk_triton
from kernel_kit import indexer_inputs

NEG_INF = float("-inf")


def _chosen(scores: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """The scores behind each row's positions (-1 -> -inf), sorted: comparable whatever order ties came in."""
    vals = scores.gather(1, idx.clamp_min(0).long())
    return torch.where(idx >= 0, vals, NEG_INF).sort(-1).values


def _placed(scores: torch.Tensor, k: int) -> torch.Tensor:
    """topk_triton's output, row by row: the positions of the k largest keys in ascending order, ties at the k-th
    going to the lowest; keys compared by their bits as the kernel does (-0.0 below 0.0); -inf scores as -1."""
    bits = scores.cpu().view(torch.int32)
    keys = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).long()
    out = torch.full((scores.shape[0], k), -1, dtype=torch.int32)
    for i, row in enumerate(keys):
        taken = torch.arange(row.numel())
        if row.numel() > k:
            threshold = row.topk(k).values[-1]
            above = (row > threshold).nonzero().flatten()
            taken = torch.cat([above, (row == threshold).nonzero().flatten()[: k - above.numel()]]).sort().values
        out[i, : taken.numel()] = torch.where(scores[i].cpu()[taken] == NEG_INF, -1, taken)
    return out


def _check(scores: torch.Tensor, k: int, **kw) -> None:
    t, s = scores.shape
    out = torch.full((t, k), 123456, dtype=torch.int32, device=scores.device)  # poisoned: all must be written
    topk_triton(scores, k, out=out, **kw)
    assert torch.equal(out.cpu(), _placed(scores, k)), "positions out of their set order"
    ref = index_topk_ref(scores, k)
    assert ((out >= -1) & (out < s)).all(), "a slot was left unwritten or holds a bad position"
    assert torch.equal(_chosen(scores, out), _chosen(scores, ref))
    assert torch.equal((out < 0).sum(-1), (ref < 0).sum(-1))
    for row in out:
        kept = row[row >= 0]
        assert kept.unique().numel() == kept.numel(), "a position was taken twice"
    if "scratch" not in kw:
        assert not radix_scratch(t, scores.device).any(), "the select must leave its scratch zeroed"


@pytest.mark.parametrize(("t", "s", "k"), [(1, 3000, 64), (3, 1000, 33), (2, 257, 256)])
def test_random_rows_with_a_masked_tail(t, s, k, device):
    scores = torch.randn(t, s, device=device) * 10
    scores[:, -9:] = NEG_INF  # keys in the causal future
    _check(scores, k)


def test_ties_across_the_threshold(device):
    scores = torch.randint(0, 6, (2, 900), device=device).float() - 2.0  # 6 values, hundreds of each
    _check(scores, 100)


def test_fewer_visible_keys_than_k(device):
    scores = torch.full((3, 600), NEG_INF, device=device)
    scores[0, :10] = torch.randn(10, device=device)  # an early query of a causal chunk
    scores[1, :200] = -torch.rand(200, device=device)  # only negative scores
    _check(scores, 64)  # row 2 sees nothing: all -1


def test_short_rows_take_every_key(device):
    scores = torch.randn(2, 40, device=device)
    scores[1, 30:] = NEG_INF
    _check(scores, 64)


def test_signed_zero_and_extremes(device):
    row = torch.tensor([0.0, -0.0, 3.4e38, -3.4e38, 1e-45, -1e-45, 1.0, -1.0] * 40, device=device)
    _check(row.view(1, -1), 100)


@pytest.mark.gpu
@pytest.mark.parametrize("block", [256, 1024, 4096])
@pytest.mark.parametrize(("t", "s"), [(1, 131072), (64, 65536), (7, 100003), (2048, 8192), (300, 3000)])
def test_full_shapes_gpu(t, s, block):
    # many programs per row meet at its barrier; 2048 rows of 8 or 32 programs pass through the GPU in turns
    scores = torch.randn(t, s, device="cuda")
    scores[:, s - 77 :] = NEG_INF
    _check(scores, 2048, block=block)


@pytest.mark.gpu
def test_ties_over_many_programs_gpu():
    scores = torch.randint(0, 3, (4, 131072), device="cuda").float()  # ~43K keys of each value
    _check(scores, 2048, block=256)


def test_scoring_counts_the_first_digits(device):
    """The decode scores kernel masks by device positions and counts the first radix digit; the select then
    starts from that count."""
    t, s, k = 2, 700, 64
    q, w, keys, k_scale = indexer_inputs(t, 4, 32, s, device)
    positions = torch.tensor([600, 650], device=device)
    scratch = radix_scratch(t, device)
    scores = index_scores_triton(q, w, keys, k_scale, positions, radix=scratch)
    ref = torch.stack([index_scores_ref(q[i : i + 1], w[i : i + 1], keys, k_scale, int(p))[0] for i, p in
                       enumerate(positions)])  # fmt: skip
    assert torch.equal(torch.isfinite(scores), torch.isfinite(ref))
    bits = scores.view(torch.int32)
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    first = ((ordered >> 24) + 128).long()  # the top 8 bits in unsigned order
    hist = scratch[:-2].view(t, ROW_SCRATCH)[:, :256]
    assert torch.equal(hist.long(), torch.stack([torch.bincount(f, minlength=256) for f in first]))
    out = topk_triton(scores, k, scratch=scratch)
    assert torch.equal(_chosen(scores, out), _chosen(scores, index_topk_ref(scores, k)))
    assert not scratch.any(), "the select must leave its scratch zeroed for the next call"


def test_scratch_is_reused_and_left_zeroed(device):
    """No memset runs between calls: each select zeroes the shared scratch as its last program finishes."""
    scratch = radix_scratch(3, device)
    assert radix_scratch(3, device) is scratch
    for _ in range(3):
        scores = torch.randn(3, 2000, device=device)
        _check(scores, 50)
        assert not scratch.any()


@pytest.mark.gpu
@pytest.mark.parametrize("s", [131072, 5000])
def test_index_select_decode_gpu(s):
    """The engine's decode path (scores with device positions, first digits counted, radix select) against
    the reference scores and torch.topk."""
    q, w, keys, k_scale = indexer_inputs(1, 64, 128, s, "cuda")
    pos = s - 100  # the last 99 rows are stale: masked by position
    out = index_select(q, w, keys, k_scale, torch.tensor([pos], device="cuda"), 2048)
    assert not radix_scratch(1, "cuda").any(), "scores + select must leave the scratch zeroed"
    ref_scores = index_scores_ref(q, w, keys, k_scale, pos)
    chosen = _chosen(ref_scores, out)
    ref = _chosen(ref_scores, index_topk_ref(ref_scores, 2048))
    assert (out < pos + 1).all() and torch.allclose(chosen, ref, rtol=3e-3, atol=1e-4)
