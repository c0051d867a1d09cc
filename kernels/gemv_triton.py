"""Triton kernel for one row times a matrix in fp32: y [N] = W [N, K] @ x [K], W in any float dtype, every
product and sum in fp32 (no tensor cores, so no TF32 rounding). At decode the LM head (129280 x D, bf16), the
router and the indexer's head weights are such products; cuBLAS would need an fp32 copy of a bf16 W, and its
fp32 GEMV reads a 256-row router at a third of the copy rate."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .fp8_triton import _sm_count
from .pdl import pdl_args, wait_for_inputs


@triton.jit
def _gemv_kernel(
    x_ptr, w_ptr, y_ptr, N, K, stride_w,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, PDL: tl.constexpr,
):  # fmt: skip
    # y[n] = sum_k W[n, k] x[k] for this program's BLOCK_N rows; partial sums per column, reduced once at the end
    rows = tl.program_id(0).to(tl.int64) * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.arange(0, BLOCK_K)
    w_ptrs = w_ptr + tl.minimum(rows, N - 1)[:, None] * stride_w + cols[None, :]  # rows past N: never stored
    wait_for_inputs(PDL)
    acc = tl.zeros((BLOCK_N, BLOCK_K), tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kmask = cols < K - k0
        x = tl.load(x_ptr + k0 + cols, mask=kmask, other=0.0).to(tl.float32)
        w = tl.load(w_ptrs + k0, mask=kmask[None, :], other=0.0).to(tl.float32)
        acc += w * x[None, :]
    tl.store(y_ptr + rows, tl.sum(acc, axis=1), mask=rows < N)


def gemv_fits(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """One row (x [..., K] with a single row) against W [N, K] with unit stride along K."""
    return x.numel() == x.shape[-1] == weight.shape[-1] and weight.dim() == 2 and weight.stride(-1) == 1


def gemv_fp32_triton(x: torch.Tensor, weight: torch.Tensor, out=None) -> torch.Tensor:
    """x [..., K] (one row) @ weight [N, K]^T -> [..., N] fp32, every product and sum in fp32."""
    assert gemv_fits(x, weight), (x.shape, weight.shape, weight.stride())
    N, K = weight.shape
    xf = x.reshape(K)  # read in its own dtype: no fp32 copy
    xf = xf if xf.stride(0) == 1 else xf.contiguous()
    y = torch.empty((*x.shape[:-1], N), dtype=torch.float32, device=x.device) if out is None else out
    assert y.shape == (*x.shape[:-1], N) and y.dtype == torch.float32 and y.is_contiguous(), (y.shape, y.dtype)
    if N == 0:
        return y
    if K == 0:
        return y.zero_()
    # rows a program: enough programs for four waves, at most 64 rows (the LM head: 2020 programs). Tiles of
    # 16K elements: a small matrix's row (the router's 7168) arrives in one load, not a chain of dependent ones
    block_n = max(1, min(64, triton.next_power_of_2(triton.cdiv(N, 4 * _sm_count(x.device)))))
    block_k = max(128, min(triton.next_power_of_2(K), (1 << 14) // block_n))
    _gemv_kernel[(triton.cdiv(N, block_n),)](
        xf, weight, y, N, K, weight.stride(0), BLOCK_N=block_n, BLOCK_K=block_k,
        num_warps=8, **pdl_args(x.device),
    )  # fmt: skip
    return y
