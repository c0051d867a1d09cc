"""Sparse MLA (absorbed form) for Hopper in Gluon, with the two warpgroups given different jobs. The dispatcher
runs it for prefill (programs for two waves or more: 410 against sparse_mla_gluon's 354 TFLOP/s for 4096
queries on H100) and, with 32-row steps gathered 3 steps ahead, for batched decode (most of a wave, keys not
split: 311 against 296 TFLOP/s at batch 64); sparse_mla_gluon where the programs are few and keys are split.
tests/kernels/test_sparse_mla_roles_gpu.py checks it; bench/kernels.py --sweep --only mla times its configs.

Why: in sparse_mla_gluon each warpgroup scores half of a step's 64 keys and holds half of the output's 512
columns, so both read all of q from shared memory for narrow (n32) score products, and the softmax's row
maxima, sums and probabilities cross between them through shared memory and barriers every step. Here one
warpgroup (the default partition) scores all 64 keys (n64: a third less shared-memory traffic for the same
products), runs the whole softmax in its own registers and multiplies its probabilities into columns
0-255; it hands the probabilities and the rescale factors to the value warpgroup through shared memory,
which multiplies them into columns 256-511 while the scorer moves on to the next step's scores. A
4-warp load partition with few registers gathers each step's rows with cp.async into a ring of buffers and
signals them through an mbarrier that completes when its copies land, so no warp that multiplies issues a copy.
(That load partition beside sparse_mla_gluon's two warpgroups alone measured 366 TFLOP/s for prefill and
258 for decode: the gain here is the split of roles.)

Same contract and shapes as sparse_mla_gluon (bf16, 512 latent + 64 RoPE, 64 heads a program).
"""

from __future__ import annotations

from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.ampere import async_copy as cp
from triton.experimental.gluon.language.nvidia.hopper import (
    fence_async_shared,
    mbarrier,
    warpgroup_mma,
    warpgroup_mma_init,
    warpgroup_mma_wait,
)

from .pdl import pdl_args
from .sparse_mla_gluon import (
    _async_load,
    _barrier,
    _load_q,
    _program,
    _row_buffers,
    _softmax_step,
    _store_lse,
    _store_rows,
    _wait_for_inputs,
    launch,
)

LOAD_WARPS = 4
# (rows a step, buffers of a step's rows, rows gathered per cp.async call, the load partition's registers a
# thread, the value warpgroup's, key splits or None for the heuristic). The scoring warpgroup gets what is left
# of 504 (three warpgroups at the launch's 168), which may not pass 256: below 208 for the value warpgroup Triton
# sets no register split at all.
RolesConfig = tuple[int, int, int, int, int, int | None]
# H100, 4096 queries: (64, 2, 32, 56, 208) 5.70 ms, (64, 2, 16, 40, 208) 5.97, (64, 2, 16, 40, 232) 6.02,
# (32, 4, 32, 56, 208) 5.89
DEFAULT_ROLES_CONFIG: RolesConfig = (64, 2, 32, 56, 208, None)
# Decode reads its rows from HBM, not L2: 32-row steps in 4 buffers (226 KB of shared memory) gather 3 steps
# ahead instead of 1. H100, batch 64: 117 us against 129 for the default and 122 for the Gluon kernel.
DECODE_ROLES_CONFIG: RolesConfig = (32, 4, 32, 56, 208, None)


@gluon.jit
def _load_partition(kv_ptr, idx_ptr, lat, pe, ready, empty, kv_off, idx_off, stride_kvs, start, end, steps,
                    DV: gl.constexpr, DPE: gl.constexpr, BLOCK_N: gl.constexpr, NBUF: gl.constexpr,
                    CHUNK: gl.constexpr, WARPS: gl.constexpr):  # fmt: skip
    lat_layout: gl.constexpr = gl.BlockedLayout([1, 8], [1, 32], [WARPS, 1], [1, 0])  # 16-byte copies
    pe_layout: gl.constexpr = gl.BlockedLayout([1, 8], [4, 8], [WARPS, 1], [1, 0])
    offs_dv = gl.arange(0, DV, layout=gl.SliceLayout(0, lat_layout))
    offs_pe = gl.arange(0, DPE, layout=gl.SliceLayout(0, pe_layout))
    kv_base = kv_ptr + kv_off
    idx_base = idx_ptr + idx_off
    for i in range(steps):
        slot = i % NBUF
        # a fresh barrier counts as having completed the phase before its first: the first NBUF waits pass
        mbarrier.wait(empty.index(slot), ((i // NBUF) & 1) ^ 1)
        n0 = start + i * BLOCK_N
        for c in gl.static_range(BLOCK_N // CHUNK):
            offs = n0 + c * CHUNK + gl.arange(0, CHUNK, layout=gl.SliceLayout(1, lat_layout))
            idx = gl.load(idx_base + offs, mask=offs < end, other=-1)
            keep = idx >= 0
            rows = gl.where(keep, idx, 0).to(gl.int64) * stride_kvs
            dst = lat.index(slot).slice(c * CHUNK, CHUNK, dim=0)
            _async_load(dst, kv_base + rows[:, None] + offs_dv[None, :], mask=keep[:, None])
            rows_pe = gl.convert_layout(rows, gl.SliceLayout(1, pe_layout))
            keep_pe = gl.convert_layout(keep, gl.SliceLayout(1, pe_layout))
            dst_pe = pe.index(slot).slice(c * CHUNK, CHUNK, dim=0)
            _async_load(dst_pe, kv_base + DV + rows_pe[:, None] + offs_pe[None, :], mask=keep_pe[:, None])
        # every load thread arrives once its own copies of this step have landed (noinc: counted at init)
        cp.mbarrier_arrive(ready.index(slot), increment_count=False)


@gluon.jit
def _score_partition(q_lat, q_pe, lat, pe, p_smem, alpha_smem, ready, empty, p_full, p_empty,
                     idx_ptr, o_ptr, lse_ptr, idx_off, o_off, lse_off, pid_h, H, start, end, steps, qk_scale,
                     stride_oh, DV: gl.constexpr, BLOCK_N: gl.constexpr, NBUF: gl.constexpr,
                     SPLIT: gl.constexpr):  # fmt: skip
    HALF: gl.constexpr = DV // 2
    dtype: gl.constexpr = q_lat.dtype
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                       instr_shape=[16, BLOCK_N, 16])  # fmt: skip
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                       instr_shape=[16, DV // 2, 16])  # fmt: skip
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    col_layout: gl.constexpr = gl.SliceLayout(0, s_layout)
    row_layout: gl.constexpr = gl.SliceLayout(1, s_layout)
    vec: gl.constexpr = gl.BlockedLayout([1], [32], [4], [0])
    idx_base = idx_ptr + idx_off

    m_i = gl.full([64], float("-inf"), gl.float32, layout=row_layout)
    l_i = gl.zeros([64], gl.float32, layout=row_layout)
    acc = warpgroup_mma_init(gl.zeros([64, HALF], gl.float32, layout=o_layout))
    zero_s = gl.zeros([64, BLOCK_N], gl.float32, layout=s_layout)
    offs_n = gl.arange(0, BLOCK_N, layout=col_layout)
    idx = gl.load(idx_base + start + offs_n, mask=start + offs_n < end, other=-1)
    for i in range(steps):
        slot = i % NBUF
        mbarrier.wait(ready.index(slot), (i // NBUF) & 1)
        fence_async_shared()  # the rows came in through cp.async; the products read them through the async proxy
        lat_i = lat.index(slot)
        s = warpgroup_mma(q_lat, lat_i.permute((1, 0)), zero_s, use_acc=False, is_async=True)
        s = warpgroup_mma(q_pe, pe.index(slot).permute((1, 0)), s, is_async=True)
        valid = idx >= 0
        nxt = start + (i + 1) * BLOCK_N + offs_n
        idx = gl.load(idx_base + nxt, mask=nxt < end, other=-1)  # the next step's, while the products run
        # waiting for the scores also retires this warpgroup's value product of step i - 1: its half of that
        # buffer is free (the value warpgroup frees the other half)
        s, acc = warpgroup_mma_wait(num_outstanding=0, deps=(s, acc))
        _barrier()
        mbarrier.arrive(empty.index((i + NBUF - 1) % NBUF), count=1, pred=i > 0)

        p32, alpha, m_i, l_i = _softmax_step(s, valid, m_i, l_i, qk_scale)
        p = p32.to(dtype)
        acc = acc * gl.convert_layout(alpha, gl.SliceLayout(1, o_layout))[:, None]
        # the value warpgroup is done with step i - 1's probabilities before they are overwritten
        mbarrier.wait(p_empty, (i & 1) ^ 1)
        p_smem.store(p)
        # through a plain layout: stored straight from row_layout (and so the final sums below, oddly, when
        # converted), ptxas serialises every wgmma of the kernel (C7515)
        alpha_smem.store(gl.convert_layout(alpha, vec))
        fence_async_shared()  # the value warpgroup's product reads p_smem through the async proxy
        _barrier()
        mbarrier.arrive(p_full, count=1)
        acc = warpgroup_mma(gl.convert_layout(p, p_layout), lat_i.slice(0, HALF, dim=1), acc, is_async=True)
    acc = warpgroup_mma_wait(num_outstanding=0, deps=(acc,))

    # the final row sums, for the value warpgroup's half of the output, once it has read the last step's
    # rescale factors
    mbarrier.wait(p_empty, (steps & 1) ^ 1)
    alpha_smem.store(l_i)
    _barrier()
    mbarrier.arrive(p_full, count=1)
    _store_rows(acc, l_i, o_ptr + o_off, 0, pid_h, H, stride_oh, HALF, o_layout)
    if SPLIT:
        _store_lse(m_i, l_i, lse_ptr + lse_off, pid_h, H, row_layout)


@gluon.jit
def _value_partition(lat, p_smem, alpha_smem, empty, p_full, p_empty, o_ptr, o_off, pid_h, H, steps, stride_oh,
                     DV: gl.constexpr, NBUF: gl.constexpr):  # fmt: skip
    HALF: gl.constexpr = DV // 2
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                       instr_shape=[16, HALF, 16])  # fmt: skip
    rows: gl.constexpr = gl.SliceLayout(1, o_layout)
    acc = gl.zeros([64, HALF], gl.float32, layout=o_layout)
    for i in range(steps):
        mbarrier.wait(p_full, i & 1)
        alpha = alpha_smem.load(rows)
        fence_async_shared()
        acc = warpgroup_mma(p_smem, lat.index(i % NBUF).slice(HALF, HALF, dim=1), acc * alpha[:, None])
        _barrier()  # every warp's product has read the probabilities and the rows
        mbarrier.arrive(p_empty, count=1)
        mbarrier.arrive(empty.index(i % NBUF), count=1)
    mbarrier.wait(p_full, steps & 1)
    _store_rows(acc, alpha_smem.load(rows), o_ptr + o_off, HALF, pid_h, H, stride_oh, HALF, o_layout)


@gluon.jit
def _sparse_mla_roles_kernel(
    q_ptr, kv_ptr, idx_ptr, o_ptr, lse_ptr,
    T, H, K, qk_scale, KEYS_PER_SPLIT,
    stride_qb, stride_qt, stride_qh, stride_kvb, stride_kvs, stride_ib, stride_it,
    stride_ob, stride_ot, stride_os, stride_oh, stride_lb, stride_lt, stride_ls,
    DV: gl.constexpr, DPE: gl.constexpr, BLOCK_N: gl.constexpr, NBUF: gl.constexpr, SPLIT: gl.constexpr,
    CHUNK: gl.constexpr, LOAD_WARPS: gl.constexpr, LOAD_REGS: gl.constexpr, VALUE_REGS: gl.constexpr,
    PDL: gl.constexpr,
):  # fmt: skip
    # q [B, T, H, DV + DPE], kv [B, S, DV + DPE], idx [B, T, K] int32 (-1 = skip); o as in the Triton kernel
    dtype: gl.constexpr = q_ptr.dtype.element_ty
    b, t, pid_h, split = _program(T)
    _wait_for_inputs(PDL)

    p_layout: gl.constexpr = gl.NVMMASharedLayout.get_default_for([64, BLOCK_N], dtype)
    vec_layout: gl.constexpr = gl.SwizzledSharedLayout(vec=1, per_phase=1, max_phase=1, order=[0])
    lat, pe = _row_buffers(dtype, NBUF, BLOCK_N, DV, DPE)
    p_smem = gl.allocate_shared_memory(dtype, [64, BLOCK_N], p_layout)
    alpha_smem = gl.allocate_shared_memory(gl.float32, [64], vec_layout)
    ready = gl.allocate_shared_memory(gl.int64, [NBUF, 1], mbarrier.MBarrierLayout())
    empty = gl.allocate_shared_memory(gl.int64, [NBUF, 1], mbarrier.MBarrierLayout())
    p_full = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    p_empty = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
    for j in gl.static_range(NBUF):
        mbarrier.init(ready.index(j), count=LOAD_WARPS * 32)
        mbarrier.init(empty.index(j), count=2)  # both warpgroups' value products have read the buffer
    mbarrier.init(p_full, count=1)
    mbarrier.init(p_empty, count=1)

    q_lat, q_pe = _load_q(q_ptr + b * stride_qb + t * stride_qt, pid_h, H, stride_qh, DV, DPE, 4)
    _barrier()  # q and the initialised barriers, before the partitions start

    start = split * KEYS_PER_SPLIT
    end = gl.minimum(start + KEYS_PER_SPLIT, K)
    steps = gl.cdiv(end - start, BLOCK_N)
    idx_off = b * stride_ib + t * stride_it
    o_off = b * stride_ob + t * stride_ot + split * stride_os
    lse_off = b * stride_lb + t * stride_lt + split * stride_ls
    gl.warp_specialize(
        [
            (
                _score_partition,
                (q_lat, q_pe, lat, pe, p_smem, alpha_smem, ready, empty, p_full, p_empty, idx_ptr, o_ptr,
                 lse_ptr, idx_off, o_off, lse_off, pid_h, H, start, end, steps, qk_scale, stride_oh, DV, BLOCK_N,
                 NBUF, SPLIT),
            ),
            (
                _value_partition,
                (lat, p_smem, alpha_smem, empty, p_full, p_empty, o_ptr, o_off, pid_h, H, steps, stride_oh, DV,
                 NBUF),
            ),
            (
                _load_partition,
                (kv_ptr, idx_ptr, lat, pe, ready, empty, b * stride_kvb, idx_off, stride_kvs, start, end, steps,
                 DV, DPE, BLOCK_N, NBUF, CHUNK, LOAD_WARPS),
            ),
        ],
        [4, LOAD_WARPS],
        [VALUE_REGS, LOAD_REGS],
    )  # fmt: skip


def sparse_mla_gluon_roles(q, kv, indices, scale: float, dv: int, out=None, config: RolesConfig | None = None):
    """q [B, T, H, 576], kv [B, S, 576], indices [B, T, K] int32 (-1 = skip) -> [B, T, H, 512] bf16."""
    block_n, nbuf, chunk, load_regs, value_regs, nsplit = config or DEFAULT_ROLES_CONFIG
    meta = {"NBUF": nbuf, "CHUNK": chunk, "LOAD_WARPS": LOAD_WARPS, "LOAD_REGS": load_regs, "VALUE_REGS": value_regs}
    meta |= pdl_args(q.device)
    return launch(_sparse_mla_roles_kernel, q, kv, indices, scale, dv, out, block_n, nsplit, num_warps=4, **meta)


def sparse_mla_gluon_roles_decode(q, kv, indices, scale: float, dv: int, out=None):
    """sparse_mla_gluon_roles with the decode config (one wave of programs or less, keys not split)."""
    return sparse_mla_gluon_roles(q, kv, indices, scale, dv, out, DECODE_ROLES_CONFIG)
