"""Shared helpers of the GPU benchmarks: timing, the device's measured ceilings, result tables."""

from __future__ import annotations

import datetime
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch


def gpu_time_ms(fn, warmup: int = 25, rep: int = 100) -> float:
    """Median time of fn() in ms, measured with CUDA events; the L2 cache is flushed before every run."""
    import triton.testing

    return float(triton.testing.do_bench(fn, warmup=warmup, rep=rep, return_mode="median"))


def capture_graph(fn) -> torch.cuda.CUDAGraph:
    """fn() captured in a CUDA graph, after three warm-up calls on a side stream."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph


def graph_time_ms(fn, iters: int = 20) -> float:
    """Median time in ms of fn() replayed from a CUDA graph (launch gaps removed)."""
    return gpu_time_ms(capture_graph(fn).replay, warmup=5, rep=iters * 5)


@dataclass
class Ceilings:
    """Measured on this device: copy bandwidth (bytes read + written per second), dense GEMM rates."""

    bandwidth: float  # B/s
    bf16_flops: float  # FLOP/s
    fp8_flops: float  # FLOP/s


def measure_ceilings() -> Ceilings:
    n = 1 << 30
    src = torch.empty(n, dtype=torch.uint8, device="cuda").random_()
    dst = torch.empty_like(src)
    bandwidth = 2 * n / (gpu_time_ms(lambda: dst.copy_(src)) * 1e-3)
    m = 8192
    a = torch.randn(m, m, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(m, m, device="cuda", dtype=torch.bfloat16)
    bf16 = 2 * m**3 / (gpu_time_ms(lambda: a @ b) * 1e-3)
    a8, b8 = a.to(torch.float8_e4m3fn), b.to(torch.float8_e4m3fn).t()
    one = torch.ones((), device="cuda")
    fp8 = 2 * m**3 / (gpu_time_ms(lambda: torch._scaled_mm(a8, b8, one, one, out_dtype=torch.bfloat16)) * 1e-3)
    return Ceilings(bandwidth, bf16, fp8)


def add_row(table: Table, name, shape, flops, nbytes, ms, ceil: Ceilings, peak, target=None):
    """Add a row; target = (text, predicate on (tflops, bandwidth fraction, floor fraction))."""
    t_flops, t_bytes = flops / peak, nbytes / ceil.bandwidth
    floor = max(t_flops, t_bytes)
    tflops, bw = flops / (ms * 1e-3) / 1e12, nbytes / (ms * 1e-3)
    achieved = f"{tflops:.0f} TFLOP/s, {bw / 1e12:.2f} TB/s ({bw / ceil.bandwidth:.0%} of copy)"
    met = "" if target is None else ("yes" if target[1](tflops, bw / ceil.bandwidth, floor / (ms * 1e-3)) else "NO")
    bound = "compute" if t_flops >= t_bytes else "memory"
    table.add(name, shape, f"{floor * 1e6:.1f}", bound, f"{ms * 1e3:.1f}", f"{floor / (ms * 1e-3):.0%}", achieved,
              "" if target is None else target[0], met)  # fmt: skip


def timed(fn, graph: bool) -> float:
    """Median ms after a warm-up; `graph`: replayed from a CUDA graph, as the engine's decode step runs
    (small kernels would otherwise be timed at the rate Python launches them)."""
    fn()
    torch.cuda.synchronize()
    return graph_time_ms(fn) if graph else gpu_time_ms(fn)


def best_config(fn_of_config, configs, graph=False):
    """Time every config; return (best ms, best config, all timings)."""
    timings = []
    for cfg in configs:
        try:
            timings.append((timed(fn_of_config(cfg), graph), cfg))
        except Exception as exc:  # a config can exceed shared memory on this device
            print(f"  config {cfg} failed: {type(exc).__name__}: {str(exc)[:120]}", flush=True)
    for ms, cfg in timings:
        print(f"  config {cfg}: {ms * 1e3:.1f} us", flush=True)
    if not timings:
        return float("nan"), None, []
    ms, cfg = min(timings, key=lambda x: x[0])
    return ms, cfg, timings


def device_slug() -> str:
    name = torch.cuda.get_device_name()
    match = re.search(r"(H100|H200|H800|A100|B200|L40S?|GH200)", name)
    return (match.group(1) if match else re.sub(r"\W+", "-", name)).lower()


@dataclass
class Table:
    """A markdown result table with a header block naming date, device and command."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells) -> None:
        self.rows.append([c if isinstance(c, str) else f"{c:.3g}" for c in cells])
        print(" | ".join(self.rows[-1]), flush=True)

    def markdown(self) -> str:
        lines = [f"## {self.title}", "", "| " + " | ".join(self.columns) + " |"]
        lines.append("|" + "---|" * len(self.columns))
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        if self.notes:
            lines += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


def write_report(path: Path, heading: str, preamble: list[str], tables: list[Table]) -> None:
    props = torch.cuda.get_device_properties(0)
    head = [
        f"# {heading}",
        "",
        f"- date: {datetime.date.today().isoformat()}",
        f"- device: {props.name} ({props.multi_processor_count} SMs, {props.total_memory / 2**30:.0f} GiB)",
        f"- software: torch {torch.__version__}, triton {__import__('triton').__version__}",
        f"- command: `{' '.join(['python'] + sys.argv)}`",
        *preamble,
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(head) + "\n" + "\n".join(t.markdown() for t in tables))
    print(f"wrote {path}", flush=True)
