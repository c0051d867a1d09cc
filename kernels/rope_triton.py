"""Triton kernel for rotary position embedding (see kernels/rope.py): one program rotates one token's heads
(a block of them), reading x through its strides (a slice of a projection's output needs no copy)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .pdl import pdl_args, wait_for_inputs


@triton.jit
def _rope_kernel(
    x_ptr, cos_ptr, sin_ptr, y_ptr, H,
    stride_xt, stride_xh, stride_yt, stride_yh, stride_ct, stride_st,
    HALF: tl.constexpr, BLOCK_H: tl.constexpr, INTERLEAVED: tl.constexpr, PDL: tl.constexpr,
):  # fmt: skip
    # x [T, H, 2*HALF] -> y [T, H, 2*HALF]: (a, b) -> (a cos - b sin, a sin + b cos) for each pair
    wait_for_inputs(PDL)
    t = tl.program_id(0).to(tl.int64)
    offs_h = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    i = tl.arange(0, HALF)
    if INTERLEAVED:
        ia, ib = 2 * i, 2 * i + 1
    else:
        ia, ib = i, i + HALF
    mask = (offs_h < H)[:, None]
    x_row = x_ptr + t * stride_xt + offs_h[:, None] * stride_xh
    a = tl.load(x_row + ia[None, :], mask=mask, other=0.0).to(tl.float32)
    b = tl.load(x_row + ib[None, :], mask=mask, other=0.0).to(tl.float32)
    cos = tl.load(cos_ptr + t * stride_ct + i)[None, :]
    sin = tl.load(sin_ptr + t * stride_st + i)[None, :]
    y_row = y_ptr + t * stride_yt + offs_h[:, None] * stride_yh
    tl.store(y_row + ia[None, :], (a * cos - b * sin).to(y_ptr.dtype.element_ty), mask=mask)
    tl.store(y_row + ib[None, :], (a * sin + b * cos).to(y_ptr.dtype.element_ty), mask=mask)


def _as_heads(x: torch.Tensor) -> torch.Tensor | None:
    """x [T, ..., R] as a [T, H, R] view (unit stride along R), or None where the middle dims don't merge."""
    if x.stride(-1) != 1:
        return None
    try:
        return x.view(x.shape[0], -1, x.shape[-1])
    except RuntimeError:
        return None


def rope_fits(x: torch.Tensor, cos: torch.Tensor, out: torch.Tensor | None = None) -> bool:
    """Whether rope_triton takes x (and out): at least [T, R] with R/2 a power of two, middle dims that merge."""
    half = x.shape[-1] // 2
    merge = _as_heads(x) is not None and (out is None or _as_heads(out) is not None)
    return x.dim() >= 2 and half > 0 and half & (half - 1) == 0 and cos.shape[-1] == half and merge


def rope_triton(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool, out=None) -> torch.Tensor:
    """x [T, ..., R] (any strides but the last), cos, sin [T, R/2] fp32 -> the rotated x in x's dtype, written
    into `out` when given: any view of x's shape with unit stride along R (a slice of a larger row), or x itself
    (each program reads its pairs before writing them)."""
    xh = _as_heads(x)
    assert xh is not None and x.dim() >= 2, (x.shape, x.stride())
    T, H, R = xh.shape
    assert R // 2 > 0 and (R // 2) & (R // 2 - 1) == 0, R
    assert cos.shape == sin.shape == (T, R // 2), (cos.shape, sin.shape, x.shape)
    assert cos.stride(-1) == 1 and sin.stride(-1) == 1 and cos.dtype == sin.dtype == torch.float32
    y = torch.empty(x.shape, dtype=x.dtype, device=x.device) if out is None else out
    yh = _as_heads(y)
    assert y.shape == x.shape and y.dtype == x.dtype and yh is not None, (y.shape, y.dtype, y.stride(), x.shape)
    if T * H:
        block_h = min(16, triton.next_power_of_2(H))
        _rope_kernel[(T, triton.cdiv(H, block_h))](
            xh, cos, sin, yh, H, xh.stride(0), xh.stride(1), yh.stride(0), yh.stride(1), cos.stride(0), sin.stride(0),
            HALF=R // 2, BLOCK_H=block_h, INTERLEAVED=interleaved, num_warps=4, **pdl_args(x.device),
        )  # fmt: skip
    return y
