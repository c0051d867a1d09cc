"""The helper scripts under scripts/ that the test suite itself does not run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def gpu_check(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VIRTUAL_ENV": sys.prefix, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(
        [str(REPO_ROOT / "scripts" / "gpu-check"), *args], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the script runs the whole GPU suite")
def test_gpu_check_without_a_gpu_says_so_in_one_line(tmp_path: Path) -> None:
    result = gpu_check(str(tmp_path / "out"))
    assert result.returncode == 3 and result.stderr.count("\n") == 1 and "no CUDA device" in result.stderr
    assert not (tmp_path / "out").exists()


def test_gpu_check_rejects_an_unknown_option() -> None:
    result = gpu_check("--bench-only")
    assert result.returncode == 2 and "usage: scripts/gpu-check" in result.stderr
