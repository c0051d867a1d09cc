"""Lightning indexer scores and top-k against their PyTorch references."""

from __future__ import annotations

import pytest
import torch
from dsagent.kernels.indexer import index_scores_ref, index_topk_ref
from dsagent.kernels.indexer_triton import TensorDescriptor, _tma_keys, index_scores_triton, index_topk_cuda
from kernel_kit import indexer_inputs

FP8 = torch.float8_e4m3fn


def _check_scores(q, weights, k, k_scale, offset, rmse, config=None, tol=1e-5, **kw):
    t, s = q.shape[0], k.shape[0]
    ref = index_scores_ref(q, weights, k, k_scale, offset)
    out = torch.full((t, s), float("nan"), device=q.device)
    index_scores_triton(q, weights, k, k_scale, offset, out=out, config=config, **kw)
    visible = torch.isfinite(ref)
    assert torch.equal(torch.isfinite(out), visible)  # the same causal mask, nothing left unwritten
    assert (out[~visible] == float("-inf")).all()
    assert rmse(out[visible], ref[visible]) < tol


@pytest.mark.parametrize(
    ("t", "h", "d", "s", "offset", "config"),
    [
        (1, 4, 32, 130, 129, None),  # decode at the end of the cache
        (3, 5, 48, 37, 34, None),  # a few queries (the decode kernel), odd heads and head dim
        (2, 4, 32, 300, 100, None),  # a few queries in the middle of the keys: later tiles all -inf
        (5, 3, 32, 200, 10, (4, 64, 4, 1)),  # chunk in the middle: keys past offset + t are masked
        (6, 4, 32, 6, 0, (2, 16, 4, 1)),  # first chunk, a tile wholly in the future of its queries
    ],
)
def test_index_scores_match_reference(t, h, d, s, offset, config, device, rmse):
    q, weights, k, k_scale = indexer_inputs(t, h, d, s, device)
    tol = 3e-3 if device == "cuda" else 1e-5  # the GPU accumulates fp8 products with fewer bits than fp32
    _check_scores(q, weights, k, k_scale, offset, rmse, config, tol)


@pytest.mark.parametrize("tma", [True, False])
@pytest.mark.parametrize(("t", "decode_config"), [(1, (16, 1, 4, 3)), (3, (32, 1, 4, 2)), (2, (64, 2, 4, 4))])
def test_decode_kernel_strides_over_tiles(t, decode_config, tma, device, rmse):
    """Fewer programs than key tiles, so each strides over several in its pipelined loop; the keys are the head
    of a longer cache, as the engine's are, so the last tile is partial and rows past it must read as absent."""
    h, d, s = (64, 128, 40001) if device == "cuda" else (4, 32, 3001)
    q, weights, cache, cache_scale = indexer_inputs(t, h, d, s + 77, device)
    k, k_scale = cache[:s], cache_scale[:s]
    assert (_tma_keys(k, decode_config[0], d) is not None) == (TensorDescriptor is not None)
    tol = 3e-3 if device == "cuda" else 1e-5
    _check_scores(q, weights, k, k_scale, s - t, rmse, tol=tol, decode_config=decode_config, tma=tma)


@pytest.mark.parametrize(("t", "s", "k"), [(1, 50, 8), (4, 20, 32), (3, 300, 64)])
def test_index_topk_matches_reference(t, s, k, device):
    q, weights, keys, k_scale = indexer_inputs(t, 4, 32, s, device)
    scores = index_scores_ref(q, weights, keys, k_scale, s - t - 5)  # the last 5 keys are in the future
    ref = index_topk_ref(scores, k)
    out = index_topk_cuda(scores, k)
    assert out.dtype == torch.int32 and out.shape == (t, k)
    assert torch.equal(out.sort(-1).values, ref.sort(-1).values)  # the same set; order is not meaningful


@pytest.mark.gpu
@pytest.mark.parametrize(("t", "s", "offset"), [(1, 131072, 131071), (1, 4099, 4098), (257, 4096, 3839), (64, 8192, 0)])
def test_index_scores_full_shapes_gpu(t, s, offset, rmse):
    q, weights, k, k_scale = indexer_inputs(t, 64, 128, s, "cuda")
    _check_scores(q, weights, k, k_scale, offset, rmse, tol=3e-3)


@pytest.mark.gpu
@pytest.mark.parametrize(("t", "s"), [(1, 131072), (2, 70001), (64, 8192)])
def test_index_topk_long_rows_gpu(t, s):
    scores = torch.randn(t, s, device="cuda")
    scores[:, -100:] = float("-inf")
    ref = index_topk_ref(scores, 2048)
    assert torch.equal(index_topk_cuda(scores, 2048).sort(-1).values, ref.sort(-1).values)
