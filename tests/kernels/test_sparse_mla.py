"""Sparse absorbed MLA attention against its PyTorch reference."""

from __future__ import annotations

import pytest
import torch
from dsagent.kernels.sparse_mla import sparse_mla_ref
from dsagent.kernels.sparse_mla_triton import sparse_mla_triton

TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}


def _inputs(b, t, h, dqk, s, k, dtype, device, holes=True):
    q = torch.randn(b, t, h, dqk, device=device).to(dtype)
    kv = torch.randn(b, s, dqk, device=device).to(dtype)
    # each query picks its own distinct rows; some slots are -1 (fewer visible keys than K)
    idx = torch.rand(b, t, s, device=device).argsort(-1)[..., :k].to(torch.int32)
    if holes:
        idx[torch.rand(b, t, k, device=device) < 0.2] = -1
        if b * t > 1:  # a query that sees nothing gets zeros (with one query, the whole check would be zeros)
            idx[0, 0] = -1
    return q, kv, idx


def _check(q, kv, idx, dv, rmse, config=None, kernel=sparse_mla_triton):
    scale = q.shape[-1] ** -0.5
    ref = sparse_mla_ref(q, kv, idx, scale, dv)
    out = torch.full(ref.shape, float("nan"), dtype=q.dtype, device=q.device)
    kernel(q, kv, idx, scale, dv, out=out, config=config)
    tol = TOL[q.dtype] if q.device.type == "cpu" or q.dtype != torch.float32 else 3e-3  # tf32 on the GPU
    assert rmse(out, ref) < tol


@pytest.mark.parametrize(
    ("b", "t", "h", "dqk", "dv", "s", "k", "config"),
    [
        (2, 3, 5, 48, 32, 37, 20, None),  # odd heads, partial last block of keys
        (1, 2, 4, 80, 64, 50, 33, (16, 16, 4, 1, 3)),  # split over the keys + combine
        (1, 1, 3, 40, 24, 9, 9, (16, 16, 4, 1, 1)),  # dv and rope part not powers of two
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_sparse_mla_matches_reference(b, t, h, dqk, dv, s, k, config, dtype, device, rmse):
    q, kv, idx = _inputs(b, t, h, dqk, s, k, dtype, device)
    _check(q, kv, idx, dv, rmse, config)


def test_scores_growing_over_the_rows(device, rmse):
    """Later blocks of selected rows score far higher than earlier ones (by 2^8 and more in the log2 domain),
    so the running max is raised, and the output rescaled, many times."""
    q, kv, idx = _inputs(2, 2, 5, 48, 300, 160, torch.float32, device, holes=False)
    kv = kv * torch.linspace(0.2, 12.0, 300, device=device)[None, :, None]
    idx = idx.sort(-1).values  # the rows come in growing order
    _check(q, kv, idx, 32, rmse, (16, 16, 4, 1, 1))


FULL_SHAPES = [
    (2, 1, 128, 4096, 2048),
    (1, 1, 128, 70000, 2048),
    (1, 33, 128, 3000, 2048),
    (3, 2, 16, 500, 97),
    (2, 3, 100, 1000, 300),
    (1, 1, 128, 20000, 16384),
]  # fmt: skip  (the last: 64 key splits, as dense)


@pytest.mark.gpu
@pytest.mark.parametrize(("b", "t", "h", "s", "k"), FULL_SHAPES)
def test_sparse_mla_full_shapes_gpu(b, t, h, s, k, rmse):
    q, kv, idx = _inputs(b, t, h, 576, s, k, torch.bfloat16, "cuda")
    _check(q, kv, idx, 512, rmse)


@pytest.mark.gpu
def test_sparse_mla_fp32_at_full_width_fits_shared_memory_gpu(rmse):
    """fp32 (the engine's checking dtype) at V3.2's 576-wide rows: bf16's tiles would overflow shared memory."""
    q, kv, idx = _inputs(2, 3, 128, 576, 1000, 300, torch.float32, "cuda")
    _check(q, kv, idx, 512, rmse)


# (BLOCK_N, NBUF, splits, S_SPLIT): the default, each other layout, forced key splits (more than one block each)
GLUON_CONFIGS = [None, (64, 2, None, False), (32, 4, 3, True), (32, 3, 1, False), (64, 2, 5, True)]


@pytest.mark.gpu
@pytest.mark.parametrize("config", GLUON_CONFIGS)
@pytest.mark.parametrize(("b", "t", "h", "s", "k"), FULL_SHAPES)
def test_sparse_mla_gluon_full_shapes_gpu(b, t, h, s, k, config, rmse):
    from dsagent.kernels.sparse_mla_gluon import sparse_mla_gluon

    if torch.cuda.get_device_capability()[0] != 9:
        pytest.skip("the Gluon kernel is Hopper's")
    q, kv, idx = _inputs(b, t, h, 576, s, k, torch.bfloat16, "cuda")  # under 64 heads too: the rows are masked
    _check(q, kv, idx, 512, rmse, config, kernel=sparse_mla_gluon)


@pytest.mark.gpu
def test_dispatcher_takes_the_gluon_kernels_on_hopper_for_v32_shapes(rmse):
    from dsagent.kernels.sparse_mla import _gluon_kernel, sparse_mla
    from dsagent.kernels.sparse_mla_gluon import sparse_mla_gluon
    from dsagent.kernels.sparse_mla_gluon_roles import sparse_mla_gluon_roles, sparse_mla_gluon_roles_decode

    q, kv, idx = _inputs(2, 3, 128, 576, 900, 256, torch.bfloat16, "cuda")
    hopper = torch.cuda.get_device_capability()[0] == 9
    assert (_gluon_kernel(q, kv, 512) is sparse_mla_gluon) == hopper
    assert _gluon_kernel(q.half(), kv.half(), 512) is None and _gluon_kernel(q[..., :320], kv[..., :320], 256) is None
    assert _gluon_kernel(q[:, :, :16], kv, 512) is None  # 16 heads a rank (8 GPUs): the Triton kernel
    out = sparse_mla(q, kv, idx.long(), 576**-0.5, 512)
    assert rmse(out, sparse_mla_ref(q, kv, idx, 576**-0.5, 512)) < TOL[torch.bfloat16]

    q, kv, idx = _inputs(45, 1, 128, 576, 3000, 300, torch.bfloat16, "cuda")  # a decode batch: 90 programs
    assert (_gluon_kernel(q, kv, 512) is sparse_mla_gluon_roles_decode) == hopper
    out = sparse_mla(q, kv, idx, 576**-0.5, 512)
    assert rmse(out, sparse_mla_ref(q, kv, idx, 576**-0.5, 512)) < TOL[torch.bfloat16]

    q, kv, idx = _inputs(1, 301, 128, 576, 5000, 2048, torch.bfloat16, "cuda")  # a prefill chunk: 602 programs
    assert (_gluon_kernel(q, kv, 512) is sparse_mla_gluon_roles) == hopper
    out = sparse_mla(q, kv, idx, 576**-0.5, 512)
    assert rmse(out, sparse_mla_ref(q, kv, idx, 576**-0.5, 512)) < TOL[torch.bfloat16]
