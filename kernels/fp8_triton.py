"""Triton kernels for the fp8 path: per-128 activation quantisation with power-of-two (ue8m0) scales and a
block-scaled fp8 GEMM (activations scaled per row and 128 columns, weights per 128x128 block).

The GEMM accumulates each 128-wide K block in fp32 and applies `x_scale[m, kb] * w_scale[n // 128, kb]` to
that block's partial product, the way DeepSeek's reference does. For a handful of rows (decode) the
weights dominate the traffic, so the K loop is split across programs to keep every SM streaming.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .pdl import pdl_args, wait_for_inputs

QBLOCK = 128  # quantisation block along K (and the weight's 128x128 blocks)
FP8_MAX = 448.0
# multiply by the fp32 reciprocal (not divide), as the reference does: the rounding decides ceil() at powers of 2
FP8_MAX_INV: tl.constexpr = tl.constexpr(1.0 / 448.0)


@triton.jit
def _pow2_ceil(v):
    # 2^ceil(log2(v)) for positive normal fp32 v, from the bits: exact, unlike an approximate log2.
    bits = v.to(tl.int32, bitcast=True)
    exp = ((bits >> 23) & 0xFF) + ((bits & 0x7FFFFF) != 0).to(tl.int32)
    return (exp << 23).to(tl.float32, bitcast=True)


@triton.jit
def _act_quant_kernel(
    x_ptr, y_ptr, s_ptr, M, K, NB, stride_xm, stride_ym, stride_sm, BLOCK_M: tl.constexpr, ROUNDTRIP: tl.constexpr,
    PDL: tl.constexpr,
):  # fmt: skip
    # x [M, K] -> y [M, K] fp8, s [M, NB] fp32; one program = BLOCK_M rows x one 128-column block.
    # ROUNDTRIP: y = the fp8 values times their scales, in y's dtype (what a reader of the fp8 copy would see)
    wait_for_inputs(PDL)
    pid_m = tl.program_id(0)
    kb = tl.program_id(1)
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = kb * 128 + tl.arange(0, 128)
    mask = (rows[:, None] < M) & (cols[None, :] < K)
    x = tl.load(x_ptr + rows[:, None] * stride_xm + cols[None, :], mask=mask, other=0.0).to(tl.float32)
    amax = tl.maximum(tl.max(tl.abs(x), axis=1), 1e-4)
    scale = _pow2_ceil(amax * FP8_MAX_INV)
    y = x / scale[:, None]
    if ROUNDTRIP:
        y = y.to(tl.float8e4nv).to(tl.float32) * scale[:, None]  # exact: e4m3 values times powers of two
    tl.store(y_ptr + rows[:, None] * stride_ym + cols[None, :], y.to(y_ptr.dtype.element_ty), mask=mask)
    if not ROUNDTRIP:
        tl.store(s_ptr + rows * stride_sm + kb, scale, mask=rows < M)


def as_rows(x: torch.Tensor) -> torch.Tensor:
    """x [..., K] as [rows, K] with unit stride along K: a view where the layout allows, else a copy."""
    rows = x.reshape(-1, x.shape[-1])
    return rows if rows.stride(-1) == 1 else rows.contiguous()


def _quantise_rows(x2: torch.Tensor, y: torch.Tensor, s: torch.Tensor | None) -> None:
    """Launch act_quant on x2 [M, K] into y [M, K] and scales s [M, NB]; s None: the fp8 round trip into y."""
    M, K = x2.shape
    if M > 0:
        block_m = 16
        grid = (triton.cdiv(M, block_m), triton.cdiv(K, QBLOCK))
        s_args = (y, 0, 0) if s is None else (s, s.shape[1], s.stride(0))
        _act_quant_kernel[grid](
            x2, y, s_args[0], M, K, s_args[1], x2.stride(0), y.stride(0), s_args[2], BLOCK_M=block_m,
            ROUNDTRIP=s is None, **pdl_args(x2.device),
        )  # fmt: skip


def act_quant_triton(x: torch.Tensor, block: int = QBLOCK, out_dtype=torch.float8_e4m3fn, out=None):
    """x [..., K] -> (x_fp8 [..., K], scale [..., ceil(K/128)] fp32), scales 2^ceil(log2(amax/448)).
    `out` = (q, scale) buffers to write into."""
    assert block == QBLOCK, "the kernel quantises in blocks of 128"
    assert x.dtype in (torch.float32, torch.float16, torch.bfloat16), x.dtype
    K = x.shape[-1]
    x2 = as_rows(x)
    M, NB = x2.shape[0], triton.cdiv(K, QBLOCK)
    if out is None:
        out = (
            torch.empty(x.shape, dtype=out_dtype, device=x.device),
            torch.empty((*x.shape[:-1], NB), dtype=torch.float32, device=x.device),
        )
    assert out[0].shape == x.shape and out[0].is_contiguous() and out[0].dtype == out_dtype
    assert out[1].shape == (*x.shape[:-1], NB) and out[1].is_contiguous() and out[1].dtype == torch.float32
    _quantise_rows(x2, out[0].view(M, K), out[1].view(M, NB))
    return out


def fp8_roundtrip_triton(x: torch.Tensor, out=None) -> torch.Tensor:
    """x [..., K] -> x quantised per 128 values to e4m3 (ue8m0 scales) and read back, in x's dtype, in one
    launch (the MLA latent goes through this, as a deployment's fp8 cache would store it). `out`: a tensor of
    x's shape whose rows are evenly strided with unit stride along K (a slice of a larger row will do)."""
    assert x.dtype in (torch.float32, torch.float16, torch.bfloat16), x.dtype
    y = torch.empty(x.shape, dtype=x.dtype, device=x.device) if out is None else out
    assert y.shape == x.shape and y.dtype == x.dtype and y.stride(-1) == 1, (y.shape, y.dtype, x.shape)
    x2 = as_rows(x)
    _quantise_rows(x2, y.view(x2.shape), None)  # raises where y's rows are not evenly strided
    return y


@triton.jit
def _fp8_gemm_kernel(
    a_ptr, as_ptr, b_ptr, bs_ptr, c_ptr, o_ptr, done_ptr,
    M, N, K, KB_PER_SPLIT,
    stride_am, stride_asm, stride_bn, stride_bsn, stride_cs, stride_cm, stride_om,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr, EVEN_K: tl.constexpr, SPLIT: tl.constexpr,
    QUANT_A: tl.constexpr, PDL: tl.constexpr,
):  # fmt: skip
    # C[split] [M, N] = sum over this split's 128-wide K blocks of (A_blk @ B_blk^T) * sa[m, kb] * sb[n//128, kb]
    # SPLIT: C holds fp32 partials; the last split to finish a tile sums them (in split order) into O [M, N]
    # QUANT_A: A is the unquantised activation; each block is quantised here exactly as act_quant would (decode:
    # a few rows, so the repeated work is small and the act_quant launch is saved)
    pid = tl.program_id(0)
    split = tl.program_id(1)
    num_m = tl.cdiv(M, BLOCK_M)
    num_n = tl.cdiv(N, BLOCK_N)
    # grouped order: neighbouring programs share B tiles in L2
    group = pid // (GROUP_M * num_n)
    first_m = group * GROUP_M
    group_size = tl.minimum(num_m - first_m, GROUP_M)
    pid_m = first_m + (pid % (GROUP_M * num_n)) % group_size
    pid_n = (pid % (GROUP_M * num_n)) // group_size
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rm = offs_m % M  # wrapped rows/cols read valid memory; their results are never stored
    rn = offs_n % N
    offs_k = tl.arange(0, 128)
    kb0 = split * KB_PER_SPLIT
    nkb = tl.minimum(tl.cdiv(K, 128) - kb0, KB_PER_SPLIT)
    a_ptrs = a_ptr + rm[:, None] * stride_am + (kb0 * 128 + offs_k)[None, :]
    b_ptrs = b_ptr + rn[:, None] * stride_bn + (kb0 * 128 + offs_k)[None, :]
    as_ptrs = as_ptr + rm * stride_asm + kb0
    bs_ptrs = bs_ptr + (rn // 128) * stride_bsn + kb0
    wait_for_inputs(PDL)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for i in range(nkb):
        if EVEN_K:
            a = tl.load(a_ptrs)
            b = tl.load(b_ptrs)
        else:
            kmask = offs_k < K - (kb0 + i) * 128
            a = tl.load(a_ptrs, mask=kmask[None, :], other=0.0)
            b = tl.load(b_ptrs, mask=kmask[None, :], other=0.0)
        if QUANT_A:
            a = a.to(tl.float32)
            sa = _pow2_ceil(tl.maximum(tl.max(tl.abs(a), axis=1), 1e-4) * FP8_MAX_INV)
            a = (a / sa[:, None]).to(b_ptr.dtype.element_ty)
        else:
            sa = tl.load(as_ptrs + i)
        sb = tl.load(bs_ptrs + i)
        acc += tl.dot(a, tl.trans(b)) * sa[:, None] * sb[None, :]
        a_ptrs += 128
        b_ptrs += 128
    c_ptrs = c_ptr + split * stride_cs + offs_m[:, None] * stride_cm + offs_n[None, :]
    cmask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    tl.store(c_ptrs, acc.to(c_ptr.dtype.element_ty), mask=cmask)
    if SPLIT:
        _finish_split_tile(c_ptrs - split * stride_cs, stride_cs, o_ptr + offs_m[:, None] * stride_om + offs_n[None, :],
                           cmask, done_ptr + pid, tl.num_programs(1), BLOCK_M, BLOCK_N)  # fmt: skip


@triton.jit
def _finish_split_tile(part_ptrs, stride_part, o_ptrs, mask, done_ptr, splits, BLOCK_M: tl.constexpr,
                       BLOCK_N: tl.constexpr):  # fmt: skip
    """Count this split in; the tile's last split adds up every split's partial and resets the count to 0 (so
    the counts need no clearing between calls). One launch instead of a GEMM, a sum and a copy. As in a grid
    sync, the block barrier orders every thread's partial stores before the one acq_rel arrival."""
    tl.debug_barrier()
    if tl.atomic_add(done_ptr, 1) == splits - 1:
        total = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for i in range(splits):
            total += tl.load(part_ptrs + i * stride_part, mask=mask, other=0.0, cache_modifier=".cg")
        tl.store(o_ptrs, total.to(o_ptrs.dtype.element_ty), mask=mask)
        tl.store(done_ptr, 0)


def _gemm_config(M: int, N: int, K: int, sms: int) -> tuple[int, int, int, int, int]:
    """(BLOCK_M, BLOCK_N, num_warps, num_stages, split_k) for an [M,K] x [N,K]^T product."""
    nkb = triton.cdiv(K, 128)
    if M <= 16:
        bm, bn, warps, stages = 16, 64, 4, 4
    elif M <= 64:
        bm, bn, warps, stages = 64, 64, 4, 4
    else:  # measured on H100: beats 128x128 tiles by 10-15% (cuBLAS takes these sizes where it can)
        bm, bn, warps, stages = 64, 128, 4, 3
    programs = triton.cdiv(M, bm) * triton.cdiv(N, bn)
    split = 1
    if M <= 64 and programs < 2 * sms:
        split = max(1, min(nkb // 2, triton.cdiv(2 * sms, programs)))
    return bm, bn, warps, stages, split


def fp8_gemm_triton(x_fp8, x_scale, w_fp8, w_scale, out_dtype=torch.bfloat16, config=None, out=None) -> torch.Tensor:
    """x_fp8 [..., K] with x_scale [..., ceil(K/128)]; w_fp8 [N, K] with w_scale [ceil(N/128), ceil(K/128)];
    returns x @ w^T [..., N] in out_dtype, accumulated in fp32."""
    K = x_fp8.shape[-1]
    assert x_scale.shape == (*x_fp8.shape[:-1], triton.cdiv(K, 128)), (x_scale.shape, x_fp8.shape)
    assert x_scale.dtype == torch.float32
    assert x_fp8.dtype == w_fp8.dtype, (x_fp8.dtype, w_fp8.dtype)
    sa = x_scale.reshape(-1, x_scale.shape[-1])
    assert sa.stride(-1) == 1
    return _gemm(x_fp8, sa, w_fp8, w_scale, out_dtype, config, out)


def fp8_linear_triton(x, w_fp8, w_scale, out_dtype=torch.bfloat16, config=None, out=None) -> torch.Tensor:
    """x [..., K] (bf16/fp16/fp32, a few rows) @ w^T for an fp8 weight [N, K] with 128x128 block scales: the rows
    are quantised per 128 values inside the GEMM (the same values act_quant gives), in one launch."""
    assert x.dtype in (torch.float32, torch.float16, torch.bfloat16), x.dtype
    return _gemm(x, None, w_fp8, w_scale, out_dtype, config, out)


def _gemm(x, sa, w_fp8, w_scale, out_dtype, config, out) -> torch.Tensor:
    """Launch the GEMM on x [..., K] (fp8 with row scales sa [M, ceil(K/128)], or unquantised with sa None)."""
    K = x.shape[-1]
    N = w_fp8.shape[0]
    NB = triton.cdiv(K, 128)
    assert w_fp8.shape == (N, K), (w_fp8.shape, K)
    assert w_scale.shape == (triton.cdiv(N, 128), NB), (w_scale.shape, N, K)
    assert w_scale.dtype == torch.float32
    a = as_rows(x)
    assert w_fp8.stride(-1) == 1 and w_scale.stride(-1) == 1
    M = a.shape[0]
    if out is None:
        out = torch.empty((*x.shape[:-1], N), dtype=out_dtype, device=x.device)
    assert out.shape == (*x.shape[:-1], N) and out.dtype == out_dtype and out.is_contiguous()
    if M == 0:
        return out
    sms = _sm_count(x.device)
    bm, bn, warps, stages, split = config or _gemm_config(M, N, K, sms)
    kb_per_split = triton.cdiv(NB, split)
    split = triton.cdiv(NB, kb_per_split)
    tiles = triton.cdiv(M, bm) * triton.cdiv(N, bn)
    if split == 1:
        c, done = out.view(1, M, N), out
    else:
        c, done = torch.empty((split, M, N), dtype=torch.float32, device=a.device), split_counts(tiles, a.device)
    _fp8_gemm_kernel[(tiles, split)](
        a, a if sa is None else sa, w_fp8, w_scale, c, out, done, M, N, K, kb_per_split,
        a.stride(0), 0 if sa is None else sa.stride(0), w_fp8.stride(0), w_scale.stride(0), c.stride(0), c.stride(1),
        N, BLOCK_M=bm, BLOCK_N=bn, GROUP_M=8, EVEN_K=K % 128 == 0, SPLIT=split > 1, QUANT_A=sa is None,
        num_warps=warps, num_stages=stages, **pdl_args(a.device),
    )  # fmt: skip
    return out


_SPLIT_COUNTS: dict[torch.device, torch.Tensor] = {}


def split_counts(tiles: int, device) -> torch.Tensor:
    """Zeroed int32 counts of finished splits per output tile, one buffer per device kept between calls (every
    GEMM leaves its counts at zero again, so GEMMs that share it must run one after another, on one stream)."""
    device = torch.device(device)
    counts = _SPLIT_COUNTS.get(device)
    if counts is None or counts.numel() < tiles:
        counts = _SPLIT_COUNTS[device] = torch.zeros(max(tiles, 4096), dtype=torch.int32, device=device)
    return counts


def fp8_gemm_scaled_mm(x_fp8, x_scale, w_fp8, w_scale, out_dtype=torch.bfloat16) -> torch.Tensor:
    """The same product through cuBLAS block-scaled fp8 (`torch._scaled_mm` with 1x128 / 128x128 scales).
    Needs K and N multiples of 128; the dispatcher sends only K, N % 512 == 0 here (see fp8_gemm_cuda).
    Any row count: cuBLAS rejects counts that are not a multiple of 4 (2101, 77, 511), so rows are padded
    with zeros to a multiple of 16. Raises where this PyTorch build or GPU lacks the recipe."""
    K = x_fp8.shape[-1]
    N = w_fp8.shape[0]
    a = x_fp8.reshape(-1, K)
    sa = x_scale.reshape(-1, K // 128)
    M = a.shape[0]
    pad = -M % ROW_MULTIPLE
    if pad:  # zero rows with unit scales contribute zero rows, dropped below
        a = torch.nn.functional.pad(a.view(torch.uint8), (0, 0, 0, pad)).view(a.dtype)
        sa = torch.nn.functional.pad(sa, (0, 0, 0, pad), value=1.0)
    # cuBLAS wants the 1x128 activation scales outer-dim-major (column-major)
    sa = sa.t().contiguous().t()
    out = torch._scaled_mm(a.contiguous(), w_fp8.t(), scale_a=sa, scale_b=w_scale.t(), out_dtype=out_dtype)
    return out[:M].view(*x_fp8.shape[:-1], N)


# Rows of the cuBLAS product are padded to a multiple of this (the alignment its fp8 kernels document).
ROW_MULTIPLE = 16
# Whether cuBLAS runs block-scaled fp8 here (found out once, on the first large product).
_SCALED_MM_OK: dict[int, bool] = {}


def fp8_gemm_cuda(x_fp8, x_scale, w_fp8, w_scale) -> torch.Tensor:
    """The fp8 GEMM for CUDA tensors: cuBLAS block-scaled fp8 for prefill-sized products (measured 1.6-1.8x
    the Triton kernel at 4096 rows on H100), the Triton kernel for a few rows (decode, where cuBLAS has
    no 1x128-scaled kernel for a single row), ragged shapes, and any product cuBLAS turns down."""
    N, K = w_fp8.shape
    M = x_fp8.numel() // max(K, 1)
    dev = x_fp8.device.index or 0
    # Measured on H200: with K / 128 = 1 or 2 scale blocks the product comes back wrong without an error (the
    # scale rows look misaligned below 4 blocks, 16 bytes); V3.2's large projections all have K, N % 512 == 0.
    if M >= 64 and N % 512 == 0 and K % 512 == 0 and _SCALED_MM_OK.get(dev, True):
        try:
            out = fp8_gemm_scaled_mm(x_fp8, x_scale, w_fp8, w_scale)
            _SCALED_MM_OK[dev] = True
            return out
        except RuntimeError:  # no recipe here (then never again), or cuBLAS rejects this shape: Triton takes it
            _SCALED_MM_OK.setdefault(dev, False)
    return fp8_gemm_triton(x_fp8, x_scale, w_fp8, w_scale)


_SMS: dict[int, int] = {}


def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return 132
    idx = device.index if device.index is not None else torch.cuda.current_device()
    if idx not in _SMS:
        _SMS[idx] = torch.cuda.get_device_properties(idx).multi_processor_count
    return _SMS[idx]
