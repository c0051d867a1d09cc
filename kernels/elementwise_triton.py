"""Triton kernel for a decode step's small elementwise work (see kernels/elementwise.py): rows summed in fp32,
optionally gated by SiLU, rounded once. The fused MoE also combines each token's k expert outputs with it."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .fp8_triton import as_rows
from .pdl import pdl_args, wait_for_inputs


@triton.jit
def _sum_rows_kernel(
    a_ptr, b_ptr, o_ptr, D, stride_a, stride_b, stride_o,
    K: tl.constexpr, SILU: tl.constexpr, HAS_B: tl.constexpr, BLOCK_D: tl.constexpr, PDL: tl.constexpr,
):  # fmt: skip
    # o[t] = round(sum_j a[t*K + j]) (+ b[t], rounded again); SILU: o[t] = round(silu(a[t]) * b[t])
    wait_for_inputs(PDL)
    t = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    mask = cols < D
    acc = tl.zeros((BLOCK_D,), tl.float32)
    for j in tl.static_range(K):
        acc += tl.load(a_ptr + (t * K + j) * stride_a + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_B:
        b = tl.load(b_ptr + t * stride_b + cols, mask=mask, other=0.0).to(tl.float32)
        if SILU:
            acc = acc / (1.0 + tl.exp(-acc)) * b
        else:
            acc = acc.to(o_ptr.dtype.element_ty).to(tl.float32) + b  # the sum is rounded first, as it is stored
    tl.store(o_ptr + t * stride_o + cols, acc.to(o_ptr.dtype.element_ty), mask=mask)


def sum_rows_triton(a: torch.Tensor, b: torch.Tensor | None = None, k: int = 1, silu: bool = False, out=None):
    """a [T*k, D] (any leading shape), b [T, D] or None -> [T, D] in a's dtype (or out's):
    round(sum of each token's k rows of a in fp32) (+ b in fp32, rounded again); with silu (k = 1):
    round(silu(a) * b). All arithmetic in fp32."""
    D = a.shape[-1]
    ar = as_rows(a)
    assert ar.shape[0] % k == 0, (ar.shape, k)
    T = ar.shape[0] // k
    assert not silu or (b is not None and k == 1)
    br = None if b is None else as_rows(b)
    assert br is None or br.shape == (T, D), (None if br is None else br.shape, T, D)
    if out is None:
        out = torch.empty((T, D) if k > 1 else a.shape, dtype=a.dtype, device=a.device)
    o = out.view(-1, D)
    assert o.shape == (T, D) and out.is_contiguous(), (out.shape, T, D)
    if T * D:
        block = min(1024, triton.next_power_of_2(D))
        _sum_rows_kernel[(T, triton.cdiv(D, block))](
            ar, ar if br is None else br, o, D, ar.stride(0), 0 if br is None else br.stride(0), D,
            K=k, SILU=silu, HAS_B=br is not None, BLOCK_D=block, num_warps=4, **pdl_args(ar.device),
        )  # fmt: skip
    return out
