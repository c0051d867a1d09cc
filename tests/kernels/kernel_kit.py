"""Inputs shared by the kernel tests (importable: tests/kernels/conftest.py puts this folder on sys.path)."""

from __future__ import annotations

import math

import torch
from dsagent.kernels.fp8 import act_quant_ref


def fp8_weight(n: int, k: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(w [n, k] e4m3 spanning its range, w_scale [ceil(n/128), ceil(k/128)] fp32): a block-scaled fp8 weight."""
    w = (torch.randn(n, k, device=device) * 100).clamp(-448, 448).to(torch.float8_e4m3fn)
    scale = torch.rand(math.ceil(n / 128), math.ceil(k / 128), device=device) * 1e-2 + 1e-3
    return w, scale


def indexer_inputs(t: int, h: int, d: int, s: int, device: str):
    """q [t, h, d] e4m3, weights [t, h], keys [s, d] e4m3, key scales [s]: the lightning indexer's inputs."""
    q = act_quant_ref(torch.randn(t, h, d, device=device))[0]
    k, k_scale = act_quant_ref(torch.randn(s, d, device=device))
    k_scale = k_scale[:, 0].contiguous()  # d <= 128: one block per key
    weights = torch.randn(t, h, device=device)
    return q, weights, k, k_scale


def rel_rmse(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| in float64 over all elements; NaN if any output is not finite."""
    out, ref = out.double(), ref.double()
    if not torch.isfinite(out).all():
        return float("nan")
    return ((out - ref).norm() / ref.norm().clamp_min(1e-30)).item()
