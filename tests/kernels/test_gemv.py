"""The fp32 GEMV (one row times a bf16/fp16/fp32 matrix) against a float64 product."""

from __future__ import annotations

import pytest
import torch
from dsagent.kernels.gemv_triton import gemv_fits, gemv_fp32_triton


def _check(n: int, k: int, dtype, device: str) -> None:
    w = torch.randn(n + 3, k, device=device).to(dtype)[3:]  # an offset view: rows start past the allocation's
    x = torch.randn(1, k, device=device).to(torch.bfloat16 if device == "cuda" else torch.float32)
    assert gemv_fits(x, w)
    out = gemv_fp32_triton(x, w, out=torch.full((1, n), float("nan"), device=device))
    ref = x.double() @ w.double().T
    # fp32 products and sums: the error of K fp32 additions, far below bf16's
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5 * k**0.5)


@pytest.mark.parametrize(("n", "k"), [(1, 1), (256, 300), (1000, 129), (37, 2048)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_gemv_matches_float64(n, k, dtype, device):
    _check(n, k, dtype, device)


def test_gemv_declines_several_rows(device):
    assert not gemv_fits(torch.randn(2, 8, device=device), torch.randn(4, 8, device=device))


@pytest.mark.gpu
@pytest.mark.parametrize(("n", "k", "dtype"), [(129280, 7168, torch.bfloat16), (256, 7168, torch.float32),
                                                (64, 7168, torch.float32), (1024, 4096, torch.bfloat16)])  # fmt: skip
def test_gemv_model_shapes_gpu(n, k, dtype):
    _check(n, k, dtype, "cuda")
