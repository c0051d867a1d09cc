"""Per-head products with row blocks of a stacked weight (PyTorch reference + dispatcher).

The absorbed attention form multiplies by kv_b_proj's weight W [H*R, C] (R = Dn + Dv rows a head) twice: the
query's q_nope [T, H, Dn] by each head's first Dn rows (-> [T, H, C]) and the attention output [T, H, C] by the
transpose of its last Dv rows (-> [T, H, Dv]). The reference dequantises W once (the caller keeps that copy)
and runs batched GEMMs, as DeepSeek's inference code does; on CUDA, at decode sizes, the Triton kernel reads W
as stored (half the bytes for fp8).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# Up to this many tokens (decode) CUDA runs the kernel. Measured on H100 at V3.2's size (fp8 kv_b): one token
# 7.4 / 7.0 us (query / output) against 10.1 / 10.2 for the batched GEMMs on the bf16 copy; 4096 tokens 508 / 400
# against 268 / 243 us, where cuBLAS's bf16 tensor-core GEMM outruns the kernel's dequantising loads.
TRITON_ROWS = 16


def head_matmul_ref(x: torch.Tensor, w_heads: torch.Tensor, transpose: bool, out=None) -> torch.Tensor:
    """x [T, H, K] times w_heads [H, count, C]: K = count -> [T, H, C]; transposed, K = C -> [T, H, count]."""
    if transpose:
        result = torch.einsum("thc,hdc->thd", x, w_heads)
        return result if out is None else out.copy_(result)
    if out is None:
        out = torch.empty(x.shape[0], x.shape[1], w_heads.shape[-1], dtype=x.dtype, device=x.device)
    torch.bmm(x.transpose(0, 1), w_heads, out=out.transpose(0, 1))
    return out


def head_matmul(
    x: torch.Tensor,
    weight: torch.Tensor,
    scale: torch.Tensor | None,
    dense: Callable[[], torch.Tensor],
    first: int,
    count: int,
    transpose: bool,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """x [T, H, K] times rows first..first+count of each head's block of weight [H*R, C] (fp8 with 128x128
    block scales, or scale None); see head_matmul_ref for the two forms. `dense()` gives the weight in x's
    dtype for the PyTorch path, which only calls it when the kernel does not run."""
    heads = x.shape[1]
    if x.is_cuda and x.shape[0] <= TRITON_ROWS:
        from dsagent.kernels.head_matmul_triton import head_matmul_fits, head_matmul_triton

        if head_matmul_fits(x, weight, scale, heads, first, count, transpose):
            return head_matmul_triton(x, weight, scale, heads, first, count, transpose, out=out)
    w_heads = dense().view(heads, -1, weight.shape[1])[:, first : first + count]
    return head_matmul_ref(x, w_heads, transpose, out=out)
