"""Triton kernel for RMSNorm, optionally fused with the residual add before it, and for LayerNorm (see
kernels/norm.py).

One program normalises one row; at decode (one row of 7168) this replaces seven elementwise launches.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .fp8_triton import as_rows
from .pdl import pdl_args, wait_for_inputs


@triton.jit
def _norm_kernel(
    x_ptr, r_ptr, w_ptr, b_ptr, y_ptr, s_ptr, D, eps,
    stride_x, stride_r, stride_y, stride_s,
    BLOCK_D: tl.constexpr, RESIDUAL: tl.constexpr, LAYER: tl.constexpr, PDL: tl.constexpr,
):  # fmt: skip
    # t = x (+ r) in fp32; y = w * t * rsqrt(mean(t^2) + eps); with RESIDUAL, s = t rounded
    # LAYER (LayerNorm): t is centred on its mean first and y gets the bias b
    wait_for_inputs(PDL)
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_D)
    mask = cols < D
    t = tl.load(x_ptr + row * stride_x + cols, mask=mask, other=0.0).to(tl.float32)
    if RESIDUAL:
        t += tl.load(r_ptr + row * stride_r + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(s_ptr + row * stride_s + cols, t.to(s_ptr.dtype.element_ty), mask=mask)
    if LAYER:
        t = tl.where(mask, t - tl.sum(t, axis=0) / D, 0.0)
    inv = 1.0 / tl.sqrt_rn(tl.sum(t * t, axis=0) / D + eps)
    y = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32) * (t * inv)
    if LAYER:
        y += tl.load(b_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(y_ptr + row * stride_y + cols, y.to(y_ptr.dtype.element_ty), mask=mask)


def _launch(xr, rr, weight, bias, y, s, eps, residual: bool, layer: bool) -> None:
    rows, D = xr.shape
    if rows:
        block = triton.next_power_of_2(D)
        _norm_kernel[(rows,)](
            xr, rr, weight, bias, y, s, D, eps, xr.stride(0), rr.stride(0), D, D,
            BLOCK_D=block, RESIDUAL=residual, LAYER=layer, num_warps=8 if block > 2048 else 4, **pdl_args(xr.device),
        )  # fmt: skip


def rms_norm_triton(x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None, out=None):
    """x [..., D], weight [D] -> RMSNorm(x) in x's dtype; with `residual` [..., D], the pair
    (RMSNorm(x + residual), (x + residual) rounded to x's dtype), the sum taken in fp32. `out`: the output
    tensor (the pair of them with `residual`) to write into, contiguous."""
    D = x.shape[-1]
    assert weight.shape == (D,) and weight.stride(0) == 1, (weight.shape, D)
    assert residual is None or residual.shape == x.shape, (residual.shape, x.shape)
    xr = as_rows(x)
    rr = xr if residual is None else as_rows(residual)
    if out is None:
        y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        out = y if residual is None else (y, torch.empty(x.shape, dtype=x.dtype, device=x.device))
    y, s = (out, out) if residual is None else out
    for o in (y, s):
        assert o.shape == x.shape and o.dtype == x.dtype and o.is_contiguous(), (o.shape, o.dtype, x.shape)
    _launch(xr, rr, weight, weight, y, s, eps, residual is not None, False)
    return out


def layer_norm_triton(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float) -> torch.Tensor:
    """x [..., D], weight, bias [D] -> LayerNorm(x) computed in fp32, in x's dtype."""
    D = x.shape[-1]
    assert weight.shape == bias.shape == (D,) and weight.stride(0) == bias.stride(0) == 1, (weight.shape, D)
    xr = as_rows(x)
    y = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    _launch(xr, xr, weight, bias, y, y, eps, False, True)
    return y
