"""Rotary position embedding (PyTorch reference + dispatcher): MLA rotates interleaved pairs (2i, 2i+1),
the DSA indexer half-split pairs (i, i + R/2); both in fp32, rounded once to x's dtype.
"""

from __future__ import annotations

import torch


def rope_ref(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool) -> torch.Tensor:
    """Rotate x [T, ..., R] by position: cos, sin [T, R/2] fp32 -> a new tensor in x's dtype."""
    shape = (cos.shape[0],) + (1,) * (x.dim() - 2) + (cos.shape[1],)
    cos, sin = cos.view(shape), sin.view(shape)
    xf = x.float()
    if interleaved:
        a, b = xf[..., 0::2], xf[..., 1::2]
        return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2).to(x.dtype)
    a, b = xf.chunk(2, dim=-1)
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1).to(x.dtype)


def apply_rope(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Dispatcher (see rope_ref): one Triton kernel on CUDA where the layout allows, instead of about ten.
    `out`: where to write (a slice of a larger row, or x itself to rotate in place), returned."""
    if x.is_cuda:
        from dsagent.kernels.rope_triton import rope_fits, rope_triton

        if rope_fits(x, cos, out):
            return rope_triton(x, cos, sin, interleaved, out=out)
    y = rope_ref(x, cos, sin, interleaved)
    return y if out is None else out.copy_(y)
