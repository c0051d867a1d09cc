"""Where a batch-1 decode step's time goes: one full-size V3.2 layer (fp8 weights, random) decoding one token at
128K context, captured in a CUDA graph and replayed under the torch profiler; prints each kernel's time per
replay, the kernel count, the span of a replay and one replay's kernels in launch order. Also profiles DSA
attention alone, and times the sparse MLA kernel at one query over 2048 rows for several key-split counts.
Needs a CUDA GPU.

    python bench/decode_profile.py [step] [attn] [split]     (all three by default)
"""

from __future__ import annotations

import collections
import statistics
import sys

import torch
from dsagent.kernels.indexer import index_select
from dsagent.kernels.sparse_mla import sparse_mla
from dsagent.kernels.sparse_mla_gluon import sparse_mla_gluon
from dsagent.model.config import ForwardOptions
from gpu_common import capture_graph, graph_time_ms
from long_context import _attention_inputs, build_layer, fill_cache
from torch.profiler import ProfilerActivity, profile

CUDA = torch.device("cuda")
CONTEXT = 131072


def print_kernels(graph: torch.cuda.CUDAGraph, label: str, reps: int = 10) -> None:
    """Kernel times per replay, summed by kernel name, over `reps` replays under the profiler."""
    for _ in range(5):
        graph.replay()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            graph.replay()
        torch.cuda.synchronize()
    events = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    times = collections.defaultdict(list)
    for e in events:
        times[e.name].append(e.device_time if hasattr(e, "device_time") else e.cuda_time)
    total = sum(sum(v) for v in times.values()) / reps
    count = sum(len(v) for v in times.values()) / reps
    print(f"== {label}: {count:.0f} kernels a replay, kernel time {total:.1f} us a replay", flush=True)
    for name, v in sorted(times.items(), key=lambda kv: -sum(kv[1]))[:40]:
        print(f"  {sum(v) / reps:8.1f} us  x{len(v) / reps:4.1f}  {name[:110]}")
    ordered = sorted(events, key=lambda e: e.time_range.start)
    per = len(ordered) // reps
    spans = [ordered[i * per + per - 1].time_range.end - ordered[i * per].time_range.start for i in range(reps)]
    print(f"  span of a replay (first kernel start to last end): {statistics.median(spans):.1f} us")
    print("  one replay, in launch order:")
    for e in ordered[:per]:
        print(f"    {e.time_range.elapsed_us():6.1f} us  {e.name[:100]}")


def profile_step() -> None:
    model = build_layer(ForwardOptions(attention="absorbed"))
    cache = fill_cache(model, CONTEXT)
    token = torch.tensor([1234], device=CUDA)

    def step():
        model.forward(token, cache)
        cache.truncate(CONTEXT)

    print("step graph ms", graph_time_ms(step), flush=True)
    print_kernels(capture_graph(step), "layer decode step at 128K (DSA)")


def profile_attention() -> None:
    x = _attention_inputs(CONTEXT)

    def attention():
        idx = index_select(x["qi"], x["w"], x["ki"], x["ks"], x["position"], 2048)
        return sparse_mla(x["q"], x["kv"], idx.view(1, 1, -1), 0.04, 512)

    print("attn graph us", graph_time_ms(attention) * 1e3, flush=True)
    print_kernels(capture_graph(attention), "DSA attention at 128K")


def time_splits() -> None:
    x = _attention_inputs(CONTEXT)
    idx = torch.randperm(CONTEXT, device=CUDA)[:2048].int().view(1, 1, -1)
    out = torch.empty(1, 1, 128, 512, device=CUDA, dtype=torch.bfloat16)
    for splits in (4, 8, 16, 32, 64):

        def run(splits=splits):
            return sparse_mla_gluon(x["q"], x["kv"], idx, 0.04, 512, out=out, config=(64, 2, splits, True))

        times = [graph_time_ms(run) * 1e3 for _ in range(3)]
        print(f"sparse MLA T=1 K=2048 nsplit={splits}: {statistics.median(times):.1f} us (graph replay)", flush=True)
        if splits in (8, 32):
            print_kernels(capture_graph(run), f"sparse MLA nsplit={splits}")


if __name__ == "__main__":
    parts = sys.argv[1:] or ["step", "attn", "split"]
    for part, fn in (("step", profile_step), ("attn", profile_attention), ("split", time_splits)):
        if part in parts:
            fn()
            torch.cuda.empty_cache()
