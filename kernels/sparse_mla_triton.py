"""Triton kernel for sparse MLA attention in absorbed form.

Each query (b, t) attends over its own K selected rows of the latent cache kv[b] ([S, Dqk]: the latent of
dv values followed by the RoPE key). A program owns one query and BLOCK_H heads: it gathers BLOCK_N
selected rows at a time, computes the scores of all its heads against them on the tensor cores (the
latent and RoPE parts as two products) and folds them into an online softmax whose values are the same
gathered rows' first dv columns, so every row is read once per head block. When there are too few
(query, head block) pairs to fill the GPU (small-batch decode), the K selected rows are split across
programs that write partial outputs with their log-sum-exp, merged by a second kernel.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .fp8_triton import _sm_count
from .pdl import pdl_args, wait_for_inputs


@triton.jit
def _sparse_mla_kernel(
    q_ptr, kv_ptr, idx_ptr, o_ptr, lse_ptr,
    T, H, K, qk_scale, KEYS_PER_SPLIT,
    stride_qb, stride_qt, stride_qh, stride_kvb, stride_kvs, stride_ib, stride_it,
    stride_ob, stride_ot, stride_os, stride_oh, stride_lb, stride_lt, stride_ls,
    DV: tl.constexpr, DPE: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_DV: tl.constexpr, BLOCK_PE: tl.constexpr, SPLIT: tl.constexpr, PDL: tl.constexpr,
):  # fmt: skip
    # q [B, T, H, DV + DPE], kv [B, S, DV + DPE], idx [B, T, K] int32 (-1 = skip)
    # o: [B, T, H, DV] in q's dtype, or (SPLIT) fp32 partials [B, T, NSPLIT, H, DV] + lse [B, T, NSPLIT, H]
    wait_for_inputs(PDL)
    pid_bt = tl.program_id(0)
    pid_h = tl.program_id(1)
    split = tl.program_id(2)
    b = (pid_bt // T).to(tl.int64)  # the cache of a large batch passes 2^31 elements
    t = pid_bt % T
    offs_h = pid_h * BLOCK_H + tl.arange(0, BLOCK_H)
    offs_dv = tl.arange(0, BLOCK_DV)
    offs_pe = tl.arange(0, BLOCK_PE)
    hmask = offs_h < H
    dvmask = offs_dv < DV
    pemask = offs_pe < DPE
    q_rows = q_ptr + b * stride_qb + t * stride_qt + offs_h[:, None] * stride_qh
    q_lat = tl.load(q_rows + offs_dv[None, :], mask=hmask[:, None] & dvmask[None, :], other=0.0)
    q_pe = tl.load(q_rows + DV + offs_pe[None, :], mask=hmask[:, None] & pemask[None, :], other=0.0)

    m_i = tl.full((BLOCK_H,), float("-inf"), tl.float32)
    l_i = tl.zeros((BLOCK_H,), tl.float32)
    acc = tl.zeros((BLOCK_H, BLOCK_DV), tl.float32)
    kv_base = kv_ptr + b * stride_kvb
    idx_base = idx_ptr + b * stride_ib + t * stride_it
    start = split * KEYS_PER_SPLIT
    end = tl.minimum(start + KEYS_PER_SPLIT, K)
    for n0 in range(start, end, BLOCK_N):
        offs_n = n0 + tl.arange(0, BLOCK_N)
        idx = tl.load(idx_base + offs_n, mask=offs_n < end, other=-1)
        valid = idx >= 0
        # skipped slots read row 0 (always cached) and are masked out of the softmax below; unmasked
        # loads of whole rows stay 16-byte vectorised
        rows = kv_base + tl.where(valid, idx, 0).to(tl.int64)[:, None] * stride_kvs
        if BLOCK_DV == DV:
            kv_lat = tl.load(rows + offs_dv[None, :])
        else:
            kv_lat = tl.load(rows + offs_dv[None, :], mask=dvmask[None, :], other=0.0)
        if BLOCK_PE == DPE:
            kv_pe = tl.load(rows + DV + offs_pe[None, :])
        else:
            kv_pe = tl.load(rows + DV + offs_pe[None, :], mask=pemask[None, :], other=0.0)
        s = tl.dot(q_lat, tl.trans(kv_lat))
        s = tl.dot(q_pe, tl.trans(kv_pe), s)
        s = tl.where(valid[None, :], s * qk_scale, float("-inf"))  # log2 domain
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows with nothing visible yet
        alpha = tl.exp2(m_i - m_safe)
        p = tl.exp2(s - m_safe[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None]
        acc = tl.dot(p.to(kv_lat.dtype), kv_lat, acc)
        m_i = m_new

    out = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]
    o_ptrs = o_ptr + b * stride_ob + t * stride_ot + split * stride_os + offs_h[:, None] * stride_oh + offs_dv[None, :]
    tl.store(o_ptrs, out.to(o_ptr.dtype.element_ty), mask=hmask[:, None] & dvmask[None, :])
    if SPLIT:
        lse = tl.where(l_i == 0.0, float("-inf"), m_i + tl.log2(tl.where(l_i == 0.0, 1.0, l_i)))
        tl.store(lse_ptr + b * stride_lb + t * stride_lt + split * stride_ls + offs_h, lse, mask=hmask)


@triton.jit
def _sparse_mla_combine_kernel(
    part_ptr, lse_ptr, o_ptr, T, H, DV, NSPLIT,
    stride_pb, stride_pt, stride_ps, stride_ph, stride_lb, stride_lt, stride_ls,
    stride_ob, stride_ot, stride_oh,
    BLOCK_SPLIT: tl.constexpr, BLOCK_DV: tl.constexpr, PDL: tl.constexpr,
):  # fmt: skip
    # one program per (b, t, h) and BLOCK_DV columns: merge NSPLIT partial outputs weighted by 2^(lse - max lse)
    wait_for_inputs(PDL)
    pid = tl.program_id(0)
    h = pid % H
    t = (pid // H) % T
    b = (pid // (H * T)).to(tl.int64)
    offs_s = tl.arange(0, BLOCK_SPLIT)
    offs_d = tl.program_id(1) * BLOCK_DV + tl.arange(0, BLOCK_DV)
    smask = offs_s < NSPLIT
    lse = tl.load(lse_ptr + b * stride_lb + t * stride_lt + offs_s * stride_ls + h, mask=smask, other=float("-inf"))
    m = tl.max(lse, axis=0)
    wgt = tl.exp2(lse - tl.where(m == float("-inf"), 0.0, m))
    total = tl.sum(wgt, axis=0)
    part = tl.load(
        part_ptr + b * stride_pb + t * stride_pt + offs_s[:, None] * stride_ps + h * stride_ph + offs_d[None, :],
        mask=smask[:, None] & (offs_d[None, :] < DV),
        other=0.0,
    )
    out = tl.sum(part * wgt[:, None], axis=0) / tl.where(total == 0.0, 1.0, total)
    o_ptrs = o_ptr + b * stride_ob + t * stride_ot + h * stride_oh + offs_d
    tl.store(o_ptrs, out.to(o_ptr.dtype.element_ty), mask=offs_d < DV)


def _mla_config(B: int, T: int, H: int, K: int, sms: int, elem_bytes: int = 2) -> tuple[int, int, int, int, int]:
    """(BLOCK_H, BLOCK_N, num_warps, num_stages, nsplit)."""
    # measured on H100 (B=64 decode, 4096-token prefill): 64 rows a step beat 32 by 1.5x; 3 stages gain nothing
    bh = 64 if H >= 64 else max(16, triton.next_power_of_2(H))
    bn = 64 if K >= 64 else 16
    if elem_bytes == 4:  # fp32 (checking runs): at 576 wide, q and two staged row blocks then fit in 184 KB of smem
        bh, bn = 16, min(bn, 32)
    nsplit = key_splits(B * T * triton.cdiv(H, bh), K, bn, sms)
    return bh, bn, 8 if bh >= 64 else 4, 2, nsplit


def splits_pay(programs: int, sms: int) -> bool:
    """Whether splitting each query's keys can pay: splitting a nearly full wave of programs costs more
    (partials, merge) than it gains."""
    return 2 * programs <= sms


def key_splits(programs: int, K: int, block_n: int, sms: int) -> int:
    """How many parts to split each query's K keys into, when `programs` (query, head block) pairs are few."""
    if not splits_pay(programs, sms):
        return 1
    # measured on H100 at batch 1, 128 heads: 2048 rows (DSA) run best at one 64-row block per split (32), and
    # 131072 rows (dense) at one wave of programs (2 x 64 splits: 120 us against 217 with 32 and 136 with 128)
    cap = max(32, triton.cdiv(sms, programs))
    return max(1, min(triton.cdiv(2 * sms, programs), triton.cdiv(K, block_n), cap))


def sparse_mla_triton(q, kv, indices, scale: float, dv: int, out=None, config=None) -> torch.Tensor:
    """q [B, T, H, Dqk], kv [B, S, Dqk], indices [B, T, K] int32 (-1 = skip) -> [B, T, H, dv] in q's dtype:
    softmax(scale * q . kv[idx]) @ kv[idx, :dv] per query and head, over that query's selected rows."""
    B, T, H, Dqk = q.shape
    K = indices.shape[-1]
    assert kv.shape[0] == B and kv.shape[2] == Dqk, (kv.shape, q.shape)
    assert indices.shape == (B, T, K) and indices.dtype == torch.int32, (indices.shape, indices.dtype)
    assert q.dtype == kv.dtype, (q.dtype, kv.dtype)
    assert 0 < dv < Dqk, (dv, Dqk)
    assert q.stride(-1) == 1 and kv.stride(-1) == 1 and indices.stride(-1) == 1
    if out is None:
        out = torch.empty((B, T, H, dv), dtype=q.dtype, device=q.device)
    assert out.shape == (B, T, H, dv) and out.dtype == q.dtype and out.stride(-1) == 1
    if B * T * H == 0:
        return out
    bh, bn, warps, stages, nsplit = config or _mla_config(B, T, H, K, _sm_count(q.device), q.element_size())
    keys_per_split, nsplit, dst, lse, dst_strides, lse_strides = split_buffers(out, K, nsplit, bn)
    bdv = triton.next_power_of_2(dv)
    bpe = max(16, triton.next_power_of_2(Dqk - dv))
    qk_scale = scale * math.log2(math.e)
    grid = (B * T, triton.cdiv(H, bh), nsplit)
    _sparse_mla_kernel[grid](
        q, kv, indices, dst, lse, T, H, K, qk_scale, keys_per_split,
        q.stride(0), q.stride(1), q.stride(2), kv.stride(0), kv.stride(1), indices.stride(0), indices.stride(1),
        *dst_strides, *lse_strides,
        DV=dv, DPE=Dqk - dv, BLOCK_H=bh, BLOCK_N=bn, BLOCK_DV=bdv, BLOCK_PE=bpe, SPLIT=nsplit > 1,
        num_warps=warps, num_stages=stages, **pdl_args(q.device),
    )  # fmt: skip
    if nsplit > 1:
        combine_splits(dst, lse, out, nsplit, dst_strides, lse_strides)
    return out


def split_buffers(out: torch.Tensor, K: int, nsplit: int, block_n: int) -> tuple:
    """For K keys cut into about nsplit parts of whole blocks: (keys per part, parts, where the parts write
    their outputs [B, T, parts, H, dv] fp32 and log2-sum-exps [B, T, parts, H], and both's strides as the
    kernels take them). A single part writes straight into out."""
    B, T, H, dv = out.shape
    keys_per_split = triton.cdiv(triton.cdiv(K, nsplit), block_n) * block_n
    nsplit = max(1, triton.cdiv(K, keys_per_split))
    if nsplit == 1:
        return keys_per_split, 1, out, out, (out.stride(0), out.stride(1), 0, out.stride(2)), (0, 0, 0)  # no lse
    dst = torch.empty((B, T, nsplit, H, dv), dtype=torch.float32, device=out.device)
    lse = torch.empty((B, T, nsplit, H), dtype=torch.float32, device=out.device)
    dst_strides = (dst.stride(0), dst.stride(1), dst.stride(2), dst.stride(3))
    return keys_per_split, nsplit, dst, lse, dst_strides, (lse.stride(0), lse.stride(1), lse.stride(2))


def combine_splits(dst, lse, out, nsplit: int, dst_strides, lse_strides) -> None:
    """out [B, T, H, dv] = the key splits' partial outputs dst [B, T, nsplit, H, dv] fp32 merged by their
    log2-sum-exp lse [B, T, nsplit, H]."""
    B, T, H, dv = out.shape
    block_split = max(2, triton.next_power_of_2(nsplit))
    # at most 32 x 512 partial values a program (128 registers a thread): at batch 1, 32 splits of a head's
    # 512 columns in one program ran 1.6 us faster than in four (H100), and 64 splits would spill
    block_dv = min(triton.next_power_of_2(dv), max(16, (32 * 512) // block_split))
    _sparse_mla_combine_kernel[(B * T * H, triton.cdiv(dv, block_dv))](
        dst, lse, out, T, H, dv, nsplit, *dst_strides, *lse_strides,
        out.stride(0), out.stride(1), out.stride(2),
        BLOCK_SPLIT=block_split, BLOCK_DV=block_dv, num_warps=4, **pdl_args(out.device),
    )  # fmt: skip
