"""Triton kernel for the lightning indexer's scores, and the top-k used on CUDA.

    I[t, s] = k_scale[s] * sum_h relu(q[t, h] . k[s]) * w[t, h],   -inf where s > offset + t

One program owns a tile of BLOCK_S keys: it loads them once (fp8, the dominant traffic at long context)
and scores BLOCK_T queries against them, each query as one [BLOCK_S, D] x [D, H] product on the tensor
cores (keys x heads, so the head-weighted sum after the ReLU adds values each thread already holds, with no
exchange through shared memory). Tiles entirely in the causal future are filled with -inf without touching
the keys.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .fp8_triton import _sm_count
from .pdl import pdl_args, wait_for_inputs
from .topk_triton import BITS, ROW_SCRATCH, SIGN, _ordered_keys, topk_triton

try:
    from triton.tools.tensor_descriptor import TensorDescriptor
except ImportError:  # an older Triton: the decode kernel loads keys through pointers
    TensorDescriptor = None

# Up to this many rows of at least this many keys use the radix select (H100, 128K keys: 1 row 18.1 vs 61.5 us
# for torch.topk, 4 rows 27.8 vs 68, 16 rows 76 vs 86, 64 rows 254 vs 165; 1 row of 4096 keys 13.7 vs 21.8).
RADIX_MIN_KEYS = 4096
RADIX_MAX_ROWS = 16


@triton.jit
def _index_scores_kernel(
    q_ptr, w_ptr, k_ptr, ks_ptr, o_ptr,
    T, S, offset,
    stride_qt, stride_qh, stride_wt, stride_ks, stride_ot,
    H: tl.constexpr, D: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_S: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr, PDL: tl.constexpr,
):  # fmt: skip
    # q [T, H, D], w [T, H] fp32, k [S, D], ks [S] fp32 -> o [T, S] fp32
    wait_for_inputs(PDL)
    pid_s = tl.program_id(0)
    pid_t = tl.program_id(1)
    offs_s = pid_s * BLOCK_S + tl.arange(0, BLOCK_S)
    smask = offs_s < S
    t0 = pid_t * BLOCK_T
    if pid_s * BLOCK_S > offset + t0 + BLOCK_T - 1:
        # every key of this tile lies after every query of this block
        neg = tl.full((BLOCK_S,), float("-inf"), tl.float32)
        for i in range(BLOCK_T):
            trow = t0 + i + tl.zeros_like(offs_s)  # the mask as a vector (a scalar & vector breaks the interpreter)
            tl.store(o_ptr + (t0 + i) * stride_ot + offs_s, neg, mask=smask & (trow < T))
    else:
        offs_h = tl.arange(0, BLOCK_H)
        offs_d = tl.arange(0, BLOCK_D)
        hmask = offs_h < H
        dmask = offs_d < D
        rows = tl.minimum(offs_s, S - 1)  # keys past S repeat the last one and are never stored
        k_ptrs = k_ptr + rows[:, None] * stride_ks + offs_d[None, :]
        if BLOCK_D == D:
            k = tl.load(k_ptrs)  # unmasked: 16-byte loads
        else:
            k = tl.load(k_ptrs, mask=dmask[None, :], other=0.0)
        kscale = tl.load(ks_ptr + rows)
        for i in range(BLOCK_T):
            t = t0 + i
            tq = tl.minimum(t, T - 1)  # rows past T are computed from the last query and not stored
            q = tl.load(
                q_ptr + tq * stride_qt + offs_h[:, None] * stride_qh + offs_d[None, :],
                mask=hmask[:, None] & dmask[None, :],
                other=0.0,
            )
            w = tl.load(w_ptr + tq * stride_wt + offs_h, mask=hmask, other=0.0)
            logits = tl.dot(k, tl.trans(q))  # [BLOCK_S, BLOCK_H] fp32
            score = tl.sum(tl.maximum(logits, 0.0) * w[None, :], axis=1) * kscale
            score = tl.where(offs_s <= offset + t, score, float("-inf"))
            tl.store(o_ptr + t * stride_ot + offs_s, score, mask=smask & (t + tl.zeros_like(offs_s) < T))


@triton.jit
def _index_scores_decode_kernel(
    q_ptr, w_ptr, k_src, ks_ptr, o_ptr, pos_ptr, hist_ptr,
    S, offset,
    stride_qt, stride_qh, stride_wt, stride_ks, stride_ot,
    T: tl.constexpr, H: tl.constexpr, D: tl.constexpr,
    BLOCK_S: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_D: tl.constexpr, TMA: tl.constexpr,
    POS: tl.constexpr, HIST: tl.constexpr, BITS: tl.constexpr, ROW_SCRATCH: tl.constexpr,
    PDL: tl.constexpr,
):  # fmt: skip
    # A few queries (decode). Each program strides over key tiles (tile = pid, pid + programs, ...) in a
    # pipelined loop, so a fixed grid covers any length and the first-digit counts pile up in registers. With
    # TMA (k_src a tensor descriptor) the keys go straight to shared memory, several tiles in flight, and no
    # registers hold them; otherwise k_src is a pointer. The product is keys x heads ([BLOCK_S, BLOCK_H]) so
    # the sum over heads stays inside each thread's rows. Same inputs and output as _index_scores_kernel, except:
    # POS: query t sees keys s <= pos[t] (positions on the device, as in a CUDA graph), not offset + t;
    # HIST: counts the first radix digit of its scores, per program, then adds that once into the top-k's
    # scratch (saves the select a pass).
    BINS: tl.constexpr = 1 << BITS
    TP: tl.constexpr = 4  # rows of the per-program histogram: T <= 4, padded to a power of two
    pid = tl.program_id(0)
    wait_for_inputs(PDL)
    offs_h = tl.arange(0, BLOCK_H)
    offs_d = tl.arange(0, BLOCK_D)
    hmask = offs_h < H
    dmask = offs_d < D
    q_ptrs = q_ptr + offs_h[:, None] * stride_qh + offs_d[None, :]
    q0 = tl.load(q_ptrs, mask=hmask[:, None] & dmask[None, :], other=0.0)  # the first query, kept for all tiles
    w0 = tl.load(w_ptr + offs_h, mask=hmask, other=0.0)
    bins = tl.arange(0, BINS)
    trows = tl.arange(0, TP)
    counts = tl.zeros((TP, BINS), tl.int32)
    for tile in range(pid, tl.cdiv(S, BLOCK_S), tl.num_programs(0)):
        offs_s = tile * BLOCK_S + tl.arange(0, BLOCK_S)
        live = offs_s < S
        if TMA:
            k = k_src.load([tile * BLOCK_S, 0])  # rows past S arrive as zeros
        else:
            k_ptrs = k_src + tl.minimum(offs_s, S - 1)[:, None] * stride_ks + offs_d[None, :]  # rows past S: unused
            k = tl.load(k_ptrs, mask=dmask[None, :], other=0.0)
        kscale = tl.load(ks_ptr + offs_s, mask=live, other=0.0)
        for t in tl.static_range(T):
            if t == 0:
                q, w = q0, w0
            else:
                q = tl.load(q_ptrs + t * stride_qt, mask=hmask[:, None] & dmask[None, :], other=0.0)
                w = tl.load(w_ptr + t * stride_wt + offs_h, mask=hmask, other=0.0)
            score = tl.sum(tl.maximum(tl.dot(k, tl.trans(q)), 0.0) * w[None, :], axis=1) * kscale
            if POS:
                score = tl.where(offs_s <= tl.load(pos_ptr + t), score, float("-inf"))
            else:
                score = tl.where(offs_s <= offset + t, score, float("-inf"))
            tl.store(o_ptr + t * stride_ot + offs_s, score, mask=live)
            if HIST:
                digits = ((_ordered_keys(score) ^ SIGN) >> (32 - BITS)) & (BINS - 1)
                found = tl.histogram(tl.where(live, digits, 0), BINS)
                found -= tl.where(bins == 0, BLOCK_S - tl.sum(live.to(tl.int32), axis=0), 0)  # rows past S
                counts += tl.where(trows[:, None] == t, found[None, :], 0)
    if HIST:
        for t in tl.static_range(T):
            row = tl.sum(tl.where(trows[:, None] == t, counts, 0), axis=0)
            tl.atomic_add(hist_ptr + t * ROW_SCRATCH + bins, row, mask=row > 0, sem="relaxed")  # read next kernel


# decode kernel: (BLOCK_S, programs per SM, warps, stages)
_DECODE_CONFIG = (128, 2, 8, 3)  # H100, 128K keys, back to back: 10.5 us; best of 72 (128, 3, 8, 3) 10.4 us


def _tma_keys(k_fp8: torch.Tensor, block_s: int, block_d: int):
    """A TMA descriptor over the keys [S, D] when the copy engine can read them in [block_s, D] boxes (D the
    kernel's padded head dim, boxes of at most 256 rows, 16-byte aligned rows), else None (pointer loads)."""
    if TensorDescriptor is None:
        return None
    d = k_fp8.shape[1]
    size = k_fp8.element_size()
    aligned = k_fp8.data_ptr() % 16 == 0 and (k_fp8.stride(0) * size) % 16 == 0
    if d != block_d or d * size < 16 or block_s > 256 or not aligned:
        return None
    return TensorDescriptor.from_tensor(k_fp8, [block_s, d])


def _scores_config(T: int, S: int) -> tuple[int, int, int, int]:
    """(BLOCK_T, BLOCK_S, num_warps, num_stages) of the general kernel."""
    if T <= 4:
        return T if T in (1, 2, 4) else 4, 128, 4, 2
    # H100, 2048 queries x 64K keys, keys x heads products: 2.50 ms; 64 queries 2.48, 256-key tiles (8 warps) 2.55,
    # 8 warps 3.12 (heads x keys products before: 5.61 ms, where 32 queries beat 8, 16 and 256-key tiles)
    return 32, 128, 4, 2


def index_scores_triton(
    q_fp8, weights, k_fp8, k_scale, offset, out=None, config=None, decode_config=None, radix=None, tma=True
) -> torch.Tensor:
    """q_fp8 [T, H, D], weights [T, H] fp32, k_fp8 [S, D], k_scale [S] fp32 -> [T, S] fp32 index scores;
    keys after position offset + t are -inf for query t. `offset` may instead be a device tensor of the T
    query positions (decode kernel only). `config` forces the general kernel with (BLOCK_T, BLOCK_S, warps,
    stages); `decode_config` tunes the decode kernel (T <= 4) with (BLOCK_S, programs per SM, warps, stages).
    `radix`: a radix_scratch(T) into which the decode kernel counts the scores' first digits for topk_triton.
    `tma=False`: the decode kernel loads keys through pointers even where a TMA descriptor could read them."""
    T, H, D = q_fp8.shape
    S = k_fp8.shape[0]
    assert k_fp8.shape == (S, D), (k_fp8.shape, q_fp8.shape)
    assert weights.shape == (T, H) and weights.dtype == torch.float32, (weights.shape, weights.dtype)
    assert k_scale.shape == (S,) and k_scale.dtype == torch.float32, (k_scale.shape, k_scale.dtype)
    assert q_fp8.dtype == k_fp8.dtype, (q_fp8.dtype, k_fp8.dtype)
    assert q_fp8.stride(-1) == 1 and k_fp8.stride(-1) == 1 and weights.stride(-1) == 1
    assert k_scale.stride(0) == 1
    if out is None:
        out = torch.empty((T, S), dtype=torch.float32, device=q_fp8.device)
    assert out.shape == (T, S) and out.dtype == torch.float32 and out.stride(-1) == 1
    if T == 0 or S == 0:
        return out
    bh = max(16, triton.next_power_of_2(H))
    bd = max(32, triton.next_power_of_2(D))
    positions = offset if isinstance(offset, torch.Tensor) else None
    decode = config is None and T <= 4
    assert decode or (positions is None and radix is None), "positions and radix need the decode kernel"
    if decode:
        if positions is not None:
            assert positions.shape == (T,) and positions.device == q_fp8.device, (positions.shape, T)
        if radix is not None:
            assert radix.shape == (T * ROW_SCRATCH + 2,) and radix.dtype == torch.int32, (radix.shape, T)
        bs, per_sm, warps, stages = decode_config or _DECODE_CONFIG
        keys = _tma_keys(k_fp8, bs, bd) if tma else None
        grid = (min(triton.cdiv(S, bs), per_sm * _sm_count(q_fp8.device)),)
        _index_scores_decode_kernel[grid](
            q_fp8, weights, k_fp8 if keys is None else keys, k_scale, out, positions, radix, S,
            0 if positions is not None else offset,
            q_fp8.stride(0), q_fp8.stride(1), weights.stride(0), k_fp8.stride(0), out.stride(0),
            T=T, H=H, D=D, BLOCK_S=bs, BLOCK_H=bh, BLOCK_D=bd, TMA=keys is not None,
            POS=positions is not None, HIST=radix is not None, BITS=BITS, ROW_SCRATCH=ROW_SCRATCH,
            num_warps=warps, num_stages=stages, **pdl_args(q_fp8.device),
        )  # fmt: skip
        return out
    bt, bs, warps, stages = config or _scores_config(T, S)
    grid = (triton.cdiv(S, bs), triton.cdiv(T, bt))
    _index_scores_kernel[grid](
        q_fp8, weights, k_fp8, k_scale, out, T, S, offset,
        q_fp8.stride(0), q_fp8.stride(1), weights.stride(0), k_fp8.stride(0), out.stride(0), H=H, D=D,
        BLOCK_T=bt, BLOCK_S=bs, BLOCK_H=bh, BLOCK_D=bd, num_warps=warps, num_stages=stages,
        **pdl_args(q_fp8.device),
    )  # fmt: skip
    return out


def index_topk_cuda(scores: torch.Tensor, k: int) -> torch.Tensor:
    """scores [T, S] -> [T, k] int32 key positions of the k best scores; -1 where fewer than k keys are
    visible (masked scores are -inf). No host synchronisation, so it runs inside a CUDA graph. Long rows go
    of a few rows go to the radix select (topk_triton), the rest to torch.topk: whichever measured faster."""
    T, S = scores.shape
    if S >= RADIX_MIN_KEYS and T <= RADIX_MAX_ROWS:
        return topk_triton(scores, k)
    kk = min(k, S)
    vals, idx = torch.topk(scores, kk, dim=-1, sorted=False)
    idx = torch.where(vals == float("-inf"), -1, idx).to(torch.int32)
    if kk < k:
        idx = torch.nn.functional.pad(idx, (0, k - kk), value=-1)
    return idx
