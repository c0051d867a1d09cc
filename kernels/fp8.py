"""fp8 e4m3 activation quantisation and block-scaled GEMM (PyTorch reference + dispatcher).

Activations are quantised per 128 values with power-of-two (ue8m0) scales `2^ceil(log2(amax/448))`,
amax clamped >= 1e-4, as DeepSeek-V3.2 does everywhere it quantises activations. Weights are e4m3 with
one fp32 scale per 128x128 block (`weight_scale_inv`, ceil-sized at ragged edges).
"""

from __future__ import annotations

import math

import torch

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0
BLOCK = 128
# The reference multiplies by the fp32 reciprocal rather than dividing; keep that rounding.
_FP8_MAX_INV = torch.tensor(1.0 / FP8_MAX, dtype=torch.float32).item()
# Elements of dequantised weight held at once by the CPU GEMM (a few block-rows; 16 MiB of fp32).
_DEQUANT_BUDGET = 1 << 22


def _pad_last(x: torch.Tensor, multiple: int) -> torch.Tensor:
    pad = -x.shape[-1] % multiple
    return torch.nn.functional.pad(x, (0, pad)) if pad else x


def pow2_scale(amax: torch.Tensor) -> torch.Tensor:
    """ue8m0 scale 2^ceil(log2(amax/448)) computed exactly from the float's exponent bits."""
    ratio = amax.float().clamp_min(1e-4) * _FP8_MAX_INV
    mantissa, exponent = torch.frexp(ratio)  # ratio = mantissa * 2^exponent, mantissa in [0.5, 1)
    exponent = exponent - (mantissa == 0.5).to(exponent.dtype)  # exact powers of two need no rounding up
    return torch.exp2(exponent.float())  # exact for integer exponents


def act_quant_ref(x: torch.Tensor, block: int = BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """x [..., K] -> (x_fp8 [..., K] e4m3, scale [..., ceil(K/block)] fp32), x ~= x_fp8 * scale per block."""
    k = x.shape[-1]
    blocks = _pad_last(x.float(), block).unflatten(-1, (-1, block))  # [..., nb, block]
    scale = pow2_scale(blocks.abs().amax(dim=-1))
    q = (blocks / scale.unsqueeze(-1)).clamp(-FP8_MAX, FP8_MAX).to(FP8)
    return q.flatten(-2)[..., :k], scale


def act_dequant(x_fp8: torch.Tensor, scale: torch.Tensor, block: int = BLOCK) -> torch.Tensor:
    """Inverse of act_quant in fp32: x_fp8 [..., K], scale [..., ceil(K/block)] -> [..., K] fp32."""
    k = x_fp8.shape[-1]
    blocks = _pad_last(fp8_to_float(x_fp8), block).unflatten(-1, (-1, block))
    return (blocks * scale.unsqueeze(-1)).flatten(-2)[..., :k]


def _fp8_values_cpu() -> torch.Tensor:
    return torch.arange(256, dtype=torch.uint8).view(FP8).float()


_FP8_VALUES = _fp8_values_cpu().numpy()  # every e4m3 bit pattern's value, for a fast CPU lookup


def fp8_to_float(x: torch.Tensor) -> torch.Tensor:
    """e4m3 -> fp32. On CPU a 256-entry table lookup, several times faster than the generic cast."""
    if x.device.type != "cpu":
        return x.float()
    return torch.from_numpy(_FP8_VALUES[x.contiguous().view(torch.uint8).numpy()])


def weight_dequant(w_fp8: torch.Tensor, w_scale: torch.Tensor, block: int = BLOCK) -> torch.Tensor:
    """w_fp8 [N, K] with w_scale [ceil(N/block), ceil(K/block)] -> [N, K] fp32."""
    n, k = w_fp8.shape
    w = fp8_to_float(w_fp8)
    scale = w_scale.float()
    if n % block == 0 and k % block == 0:
        return w.view(n // block, block, k // block, block).mul_(scale[:, None, :, None]).view(n, k)
    return w.mul_(scale.repeat_interleave(block, 0)[:n].repeat_interleave(block, 1)[:, :k])


def fp8_gemm_ref(
    x_fp8: torch.Tensor, x_scale: torch.Tensor, w_fp8: torch.Tensor, w_scale: torch.Tensor
) -> torch.Tensor:
    """x_fp8 [..., K] (scales [..., ceil(K/128)]) @ w_fp8 [N, K]^T -> [..., N] bf16, fp32 accumulation.

    The weight is dequantised a few 128-row blocks at a time, so no full-precision copy of it exists.
    """
    n, k = w_fp8.shape
    x = act_dequant(x_fp8, x_scale)  # exact: e4m3 values times powers of two
    out = torch.empty(*x.shape[:-1], n, dtype=torch.float32, device=x.device)
    rows = max(BLOCK, _DEQUANT_BUDGET // max(k, 1) // BLOCK * BLOCK)
    for start in range(0, n, rows):
        stop = min(n, start + rows)
        w = weight_dequant(w_fp8[start:stop], w_scale[start // BLOCK : math.ceil(stop / BLOCK)])
        out[..., start:stop] = x @ w.T
    return out.to(torch.bfloat16)


def act_quant(x: torch.Tensor, block: int = BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """Dispatcher for act_quant (see act_quant_ref): the Triton kernel on CUDA."""
    if x.is_cuda:
        from dsagent.kernels.fp8_triton import act_quant_triton

        return act_quant_triton(x, block)
    return act_quant_ref(x, block)


def fp8_roundtrip(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """x quantised per 128 values (act_quant) and dequantised again, in x's dtype: one Triton kernel on CUDA.
    `out`: where to write (a slice of a larger row will do), returned."""
    if x.is_cuda:
        from dsagent.kernels.fp8_triton import fp8_roundtrip_triton

        return fp8_roundtrip_triton(x, out=out)
    y = act_dequant(*act_quant_ref(x)).to(x.dtype)
    return y if out is None else out.copy_(y)


def fp8_gemm(x_fp8: torch.Tensor, x_scale: torch.Tensor, w_fp8: torch.Tensor, w_scale: torch.Tensor) -> torch.Tensor:
    """Dispatcher for the block-scaled fp8 GEMM (see fp8_gemm_ref): cuBLAS or Triton on CUDA."""
    if x_fp8.is_cuda:
        from dsagent.kernels.fp8_triton import fp8_gemm_cuda

        return fp8_gemm_cuda(x_fp8, x_scale, w_fp8, w_scale)
    return fp8_gemm_ref(x_fp8, x_scale, w_fp8, w_scale)


# Up to this many rows (decode), the CUDA GEMM quantises its input itself (one launch instead of two).
FUSED_QUANT_ROWS = 16


def fp8_linear(x: torch.Tensor, w_fp8: torch.Tensor, w_scale: torch.Tensor) -> torch.Tensor:
    """y = x @ W^T for an fp8 weight: the input is quantised per 128 values first, as the model expects."""
    if x.is_cuda and x.numel() <= FUSED_QUANT_ROWS * x.shape[-1]:
        from dsagent.kernels.fp8_triton import fp8_linear_triton

        return fp8_linear_triton(x, w_fp8, w_scale)
    return fp8_gemm(*act_quant(x), w_fp8, w_scale)
