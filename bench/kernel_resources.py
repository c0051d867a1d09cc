"""Registers, spills and shared memory of every Triton and Gluon kernel at V3.2 shapes, compiled for Hopper
(sm_90a) on a machine without a GPU, and whether each kernel launched with programmatic dependent launch waits
before its first global memory access.

A stand-in driver makes Triton's launcher compile instead of launch: the kernels' own host wrappers run with
CPU tensors of the real shapes, so every kernel is specialised (constants, alignment, configuration) as on the
device. The cubin's resource use comes from cuobjdump, which ships with Triton. Occupancy is what the
registers, shared memory and warps allow per SM on H100 (65536 registers, 228 KB, 64 warps).
Writes bench/results/kernel-resources-sm90.md (or --out DIR); --json FILE also writes the rows as JSON.

    python bench/kernel_resources.py [--out DIR] [--json FILE] [--only SUBSTRING]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)  # compiled kernels, not the interpreter's

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.runtime import driver
from triton.runtime.jit import JITFunction

SM90 = GPUTarget("cuda", 90, 32)
# PTX instructions that touch global memory (loads, stores, atomics, reductions, asynchronous and TMA copies),
# predicated or not: in a kernel launched with PDL none may come before griddepcontrol.wait.
_GLOBAL_ACCESS = re.compile(
    r"^\s*(@!?%p\d+\s+)?((ld|st|atom|red)\.[\w:.]*global|cp\.(reduce\.)?async\.(ca|cg|bulk))", re.M
)


class CompileOnlyDriver:
    """What Triton's launcher asks of the active driver, answered for an sm_90a target with no device."""

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0

    def get_current_target(self):
        return SM90

    def get_active_torch_device(self):
        return torch.device("cpu")


@contextlib.contextmanager
def compile_only(record: list):
    """Within: kernel launches compile for sm_90a with PDL (as on Hopper) instead of running, and append
    (kernel name, whether it takes a PDL switch, compiled kernel) to record."""
    from dsagent.kernels import pdl

    run, pdl_on = JITFunction.run, pdl.pdl_on

    def compile_and_record(self, *args, grid, warmup, **kwargs):
        kernel = run(self, *args, grid=grid, warmup=True, **kwargs)
        record.append((self.fn.__name__, "PDL" in self.arg_names, kernel))
        return kernel

    active = driver._active  # None here: without a GPU, asking for the default driver raises
    driver.set_active(CompileOnlyDriver())
    JITFunction.run, pdl.pdl_on = compile_and_record, lambda device: True
    try:
        yield
    finally:
        JITFunction.run, pdl.pdl_on = run, pdl_on
        driver._active = active


def resources(kernel) -> dict:
    """Registers per thread, stack (spilled registers) and local bytes, shared memory, warps of a cubin."""
    tool = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(kernel.asm["cubin"])
        f.flush()
        text = subprocess.run([str(tool), "-res-usage", f.name], capture_output=True, text=True, check=True).stdout
    use = {k: int(v) for k, v in re.findall(r"\b(REG|STACK|LOCAL):(\d+)", text)}
    return {
        "regs": use["REG"],
        "stack": use["STACK"],
        "local": use["LOCAL"],
        "smem": kernel.metadata.shared,
        "warps": kernel.metadata.num_warps,
    }


def ctas_per_sm(regs: int, smem: int, warps: int) -> int:
    """Programs one H100 SM holds at once: registers are given out 256 a warp at a time, shared memory with
    1 KB reserved per program, at most 64 warps and 32 programs."""
    per_warp = -(-max(regs, 1) * 32 // 256) * 256
    by_regs = 65536 // (per_warp * warps)
    by_smem = (228 * 1024) // (smem + 1024)
    return min(by_regs, by_smem, 64 // warps, 32)


def waits_first(ptx: str) -> str:
    """'yes' when griddepcontrol.wait comes before every global memory access of the PTX, else what is wrong."""
    wait = ptx.find("griddepcontrol.wait")
    if wait < 0:
        return "NO WAIT"
    first = _GLOBAL_ACCESS.search(ptx)
    return "yes" if first is None or first.start() > wait else "ACCESS BEFORE WAIT"


def measure(label: str, fn) -> list[dict]:
    """One row per kernel that fn's launches compile."""
    record: list = []
    with compile_only(record):
        fn()
    rows = []
    for name, pdl, kernel in record:
        row = {"case": label, "kernel": name, **resources(kernel)}
        row["ctas_per_sm"] = ctas_per_sm(row["regs"], row["smem"], row["warps"])
        row["pdl"] = waits_first(kernel.asm["ptx"]) if pdl else "-"
        rows.append(row)
    return rows


BF16, FP8, empty = torch.bfloat16, torch.float8_e4m3fn, torch.empty


def cases() -> dict:
    """{label: a call of the kernels' host wrappers at V3.2 shapes}, for the decode step and a 4096-token
    prefill. Values are never read: the tensors are left empty but for the routing's expert ids."""
    out = {**_row_cases(1), **_row_cases(4096)}
    for name, n, k in (("wq_a+wkv_a", 2112, 7168), ("wq_b", 24576, 1536), ("wo", 7168, 16384),
                       ("shared w13", 4096, 7168), ("shared w2", 7168, 2048)):  # fmt: skip
        out |= {f"fp8 linear {name}, M={m}": _fp8_linear(m, n, k) for m in (1, 16)}
    out |= _indexer_cases(131072)
    for b, t in ((1, 1), (64, 1), (1, 4096)):
        out |= _sparse_mla_cases(b, t)
    for fp8 in (True, False):
        out |= {f"fused MoE {'fp8' if fp8 else 'bf16'}, T={t}": _moe(t, fp8) for t in (1, 16, 4096)}
    return out


def _row_cases(t: int) -> dict:
    from dsagent.kernels.elementwise_triton import sum_rows_triton
    from dsagent.kernels.fp8_triton import act_quant_triton, fp8_roundtrip_triton
    from dsagent.kernels.gemv_triton import gemv_fp32_triton
    from dsagent.kernels.hadamard_triton import hadamard_quant_triton
    from dsagent.kernels.norm_triton import rms_norm_triton
    from dsagent.kernels.rope_triton import rope_triton
    from dsagent.kernels.routing import Routing
    from dsagent.kernels.routing_triton import route_triton

    x = empty(t, 7168, dtype=BF16)
    cases = {
        f"RMSNorm + residual, T={t}": lambda: rms_norm_triton(x, empty(7168), 1e-6, residual=torch.empty_like(x)),
        f"RoPE 128 heads, T={t}": lambda: rope_triton(empty(t, 128, 64, dtype=BF16), empty(t, 32), empty(t, 32), True),
        f"act_quant, T={t}": lambda: act_quant_triton(x),
        f"fp8 round trip of the latent, T={t}": lambda: fp8_roundtrip_triton(empty(t, 512, dtype=BF16)),
        f"Hadamard + fp8 of indexer q, T={t}": lambda: hadamard_quant_triton(empty(t, 64, 128, dtype=BF16),
                                                                             empty(128, 128)),
        f"routing 256 experts, T={t}": lambda: route_triton(empty(t, 256), empty(256), Routing(8, 8, 4)),
        f"sum of 8 expert rows, T={t}": lambda: sum_rows_triton(empty(8 * t, 7168, dtype=BF16), k=8),
    }  # fmt: skip
    if t == 1:
        cases["router GEMV 256x7168, T=1"] = lambda: gemv_fp32_triton(empty(1, 7168), empty(256, 7168))
    return cases | _head_cases(t)


def _head_cases(t: int) -> dict:
    from dsagent.kernels.head_matmul_triton import head_matmul_triton

    w, s = empty(128 * 256, 512, dtype=FP8), empty(256, 4)
    return {
        f"kv_b query q_nope @ W_uk (fp8), T={t}": lambda: head_matmul_triton(empty(t, 128, 128, dtype=BF16), w, s,
                                                                             128, 0, 128, False),
        f"kv_b output latent @ W_uv^T (fp8), T={t}": lambda: head_matmul_triton(empty(t, 128, 512, dtype=BF16), w, s,
                                                                                128, 128, 128, True),
    }  # fmt: skip


def _fp8_linear(m: int, n: int, k: int):
    from dsagent.kernels.fp8_triton import fp8_linear_triton

    return lambda: fp8_linear_triton(empty(m, k, dtype=BF16), empty(n, k, dtype=FP8), empty(-(-n // 128), k // 128))


def _indexer_cases(s: int) -> dict:
    from dsagent.kernels import topk_triton as topk
    from dsagent.kernels.indexer_triton import index_scores_triton

    keys, scales, q = empty(s, 128, dtype=FP8), empty(s), empty(4096, 64, 128, dtype=FP8)
    return {
        "indexer scores, decode at 128K": lambda: index_scores_triton(
            q[:1], empty(1, 64), keys, scales, torch.tensor([s - 1]), radix=topk.radix_scratch(1, "cpu")),
        "indexer scores, prefill 4096 at 4096": lambda: index_scores_triton(
            q, empty(4096, 64), keys[:4096], scales[:4096], 0),
        "radix top-2048 of 128K": lambda: topk.topk_triton(empty(1, s), 2048, scratch=topk.radix_scratch(1, "cpu")),
    }  # fmt: skip


def _sparse_mla_cases(b: int, t: int) -> dict:
    from dsagent.kernels.sparse_mla_gluon import sparse_mla_gluon
    from dsagent.kernels.sparse_mla_gluon_roles import sparse_mla_gluon_roles, sparse_mla_gluon_roles_decode
    from dsagent.kernels.sparse_mla_triton import sparse_mla_triton

    kernels = {"Triton": sparse_mla_triton, "Gluon": sparse_mla_gluon, "Gluon roles": sparse_mla_gluon_roles}
    if t == 1:
        kernels["Gluon roles, decode"] = sparse_mla_gluon_roles_decode
    return {f"sparse MLA {name}, B={b} T={t}": _sparse_mla(fn, b, t) for name, fn in kernels.items()}


def _sparse_mla(fn, b: int, t: int):
    # the tensors are made when the case runs, not for every case listed
    return lambda: fn(
        empty(b, t, 128, 576, dtype=BF16), empty(b, 8192, 576, dtype=BF16), empty(b, t, 2048, dtype=torch.int32),
        0.04, 512,
    )  # fmt: skip


def _moe(t: int, fp8: bool):
    from dsagent.kernels.moe_triton import fused_moe_triton

    def run():
        w = FP8 if fp8 else BF16
        w13, w2 = empty(8, 4096, 7168, dtype=w), empty(8, 7168, 2048, dtype=w)
        s13, s2 = (empty(8, 32, 56), empty(8, 56, 16)) if fp8 else (None, None)
        ids = torch.rand(t, 8).argsort(-1).to(torch.int32)  # 8 distinct experts a token (the sort reads them)
        return fused_moe_triton(empty(t, 7168, dtype=BF16), ids, empty(t, 8), w13, w2, s13, s2)

    return run


def markdown(rows: list[dict]) -> str:
    head = [
        "# Kernel resources on Hopper (sm_90a), compiled without a GPU",
        "",
        f"- date: {datetime.date.today().isoformat()}",
        f"- software: torch {torch.__version__}, triton {triton.__version__} (compiled for sm_90a; cuobjdump)",
        f"- command: `{' '.join(['python'] + sys.argv)}`",
        "- each kernel at the configuration its host wrapper picks for the shape; spill = stack bytes of spilled"
        " registers; programs/SM = what registers, shared memory and warps allow on H100; PDL wait first ="
        " griddepcontrol.wait comes before every global memory access (- = launched without PDL)",
        "",
        "| case | kernel | warps | registers | spill bytes | shared KB | programs/SM | PDL wait first |",
        "|---|---|---|---|---|---|---|---|",
    ]
    body = [
        f"| {r['case']} | {r['kernel']} | {r['warps']} | {r['regs']} | {r['stack'] + r['local']} | "
        f"{r['smem'] / 1024:.1f} | {r['ctas_per_sm']} | {r['pdl']} |"
        for r in rows
    ]
    return "\n".join(head + body) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--json", type=Path, help="also write the rows here as JSON")
    parser.add_argument("--only", default="", help="cases whose label contains this")
    args = parser.parse_args()
    rows = []
    for label, fn in cases().items():
        if args.only in label:
            measured = measure(label, fn)
            rows += measured
            print(f"{label}: {', '.join(r['kernel'] for r in measured)}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "kernel-resources-sm90.md").write_text(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
