"""Triton kernel for the indexer's query/key preparation (see kernels/indexer.py, hadamard_quant_ref): rotate
each 128-wide head by the orthonormal Hadamard matrix in fp32, round to the activation dtype as the reference
does, then quantise it to e4m3 with one power-of-two scale. One launch instead of five (a copy to fp32, the
product, the scaling, the cast back and act_quant)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .fp8_triton import FP8_MAX_INV, _pow2_ceil, as_rows
from .pdl import pdl_args, wait_for_inputs


@triton.jit
def _hadamard_quant_kernel(
    x_ptr, h_ptr, q_ptr, s_ptr, M, stride_x,
    N: tl.constexpr, NORM: tl.constexpr, BLOCK_M: tl.constexpr, WIDE: tl.constexpr, PDL: tl.constexpr,
):  # fmt: skip
    # x [M, N] -> y = round(x @ H * NORM) in x's dtype -> q [M, N] e4m3, s [M] fp32 with y ~= q * s.
    # 16-bit x: H's +-1 entries are exact in x's dtype, so the tensor cores' products are exact and their sums
    # fp32, as a fp32 product would be; WIDE (fp32 x): fp32 FMAs (slow: for checking runs only)
    wait_for_inputs(PDL)
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, N)
    live = rows < M
    x = tl.load(x_ptr + rows[:, None] * stride_x + cols[None, :], mask=live[:, None], other=0.0)
    h = tl.load(h_ptr + cols[:, None] * N + cols[None, :])
    if WIDE:
        y = tl.dot(x, h, input_precision="ieee") * NORM
    else:
        y = tl.dot(x, h.to(x.dtype)) * NORM
    y = y.to(x_ptr.dtype.element_ty).to(tl.float32)
    scale = _pow2_ceil(tl.maximum(tl.max(tl.abs(y), axis=1), 1e-4) * FP8_MAX_INV)
    tl.store(q_ptr + rows[:, None] * N + cols[None, :], (y / scale[:, None]).to(q_ptr.dtype.element_ty),
             mask=live[:, None])  # fmt: skip
    tl.store(s_ptr + rows, scale, mask=live)


def hadamard_quant_triton(x: torch.Tensor, h: torch.Tensor, out_dtype=torch.float8_e4m3fn, out=None):
    """x [..., 128] with h the 128 x 128 Sylvester matrix (fp32, +-1) -> (q [..., 128] e4m3, scale [..., 1] fp32),
    the values act_quant(hadamard(x)) gives. `out`: the (q, scale) pair to write into."""
    n = x.shape[-1]
    assert n == 128 and h.shape == (n, n) and h.dtype == torch.float32 and h.is_contiguous(), (x.shape, h.shape)
    assert x.dtype in (torch.float32, torch.float16, torch.bfloat16), x.dtype
    rows = as_rows(x)
    if out is None:
        out = (
            torch.empty(x.shape, dtype=out_dtype, device=x.device),
            torch.empty((*x.shape[:-1], 1), dtype=torch.float32, device=x.device),
        )
    q, s = out
    assert q.shape == x.shape and q.is_contiguous() and s.shape == (*x.shape[:-1], 1) and s.is_contiguous()
    M = rows.shape[0]
    if M:
        block_m = 16
        _hadamard_quant_kernel[(triton.cdiv(M, block_m),)](
            rows, h, q, s, M, rows.stride(0), N=n, NORM=n**-0.5, BLOCK_M=block_m, WIDE=x.dtype == torch.float32,
            num_warps=4, **pdl_args(x.device),
        )  # fmt: skip
    return out
