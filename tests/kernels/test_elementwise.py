"""The elementwise kernel (SwiGLU, rounded add, the MoE's per-token sum of expert outputs) against PyTorch."""

from __future__ import annotations

import pytest
import torch
from dsagent.kernels.elementwise import add_ref, swiglu_ref
from dsagent.kernels.elementwise_triton import sum_rows_triton

TOL = {torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}


def _inputs(shape, dtype, device):
    return [(torch.randn(shape, device=device) * 4).to(dtype) for _ in range(2)]


def _poisoned(shape, dtype, device):
    return torch.full(shape, float("nan"), dtype=dtype, device=device)


def _check(shape, dtype, device, rmse):
    a, b = _inputs(shape, dtype, device)
    out = sum_rows_triton(a, b, silu=True, out=_poisoned(shape, dtype, device))
    assert rmse(out, swiglu_ref(a, b)) < TOL[dtype]  # exp may differ from PyTorch's in the last bit
    out = sum_rows_triton(a, b, out=_poisoned(shape, dtype, device))
    assert torch.equal(out, add_ref(a, b))  # one fp32 add, rounded once: exact
    k, d = 3, shape[-1]
    rows = (torch.randn(5 * k, d, device=device) * 4).to(dtype)
    ref = rows.view(5, k, d).sum(1, dtype=torch.float32).to(dtype)
    out = sum_rows_triton(rows, k=k, out=_poisoned((5, d), dtype, device))
    assert rmse(out, ref) < TOL[dtype]  # the same sums; the order of three fp32 adds may differ
    shared = (torch.randn(5, d, device=device) * 4).to(dtype)
    out = sum_rows_triton(rows, shared, k=k, out=_poisoned((5, d), dtype, device))
    assert rmse(out, add_ref(ref, shared)) < TOL[dtype]


@pytest.mark.parametrize("shape", [(1, 2048), (3, 7168), (2, 3, 300), (1, 1)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_sum_rows_matches_reference(shape, dtype, device, rmse):
    _check(shape, dtype, device, rmse)


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(1, 2048), (16, 7168), (4096, 2048)])
def test_sum_rows_bf16_gpu(shape, rmse):
    _check(shape, torch.bfloat16, "cuda", rmse)
