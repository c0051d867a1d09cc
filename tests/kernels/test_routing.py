"""The MoE routing kernel against its PyTorch reference: the same experts in the same order, the same weights."""

from __future__ import annotations

import pytest
import torch
from dsagent.kernels.routing import Routing, route_ref
from dsagent.kernels.routing_triton import route_fits, route_triton

V3 = Routing(k=8, groups=8, topk_groups=4, sigmoid=True, group_top2=True, normalise=True, scale=2.5)
CASES = [
    (V3, 1, True),
    (V3, 37, True),
    (Routing(k=6, groups=1, sigmoid=False, normalise=False, scale=1.0), 5, False),  # V2-Lite: softmax, greedy
    (Routing(k=3, groups=4, topk_groups=2, sigmoid=False, group_top2=False, normalise=True, scale=16.0), 9, False),
    (Routing(k=2, groups=3, topk_groups=2, sigmoid=True, group_top2=True), 4, True),  # 3 groups of 5: padded
    (Routing(k=1, groups=1), 3, True),
]
EXPERTS = {8: 256, 6: 64, 3: 16, 2: 15, 1: 8}


def _poisoned(t: int, k: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.full((t, k), float("nan"), device=device), torch.full((t, k), -7, dtype=torch.int64, device=device)


@pytest.mark.parametrize(("routing", "tokens", "bias"), CASES)
def test_route_matches_reference(routing, tokens, bias, device):
    experts = EXPERTS[routing.k]
    logits = torch.randn(tokens, experts, device=device) * 2
    correction = torch.randn(experts, device=device) * 0.1 if bias else None
    assert route_fits(logits, routing)
    weights, ids = route_triton(logits, correction, routing, out=_poisoned(tokens, routing.k, device))
    ref_weights, ref_ids = route_ref(logits, correction, routing)
    assert torch.equal(ids, ref_ids)
    torch.testing.assert_close(weights, ref_weights, rtol=2e-6, atol=1e-7)


def test_route_keeps_picks_distinct_when_few_experts_are_eligible(device):
    # 2 groups of 4 kept out of 8: only 8 of 32 experts are eligible for 8 picks, so every eligible one is taken
    routing = Routing(k=8, groups=8, topk_groups=2)
    logits = torch.randn(3, 32, device=device)
    _, ids = route_triton(logits, None, routing)
    _, ref_ids = route_ref(logits, None, routing)
    assert torch.equal(ids.sort(dim=-1)[0], ref_ids.sort(dim=-1)[0])
    assert all(len(set(row.tolist())) == 8 for row in ids)


@pytest.mark.gpu
@pytest.mark.parametrize("tokens", [1, 16, 4096])
def test_route_v3_shapes_gpu(tokens):
    logits = torch.randn(tokens, 256, device="cuda") * 2
    bias = torch.randn(256, device="cuda") * 0.1
    weights, ids = route_triton(logits, bias, V3, out=_poisoned(tokens, 8, "cuda"))
    ref_weights, ref_ids = route_ref(logits, bias, V3)
    # the same experts; among 4096 rows now and then two picks score the same to the last bit or two, and the
    # kernel (lower expert first) and torch.topk list them in either order: compare rows sorted by expert
    assert torch.equal(ids.sort(dim=-1).values, ref_ids.sort(dim=-1).values)
    assert (ids != ref_ids).any(dim=-1).sum() <= max(1, tokens // 500)
    order, ref_order = ids.argsort(dim=-1), ref_ids.argsort(dim=-1)
    torch.testing.assert_close(weights.gather(1, order), ref_weights.gather(1, ref_order), rtol=2e-6, atol=1e-7)
