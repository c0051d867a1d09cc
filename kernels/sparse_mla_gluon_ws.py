"""Sparse MLA (absorbed form) for Hopper in Gluon, warp-specialised: a candidate beside sparse_mla_gluon, which
the dispatcher keeps using until this one is measured faster on a GPU (bench/kernels.py --only mla_ws times
both; tests/kernels/test_sparse_mla_ws_gpu.py checks it against the reference).

Why: in sparse_mla_gluon the same warps gather the rows, multiply and run the softmax, so every step pays for
issuing ~4,600 16-byte copies (index loads, address math) between its products. Here a load partition of
4 warps with few registers gathers each step's rows with cp.async into a ring of shared-memory buffers and
signals them through an mbarrier that completes when its copies land; the compute partition (two
warpgroups, as in sparse_mla_gluon: each scores half the keys and holds half the output's columns) only
waits, multiplies and runs the softmax, and hands each buffer back through a second mbarrier once both
warpgroups' value products that read it have retired.

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

from .sparse_mla_gluon import _async_load, _barrier, _load_q, _online_softmax, _store_out, launch

LOAD_WARPS = 4
# (rows gathered per cp.async call, which bounds the load partition's live pointers; its registers a thread;
# key splits or None for the heuristic). 2 buffers of 64 rows: with q's 72 KB, 220 KB of shared memory.
WsConfig = tuple[int, int, int | None]
DEFAULT_WS_CONFIG: WsConfig = (16, 40, None)


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
def _compute_partition(q_lat, q_pe, lat, pe, ready, empty, idx_ptr, o_ptr, lse_ptr, idx_off, o_off, lse_off,
                       pid_h, H, start, end, steps, qk_scale, stride_oh,
                       DV: gl.constexpr, BLOCK_N: gl.constexpr, NBUF: gl.constexpr, SPLIT: gl.constexpr):  # fmt: skip
    BLOCK_H: gl.constexpr = 64
    dtype: gl.constexpr = q_lat.dtype
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 2], instr_shape=[16, BLOCK_N // 2, 16]
    )
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(
        version=[3, 0], warps_per_cta=[4, 2], instr_shape=[16, DV // 2, 16]
    )
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    col_layout: gl.constexpr = gl.SliceLayout(0, s_layout)
    row_layout: gl.constexpr = gl.SliceLayout(1, s_layout)
    idx_base = idx_ptr + idx_off

    m_i = gl.full([BLOCK_H], float("-inf"), gl.float32, layout=row_layout)
    l_i = gl.zeros([BLOCK_H], gl.float32, layout=row_layout)
    acc = warpgroup_mma_init(gl.zeros([BLOCK_H, DV], gl.float32, layout=o_layout))
    zero_s = gl.zeros([BLOCK_H, BLOCK_N], gl.float32, layout=s_layout)
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
        # waiting for the scores also retires step i - 1's value product in this warpgroup; after the
        # barrier both have, and its buffer goes back to the load partition
        s, acc_done = warpgroup_mma_wait(num_outstanding=0, deps=(s, acc))
        _barrier()
        mbarrier.arrive(empty.index((i + NBUF - 1) % NBUF), count=1, pred=i > 0)

        p_op, acc_done, m_i, l_i = _online_softmax(s, valid, m_i, l_i, acc_done, qk_scale, p_layout, dtype)
        acc = warpgroup_mma(p_op, lat_i, acc_done, is_async=True)
    acc_done = warpgroup_mma_wait(num_outstanding=0, deps=(acc,))

    _store_out(acc_done, m_i, l_i, o_ptr + o_off, lse_ptr + lse_off, pid_h, H, stride_oh, DV, o_layout, row_layout,
               SPLIT)  # fmt: skip


@gluon.jit
def _sparse_mla_ws_kernel(
    q_ptr, kv_ptr, idx_ptr, o_ptr, lse_ptr,
    T, H, K, qk_scale, KEYS_PER_SPLIT,
    stride_qb, stride_qt, stride_qh, stride_kvb, stride_kvs, stride_ib, stride_it,
    stride_ob, stride_ot, stride_os, stride_oh, stride_lb, stride_lt, stride_ls,
    DV: gl.constexpr, DPE: gl.constexpr, BLOCK_N: gl.constexpr, NBUF: gl.constexpr, SPLIT: gl.constexpr,
    CHUNK: gl.constexpr, LOAD_WARPS: gl.constexpr, LOAD_REGS: gl.constexpr,
):  # fmt: skip
    # q [B, T, H, DV + DPE], kv [B, S, DV + DPE], idx [B, T, K] int32 (-1 = skip); o as in the Triton kernel
    dtype: gl.constexpr = q_ptr.dtype.element_ty
    pid_bt = gl.program_id(0)
    pid_h = gl.program_id(1)
    split = gl.program_id(2)
    b = (pid_bt // T).to(gl.int64)
    t = pid_bt % T

    lat_smem: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BLOCK_N, DV], dtype)
    pe_smem: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BLOCK_N, DPE], dtype)
    lat = gl.allocate_shared_memory(dtype, [NBUF, BLOCK_N, DV], lat_smem)
    pe = gl.allocate_shared_memory(dtype, [NBUF, BLOCK_N, DPE], pe_smem)
    ready = gl.allocate_shared_memory(gl.int64, [NBUF, 1], mbarrier.MBarrierLayout())
    empty = gl.allocate_shared_memory(gl.int64, [NBUF, 1], mbarrier.MBarrierLayout())
    for j in gl.static_range(NBUF):
        mbarrier.init(ready.index(j), count=LOAD_WARPS * 32)
        mbarrier.init(empty.index(j), count=1)

    q_lat, q_pe = _load_q(q_ptr + b * stride_qb + t * stride_qt, pid_h, H, stride_qh, DV, DPE)
    _barrier()  # q and the initialised barriers, before the partitions start

    start = split * KEYS_PER_SPLIT
    end = gl.minimum(start + KEYS_PER_SPLIT, K)
    steps = gl.cdiv(end - start, BLOCK_N)
    kv_off = b * stride_kvb
    idx_off = b * stride_ib + t * stride_it
    o_off = b * stride_ob + t * stride_ot + split * stride_os
    lse_off = b * stride_lb + t * stride_lt + split * stride_ls
    gl.warp_specialize(
        [
            (
                _compute_partition,
                (q_lat, q_pe, lat, pe, ready, empty, idx_ptr, o_ptr, lse_ptr, idx_off, o_off, lse_off,
                 pid_h, H, start, end, steps, qk_scale, stride_oh, DV, BLOCK_N, NBUF, SPLIT),
            ),
            (
                _load_partition,
                (kv_ptr, idx_ptr, lat, pe, ready, empty, kv_off, idx_off, stride_kvs, start, end, steps,
                 DV, DPE, BLOCK_N, NBUF, CHUNK, LOAD_WARPS),
            ),
        ],
        [LOAD_WARPS],
        [LOAD_REGS],
    )  # fmt: skip


def sparse_mla_gluon_ws(q, kv, indices, scale: float, dv: int, out=None, config: WsConfig | None = None):
    """q [B, T, H, 576], kv [B, S, 576], indices [B, T, K] int32 (-1 = skip) -> [B, T, H, 512] bf16."""
    chunk, load_regs, nsplit = config or DEFAULT_WS_CONFIG
    meta = {"NBUF": 2, "CHUNK": chunk, "LOAD_WARPS": LOAD_WARPS, "LOAD_REGS": load_regs}
    return launch(_sparse_mla_ws_kernel, q, kv, indices, scale, dv, out, 64, nsplit, **meta)
