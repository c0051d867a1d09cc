"""Every Triton and Gluon kernel compiles for Hopper (sm_90a) at V3.2 shapes, without spilling registers, within
an SM's shared memory, and each kernel launched with PDL waits before it touches global memory.

bench/kernel_resources.py compiles them through their host wrappers; it runs in a subprocess because this test
session runs kernels in Triton's interpreter, which never compiles them (and never runs the Gluon kernels)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).parents[2] / "bench" / "kernel_resources.py"
SMEM_PER_PROGRAM = 227 * 1024  # the most one program may ask for on H100


def _compiled_env() -> dict:
    return {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("resources")
    cmd = [sys.executable, str(TOOL), "--out", str(out), "--json", str(out / "rows.json")]
    proc = subprocess.run(cmd, env=_compiled_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    rows = json.loads((out / "rows.json").read_text())
    table = (out / "kernel-resources-sm90.md").read_text()
    assert table.count("\n| ") == 1 + len(rows)  # the header and a line a kernel
    return rows


def test_every_kernel_of_the_model_compiles(rows):
    kernels = {r["kernel"] for r in rows}
    expected = {
        "_norm_kernel", "_rope_kernel", "_act_quant_kernel", "_hadamard_quant_kernel", "_route_kernel",
        "_sum_rows_kernel", "_fp8_gemm_kernel", "_gemv_kernel", "_index_scores_decode_kernel", "_index_scores_kernel",
        "_radix_select_kernel", "_sparse_mla_kernel", "_sparse_mla_gluon_kernel", "_sparse_mla_roles_kernel",
        "_sparse_mla_combine_kernel", "_moe_align_small_kernel", "_moe_gate_up_kernel", "_moe_down_kernel",
    }  # fmt: skip
    assert expected <= kernels, expected - kernels


def test_no_kernel_spills_registers(rows):
    # The Triton sparse MLA kernel is the fallback where the Gluon ones do not build; some Triton releases
    # (3.9) spill a few hundred bytes in it, which costs only that fallback.
    spilled = [r for r in rows if r["stack"] + r["local"] and r["kernel"] != "_sparse_mla_kernel"]
    assert not spilled, spilled


def test_shared_memory_fits_one_program(rows):
    over = [r for r in rows if r["smem"] > SMEM_PER_PROGRAM]
    assert not over, over
    assert all(r["ctas_per_sm"] >= 1 for r in rows)


def test_pdl_kernels_wait_before_any_global_access(rows):
    launched_with_pdl = [r for r in rows if r["pdl"] != "-"]
    assert len({r["kernel"] for r in launched_with_pdl}) >= 14  # every Triton kernel but sparse MLA's
    wrong = [r for r in launched_with_pdl if r["pdl"] != "yes"]
    assert not wrong, wrong


CHECK = """
import sys
sys.path.insert(0, {bench!r})
import triton, triton.language as tl, torch
from kernel_resources import compile_only, waits_first

@triton.jit
def read_then_wait(x, y):
    v = tl.load(x)
    tl.extra.cuda.gdc_wait()
    tl.store(y, v)

@triton.jit
def wait_then_read(x, y):
    tl.extra.cuda.gdc_wait()
    tl.store(y, tl.load(x))

@triton.jit
def no_wait(x, y):
    tl.store(y, tl.load(x))

record = []
with compile_only(record):
    for kernel in (read_then_wait, wait_then_read, no_wait):
        kernel[(1,)](torch.empty(4), torch.empty(4))
print([waits_first(k.asm["ptx"]) for _, _, k in record])
"""


def test_wait_check_sees_a_read_before_the_wait(tmp_path):
    script = tmp_path / "check.py"  # a file: triton.jit reads the kernels' source
    script.write_text(CHECK.format(bench=str(TOOL.parent)))
    proc = subprocess.run([sys.executable, str(script)], env=_compiled_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "['ACCESS BEFORE WAIT', 'yes', 'NO WAIT']"
