"""Triton kernel for MoE routing (see kernels/routing.py): one program routes one token, its E scores held
as [groups, experts per group] so group ranking is a reduction along rows; picks are repeated arg-maxes."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .pdl import pdl_args, wait_for_inputs
from .routing import Routing

_MAX_EXPERTS = 4096


@triton.jit
def _route_kernel(
    l_ptr, b_ptr, w_ptr, id_ptr, stride_l, stride_w, stride_id, scale,
    G: tl.constexpr, EG: tl.constexpr, TOPK_G: tl.constexpr, K: tl.constexpr,
    BLOCK_G: tl.constexpr, BLOCK_EG: tl.constexpr, BLOCK_K: tl.constexpr,
    SIGMOID: tl.constexpr, BIAS: tl.constexpr, TOP2: tl.constexpr, NORMALISE: tl.constexpr,
    PDL: tl.constexpr,
):  # fmt: skip
    # logits [T, G*EG] -> weights [T, K] fp32, ids [T, K] int64 (best first)
    wait_for_inputs(PDL)
    t = tl.program_id(0).to(tl.int64)
    rows = tl.arange(0, BLOCK_G)
    cols = tl.arange(0, BLOCK_EG)
    expert = rows[:, None] * EG + cols[None, :]  # [BLOCK_G, BLOCK_EG]
    valid = (rows[:, None] < G) & (cols[None, :] < EG)
    logit = tl.load(l_ptr + t * stride_l + expert, mask=valid, other=float("-inf"))
    if SIGMOID:
        score = tl.sigmoid(logit)
    else:
        e = tl.exp(logit - tl.max(tl.max(logit, axis=1), axis=0))
        score = e / tl.sum(tl.sum(e, axis=1), axis=0)
    biased = score
    if BIAS:
        biased += tl.load(b_ptr + expert, mask=valid, other=0.0)
    biased = tl.where(valid, biased, float("-inf"))
    if G > 1:
        best = tl.max(biased, axis=1)  # [BLOCK_G]
        if TOP2:
            first = tl.min(tl.where(biased == best[:, None], cols[None, :], BLOCK_EG), axis=1)
            best += tl.max(tl.where(cols[None, :] == first[:, None], float("-inf"), biased), axis=1)
        rank = tl.where(rows < G, best, float("-inf"))
        keep = rows < 0
        for _ in tl.static_range(TOPK_G):
            top = tl.min(tl.where((rank == tl.max(rank, axis=0)) & ~keep & (rows < G), rows, BLOCK_G), axis=0)
            keep |= rows == top
            rank = tl.where(rows == top, float("-inf"), rank)
        biased = tl.where(keep[:, None], biased, float("-inf"))
    slots = tl.arange(0, BLOCK_K)
    weights = tl.zeros((BLOCK_K,), tl.float32)
    ids = tl.zeros((BLOCK_K,), tl.int64)
    free = valid
    for i in tl.static_range(K):
        m = tl.max(tl.max(tl.where(free, biased, float("-inf")), axis=1), axis=0)
        hit = free & (biased == m)
        pick = tl.min(tl.min(tl.where(hit, expert, G * EG), axis=1), axis=0)
        chosen = expert == pick
        weights = tl.where(slots == i, tl.sum(tl.sum(tl.where(chosen, score, 0.0), axis=1), axis=0), weights)
        ids = tl.where(slots == i, pick.to(tl.int64), ids)
        free &= ~chosen
    if NORMALISE:
        weights = weights / tl.sum(weights, axis=0)
    tl.store(w_ptr + t * stride_w + slots, weights * scale, mask=slots < K)
    tl.store(id_ptr + t * stride_id + slots, ids, mask=slots < K)


def route_fits(logits: torch.Tensor, r: Routing) -> bool:
    """Whether the kernel takes these logits: groups that divide the experts, at most 4096 experts."""
    E = logits.shape[-1]
    return logits.dim() == 2 and 0 < r.k <= E <= _MAX_EXPERTS and E % r.groups == 0 and E // r.groups >= 2


def route_triton(logits: torch.Tensor, bias: torch.Tensor | None, r: Routing, out=None):
    """logits [T, E] fp32, bias [E] fp32 or None -> (weights [T, k] fp32, expert ids [T, k] int64), best first,
    written into `out` (the pair) when given."""
    assert route_fits(logits, r), (logits.shape, r)
    assert logits.dtype == torch.float32 and logits.stride(-1) == 1, (logits.dtype, logits.stride())
    T, E = logits.shape
    if bias is not None:
        assert bias.shape == (E,) and bias.dtype == torch.float32 and bias.stride(0) == 1, (bias.shape, bias.dtype)
    if out is None:
        out = (
            torch.empty((T, r.k), dtype=torch.float32, device=logits.device),
            torch.empty((T, r.k), dtype=torch.int64, device=logits.device),
        )
    weights, ids = out
    assert weights.shape == ids.shape == (T, r.k) and weights.is_contiguous() and ids.is_contiguous()
    assert weights.dtype == torch.float32 and ids.dtype == torch.int64, (weights.dtype, ids.dtype)
    if T:
        eg = E // r.groups
        _route_kernel[(T,)](
            logits, logits if bias is None else bias, weights, ids, logits.stride(0), r.k, r.k, r.scale,
            G=r.groups, EG=eg, TOPK_G=min(r.topk_groups, r.groups), K=r.k,
            BLOCK_G=triton.next_power_of_2(r.groups), BLOCK_EG=triton.next_power_of_2(eg),
            BLOCK_K=triton.next_power_of_2(r.k), SIGMOID=r.sigmoid, BIAS=bias is not None, TOP2=r.group_top2,
            NORMALISE=r.normalise and r.k > 1, num_warps=4, **pdl_args(logits.device),
        )  # fmt: skip
    return weights, ids
