"""RMSNorm, alone and after the residual add, and LayerNorm (PyTorch reference + dispatcher).

Both normalise in fp32 and round once to the activation dtype; the residual sum is kept unrounded for the
norm and stored rounded, as the DeepSeek-V3.2 reference does.
"""

from __future__ import annotations

import torch


def rms_norm_ref(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x [..., D], weight [D] fp32 -> weight * x / rms(x), computed in fp32, in x's dtype."""
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (weight * xf).to(x.dtype)


def add_rms_norm_ref(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(RMSNorm of the fp32 sum x + residual, that sum rounded to x's dtype)."""
    total = x.float() + residual.float()
    normed = total * torch.rsqrt(total.pow(2).mean(-1, keepdim=True) + eps)
    return (weight * normed).to(x.dtype), total.to(x.dtype)


def layer_norm_ref(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x [..., D], weight, bias [D] fp32 -> LayerNorm(x) computed in fp32, in x's dtype (the indexer's keys)."""
    return torch.nn.functional.layer_norm(x.float(), (x.shape[-1],), weight, bias, eps).to(x.dtype)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Dispatcher (see rms_norm_ref): one Triton kernel on CUDA instead of seven elementwise ones."""
    if x.is_cuda:
        from dsagent.kernels.norm_triton import rms_norm_triton

        return rms_norm_triton(x, weight, eps)
    return rms_norm_ref(x, weight, eps)


def add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dispatcher (see add_rms_norm_ref): one Triton kernel on CUDA."""
    if x.is_cuda:
        from dsagent.kernels.norm_triton import rms_norm_triton

        return rms_norm_triton(x, weight, eps, residual=residual)
    return add_rms_norm_ref(x, residual, weight, eps)


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Dispatcher (see layer_norm_ref): one Triton kernel on CUDA instead of a cast, the norm and a cast back."""
    if x.is_cuda:
        from dsagent.kernels.norm_triton import layer_norm_triton

        return layer_norm_triton(x, weight, bias, eps)
    return layer_norm_ref(x, weight, bias, eps)
