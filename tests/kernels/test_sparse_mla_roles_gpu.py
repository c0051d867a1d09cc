"""The warp-specialised Gluon sparse MLA kernel (sparse_mla_gluon_roles: a scoring warpgroup, a value
warpgroup and a load partition) against the reference, on the shapes the other kernels are checked on, in each
config. Its partitions meet at mbarriers, and a mistake there hangs the GPU rather than failing, so the cases
run in a child process with a time limit: a hang fails this test instead of stopping the suite.

    python tests/kernels/test_sparse_mla_roles_gpu.py   # the child: every case, one line each
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

# (rows a step, buffers, rows a copy call, load registers, value registers, key splits): the default, forced
# splits (several blocks each), one split, the other register split, 32-row steps in 4 buffers
CONFIGS = [
    None,
    (64, 2, 16, 40, 208, 3),
    (64, 2, 32, 56, 208, 1),
    (64, 2, 16, 40, 232, None),
    (32, 4, 32, 56, 208, None),
]


@pytest.mark.gpu
def test_sparse_mla_gluon_roles_matches_reference_without_hanging_gpu() -> None:
    if torch.cuda.get_device_capability()[0] != 9:
        pytest.skip("the Gluon kernels are Hopper's")
    try:
        child = subprocess.run([sys.executable, __file__], capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the kernel hung (no answer in 600 s); output so far:\n{exc.stdout}\n{exc.stderr}")
    from test_sparse_mla import FULL_SHAPES

    assert child.returncode == 0, child.stdout + child.stderr[-3000:]
    assert child.stdout.count(" ok ") == len(CONFIGS) * len(FULL_SHAPES), child.stdout


def _check_all() -> int:
    sys.path.insert(0, str(Path(__file__).parent))
    from dsagent.kernels.sparse_mla import sparse_mla_ref
    from dsagent.kernels.sparse_mla_gluon_roles import sparse_mla_gluon_roles
    from kernel_kit import rel_rmse
    from test_sparse_mla import FULL_SHAPES, TOL, _inputs

    failures = 0
    for config in CONFIGS:
        for b, t, h, s, k in FULL_SHAPES:
            q, kv, idx = _inputs(b, t, h, 576, s, k, torch.bfloat16, "cuda")
            ref = sparse_mla_ref(q, kv, idx, 576**-0.5, 512)
            out = torch.full_like(ref, float("nan"))
            sparse_mla_gluon_roles(q, kv, idx, 576**-0.5, 512, out=out, config=config)
            torch.cuda.synchronize()
            err = rel_rmse(out, ref)
            good = err < TOL[torch.bfloat16]  # NaN (an unwritten output) fails too
            failures += not good
            verdict = "ok" if good else "WRONG"
            print(f"config {config} B={b} T={t} H={h} S={s} K={k}: {verdict} rel rmse {err:.2e}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(_check_all())
