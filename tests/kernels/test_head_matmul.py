"""Per-head products with kv_b_proj's row blocks (the absorbed form's query and output) against a float64
product with the weight dequantised as the PyTorch path holds it."""

from __future__ import annotations

import pytest
import torch
from dsagent.kernels.fp8 import weight_dequant
from dsagent.kernels.head_matmul import head_matmul, head_matmul_ref
from dsagent.kernels.head_matmul_triton import head_matmul_fits, head_matmul_triton
from kernel_kit import fp8_weight

FP8 = torch.float8_e4m3fn


def _weight(heads: int, rows: int, c: int, fp8: bool, dtype, device: str):
    """(weight [H*R, C], its 128x128 block scales or None, the weight in `dtype` as the PyTorch path uses it)."""
    if not fp8:
        w = torch.randn(heads * rows, c, device=device).to(dtype)
        return w, None, w
    w8, scale = fp8_weight(heads * rows, c, device)
    return w8, scale, weight_dequant(w8, scale).to(dtype)


def _check(t_len, heads, dn, dv, c, fp8, dtype, transpose, device, rmse, tol):
    weight, scale, dense = _weight(heads, dn + dv, c, fp8, dtype, device)
    first, count = (dn, dv) if transpose else (0, dn)
    x = torch.randn(t_len, heads, c if transpose else dn, device=device).to(dtype)
    assert head_matmul_fits(x, weight, scale, heads, first, count, transpose)
    w_heads = dense.view(heads, dn + dv, c)[:, first : first + count]
    ref = head_matmul_ref(x.double(), w_heads.double(), transpose)
    if transpose:
        out = torch.full((t_len, heads, dv), float("nan"), dtype=dtype, device=device)
    else:  # the query's part of a wider row, as attention writes it
        out = torch.full((t_len, heads, c + 64), float("nan"), dtype=dtype, device=device)[..., :c]
    got = head_matmul_triton(x, weight, scale, heads, first, count, transpose, out=out)
    assert got.data_ptr() == out.data_ptr()
    assert rmse(got, ref) < tol


_SHAPES = [(1, 3, 64, 64, 200), (17, 2, 128, 128, 512), (5, 4, 32, 96, 128)]  # (T, H, Dn, Dv, C)
# every shape in both forms, but fp8's output form from row 32 (dn 32): its 64-row tiles would straddle scale
# blocks, so the kernel declines it (test_head_matmul_declines_straddling_tiles)
_CASES = [(*shape, transpose, fp8) for shape in _SHAPES for transpose in (False, True) for fp8 in (True, False)
          if not (fp8 and transpose and shape[2] % 64)]  # fmt: skip


@pytest.mark.parametrize(("t_len", "heads", "dn", "dv", "c", "transpose", "fp8"), _CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_head_matmul_matches_float64(t_len, heads, dn, dv, c, transpose, fp8, dtype, device, rmse):
    _check(t_len, heads, dn, dv, c, fp8, dtype, transpose, device, rmse, 1e-6 if dtype == torch.float32 else 2e-3)


def test_head_matmul_declines_straddling_tiles(device):
    x = torch.randn(1, 2, 48, device=device)
    weight, scale, _ = _weight(2, 96, 128, True, torch.float32, device)  # 96-row heads: tiles cross 128 rows
    assert not head_matmul_fits(x, weight, scale, 2, 0, 48, False)
    weight, scale, _ = _weight(2, 128, 128, True, torch.float32, device)  # the output's rows from row 32
    assert not head_matmul_fits(torch.randn(1, 2, 128, device=device), weight, scale, 2, 32, 96, True)
    assert head_matmul_fits(x, weight, None, 2, 0, 48, False) is False  # an fp8 weight without its scales
    assert head_matmul_fits(x, weight.float(), None, 2, 0, 48, False)


def test_head_matmul_falls_back_to_the_dense_copy(device):
    calls = []
    weight, scale, dense = _weight(2, 96, 96, True, torch.float32, device)  # 96-row heads: not the kernel's

    def make_dense():
        calls.append(1)
        return dense

    x = torch.randn(3, 2, 96, device=device)
    got = head_matmul(x, weight, scale, make_dense, 48, 48, True)
    assert calls == [1]
    ref = torch.einsum("thc,hdc->thd", x, dense.view(2, 96, 96)[:, 48:])
    assert torch.equal(got, ref)


@pytest.mark.gpu
@pytest.mark.parametrize("t_len", [1, 16, 300])
@pytest.mark.parametrize("transpose", [False, True])
@pytest.mark.parametrize("fp8", [True, False])
def test_head_matmul_v32_shapes_gpu(t_len, transpose, fp8, rmse):
    # bf16 activations: the kernel's fp32 sums against float64, within bf16's output rounding
    _check(t_len, 128, 128, 128, 512, fp8, torch.bfloat16, transpose, "cuda", rmse, 4e-3)
