"""Sorting (token, slot) pairs by expert for the fused MoE, each expert's run padded to BLOCK_M rows.

For a handful of tokens (decode) one Triton program does it all in registers: counts, padded offsets,
each pair's rank inside its expert, the scatter and the expert of every row block; the same sort as a
dozen PyTorch ops took 64 us on H100 (launch-bound) against a decode MoE of about 160 us. Larger batches
use the PyTorch ops, whose cost vanishes next to the GEMMs.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .pdl import pdl_args, wait_for_inputs


@triton.jit
def _moe_align_small_kernel(
    ids_ptr, pairs_ptr, bexp_ptr, P, E, R, NB,
    BLOCK_M: tl.constexpr, P_PAD: tl.constexpr, E_PAD: tl.constexpr, R_PAD: tl.constexpr, NB_PAD: tl.constexpr,
    PDL: tl.constexpr,
):  # fmt: skip
    # ids [P] -> pairs [R] (pair index per padded row, P = padding), bexp [NB] (expert per row block, -1 = none)
    wait_for_inputs(PDL)
    offs_p = tl.arange(0, P_PAD)
    pmask = offs_p < P
    ids = tl.load(ids_ptr + offs_p, mask=pmask, other=-1).to(tl.int32)
    offs_e = tl.arange(0, E_PAD)
    hit = ids[:, None] == offs_e[None, :]  # [P_PAD, E_PAD]
    counts = tl.sum(hit.to(tl.int32), axis=0)
    padded = (counts + BLOCK_M - 1) // BLOCK_M * BLOCK_M
    pad_end = tl.cumsum(padded, axis=0)
    pad_start = pad_end - padded
    earlier = (ids[:, None] == ids[None, :]) & (offs_p[None, :] < offs_p[:, None])  # [P_PAD, P_PAD]: q < p
    rank = tl.sum(earlier.to(tl.int32), axis=1)
    dest = tl.sum(tl.where(hit, pad_start[None, :], 0), axis=1) + rank
    offs_r = tl.arange(0, R_PAD)
    tl.store(pairs_ptr + offs_r, tl.zeros_like(offs_r) + P, mask=offs_r < R)
    tl.debug_barrier()  # the padding fill lands before the pairs overwrite their rows
    tl.store(pairs_ptr + dest, offs_p, mask=pmask)
    block_start = tl.arange(0, NB_PAD) * BLOCK_M
    inside = (block_start[:, None] >= pad_start[None, :]) & (block_start[:, None] < pad_end[None, :])
    expert = tl.sum(tl.where(inside, offs_e[None, :], 0), axis=1)
    found = tl.sum(inside.to(tl.int32), axis=1) > 0
    tl.store(bexp_ptr + tl.arange(0, NB_PAD), tl.where(found, expert, -1), mask=tl.arange(0, NB_PAD) < NB)


def moe_align(topk_ids: torch.Tensor, num_experts: int, block_m: int):
    """topk_ids [T, k] -> (sorted_pairs [R] int32, block_expert [R // block_m] int32) where R bounds the
    padded length: pair p = t * k + j sits in a run of its expert; padding slots hold T * k, blocks past
    the end hold expert -1."""
    P = topk_ids.numel()
    max_blocks = triton.cdiv(P + min(P, num_experts) * (block_m - 1), block_m)
    if P <= 128 and P * num_experts <= 1 << 15:
        pairs = torch.empty(max_blocks * block_m, dtype=torch.int32, device=topk_ids.device)
        block_expert = torch.empty(max_blocks, dtype=torch.int32, device=topk_ids.device)
        pad = triton.next_power_of_2
        _moe_align_small_kernel[(1,)](
            topk_ids.reshape(-1).contiguous(), pairs, block_expert, P, num_experts, pairs.numel(), max_blocks,
            BLOCK_M=block_m, P_PAD=pad(P), E_PAD=pad(num_experts), R_PAD=pad(pairs.numel()), NB_PAD=pad(max_blocks),
            num_warps=8 if pad(P) * pad(num_experts) > 4096 else 4, **pdl_args(topk_ids.device),
        )  # fmt: skip
        return pairs, block_expert
    return moe_align_torch(topk_ids, num_experts, block_m, max_blocks)


def moe_align_torch(topk_ids: torch.Tensor, num_experts: int, block_m: int, max_blocks: int):
    """The same sort as device-side PyTorch ops (any batch size)."""
    P = topk_ids.numel()
    dev = topk_ids.device
    flat = topk_ids.reshape(-1).to(torch.int64)
    counts = torch.zeros(num_experts, dtype=torch.int64, device=dev).scatter_add_(0, flat, torch.ones_like(flat))
    padded = (counts + block_m - 1) // block_m * block_m
    pad_end = torch.cumsum(padded, 0)
    run_start = torch.cumsum(counts, 0) - counts
    order = torch.argsort(flat, stable=True)
    expert_sorted = flat[order]
    rank = torch.arange(P, device=dev) - run_start[expert_sorted]
    dest = pad_end[expert_sorted] - padded[expert_sorted] + rank
    sorted_pairs = torch.full((max_blocks * block_m,), P, dtype=torch.int32, device=dev)
    sorted_pairs.scatter_(0, dest, order.to(torch.int32))
    block_start = torch.arange(max_blocks, device=dev) * block_m
    block_expert = torch.searchsorted(pad_end, block_start, right=True)
    block_expert = torch.where(block_start < pad_end[-1], block_expert, -1).to(torch.int32)
    return sorted_pairs, block_expert
