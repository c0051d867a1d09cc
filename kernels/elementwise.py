"""Small elementwise steps of a decode step, each one launch on CUDA (PyTorch reference + dispatcher):
the SwiGLU product of the shared expert and the sum of the routed and shared experts' outputs. Both compute in
fp32 and round once to the activation dtype, as the DeepSeek-V3.2 reference does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def swiglu_ref(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up in fp32, rounded to gate's dtype."""
    return (F.silu(gate.float()) * up.float()).to(gate.dtype)


def add_ref(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a + b in fp32, rounded to a's dtype."""
    return (a.float() + b.float()).to(a.dtype)


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """Dispatcher (see swiglu_ref): one Triton kernel on CUDA instead of five."""
    if gate.is_cuda:
        from dsagent.kernels.elementwise_triton import sum_rows_triton

        return sum_rows_triton(gate, up, silu=True)
    return swiglu_ref(gate, up)


def add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Dispatcher (see add_ref): one Triton kernel on CUDA instead of four."""
    if a.is_cuda:
        from dsagent.kernels.elementwise_triton import sum_rows_triton

        return sum_rows_triton(a, b)
    return add_ref(a, b)
