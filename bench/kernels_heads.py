"""The kv_b head-products section of bench/kernels.py: the absorbed form's query (q_nope @ W_uk) and output
(latent @ W_uv^T) at V3.2's size (128 heads, 128 + 128 rows a head, latent 512), the Triton kernel reading
kv_b_proj's weight as stored (fp8 or bf16) against the PyTorch path (batched GEMMs on a dequantised bf16 copy).
Decode rows run 8 layers' weights back to back in one graph (8 x 33.5 MB of bf16, more than L2 holds) and
report the time per call, as a decode step meets them once a layer."""

from __future__ import annotations

import math

import torch
from dsagent.kernels.fp8 import weight_dequant
from dsagent.kernels.head_matmul import head_matmul_ref
from dsagent.kernels.head_matmul_triton import head_matmul_triton
from gpu_common import Ceilings, Table, add_row, best_config, timed

FP8 = torch.float8_e4m3fn
CUDA = "cuda"
HEADS, NOPE, DV, RANK, LAYERS = 128, 128, 128, 512, 8


def _kv_b(fp8: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(weight as stored, scales or None, the bf16 copy the PyTorch path multiplies by)."""
    w = torch.randn(HEADS * (NOPE + DV), RANK, device=CUDA, dtype=torch.bfloat16)
    if not fp8:
        return w, None, w
    w8 = w.mul(64).to(FP8)
    scale = torch.full((math.ceil(w.shape[0] / 128), RANK // 128), 1 / 64, device=CUDA)
    return w8, scale, weight_dequant(w8, scale).to(torch.bfloat16)


def _heads_case(ceil: Ceilings, table: Table, layers, t: int, transpose: bool, fp8: bool, sweep: bool) -> None:
    first, count = (NOPE, DV) if transpose else (0, NOPE)
    k, n = (RANK, count) if transpose else (count, RANK)
    x = torch.randn(t, HEADS, k, device=CUDA, dtype=torch.bfloat16)
    graph = t <= 16
    calls = layers if graph else layers[:1]
    flops = 2 * t * HEADS * k * n
    moved = x.numel() * 2 + t * HEADS * n * 2
    name = "output (latent @ W_uv^T)" if transpose else "query (q_nope @ W_uk)"
    shape = f"T={t} H={HEADS} K={k} N={n}"
    # (BLOCK_N, BLOCK_K, warps); None: the wrapper's choice
    configs = [None, *((bn, bk, 4) for bn in (32, 64, 128) for bk in (64, 128, 256)), (64, 64, 8), (128, 64, 8)]
    configs = configs if sweep else [None]
    run = lambda c: lambda: [head_matmul_triton(x, w, s, HEADS, first, count, transpose, config=c) for w, s, _ in calls]
    ms, cfg, _ = best_config(run, configs, graph)
    ms /= len(calls)
    weight_bytes = HEADS * count * RANK * (1 if fp8 else 2)
    add_row(table, f"kv_b head products, {name}, Triton ({cfg or 'default'}), {'fp8' if fp8 else 'bf16'} weight",
            shape, flops, moved + weight_bytes, ms, ceil, ceil.bf16_flops)  # fmt: skip
    if fp8:  # the PyTorch path is the same for both (a bf16 copy): time it once
        return
    dense = [d.view(HEADS, NOPE + DV, RANK)[:, first : first + count] for _, _, d in calls]
    ms = timed(lambda: [head_matmul_ref(x, w, transpose) for w in dense], graph) / len(calls)
    add_row(table, f"kv_b head products, {name}, PyTorch batched GEMM on the bf16 copy", shape, flops,
            moved + HEADS * count * RANK * 2, ms, ceil, ceil.bf16_flops)  # fmt: skip


def bench_heads(ceil: Ceilings, table: Table, sweep: bool) -> None:
    for fp8 in (False, True):
        layers = [_kv_b(fp8) for _ in range(LAYERS)]
        for transpose in (False, True):
            for t in (1, 16, 4096):
                _heads_case(ceil, table, layers, t, transpose, fp8, sweep and fp8 and t <= 16)
        del layers
