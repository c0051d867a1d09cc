"""Triton fused MoE: tokens sorted by expert, grouped GEMMs, weighted combine.

    out[t] = sum_j w[t, j] * W2[e_j] @ (silu(G[e_j] x[t]) * (U[e_j] x[t])),   w13 = cat([G, U], dim=1)

The (token, slot) pairs are sorted by expert and each expert's run is padded to a multiple of BLOCK_M, so a
row block belongs to one expert. Kernel 1 gathers the block's token rows, multiplies them by the gate and
the up rows of that expert together and writes silu(g) * u (for fp8 weights, already quantised per 128
columns for the down projection), scaled by the routing weight. Kernel 2 multiplies by W2 and writes one
row per pair; the k rows of a token are summed in fp32 afterwards (a fixed order: results repeat exactly).
The sort (moe_align_triton.py) needs no host synchronisation, so the whole layer is graph-capturable.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .elementwise_triton import sum_rows_triton
from .fp8_triton import FP8_MAX_INV, _pow2_ceil, act_quant_triton
from .moe_align_triton import moe_align
from .pdl import pdl_args, wait_for_inputs


@triton.jit
def _grouped_pid(pid, num_m, num_n, GROUP_M: tl.constexpr):
    # GROUP_M row blocks (about one expert's tokens) sweep the N tiles together: their token rows stay in L2
    # across the sweep and each weight tile is read once for the group, not once per row block. Measured on
    # H100 for fp8 at 4096 tokens (GROUP_M 2 / 4 / 8 / 16): gate/up 4.25 / 4.32 / 4.20 / 4.12 ms, down 1.98 /
    # 2.18 / 2.07 / 2.02 ms; bf16 keeps 4
    width = GROUP_M * num_n
    first_m = (pid // width) * GROUP_M
    size = tl.minimum(num_m - first_m, GROUP_M)
    return first_m + (pid % width) % size, (pid % width) // size


@triton.jit
def _moe_gate_up_kernel(
    x_ptr, xs_ptr, w_ptr, ws_ptr, h_ptr, hs_ptr, pairs_ptr, bexp_ptr, tw_ptr,
    P, TOPK, D, INTER,
    stride_xt, stride_xst, stride_we, stride_wn, stride_wse, stride_wsn, stride_hm, stride_hsm,
    NUM_M, NUM_N,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, FP8: tl.constexpr, EVEN_K: tl.constexpr,
    ACT: tl.constexpr, GROUP_M: tl.constexpr, UP_ALIGNED: tl.constexpr, PDL: tl.constexpr,
):  # fmt: skip
    # x [T, D] (fp8 with xs [T, D/128]), w13 [E, 2I, D] (fp8 with ws [E, 2I/128, D/128]) -> h [R, I]
    wait_for_inputs(PDL)  # the experts' weights depend on the routing: nothing to read before it
    pid_m, pid_n = _grouped_pid(tl.program_id(0), NUM_M, NUM_N, GROUP_M)
    # blocks past the last expert's run (expert -1) run no K iterations: no branch around the loop,
    # which would keep the compiler from pipelining its loads
    e_raw = tl.load(bexp_ptr + pid_m)
    e = tl.maximum(e_raw, 0).to(tl.int64)
    num_k = tl.where(e_raw >= 0, tl.cdiv(D, BLOCK_K), 0)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    pair = tl.load(pairs_ptr + offs_m)
    valid = pair < P
    tok = tl.where(valid, pair // TOPK, 0)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    nmask = offs_n < INTER
    rn = tl.where(nmask, offs_n, 0)
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = x_ptr + tok[:, None] * stride_xt + offs_k[None, :]
    g_ptrs = w_ptr + e * stride_we + rn[:, None] * stride_wn + offs_k[None, :]
    u_ptrs = g_ptrs + INTER * stride_wn
    acc_g = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
    acc_u = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
    for kb in range(num_k):
        if EVEN_K:
            a = tl.load(a_ptrs)  # padding rows read token 0; their results are never used
            g = tl.load(g_ptrs)
            u = tl.load(u_ptrs)
        else:
            kmask = offs_k[None, :] < D - kb * BLOCK_K
            a = tl.load(a_ptrs, mask=kmask, other=0.0)
            g = tl.load(g_ptrs, mask=kmask, other=0.0)
            u = tl.load(u_ptrs, mask=kmask, other=0.0)
        if FP8:
            # BLOCK_N == 128: the tile's gate rows share one weight scale, so the product is scaled per row by
            # one fused multiply-add; so are the up rows' where INTER is a multiple of 128
            sa = tl.load(xs_ptr + tok * stride_xst + kb)
            sg = tl.load(ws_ptr + e * stride_wse + pid_n * stride_wsn + kb)
            acc_g += tl.dot(a, tl.trans(g)) * (sa * sg)[:, None]
            if UP_ALIGNED:
                su = tl.load(ws_ptr + e * stride_wse + (pid_n + INTER // 128) * stride_wsn + kb)
                acc_u += tl.dot(a, tl.trans(u)) * (sa * su)[:, None]
            else:
                su = tl.load(ws_ptr + e * stride_wse + ((rn + INTER) // 128) * stride_wsn + kb)
                acc_u += tl.dot(a, tl.trans(u)) * sa[:, None] * su[None, :]
        else:
            acc_g = tl.dot(a, tl.trans(g), acc_g)
            acc_u = tl.dot(a, tl.trans(u), acc_u)
        a_ptrs += BLOCK_K
        g_ptrs += BLOCK_K
        u_ptrs += BLOCK_K
    # the projections round to the activation dtype as linear layers do; silu, the product and the
    # routing weight run in fp32 before the down projection's input is rounded again
    wgt = tl.load(tw_ptr + pair, mask=valid, other=0.0)
    g = acc_g.to(ACT).to(tl.float32)
    u = acc_u.to(ACT).to(tl.float32)
    h = (g * tl.sigmoid(g) * u * wgt[:, None]).to(ACT).to(tl.float32)
    h = tl.where(nmask[None, :], h, 0.0)
    h_ptrs = h_ptr + offs_m[:, None] * stride_hm + offs_n[None, :]
    if FP8:
        # BLOCK_N == 128: this tile is exactly one quantisation block of the down projection's input
        scale = _pow2_ceil(tl.maximum(tl.max(tl.abs(h), axis=1), 1e-4) * FP8_MAX_INV)
        tl.store(h_ptrs, (h / scale[:, None]).to(h_ptr.dtype.element_ty), mask=nmask[None, :])
        tl.store(hs_ptr + offs_m * stride_hsm + pid_n, scale)
    else:
        tl.store(h_ptrs, h.to(h_ptr.dtype.element_ty), mask=nmask[None, :])


@triton.jit
def _moe_down_kernel(
    h_ptr, hs_ptr, w_ptr, ws_ptr, y_ptr, pairs_ptr, bexp_ptr,
    P, D, INTER,
    stride_hm, stride_hsm, stride_we, stride_wn, stride_wse, stride_wsn, stride_ym,
    NUM_M, NUM_N,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, FP8: tl.constexpr, EVEN_K: tl.constexpr,
    GROUP_M: tl.constexpr, PDL: tl.constexpr,
):  # fmt: skip
    # h [R, I] (fp8 with hs [R, I/128]), w2 [E, D, I] (fp8 with ws [E, D/128, I/128]) -> y [P, D]; I = INTER
    wait_for_inputs(PDL)  # the experts' weights depend on the routing: nothing to read before it
    pid_m, pid_n = _grouped_pid(tl.program_id(0), NUM_M, NUM_N, GROUP_M)
    e_raw = tl.load(bexp_ptr + pid_m)
    e = tl.maximum(e_raw, 0).to(tl.int64)
    num_k = tl.where(e_raw >= 0, tl.cdiv(INTER, BLOCK_K), 0)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    pair = tl.load(pairs_ptr + offs_m)
    valid = pair < P
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    nmask = offs_n < D
    rn = tl.where(nmask, offs_n, 0)
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = h_ptr + offs_m[:, None] * stride_hm + offs_k[None, :]
    b_ptrs = w_ptr + e * stride_we + rn[:, None] * stride_wn + offs_k[None, :]
    acc = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
    for kb in range(num_k):
        if EVEN_K:
            a = tl.load(a_ptrs)
            b = tl.load(b_ptrs)
        else:
            kmask = offs_k[None, :] < INTER - kb * BLOCK_K
            a = tl.load(a_ptrs, mask=kmask, other=0.0)
            b = tl.load(b_ptrs, mask=kmask, other=0.0)
        if FP8:
            sa = tl.load(hs_ptr + offs_m * stride_hsm + kb)
            sb = tl.load(ws_ptr + e * stride_wse + pid_n * stride_wsn + kb)  # one scale for the tile's 128 rows
            acc += tl.dot(a, tl.trans(b)) * (sa * sb)[:, None]
        else:
            acc = tl.dot(a, tl.trans(b), acc)
        a_ptrs += BLOCK_K
        b_ptrs += BLOCK_K
    y_ptrs = y_ptr + pair.to(tl.int64)[:, None] * stride_ym + offs_n[None, :]
    tl.store(y_ptrs, acc.to(y_ptr.dtype.element_ty), mask=valid[:, None] & nmask[None, :])


def _moe_config(pairs: int, fp8: bool, elem_bytes: int = 2) -> tuple[int, int, int, int, int]:
    """(BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages); fp8 needs BLOCK_K = 128 (one scale per tile)."""
    if elem_bytes == 4:  # fp32 (checking runs): the bf16 tiles' stages of x, gate and up would need 288 KB of smem
        return (16, 64, 64, 4, 3) if pairs <= 128 else (64, 64, 32, 4, 3)
    if pairs <= 128:  # decode: a few rows per expert, the weights are the traffic
        return (16, 128, 128, 4, 4) if fp8 else (16, 64, 128, 4, 4)
    # measured on H100, 4096 tokens x 256 experts: bf16 10.9 ms (vs 12.4 for 64-row tiles), fp8 6.6 ms (vs 6.7
    # with 8 warps, 6.9 with 3 stages; 128-row fp8 tiles spill)
    return (64, 128, 128, 4, 4) if fp8 else (128, 128, 64, 8, 3)


def fused_moe_triton(x, topk_ids, topk_weights, w13, w2, w13_scale=None, w2_scale=None, config=None, out=None):
    """x [T, D]; topk_ids [T, k]; topk_weights [T, k] fp32; w13 [E, 2I, D]; w2 [E, D, I]; fp8 weights come
    with 128x128 block scales [E, ceil(2I/128), ceil(D/128)] / [E, ceil(D/128), ceil(I/128)] -> [T, D]."""
    T, D = x.shape
    E, I2, _ = w13.shape
    inter = I2 // 2
    k = topk_ids.shape[1]
    fp8 = w13_scale is not None
    assert w13.shape == (E, 2 * inter, D) and w2.shape == (E, D, inter), (w13.shape, w2.shape, D)
    assert topk_ids.shape == (T, k) and topk_weights.shape == (T, k), (topk_ids.shape, topk_weights.shape)
    assert (w2_scale is not None) == fp8, "fp8 weights need both scales"
    assert x.stride(-1) == 1 and w13.stride(-1) == 1 and w2.stride(-1) == 1
    if fp8:
        assert w13_scale.shape == (E, triton.cdiv(2 * inter, 128), triton.cdiv(D, 128)), w13_scale.shape
        assert w2_scale.shape == (E, triton.cdiv(D, 128), triton.cdiv(inter, 128)), w2_scale.shape
        assert w13_scale.stride(-1) == 1 and w2_scale.stride(-1) == 1
    else:
        assert w13.dtype == x.dtype and w2.dtype == x.dtype, (x.dtype, w13.dtype, w2.dtype)
    if out is None:
        out = torch.empty_like(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    P = T * k
    if P == 0:
        return out.zero_()
    bm, bn, bk, warps, stages = config or _moe_config(P, fp8, x.element_size())
    assert not fp8 or (bk == 128 and bn == 128), "fp8 tiles must match the 128-wide scale blocks"
    pairs, bexp = moe_align(topk_ids, E, bm)
    weights = topk_weights.reshape(-1).to(torch.float32).contiguous()
    h, hs = moe_gate_up(x, pairs, bexp, weights, k, w13, w13_scale, (bm, bn, bk, warps, stages))
    y = moe_down(h, hs, pairs, bexp, w2, w2_scale, P, x.dtype, (bm, bn, bk, warps, stages))
    return sum_rows_triton(y, k=k, out=out)  # each token's k expert outputs summed in fp32, rounded once


def moe_gate_up(x, pairs, bexp, weights, k, w13, w13_scale, config):
    """Kernel 1: h [R, I] = silu(G x) * (U x) * routing weight per sorted pair (fp8: h quantised, scales hs)."""
    bm, bn, bk, warps, stages = config
    fp8 = w13_scale is not None
    D, inter, R = x.shape[1], w13.shape[1] // 2, pairs.numel()
    act = tl.bfloat16 if fp8 else {torch.float32: tl.float32, torch.float16: tl.float16}.get(x.dtype, tl.bfloat16)
    if fp8:
        xq, xs = act_quant_triton(x, out_dtype=w13.dtype)
        h = torch.empty((R, inter), dtype=w13.dtype, device=x.device)
        hs = torch.empty((R, triton.cdiv(inter, 128)), dtype=torch.float32, device=x.device)
        s13 = w13_scale
    else:
        xq, xs, hs, s13 = x, x, x, x  # scale pointers unused
        h = torch.empty((R, inter), dtype=x.dtype, device=x.device)
    num_m, num_n = R // bm, triton.cdiv(inter, bn)
    _moe_gate_up_kernel[(num_m * num_n,)](
        xq, xs, w13, s13, h, hs, pairs, bexp, weights, x.shape[0] * k, k, D, inter,
        xq.stride(0), xs.stride(0), w13.stride(0), w13.stride(1), s13.stride(0), s13.stride(1),
        h.stride(0), hs.stride(0), num_m, num_n,
        BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, FP8=fp8, EVEN_K=D % bk == 0, ACT=act, GROUP_M=16 if fp8 else 4,
        UP_ALIGNED=inter % 128 == 0, num_warps=warps, num_stages=stages, **pdl_args(x.device),
    )  # fmt: skip
    return h, hs if fp8 else None


def moe_down(h, hs, pairs, bexp, w2, w2_scale, num_pairs, out_dtype, config):
    """Kernel 2: y [P, D] = W2[e] @ h row by row, written at each pair's own index."""
    bm, bn, bk, warps, stages = config
    fp8 = w2_scale is not None
    D, inter, R = w2.shape[1], w2.shape[2], pairs.numel()
    y = torch.empty((num_pairs, D), dtype=out_dtype, device=h.device)
    hs, s2 = (hs, w2_scale) if fp8 else (h, h)  # scale pointers unused for bf16
    num_m, num_n = R // bm, triton.cdiv(D, bn)
    _moe_down_kernel[(num_m * num_n,)](
        h, hs, w2, s2, y, pairs, bexp, num_pairs, D, inter,
        h.stride(0), hs.stride(0), w2.stride(0), w2.stride(1), s2.stride(0), s2.stride(1), y.stride(0), num_m, num_n,
        BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, FP8=fp8, EVEN_K=inter % bk == 0, GROUP_M=2 if fp8 else 4,
        num_warps=warps, num_stages=stages, **pdl_args(h.device),
    )  # fmt: skip
    return y
