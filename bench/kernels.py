"""Benchmark the Triton kernels at DeepSeek-V3.2 shapes against the device's measured limits.

For each kernel: the floor (bytes / measured copy bandwidth or FLOPs / measured dense GEMM rate, whichever
is larger), the measured median time, floor / time, and the issue's target where there is one. Writes
bench/results/kernels-<device>.md (or --out DIR). Needs a CUDA GPU; runs in a few minutes.

    python bench/kernels.py [--out DIR] [--sweep] [--only mla,indexer,topk,fp8,heads,moe]
"""

from __future__ import annotations

import argparse
import faulthandler
import math
from pathlib import Path

import torch
import triton
import triton.language as tl
from dsagent.kernels import pdl
from dsagent.kernels.fp8_triton import _sm_count, act_quant_triton, fp8_gemm_scaled_mm, fp8_gemm_triton
from dsagent.kernels.indexer import index_select
from dsagent.kernels.indexer_triton import index_scores_triton
from dsagent.kernels.sparse_mla_gluon import sparse_mla_gluon
from dsagent.kernels.sparse_mla_gluon_roles import DECODE_ROLES_CONFIG, sparse_mla_gluon_roles
from dsagent.kernels.sparse_mla_triton import sparse_mla_triton
from dsagent.kernels.topk_triton import topk_triton
from gpu_common import (
    Ceilings,
    Table,
    add_row,
    best_config,
    device_slug,
    gpu_time_ms,
    measure_ceilings,
    timed,
    write_report,
)
from kernels_heads import bench_heads
from kernels_moe import bench_moe

FP8 = torch.float8_e4m3fn
COLUMNS = ["kernel", "shape", "floor us", "bound", "measured us", "floor/measured", "achieved", "target", "met"]
CUDA = "cuda"


def _mla_case(ceil, table, name, b, t, s, target, kernels):
    """kernels: (label, fn(q, kv, idx, scale, dv, out, config), configs) for each kernel timed."""
    h, dqk, dv, k = 128, 576, 512, 2048
    q = torch.randn(b, t, h, dqk, device=CUDA, dtype=torch.bfloat16)
    kv = torch.randn(b, s, dqk, device=CUDA, dtype=torch.bfloat16)
    idx = torch.stack([torch.randperm(s, device=CUDA)[:k] for _ in range(b * t)]).view(b, t, k).int()
    out = torch.empty(b, t, h, dv, device=CUDA, dtype=torch.bfloat16)
    flops = 2 * b * t * h * k * (dqk + dv)
    nbytes = b * t * (k * dqk * 2 + h * dqk * 2 + h * dv * 2 + k * 4)
    goal = (f">= {target} TFLOP/s", lambda tf, bw, fl: tf >= target)
    for label, kernel, configs in kernels:
        run = lambda c, kernel=kernel: lambda: kernel(q, kv, idx, dqk**-0.5, dv, out=out, config=c)
        ms, cfg, _ = best_config(run, configs, graph=t == 1)
        add_row(table, f"sparse MLA {name}, {label} (config {cfg or 'default'})", f"B={b} T={t} H={h} K={k} S={s}",
                flops, nbytes, ms, ceil, ceil.bf16_flops, goal)  # fmt: skip


def bench_sparse_mla(ceil: Ceilings, table: Table, sweep: bool) -> None:
    # Triton: (BLOCK_H, BLOCK_N, warps, stages, splits); (64, 32|64|128, 8, 1|2|3) and key splits were swept
    # before. Gluon: (BLOCK_N, NBUF, splits, S_SPLIT); 32-row steps with 3-4 buffers measured slower.
    more = [(32, 32, 4, 2, 1), (32, 64, 4, 2, 1), (32, 32, 4, 3, 1), (64, 32, 8, 3, 1), (64, 32, 8, 4, 1),
            (64, 64, 4, 2, 1), (16, 64, 4, 2, 1)] if sweep else []  # fmt: skip
    # Gluon roles: (BLOCK_N, NBUF, rows a copy call, load registers, value registers, splits); the engine runs it
    # for prefill (default config) and batched decode (DECODE_ROLES_CONFIG)
    gluon_more = [(64, 2, None, False), (32, 4, None, True)]
    roles_more = [(64, 2, 16, 40, 208, None), (64, 2, 16, 40, 232, None), (64, 2, 32, 56, 208, 3),
                  (32, 3, 32, 56, 208, None)] if sweep else []  # fmt: skip
    kernels = [
        ("Gluon roles", sparse_mla_gluon_roles, [None, DECODE_ROLES_CONFIG, *roles_more]),
        ("Gluon", sparse_mla_gluon, [None, *gluon_more]),
        ("Triton", sparse_mla_triton, [None, *more]),
    ]
    if torch.cuda.get_device_capability()[0] != 9:
        kernels = kernels[2:]  # the Gluon kernels are Hopper's
    # the roles kernel's partitions meet at mbarriers: should it hang, end with a traceback, not hold the GPU
    faulthandler.dump_traceback_later(600, exit=True)
    _mla_case(ceil, table, "decode", 64, 1, 8192, 300, kernels)
    _mla_case(ceil, table, "prefill", 1, 4096, 16384, 400, kernels)
    faulthandler.cancel_dump_traceback_later()


@triton.jit
def _stream_kernel(
    k_src, s_ptr, o_ptr, S, D: tl.constexpr, BLOCK: tl.constexpr, TMA: tl.constexpr, STAGES: tl.constexpr
):
    # the indexer decode kernel's traffic without its math: read every key row and its scale, write one fp32
    for tile in tl.range(tl.program_id(0), tl.cdiv(S, BLOCK), tl.num_programs(0), num_stages=STAGES):
        rows = tile * BLOCK + tl.arange(0, BLOCK)
        live = rows < S
        if TMA:
            k = k_src.load([tile * BLOCK, 0])
        else:
            k = tl.load(k_src + rows[:, None] * D + tl.arange(0, D)[None, :], mask=live[:, None], other=0)
        total = tl.sum(k.to(tl.int32), axis=1).to(tl.float32) * tl.load(s_ptr + rows, mask=live, other=0.0)
        tl.store(o_ptr + rows, total, mask=live)


def _stream_back_to_back(caches, out) -> tuple[float, tuple]:
    """(ms per call, config) of the fastest streaming read of the caches, run back to back in one graph:
    config = (rows a tile, programs per SM, TMA or pointer loads, stages)."""
    from triton.tools.tensor_descriptor import TensorDescriptor

    s, d = caches[0][0].shape

    def run(cfg):
        block, per_sm, tma, stages = cfg
        grid = (min(triton.cdiv(s, block), per_sm * _sm_count(out.device)),)
        srcs = [k8.view(torch.uint8) for k8, _ in caches]
        if tma:
            srcs = [TensorDescriptor.from_tensor(k, [block, d]) for k in srcs]
        launch = lambda k, ks: _stream_kernel[grid](k, ks, out, s, D=d, BLOCK=block, TMA=tma, STAGES=stages)
        return lambda: [launch(k, ks) for k, (_, ks) in zip(srcs, caches, strict=True)]

    configs = [(block, per_sm, False, 3) for block in (64, 128, 256) for per_sm in (2, 4, 8)]
    configs += [(block, per_sm, True, st) for block in (64, 128, 256) for per_sm in (1, 2, 4) for st in (3, 4, 6)]
    ms, cfg, _ = best_config(run, configs, graph=True)
    return ms / len(caches), cfg


def _indexer_case(ceil, table, name, t, s, configs):
    h, d = 64, 128
    offset = s - t
    q = torch.randn(t, h, d, device=CUDA).to(FP8)
    w = torch.randn(t, h, device=CUDA)
    keys = torch.randn(s, d, device=CUDA).to(FP8)
    ks = torch.rand(s, device=CUDA)
    out = torch.empty(t, s, device=CUDA)
    flops = 2 * h * d * (t * offset + t * (t + 1) / 2)
    nbytes = s * (d + 4) + t * (h * d + h * 4) + t * s * 4
    shape = f"T={t} H={h} D={d} S={s}"
    if t > 4:
        run = lambda c: lambda: index_scores_triton(q, w, keys, ks, offset, out=out, config=c)
        ms, cfg, _ = best_config(run, configs)
        label = f"indexer scores {name} (config {cfg or 'default'})"
        add_row(table, label, shape, flops, nbytes, ms, ceil, ceil.fp8_flops)
        return
    # The decode kernel is timed as a decode step runs it: 8 calls on 8 caches (135 MB, more than L2 holds) back
    # to back in one graph, per call. One graph replay of one call adds the replay's own cost (several us) and
    # follows the timer's L2 flush, whose dirty lines are written back while the keys stream in.
    target = (">= 70% of copy bandwidth", lambda tf, bw, fl: bw >= 0.7) if t == 1 else None
    caches = [(torch.randn(s, d, device=CUDA).to(FP8), torch.rand(s, device=CUDA)) for _ in range(8)]

    def calls(cfg, tma=True):
        run = lambda k8, k8s: index_scores_triton(q, w, k8, k8s, offset, out=out, decode_config=cfg, tma=tma)
        return lambda: [run(k8, k8s) for k8, k8s in caches]

    ms, cfg, _ = best_config(calls, configs, graph=True)
    ms /= len(caches)
    add_row(table, f"indexer scores {name} (config {cfg or 'default'}), 8 caches back to back in one graph, per call",
            shape, flops, nbytes, ms, ceil, ceil.fp8_flops, target)  # fmt: skip
    pdl.ENABLED = False
    try:
        plain = timed(calls(cfg), True) / len(caches)
    finally:
        pdl.ENABLED = True
    add_row(table, f"indexer scores {name}, the same launched without PDL (each call starts after the last ends)",
            shape, flops, nbytes, plain, ceil, ceil.fp8_flops)  # fmt: skip
    pointers = timed(calls(cfg, tma=False), True) / len(caches)
    add_row(table, f"indexer scores {name}, the same without TMA (keys loaded through pointers)", shape, flops, nbytes,
            pointers, ceil, ceil.fp8_flops)  # fmt: skip
    one = timed(lambda: index_scores_triton(q, w, keys, ks, offset, out=out, decode_config=cfg), True)
    add_row(
        table, f"indexer scores {name}, one call as one graph replay", shape, flops, nbytes, one, ceil, ceil.fp8_flops
    )
    stream_ms, stream_cfg = _stream_back_to_back(caches, out[0])
    label = f"reference: a read of the same bytes, no math (best of 36 configs: {stream_cfg}), back to back, per call"
    add_row(table, f"{label}: the indexer takes {ms / stream_ms:.2f}x its time", f"S={s} D={d}", 0, nbytes, stream_ms,
            ceil, ceil.fp8_flops)  # fmt: skip
    pos = torch.full((t,), offset, device=CUDA)
    ms = timed(lambda: index_select(q, w, keys, ks, pos, 2048), True)
    add_row(table, f"indexer scores + top-k 2048 ({name}: first digit counted while scoring, radix select)", shape,
            flops, nbytes, ms, ceil, ceil.fp8_flops)  # fmt: skip


def _indexer_longer(ceil, table, s):
    """The decode kernel on a cache longer than V3.2's context, 2 calls back to back in one graph, per call. The
    fixed costs of a call (launch, ramp-up, the last wave's tail) shrink against the stream, so this row shows
    the rate at which the kernel itself streams keys, beside the no-math read of the same bytes."""
    h, d = 64, 128
    q, w = torch.randn(1, h, d, device=CUDA).to(FP8), torch.randn(1, h, device=CUDA)
    caches = [(torch.randn(s, d, device=CUDA).to(FP8), torch.rand(s, device=CUDA)) for _ in range(2)]
    out = torch.empty(1, s, device=CUDA)
    ms = timed(lambda: [index_scores_triton(q, w, k8, k8s, s - 1, out=out) for k8, k8s in caches], True) / 2
    flops, nbytes = 2 * h * d * s, s * (d + 4) + h * (d + 4) + s * 4
    label = f"indexer scores decode on a longer cache ({s // 131072} x 128K keys, {nbytes / 2**20:.0f} MiB), per call"
    add_row(table, label, f"T=1 H={h} D={d} S={s}", flops, nbytes, ms, ceil, ceil.fp8_flops)
    stream_ms, cfg = _stream_back_to_back(caches, out[0])
    add_row(table, f"reference: a read of the same bytes, no math ({cfg}), per call", f"S={s} D={d}", 0, nbytes,
            stream_ms, ceil, ceil.fp8_flops)  # fmt: skip


def bench_indexer(ceil: Ceilings, table: Table, sweep: bool) -> None:
    # decode kernel (BLOCK_S, programs per SM, warps, stages)
    more = [(bs, p, w, st) for bs in (64, 128, 256) for p in (1, 2, 3, 4) for w in (4, 8) for st in (2, 3, 4)]
    _indexer_case(ceil, table, "decode", 1, 131072, [None, *more] if sweep else [None])
    for s in (1 << 20, 1 << 22):
        _indexer_longer(ceil, table, s)
    more = []  # swept on H100 (kernels-h100.md): (32, 128, 4, 2), the default, is within 1% of the best
    _indexer_case(ceil, table, "prefill chunk", 2048, 65536, [None, *more])


def _topk_case(ceil, table, t, s, sweep):
    scores = torch.randn(t, s, device=CUDA)
    scores[:, s - 64 :] = float("-inf")
    nbytes = t * s * 4 + t * 2048 * 4
    graph = t <= 64
    ms = timed(lambda: torch.topk(scores, 2048, dim=-1, sorted=False), graph)
    add_row(table, "top-k 2048, torch.topk", f"T={t} S={s}", 0, nbytes, ms, ceil, 1.0)
    configs = [256, 512, 1024, 2048, 4096] if sweep else [1024]
    ms, cfg, _ = best_config(lambda c: lambda: topk_triton(scores, 2048, block=c), configs, graph)
    add_row(table, f"top-k 2048, radix select (block {cfg})", f"T={t} S={s}", 0, nbytes, ms, ceil, 1.0)


def bench_topk(ceil: Ceilings, table: Table, sweep: bool) -> None:
    for t, s in [(1, 4096), (1, 16384), (1, 32768), (1, 65536), (1, 131072), (4, 131072), (16, 131072),
                 (64, 131072), (2048, 65536)]:  # fmt: skip
        _topk_case(ceil, table, t, s, sweep)
    empty = torch.empty(1, device=CUDA)
    ms = timed(lambda: empty.fill_(1.0), True)
    table.notes.append(f"a graph replay of one trivial kernel takes {ms * 1e3:.1f} us here: part of every graph row")


def _gemm_case(ceil, table, label, m, w, ws, sweep):
    n, k = w.shape
    xq, xs = act_quant_triton(torch.randn(m, k, device=CUDA, dtype=torch.bfloat16))
    configs = [None]  # swept on H100 at M=4096: 128x128 and 128x64 tiles lost to the default 64x128
    ms, cfg, _ = best_config(lambda c: lambda: fp8_gemm_triton(xq, xs, w, ws, config=c), configs, m <= 16)
    flops, nbytes = 2 * m * n * k, n * k + m * k + m * n * 2
    shape = f"M={m} N={n} K={k}"
    add_row(table, f"fp8 GEMM {label} triton ({cfg or 'default'})", shape, flops, nbytes, ms, ceil, ceil.fp8_flops)
    try:
        ms = timed(lambda: fp8_gemm_scaled_mm(xq, xs, w, ws), m <= 16)
        add_row(table, f"fp8 GEMM {label} torch._scaled_mm", shape, flops, nbytes, ms, ceil, ceil.fp8_flops)
    except Exception as exc:
        print(f"  _scaled_mm block-scaled unavailable: {type(exc).__name__}: {str(exc)[:200]}", flush=True)


def bench_fp8(ceil: Ceilings, table: Table, sweep: bool) -> None:
    x = torch.randn(4096, 7168, device=CUDA, dtype=torch.bfloat16)
    ms = gpu_time_ms(lambda: act_quant_triton(x))
    add_row(table, "act_quant", "[4096, 7168] bf16", 0, x.numel() * 3 + x.numel() // 128 * 4, ms, ceil, 1.0)
    shapes = [("wq_a+wkv_a", 2112, 7168), ("wq_b", 24576, 1536), ("wo", 7168, 16384), ("shared w13", 4096, 7168)]
    for label, n, k in shapes:
        w = torch.randn(n, k, device=CUDA).to(FP8)
        ws = torch.rand(math.ceil(n / 128), math.ceil(k / 128), device=CUDA)
        for m in (1, 16, 4096):
            _gemm_case(ceil, table, label, m, w, ws, sweep)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--sweep", action="store_true", help="also time alternative tile configurations")
    parser.add_argument("--only", default="mla,indexer,topk,fp8,heads,moe", help="sections")
    args = parser.parse_args()
    torch.manual_seed(0)
    ceil = measure_ceilings()
    pre = [
        f"- measured ceilings: copy {ceil.bandwidth / 1e12:.2f} TB/s (read + write), bf16 GEMM "
        f"{ceil.bf16_flops / 1e12:.0f} TFLOP/s, fp8 GEMM {ceil.fp8_flops / 1e12:.0f} TFLOP/s (8192^3)",
        "- floor = max(FLOPs / GEMM rate, bytes / copy bandwidth); floor/measured = 100% is the limit",
    ]
    print("\n".join(pre), flush=True)
    table = Table("Kernels at DeepSeek-V3.2 shapes", COLUMNS)
    benches = {
        "mla": bench_sparse_mla, "indexer": bench_indexer, "topk": bench_topk, "fp8": bench_fp8, "heads": bench_heads,
        "moe": bench_moe,
    }  # fmt: skip
    for name in args.only.split(","):
        benches[name](ceil, table, args.sweep)
        torch.cuda.empty_cache()
    write_report(args.out / f"kernels-{device_slug()}.md", "Triton kernels", pre, [table])


if __name__ == "__main__":
    main()
