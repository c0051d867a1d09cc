"""Triton kernel for per-head products with row blocks of a stacked weight, read in its stored dtype.

    out[t, h, n] = sum_k x[t, h, k] B_h[k, n],   B_h = W[h*R + first : h*R + first + count]     ([count, C])
                                                 or its transpose                              ([C, count])

W [H*R, C] is bf16, or fp8 e4m3 with one fp32 scale per 128x128 block. In the absorbed attention form both of
kv_b_proj's products are of this kind (R = Dn + Dv, C the latent width): the query's q_nope @ W_uk (the first Dn
rows of each head) and the output's latent @ W_uv^T (the last Dv rows). The PyTorch path dequantises W once into
a bf16 copy (33.5 MB a layer at V3.2's size) and runs two batched GEMMs over it; here each tile is dequantised
in registers, rounded to the activation dtype as that copy is, so a decode step reads half the bytes.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .pdl import pdl_args, wait_for_inputs

# Whether the kernel after this one may place its programs while this one runs (PDL). The output product is
# followed by o_proj's split-K fp8 GEMM: released early, a layer's decode step on H100 took 0.398 ms at 128K and
# 0.365 at 4K, against 0.376 / 0.356 with this kernel waiting but not releasing (0.374 / 0.354 launched without
# PDL, 0.373 / 0.360 with the batched GEMMs it replaces).
RELEASE_NEXT = False


@triton.jit
def _head_matmul_kernel(
    x_ptr, w_ptr, s_ptr, o_ptr, T, K, N, ROWS, FIRST,
    stride_xt, stride_xh, stride_w, stride_s, stride_ot, stride_oh,
    BLOCK_T: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, TRANSPOSE: tl.constexpr,
    SCALED: tl.constexpr, PRECISION: tl.constexpr, PDL: tl.constexpr, RELEASE: tl.constexpr,
):  # fmt: skip
    # program (head h, BLOCK_N outputs) x (BLOCK_T tokens). W's rows run along k (TRANSPOSE false) or n (true);
    # the host made every tile's W rows lie inside one 128-row scale block, so a tile's scales vary along W's
    # columns only
    num_n = tl.cdiv(N, BLOCK_N)
    h = tl.program_id(0) // num_n
    n0 = (tl.program_id(0) % num_n) * BLOCK_N
    offs_t = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_n = n0 + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    tmask, nmask = offs_t < T, offs_n < N
    row0 = h.to(tl.int64) * ROWS + FIRST
    x_ptrs = x_ptr + offs_t.to(tl.int64)[:, None] * stride_xt + h * stride_xh + offs_k[None, :]
    if TRANSPOSE:
        w_ptrs = w_ptr + (row0 + offs_n[None, :]) * stride_w + offs_k[:, None]  # B[k, n] = W[row0 + n, k]
    else:
        w_ptrs = w_ptr + (row0 + offs_k[:, None]) * stride_w + offs_n[None, :]  # B[k, n] = W[row0 + k, n]
    wait_for_inputs(PDL, RELEASE)
    acc = tl.zeros((BLOCK_T, BLOCK_N), tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kmask = offs_k < K - k0
        x = tl.load(x_ptrs, mask=tmask[:, None] & kmask[None, :], other=0.0)
        b = tl.load(w_ptrs, mask=kmask[:, None] & nmask[None, :], other=0.0)
        if SCALED:
            if TRANSPOSE:  # W's columns run along k
                s = tl.load(s_ptr + ((row0 + n0) // 128) * stride_s + (k0 + offs_k) // 128, mask=kmask, other=0.0)
                b = b.to(tl.float32) * s[:, None]
            else:
                s = tl.load(s_ptr + ((row0 + k0) // 128) * stride_s + offs_n // 128, mask=nmask, other=0.0)
                b = b.to(tl.float32) * s[None, :]
        acc = tl.dot(x, b.to(x.dtype), acc, input_precision=PRECISION)
        x_ptrs += BLOCK_K
        w_ptrs += BLOCK_K if TRANSPOSE else BLOCK_K * stride_w
    o_ptrs = o_ptr + offs_t.to(tl.int64)[:, None] * stride_ot + h * stride_oh + offs_n[None, :]
    tl.store(o_ptrs, acc.to(o_ptr.dtype.element_ty), mask=tmask[:, None] & nmask[None, :])


def _tiles(t_len: int, k: int, n: int, transpose: bool) -> tuple[int, int, int]:
    """(BLOCK_T, BLOCK_N, BLOCK_K); the tile along W's rows (k, or n when transposed) stays within 128 rows,
    one scale block. Swept on H100 at one token (fp8, 8 layers back to back, per call), BLOCK_N x BLOCK_K: the
    query's 128 x 64 7.4 us (64 x 64 8.9, 128 x 128 8.9); the output's 64 x 128 7.0 us (64 x 64 8.1, 128 x 128
    7.7)."""
    block_t = 16 if t_len <= 16 else 64
    if transpose:  # the output's W_uv^T: n = Dv outputs (W's rows), k = the latent's C (W's columns)
        return block_t, min(64, triton.next_power_of_2(n)), min(128, triton.next_power_of_2(k))
    return block_t, min(128, triton.next_power_of_2(n)), min(64, triton.next_power_of_2(k))


def head_matmul_fits(
    x: torch.Tensor, weight: torch.Tensor, scale, heads: int, first: int, count: int, transpose: bool
) -> bool:
    """Whether the kernel takes these operands: unit inner strides, and (fp8) every tile's W rows inside one
    128-row scale block, i.e. the per-head row count and `first` multiples of the tile along W's rows."""
    if not (x.dim() == 3 and x.stride(-1) == 1 and weight.dim() == 2 and weight.stride(-1) == 1):
        return False
    if x.dtype not in (torch.bfloat16, torch.float16, torch.float32) or (scale is None and weight.dtype != x.dtype):
        return False
    rows = weight.shape[0] // heads
    _, block_n, block_k = _tiles(x.shape[0], x.shape[-1], count if transpose else weight.shape[1], transpose)
    along_rows = block_n if transpose else block_k
    return scale is None or (rows % along_rows == 0 and first % along_rows == 0)


def head_matmul_triton(
    x, weight, scale, heads: int, first: int, count: int, transpose: bool, out=None, config=None
) -> torch.Tensor:
    """x [T, H, K] times each head's rows first..first+count of weight [H*R, C] (fp8 with 128x128 block scales
    [ceil(H*R/128), ceil(C/128)], or scale None): transpose false: K = count -> [T, H, C]; true: K = C ->
    [T, H, count]. `out` may be a strided view (unit inner stride). config: (BLOCK_N, BLOCK_K, warps), for
    benchmarks; the tile along W's rows must stay a power of two <= 128 dividing R and `first`."""
    t_len, h, k = x.shape
    rows, c = weight.shape[0] // heads, weight.shape[1]
    n = count if transpose else c
    assert h == heads and weight.shape[0] == heads * rows and first + count <= rows, (x.shape, weight.shape, first)
    assert k == (c if transpose else count), (x.shape, weight.shape, count, transpose)
    assert scale is None or scale.shape == (triton.cdiv(heads * rows, 128), triton.cdiv(c, 128)), scale.shape
    if out is None:
        out = torch.empty(t_len, h, n, dtype=x.dtype, device=x.device)
    assert out.shape == (t_len, h, n) and out.stride(-1) == 1, (out.shape, out.stride())
    if t_len == 0:
        return out
    block_t, block_n, block_k = _tiles(t_len, k, n, transpose)
    warps = 4
    if config is not None:
        block_n, block_k, warps = config
    s = weight if scale is None else scale  # pointer unused without scales
    _head_matmul_kernel[(h * triton.cdiv(n, block_n), triton.cdiv(t_len, block_t))](
        x, weight, s, out, t_len, k, n, rows, first,
        x.stride(0), x.stride(1), weight.stride(0), s.stride(0), out.stride(0), out.stride(1),
        BLOCK_T=block_t, BLOCK_N=block_n, BLOCK_K=block_k, TRANSPOSE=transpose, SCALED=scale is not None,
        PRECISION="ieee" if x.dtype == torch.float32 else "tf32", RELEASE=RELEASE_NEXT, num_warps=warps,
        **pdl_args(x.device),
    )  # fmt: skip
    return out
