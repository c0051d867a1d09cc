"""fp8 activation quantisation and the block-scaled GEMM against their PyTorch references."""

from __future__ import annotations

import pytest
import torch
from dsagent.kernels.fp8 import act_dequant, act_quant_ref, fp8_gemm_ref
from dsagent.kernels.fp8_triton import (
    act_quant_triton,
    fp8_gemm_scaled_mm,
    fp8_gemm_triton,
    fp8_linear_triton,
    fp8_roundtrip_triton,
    split_counts,
)
from kernel_kit import fp8_weight

FP8 = torch.float8_e4m3fn


@pytest.mark.parametrize("shape", [(7, 300), (2, 3, 128), (1, 1000), (0, 300)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_act_quant_matches_reference(shape, dtype, device):
    x = torch.randn(shape, device=device, dtype=dtype) * torch.rand(shape[-1], device=device, dtype=dtype) * 30
    rows = x.view(-1, shape[-1])
    if rows.numel():
        rows[0, :128] *= 1e-6  # amax under the 1e-4 clamp
        rows[-1, -1] = 448.0 * 4  # amax / 448 exactly a power of two
    ref_q, ref_s = act_quant_ref(x)
    # The interpreter stores the scaled values unrounded; the GPU writes e4m3 itself.
    out_dtype = FP8 if device == "cuda" else torch.float32
    poison = (torch.full(x.shape, float("nan"), device=device).to(out_dtype), torch.full_like(ref_s, float("nan")))
    q, s = act_quant_triton(x, out_dtype=out_dtype, out=poison)
    assert q.data_ptr() == poison[0].data_ptr() and s.data_ptr() == poison[1].data_ptr()
    assert torch.equal(s, ref_s)
    assert torch.equal(q.to(FP8).float(), ref_q.float())


@pytest.mark.parametrize(
    ("m", "n", "k", "config"),
    [(1, 200, 300, None), (5, 129, 256, None), (33, 64, 384, (16, 64, 4, 2, 3)), (70, 130, 128, None)],
)
def test_fp8_gemm_matches_reference(m, n, k, config, device, rmse):
    x_fp8, x_scale = act_quant_ref(torch.randn(m, k, device=device) * 4)
    w_fp8, w_scale = fp8_weight(n, k, device)
    ref = fp8_gemm_ref(x_fp8, x_scale, w_fp8, w_scale)
    out = torch.full((m, n), float("nan"), device=device, dtype=torch.bfloat16)
    fp8_gemm_triton(x_fp8, x_scale, w_fp8, w_scale, config=config, out=out)
    assert rmse(out, ref) < 5e-3


@pytest.mark.parametrize("shape", [(1, 512), (5, 300), (2, 3, 128)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_fp8_roundtrip_matches_reference(shape, dtype, device):
    x = (torch.randn(shape, device=device) * torch.rand(shape[-1], device=device) * 30).to(dtype)
    ref = act_dequant(*act_quant_ref(x)).to(dtype)
    out = fp8_roundtrip_triton(x, out=torch.full(shape, float("nan"), device=device, dtype=dtype))
    assert torch.equal(out, ref)  # e4m3 values times powers of two: exact
    # into the first columns of wider rows, as the latent lands in its cache row beside the RoPE part
    wide = torch.full((*shape[:-1], shape[-1] + 64), float("nan"), device=device, dtype=dtype)
    if len(shape) == 2:
        assert torch.equal(fp8_roundtrip_triton(x, out=wide[:, : shape[-1]]), ref)
        assert wide[:, shape[-1] :].isnan().all()


@pytest.mark.parametrize(("m", "n", "k", "config"), [(1, 200, 640, None), (3, 130, 300, (16, 64, 4, 2, 2)),
                                                     (16, 64, 256, (16, 32, 4, 2, 1))])  # fmt: skip
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_fp8_linear_quantises_inside_the_gemm(m, n, k, config, dtype, device):
    # the GEMM that quantises its own input must give exactly the product of act_quant's output
    x = (torch.randn(m, k, device=device) * 4).to(dtype)
    x[0, :128] *= 1e-7  # a block under the amax clamp
    w_fp8, w_scale = fp8_weight(n, k, device)
    ref = fp8_gemm_triton(*act_quant_ref(x), w_fp8, w_scale, config=config)
    out = torch.full((m, n), float("nan"), device=device, dtype=torch.bfloat16)
    assert torch.equal(fp8_linear_triton(x, w_fp8, w_scale, config=config, out=out), ref)


def test_fp8_gemm_split_k_leaves_its_counts_zeroed(device, rmse):
    # split K: the last split of each tile sums the partials and resets the tile's count; a second product
    # through the same counts must come out right too, and the counts must be zero after each
    for m, n, k, split in ((1, 200, 640, 5), (3, 130, 384, 3)):
        x_fp8, x_scale = act_quant_ref(torch.randn(m, k, device=device) * 4)
        w_fp8, w_scale = fp8_weight(n, k, device)
        ref = fp8_gemm_ref(x_fp8, x_scale, w_fp8, w_scale)
        for _ in range(2):
            out = torch.full((m, n), float("nan"), device=device, dtype=torch.bfloat16)
            fp8_gemm_triton(x_fp8, x_scale, w_fp8, w_scale, config=(16, 64, 4, 2, split), out=out)
            assert rmse(out, ref) < 5e-3
            assert not split_counts(1, device).any()


@pytest.mark.gpu
@pytest.mark.parametrize(("m", "n", "k"), [(1, 7168, 2048), (16, 576, 7168), (511, 2112, 7168), (4096, 4096, 7168)])
def test_fp8_gemm_full_shapes_gpu(m, n, k, rmse):
    x_fp8, x_scale = act_quant_triton(torch.randn(m, k, device="cuda", dtype=torch.bfloat16))
    w_fp8, w_scale = fp8_weight(n, k, "cuda")
    ref = fp8_gemm_ref(x_fp8, x_scale, w_fp8, w_scale)
    out = torch.full((m, n), float("nan"), device="cuda", dtype=torch.bfloat16)
    assert rmse(fp8_gemm_triton(x_fp8, x_scale, w_fp8, w_scale, out=out), ref) < 5e-3
    if m <= 16:
        x = act_dequant(x_fp8, x_scale).to(torch.bfloat16)  # exact: quantises back to x_fp8, x_scale
        fused = fp8_linear_triton(x, w_fp8, w_scale, out=torch.full_like(out, float("nan")))
        assert torch.equal(fused, fp8_gemm_triton(x_fp8, x_scale, w_fp8, w_scale))
    if n % 128 == 0 and m >= 64:  # the dispatcher's rule: cuBLAS has no 1x128-scaled kernel for one row
        assert rmse(fp8_gemm_scaled_mm(x_fp8, x_scale, w_fp8, w_scale), ref) < 5e-3


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(1, 512), (4096, 512), (7, 300)])
def test_fp8_roundtrip_bf16_gpu(shape):
    x = torch.randn(shape, device="cuda", dtype=torch.bfloat16) * 7
    out = fp8_roundtrip_triton(x, out=torch.full(shape, float("nan"), device="cuda", dtype=torch.bfloat16))
    assert torch.equal(out, act_dequant(*act_quant_ref(x)).to(torch.bfloat16))


@pytest.mark.gpu
@pytest.mark.parametrize("shape", [(4096, 7168), (3, 1536), (17, 2048 + 64)])
def test_act_quant_bf16_gpu(shape):
    x = torch.randn(shape, device="cuda", dtype=torch.bfloat16) * 7
    ref_q, ref_s = act_quant_ref(x)
    poison = (torch.full(shape, float("nan"), device="cuda").to(FP8), torch.full_like(ref_s, float("nan")))
    q, s = act_quant_triton(x, out=poison)
    assert torch.equal(s, ref_s)
    assert torch.equal(q.float(), ref_q.float())
