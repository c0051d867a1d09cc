"""Sparse MLA attention (absorbed form) for Hopper in Gluon, for V3.2's shapes (dv = 512 latent values, a
64-wide RoPE part, bf16). Same contract as sparse_mla_triton, which serves every other shape and device.

Why a second kernel: a step's gather of 64 scattered rows is what limits the Triton kernel, and Triton waits
for it at the top of the step that uses it. Here the gathers are explicit cp.async copies into a ring of
shared-memory buffers, each issued as soon as the buffer it overwrites is free, so one step's gather overlaps
the score product, softmax and value product of the step before it. Gluon is experimental and its names move
between Triton releases: the two that moved are looked up below, and the dispatcher falls back to Triton if
this kernel fails to build.

One program per (query, 64 heads, key split); 8 warps, two warpgroups, each holding half the output's
columns (and, with S_SPLIT, half the score tile's).
"""

from __future__ import annotations

import functools
import math

import torch
import triton
import triton.language as tl
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import async_copy as cp
from triton.experimental.gluon.language.nvidia.hopper import (
    fence_async_shared,
    warpgroup_mma,
    warpgroup_mma_init,
    warpgroup_mma_wait,
)

from .pdl import pdl_args

H_BLOCK = 64  # wgmma needs 64 rows per warpgroup
# renamed in later Triton releases
_async_load = cp.async_load if hasattr(cp, "async_load") else cp.async_copy_global_to_shared
_barrier = gl.thread_barrier if hasattr(gl, "thread_barrier") else gl.barrier


@gluon.jit
def _issue_gather(kv_base, stride_kvs, idx, lat_buf, pe_buf, idx_buf,
                  DV: gl.constexpr, DPE: gl.constexpr, gather: gl.constexpr):  # fmt: skip
    # idx [BLOCK_N] int32 in SliceLayout(1, gather); skipped slots (-1) read nothing (zero-filled), and are
    # masked out of the softmax through the indices kept in idx_buf
    keep = idx >= 0
    rows = gl.where(keep, idx, 0).to(gl.int64) * stride_kvs
    offs_dv = gl.arange(0, DV, layout=gl.SliceLayout(0, gather))
    _async_load(lat_buf, kv_base + rows[:, None] + offs_dv[None, :], mask=keep[:, None])
    pe_gather: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [8, 1], [1, 0])
    rows_pe = gl.convert_layout(rows, gl.SliceLayout(1, pe_gather))
    keep_pe = gl.convert_layout(keep, gl.SliceLayout(1, pe_gather))
    offs_pe = gl.arange(0, DPE, layout=gl.SliceLayout(0, pe_gather))
    _async_load(pe_buf, kv_base + DV + rows_pe[:, None] + offs_pe[None, :], mask=keep_pe[:, None])
    idx_buf.store(idx)
    cp.commit_group()


@gluon.jit
def _load_idx(idx_base, n0, end, BLOCK_N: gl.constexpr, layout: gl.constexpr):
    offs = n0 + gl.arange(0, BLOCK_N, layout=layout)
    return gl.load(idx_base + offs, mask=offs < end, other=-1)


@gluon.jit
def _program(T):
    """This program's batch row, query, block of 64 heads and key split, from its place in the grid."""
    pid_bt = gl.program_id(0)
    return (pid_bt // T).to(gl.int64), pid_bt % T, gl.program_id(1), gl.program_id(2)


@gluon.jit
def _row_buffers(dtype: gl.constexpr, NBUF: gl.constexpr, BLOCK_N: gl.constexpr, DV: gl.constexpr,
                 DPE: gl.constexpr):  # fmt: skip
    """NBUF shared-memory buffers for a step's gathered rows: their latent parts and their RoPE parts."""
    lat_smem: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BLOCK_N, DV], dtype)
    pe_smem: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BLOCK_N, DPE], dtype)
    lat = gl.allocate_shared_memory(dtype, [NBUF, BLOCK_N, DV], lat_smem)
    return lat, gl.allocate_shared_memory(dtype, [NBUF, BLOCK_N, DPE], pe_smem)


@gluon.jit
def _load_q(q_base, pid_h, H, stride_qh, DV: gl.constexpr, DPE: gl.constexpr, WARPS: gl.constexpr):
    """The program's 64 heads of q (q_base: its query's row), into shared memory for the score products, by
    WARPS warps."""
    BLOCK_H: gl.constexpr = 64
    dtype: gl.constexpr = q_base.dtype.element_ty
    q_load: gl.constexpr = gl.BlockedLayout([1, 8], [1, 32], [WARPS, 1], [1, 0])
    q_lat_smem: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BLOCK_H, DV], dtype)
    q_pe_smem: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BLOCK_H, DPE], dtype)
    offs_h = pid_h * BLOCK_H + gl.arange(0, BLOCK_H, layout=gl.SliceLayout(1, q_load))
    hmask = offs_h < H
    q_rows = q_base + offs_h[:, None] * stride_qh
    offs_dv = gl.arange(0, DV, layout=gl.SliceLayout(0, q_load))
    offs_pe = gl.arange(0, DPE, layout=gl.SliceLayout(0, q_load))
    q_lat = gl.allocate_shared_memory(
        dtype, [BLOCK_H, DV], q_lat_smem, gl.load(q_rows + offs_dv[None, :], mask=hmask[:, None], other=0.0)
    )
    q_pe = gl.allocate_shared_memory(
        dtype, [BLOCK_H, DPE], q_pe_smem, gl.load(q_rows + DV + offs_pe[None, :], mask=hmask[:, None], other=0.0)
    )
    fence_async_shared()
    return q_lat, q_pe


@gluon.jit
def _softmax_step(s, valid, m_i, l_i, qk_scale):
    """One step of the running softmax over scores s [64 heads, BLOCK_N keys] (keys not `valid` masked): the
    probabilities (fp32), the factor that rescales what the rows held before, the new row maxima and sums."""
    s = gl.where(valid[None, :], s * qk_scale, float("-inf"))  # log2 domain
    m_new = gl.maximum(m_i, gl.max(s, axis=1))
    m_safe = gl.where(m_new == float("-inf"), 0.0, m_new)  # rows with nothing visible yet
    alpha = gl.exp2(m_i - m_safe)
    p = gl.exp2(s - m_safe[:, None])
    return p, alpha, m_new, l_i * alpha + gl.sum(p, axis=1)


@gluon.jit
def _online_softmax(s, valid, m_i, l_i, acc, qk_scale, p_layout: gl.constexpr, dtype: gl.constexpr):
    """_softmax_step, then the probabilities as the value product's operand and the output rescaled."""
    p, alpha, m_new, l_i = _softmax_step(s, valid, m_i, l_i, qk_scale)
    acc = acc * gl.convert_layout(alpha, gl.SliceLayout(1, p_layout.parent))[:, None]
    return gl.convert_layout(p.to(dtype), p_layout), acc, m_new, l_i


@gluon.jit
def _store_rows(acc, l_i, o_base, col0, pid_h, H, stride_oh, WIDTH: gl.constexpr, o_layout: gl.constexpr):
    """acc [64 heads, WIDTH] / l_i into columns col0.. of the output rows of this program's heads (o_base: its
    query's, and key split's, row)."""
    o_rows: gl.constexpr = gl.SliceLayout(1, o_layout)
    l_o = gl.convert_layout(l_i, o_rows)
    out = acc / gl.where(l_o == 0.0, 1.0, l_o)[:, None]
    offs_h = pid_h * 64 + gl.arange(0, 64, layout=o_rows)
    offs_d = col0 + gl.arange(0, WIDTH, layout=gl.SliceLayout(0, o_layout))
    gl.store(o_base + offs_h[:, None] * stride_oh + offs_d[None, :], out.to(o_base.dtype.element_ty),
             mask=(offs_h < H)[:, None])  # fmt: skip


@gluon.jit
def _store_lse(m_i, l_i, lse_base, pid_h, H, row_layout: gl.constexpr):
    """The log2-sum-exp of each of this program's heads, for the merge of key splits."""
    offs_h = pid_h * 64 + gl.arange(0, 64, layout=row_layout)
    lse = gl.where(l_i == 0.0, float("-inf"), m_i + gl.log2(gl.where(l_i == 0.0, 1.0, l_i)))
    gl.store(lse_base + offs_h, lse, mask=offs_h < H)


@gluon.jit
def _wait_for_inputs(PDL: gl.constexpr):
    """kernels.pdl.wait_for_inputs for Gluon kernels (that one is a Triton function): wait for the kernel before,
    then let the next one be placed. Called before any read or write."""
    if PDL:
        tl.extra.cuda.gdc_wait()
        tl.extra.cuda.gdc_launch_dependents()


@gluon.jit
def _sparse_mla_gluon_kernel(
    q_ptr, kv_ptr, idx_ptr, o_ptr, lse_ptr,
    T, H, K, qk_scale, KEYS_PER_SPLIT,
    stride_qb, stride_qt, stride_qh, stride_kvb, stride_kvs, stride_ib, stride_it,
    stride_ob, stride_ot, stride_os, stride_oh, stride_lb, stride_lt, stride_ls,
    DV: gl.constexpr, DPE: gl.constexpr, BLOCK_N: gl.constexpr, NBUF: gl.constexpr, SPLIT: gl.constexpr,
    S_SPLIT: gl.constexpr, PDL: gl.constexpr,
):  # fmt: skip
    # q [B, T, H, DV + DPE], kv [B, S, DV + DPE], idx [B, T, K] int32 (-1 = skip); o as in the Triton kernel
    BLOCK_H: gl.constexpr = 64
    dtype: gl.constexpr = q_ptr.dtype.element_ty
    b, t, pid_h, split = _program(T)
    _wait_for_inputs(PDL)

    # Layouts. Scores [64 heads, BLOCK_N keys] and output [64 heads, DV]: each warpgroup holds half the columns.
    # S_SPLIT: each warpgroup scores half the keys (softmax rows reduced across both); else both score all
    if S_SPLIT:
        s_layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[4, 2], instr_shape=[16, BLOCK_N // 2, 16]
        )
    else:
        s_layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[8, 1], instr_shape=[16, BLOCK_N, 16]
        )
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 2], instr_shape=[16, DV // 2, 16]
    )
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    gather: gl.constexpr = gl.BlockedLayout([1, 8], [1, 32], [8, 1], [1, 0])  # 16-byte copies along a row
    idx_layout: gl.constexpr = gl.SliceLayout(1, gather)
    col_layout: gl.constexpr = gl.SliceLayout(0, s_layout)
    row_layout: gl.constexpr = gl.SliceLayout(1, s_layout)

    ring_smem: gl.constexpr = gl.SwizzledSharedLayout(vec=1, per_phase=1, max_phase=1, order=[0])
    lat, pe = _row_buffers(dtype, NBUF, BLOCK_N, DV, DPE)
    ring = gl.allocate_shared_memory(gl.int32, [NBUF, BLOCK_N], ring_smem)

    q_lat, q_pe = _load_q(q_ptr + b * stride_qb + t * stride_qt, pid_h, H, stride_qh, DV, DPE, 8)

    kv_base = kv_ptr + b * stride_kvb
    idx_base = idx_ptr + b * stride_ib + t * stride_it
    start = split * KEYS_PER_SPLIT
    end = gl.minimum(start + KEYS_PER_SPLIT, K)
    steps = gl.cdiv(end - start, BLOCK_N)

    # Prologue: the first NBUF - 1 gathers in flight, the indices of the next one in registers.
    for j in gl.static_range(NBUF - 1):
        idx = _load_idx(idx_base, start + j * BLOCK_N, end, BLOCK_N, idx_layout)
        _issue_gather(kv_base, stride_kvs, idx, lat.index(j), pe.index(j), ring.index(j), DV, DPE, gather)
    idx_next = _load_idx(idx_base, start + (NBUF - 1) * BLOCK_N, end, BLOCK_N, idx_layout)

    m_i = gl.full([BLOCK_H], float("-inf"), gl.float32, layout=row_layout)
    l_i = gl.zeros([BLOCK_H], gl.float32, layout=row_layout)
    acc = warpgroup_mma_init(gl.zeros([BLOCK_H, DV], gl.float32, layout=o_layout))  # carried in flight
    zero_s = gl.zeros([BLOCK_H, BLOCK_N], gl.float32, layout=s_layout)
    for i in range(steps):
        slot = i % NBUF
        cp.wait_group(NBUF - 2)  # this thread's copies of step i have landed (later ones may still fly)
        _barrier()  # and every other thread's
        lat_i = lat.index(slot)
        s = warpgroup_mma(q_lat, lat_i.permute((1, 0)), zero_s, use_acc=False, is_async=True)
        s = warpgroup_mma(q_pe, pe.index(slot).permute((1, 0)), s, is_async=True)
        # Waiting for the scores also retires step i - 1's value product, so its buffer is free for step
        # i + NBUF - 1. (Retiring only that product and copying while the scores run measured slower on H100.)
        s, acc_done = warpgroup_mma_wait(num_outstanding=0, deps=(s, acc))
        _barrier()  # both warpgroups are done with that buffer before any warp copies into it
        free = (i + NBUF - 1) % NBUF
        _issue_gather(kv_base, stride_kvs, idx_next, lat.index(free), pe.index(free), ring.index(free), DV, DPE, gather)
        idx_next = _load_idx(idx_base, start + (i + NBUF) * BLOCK_N, end, BLOCK_N, idx_layout)

        valid = ring.index(slot).load(col_layout) >= 0
        p_op, acc_done, m_i, l_i = _online_softmax(s, valid, m_i, l_i, acc_done, qk_scale, p_layout, dtype)
        acc = warpgroup_mma(p_op, lat_i, acc_done, is_async=True)
    acc_done = warpgroup_mma_wait(num_outstanding=0, deps=(acc,))
    cp.wait_group(0)  # the gathers issued past the last step read only skipped slots

    o_base = o_ptr + b * stride_ob + t * stride_ot + split * stride_os
    lse_base = lse_ptr + b * stride_lb + t * stride_lt + split * stride_ls
    _store_rows(acc_done, l_i, o_base, 0, pid_h, H, stride_oh, DV, o_layout)
    if SPLIT:
        _store_lse(m_i, l_i, lse_base, pid_h, H, row_layout)


# (BLOCK_N, NBUF, nsplit or None for the heuristic, S_SPLIT); measured on H100: 64-row steps with 2 buffers beat
# 32-row steps with 3 or 4 by 1.2-1.6x, and scoring half the keys per warpgroup (S_SPLIT) beats both scoring all
GluonConfig = tuple[int, int, int | None, bool]
DEFAULT_CONFIG: GluonConfig = (64, 2, None, True)


@functools.cache
def _hopper(device: torch.device) -> bool:
    # asked once per device: the dispatcher runs for every layer of every eager step
    return torch.cuda.get_device_capability(device)[0] == 9


def gluon_fits(q: torch.Tensor, kv: torch.Tensor, dv: int) -> bool:
    """Whether this kernel serves these inputs: Hopper, bf16, 512 latent values and a 64-wide RoPE part, and at
    least 64 heads (one wgmma block; fewer, as on 4 or 8 GPUs, would leave rows idle in it and is unmeasured)."""
    return (
        q.is_cuda
        and _hopper(q.device)
        and q.dtype == kv.dtype == torch.bfloat16
        and dv == 512
        and q.shape[-1] == dv + 64
        and q.shape[-2] >= H_BLOCK
    )


def sparse_mla_gluon(q, kv, indices, scale: float, dv: int, out=None, config: GluonConfig | None = None):
    """q [B, T, H, 576], kv [B, S, 576], indices [B, T, K] int32 (-1 = skip) -> [B, T, H, 512] bf16."""
    block_n, nbuf, nsplit, s_split = config or DEFAULT_CONFIG
    return launch(
        _sparse_mla_gluon_kernel, q, kv, indices, scale, dv, out, block_n, nsplit, NBUF=nbuf, S_SPLIT=s_split,
        **pdl_args(q.device),
    )  # fmt: skip


def launch(kernel, q, kv, indices, scale: float, dv: int, out, block_n: int, nsplit: int | None, **meta):
    """Check V3.2's shapes, cut each query's keys into parts when programs are few, run `kernel` (the arguments
    of _sparse_mla_gluon_kernel, then `meta`) and merge the parts. Shared with the warp-specialised kernel."""
    from dsagent.kernels.fp8_triton import _sm_count
    from dsagent.kernels.sparse_mla_triton import combine_splits, key_splits, split_buffers

    B, T, H, Dqk = q.shape
    K = indices.shape[-1]
    assert dv == 512 and Dqk - dv == 64 and kv.shape[0] == B and kv.shape[2] == Dqk, (dv, q.shape, kv.shape)
    assert indices.shape == (B, T, K) and indices.dtype == torch.int32, (indices.shape, indices.dtype)
    assert q.dtype == kv.dtype == torch.bfloat16, (q.dtype, kv.dtype)
    assert q.stride(-1) == 1 and kv.stride(-1) == 1 and indices.stride(-1) == 1
    if out is None:
        out = torch.empty((B, T, H, dv), dtype=q.dtype, device=q.device)
    assert out.shape == (B, T, H, dv) and out.dtype == q.dtype and out.stride(-1) == 1
    if B * T * H == 0:
        return out
    num_warps = meta.pop("num_warps", 8)  # the warps before any warp specialisation
    nsplit = nsplit or key_splits(B * T * triton.cdiv(H, H_BLOCK), K, block_n, _sm_count(q.device))
    keys_per_split, nsplit, dst, lse, dst_strides, lse_strides = split_buffers(out, K, nsplit, block_n)
    kernel[(B * T, triton.cdiv(H, H_BLOCK), nsplit)](
        q, kv, indices, dst, lse, T, H, K, scale * math.log2(math.e), keys_per_split,
        q.stride(0), q.stride(1), q.stride(2), kv.stride(0), kv.stride(1), indices.stride(0), indices.stride(1),
        *dst_strides, *lse_strides,
        DV=dv, DPE=Dqk - dv, BLOCK_N=block_n, SPLIT=nsplit > 1, num_warps=num_warps, **meta,
    )  # fmt: skip
    if nsplit > 1:
        combine_splits(dst, lse, out, nsplit, dst_strides, lse_strides)
    return out
