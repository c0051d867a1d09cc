"""The RMSNorm, LayerNorm and RoPE kernels against their PyTorch references."""

from __future__ import annotations

import pytest
import torch
from dsagent.kernels.norm import add_rms_norm_ref, layer_norm_ref, rms_norm_ref
from dsagent.kernels.norm_triton import layer_norm_triton, rms_norm_triton
from dsagent.kernels.rope import rope_ref
from dsagent.kernels.rope_triton import rope_fits, rope_triton

# per-dtype tolerance on the relative RMSE: fp32 differs only in summation order, the rest in a last-bit rounding
TOL = {torch.float32: 1e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}


def _poisoned(shape, dtype, device) -> torch.Tensor:
    return torch.full(shape, float("nan"), dtype=dtype, device=device)


def _check_norm(shape, dtype, device, rmse, strided: bool):
    d = shape[-1]
    base = torch.randn(*shape[:-1], d + 5 if strided else d, device=device, dtype=torch.float32) * 3
    x = base[..., :d].to(dtype) if strided else base.to(dtype)  # a slice of a wider row, as the latent is
    residual = (torch.randn(shape, device=device) * 5).to(dtype)
    weight = torch.rand(d, device=device) + 0.5
    y = rms_norm_triton(x, weight, 1e-6, out=_poisoned(shape, dtype, device))
    assert rmse(y, rms_norm_ref(x, weight, 1e-6)) < TOL[dtype]
    pair = _poisoned(shape, dtype, device), _poisoned(shape, dtype, device)
    y, total = rms_norm_triton(x, weight, 1e-6, residual=residual, out=pair)
    ref_y, ref_total = add_rms_norm_ref(x, residual, weight, 1e-6)
    assert y.data_ptr() == pair[0].data_ptr() and total.data_ptr() == pair[1].data_ptr()
    assert rmse(y, ref_y) < TOL[dtype]
    assert torch.equal(total, ref_total)  # one fp32 add, rounded once: exact


@pytest.mark.parametrize("shape", [(1, 7168), (5, 512), (3, 2, 300), (1, 1)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("strided", [False, True])
def test_rms_norm_matches_reference(shape, dtype, strided, device, rmse):
    _check_norm(shape, dtype, device, rmse, strided)


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(1, 7168), (4096, 7168), (17, 1536), (9, 512)])
def test_rms_norm_bf16_gpu(shape, rmse):
    _check_norm(shape, torch.bfloat16, "cuda", rmse, strided=True)


def _check_layer_norm(shape, dtype, device, rmse):
    d = shape[-1]
    x = (torch.randn(*shape[:-1], d + 3, device=device) * 3 + 2)[..., :d].to(dtype)  # strided rows, mean far from 0
    weight, bias = torch.rand(d, device=device) + 0.5, torch.randn(d, device=device)
    y = layer_norm_triton(x, weight, bias, 1e-6)
    assert y.shape == x.shape and y.dtype == dtype
    # fp32: the mean and variance are summed in another order than torch's Welford pass, and then scaled
    assert rmse(y, layer_norm_ref(x, weight, bias, 1e-6)) < TOL[dtype] * (4 if dtype == torch.float32 else 1)


@pytest.mark.parametrize("shape", [(1, 128), (5, 300), (2, 3, 7)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_layer_norm_matches_reference(shape, dtype, device, rmse):
    _check_layer_norm(shape, dtype, device, rmse)


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(1, 128), (4096, 128), (9, 7168)])
def test_layer_norm_bf16_gpu(shape, rmse):
    _check_layer_norm(shape, torch.bfloat16, "cuda", rmse)


def _check_rope(t, heads, r, interleaved, dtype, device, rmse):
    # a slice of a wider projection output, as q_pe is of q: strides over tokens and heads, unit along R
    full = (torch.randn(t, heads, r + 7, device=device) * 4).to(dtype)
    x = full[:, :, 7:] if heads > 1 else full[:, 0, 7:]
    angles = torch.rand(t, r // 2, device=device) * 100
    cos, sin = angles.cos(), angles.sin()
    assert rope_fits(x, cos)
    ref = rope_ref(x, cos, sin, interleaved)
    out = rope_triton(x, cos, sin, interleaved, out=_poisoned(x.shape, dtype, device))
    assert rmse(out, ref) < TOL[dtype]
    # into a slice of a wider row (as q_pe's rotation lands beside the latent part of q), then in place
    row = _poisoned((*x.shape[:-1], r + 5), dtype, device)
    into = rope_triton(x, cos, sin, interleaved, out=row[..., 5:])
    assert into.data_ptr() == row[..., 5:].data_ptr() and torch.equal(into, out)
    assert row[..., :5].isnan().all()  # nothing written outside the slice
    assert rope_fits(x, cos, out=x)
    assert torch.equal(rope_triton(x, cos, sin, interleaved, out=x), out)


@pytest.mark.parametrize(("t", "heads", "r"), [(1, 128, 64), (3, 1, 64), (5, 20, 16), (2, 3, 2)])
@pytest.mark.parametrize("interleaved", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_rope_matches_reference(t, heads, r, interleaved, dtype, device, rmse):
    _check_rope(t, heads, r, interleaved, dtype, device, rmse)


def test_rope_declines_layouts_it_cannot_take(device):
    cos = torch.ones(2, 3, device=device)
    assert not rope_fits(torch.randn(2, 6, device=device), cos)  # R/2 = 3: not a power of two
    x = torch.randn(2, 4, 8, device=device).transpose(0, 1)[:, :, :4]  # [4, 2, 4] tokens not outermost in memory
    assert rope_fits(x, torch.ones(4, 2, device=device))
    assert not rope_fits(torch.randn(4, 2, 8, device=device)[:, :, ::2], torch.ones(4, 2, device=device))


@pytest.mark.gpu
@pytest.mark.parametrize(("t", "heads", "r"), [(1, 128, 64), (4096, 64, 64), (7, 1, 64)])
@pytest.mark.parametrize("interleaved", [True, False])
def test_rope_bf16_gpu(t, heads, r, interleaved, rmse):
    _check_rope(t, heads, r, interleaved, torch.bfloat16, "cuda", rmse)
